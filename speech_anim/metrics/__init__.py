"""The paper's video metrics (§5, Tables 5-6) behind one interface, and a registry of them.

Every metric is a `Metric`: called on a generated video (T×H×W×3 uint8, the aligned 128×96 crops
everywhere else in the package), and, depending on the metric, the ground-truth video of the same
length and the still image the video was generated from. It returns one float for the whole video.

    from speech_anim.metrics import get_metric
    get_metric("ssim")(generated, reference)

Metrics that need more (audio, word timings, fps) take it as keyword context; metrics ignore
context they do not use, so one call signature serves them all. A new metric subclasses `Metric`,
is decorated with `@register` and lives in a module of this package: light modules are listed in
`_METRIC_MODULES` below (imported with the package), the others are imported by `get_metric` the
first time it is asked for a name it does not know.
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import SpeechAnimError


class MetricError(SpeechAnimError, ValueError):
    """A metric got inputs it cannot score (wrong shape, missing reference, unknown name)."""


class Metric:
    """One video metric. Subclasses set the class attributes and implement `compute`."""

    name: str = ""
    needs_reference: bool = False  # compares with the ground-truth video, frame by frame
    needs_still: bool = False  # compares with the still image the video was made from
    higher_is_better: bool | None = True  # None: neither; compare with real video (blink rate)

    def __call__(self, generated, reference=None, still=None, **context) -> float:
        generated = as_video(generated, "generated video")
        if self.needs_reference:
            if reference is None:
                raise MetricError(f"{self.name} compares with the ground truth: pass reference= frames")
            reference = as_video(reference, "reference video")
            if reference.shape != generated.shape:
                raise MetricError(
                    f"{self.name}: generated video {generated.shape} and reference {reference.shape} differ in shape: "
                    "align both to the same crop and trim them to the same number of frames"
                )
        if self.needs_still:
            if still is None:
                raise MetricError(f"{self.name} compares with the still image: pass still= (an H×W×3 uint8 image)")
            still = as_image(still, "still image")
        return float(self.compute(generated, reference=reference, still=still, **context))

    def compute(self, generated: np.ndarray, reference=None, still=None, **context) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<metric {self.name}>"


METRICS: dict[str, Metric] = {}


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: add one instance of a Metric subclass to METRICS under its name."""
    if not cls.name or cls.name in METRICS:
        raise ValueError(f"metric name {cls.name!r} is empty or already registered")
    METRICS[cls.name] = cls()
    return cls


def get_metric(name: str) -> Metric:
    """The registered metric called `name` (case-insensitive)."""
    if name.lower() not in METRICS:
        _import_all()
    metric = METRICS.get(name.lower())
    if metric is None:
        raise MetricError(f"unknown metric '{name}': choose one of {', '.join(sorted(METRICS))}")
    return metric


def _import_all() -> None:
    """Import every module of this package, so metrics that need heavy imports (torch models),
    left out of `_METRIC_MODULES` to keep `import speech_anim.metrics` light, register too."""
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def as_video(frames, what: str = "video") -> np.ndarray:
    """Check T×H×W×3 uint8 frames (one H×W×3 frame becomes a 1-frame video)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise MetricError(f"the {what} must be T×H×W×3 RGB frames, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise MetricError(f"the {what} must be uint8 (0-255), got {frames.dtype}: convert with ((x + 1) * 127.5).round()")
    return frames


def as_image(image, what: str = "image") -> np.ndarray:
    """Check one H×W×3 uint8 image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise MetricError(f"the {what} must be an H×W×3 uint8 RGB image, got {image.dtype} {image.shape}")
    return image


# Light modules whose metrics register on import; the others register when `get_metric` first
# misses a name (or when imported directly).
_METRIC_MODULES = ("reference", "cpbd", "identity", "expression")
for _module in _METRIC_MODULES:
    importlib.import_module(f"{__name__}.{_module}")
