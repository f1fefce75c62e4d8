"""Lip-reading agreement between a generated video and the real one, word by word.

The reader is the authors' LRW word classifier from their evaluation package `fae` (0.2): a
TorchScript model, `fae/resources/lrw.pth`, that maps 29 frames of 88×88 grayscale mouth crops
(normalised as (x/255 - 0.421)/0.165) to logits over LRW's 500 words. We read that file directly
from the installed package (`pip install fae==0.2 --no-deps`) and never import `fae`.

Mouth crops follow fae's recipe on our aligned crops: a similarity warp that puts the canonical
face's stable points on fae's mean face (256×256), a 96×96 patch around the mouth, its central
88×88. Our crops are aligned already, so one fixed warp serves every frame (an upscale of 1.66:
the 128×96 crop has the mouth ~26 px wide, LRW's crops ~45 px).

GRID's vocabulary is not LRW's (only "again", "place", "seven", "three" are among the 500 words),
so the reader's top-1 word is meaningless here. What we compare is its *response*: for each word
of the transcript, a 29-frame window centred on the word goes through the reader for both videos,
and we report
  - `lipread_similarity`: the mean cosine similarity of the two centred logit vectors, and
  - `lipread_agreement`: the fraction of words with the same top-1 LRW word.
Without word timings the clip is cut into windows of 29 frames every 15 frames instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import CheckpointError, VideoError
from . import Metric, register

LRW_FRAMES = 29
LRW_SIZE = 88
_PATCH = 96  # fae cuts a 96×96 patch around the mouth, then keeps its central 88×88
_MEAN, _STD = 0.421, 0.165
_WINDOW_STEP = 15  # frames between windows when there are no word timings
_FAE = "pip install fae==0.2 --no-deps"


def lipreader_path() -> Path:
    """Where the installed `fae` package keeps `resources/lrw.pth` (found without importing fae)."""
    spec = importlib.util.find_spec("fae")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"the lip-reading metric needs the LRW reader of the 'fae' package: {_FAE}")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lrw.pth"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: reinstall the reader with {_FAE} --force-reinstall")
    return path


@lru_cache(maxsize=1)
def load_lipreader() -> torch.jit.ScriptModule:
    """The LRW TorchScript reader, eval mode, CPU. It was traced with batch 1: call it per window."""
    try:
        with warnings.catch_warnings():  # torch 2.9+ deprecates TorchScript loading; the file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(lipreader_path()), map_location="cpu")
    except RuntimeError as error:
        raise CheckpointError(f"cannot load {lipreader_path()} ({str(error).splitlines()[0]}); reinstall it: {_FAE}") from None
    return model.eval()


@lru_cache(maxsize=1)
def _mouth_warp() -> np.ndarray:
    """(2, 3) affine from aligned-crop pixels to the 88×88 LRW mouth crop."""
    from ..face import STABLE_POINTS, canonical_landmarks, similarity_transform, transform_points

    mean_face = np.load(lipreader_path().parent / "mean_face.npy").astype(np.float64)
    canonical = canonical_landmarks().astype(np.float64)
    to_lrw = similarity_transform(canonical[STABLE_POINTS], mean_face[STABLE_POINTS]).astype(np.float64)
    centre = transform_points(to_lrw, canonical[48:68]).mean(0)
    corner = np.round(centre) - _PATCH // 2 + (_PATCH - LRW_SIZE) // 2  # fae rounds the centre too
    warp = to_lrw.copy()
    warp[:, 2] -= corner
    return warp


def lrw_mouths(crops: np.ndarray) -> torch.Tensor:
    """Aligned crops (T×128×96×3 uint8) -> (T, 88, 88) normalised grayscale mouth crops."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (128, 96, 3) or crops.dtype != np.uint8:
        raise VideoError(f"expected aligned T×128×96×3 uint8 crops, got {crops.dtype} {crops.shape}: align the video first")
    warp = _mouth_warp()
    out = np.empty((len(crops), LRW_SIZE, LRW_SIZE), np.float32)
    for t, crop in enumerate(crops):
        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        out[t] = cv2.warpAffine(gray, warp, (LRW_SIZE, LRW_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return torch.from_numpy((out / 255.0 - _MEAN) / _STD)


def word_windows(frames: int, words=None, fps: float = 25.0) -> list[tuple[str, int]]:
    """(label, first frame) of each 29-frame window: one centred on each `(word, start_s, end_s)`,
    or, without words, one every 15 frames. Windows may run past the clip's ends (edge padded)."""
    if words:
        return [(w, int(round((s + e) / 2 * fps)) - LRW_FRAMES // 2) for w, s, e in words]
    starts = range(0, max(1, frames - LRW_FRAMES + 1), _WINDOW_STEP)
    return [(f"frames {s}-{s + LRW_FRAMES - 1}", s) for s in starts]


@torch.no_grad()
def window_logits(mouths: torch.Tensor, windows: list[tuple[str, int]]) -> np.ndarray:
    """(N, 500) LRW logits of each window of `lrw_mouths` output."""
    model = load_lipreader()
    logits = []
    for _, start in windows:
        index = torch.arange(start, start + LRW_FRAMES).clamp(0, len(mouths) - 1)
        clip = mouths[index][None, None]  # (1, 1, 29, 88, 88)
        logits.append(model(clip, torch.tensor([LRW_FRAMES])).reshape(-1))
    return torch.stack(logits).numpy()


def logit_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of centred logits (logits are shift invariant, hence centred)."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def lipreading_agreement(generated: np.ndarray, reference: np.ndarray, words=None, fps: float = 25.0) -> dict:
    """Agreement of the LRW reader on generated vs real crops (both T×128×96×3 uint8).

    Returns `lipread_similarity`, `lipread_agreement` (see the module docstring) and `lipread_words`.
    """
    frames = min(len(generated), len(reference))
    generated, reference = generated[:frames], reference[:frames]
    windows = word_windows(frames, words, fps)
    real = window_logits(lrw_mouths(reference), windows)
    if np.array_equal(generated, reference):  # ground truth against itself
        fake = real
    elif (generated == generated[:1]).all():  # a still video: every window is the same input
        fake = np.repeat(window_logits(lrw_mouths(generated[:1]), windows[:1]), len(windows), axis=0)
    else:
        fake = window_logits(lrw_mouths(generated), windows)
    return {
        "lipread_similarity": float(logit_similarity(fake, real).mean()),
        "lipread_agreement": float((fake.argmax(-1) == real.argmax(-1)).mean()),
        "lipread_words": len(windows),
    }


# ---------------------------------------------------------------------------------------------
# Registered metrics; both come from one run of the reader (the last result is kept, keyed by
# the bytes of the two videos and the word timings).
_last: dict = {}


def _agreement_of(generated: np.ndarray, reference: np.ndarray, context: dict) -> dict:
    words, fps = context.get("words"), float(context.get("fps") or 25.0)
    digest = lambda a: hashlib.blake2b(np.ascontiguousarray(a).data, digest_size=16).digest()  # noqa: E731
    key = (digest(generated), digest(reference), generated.shape, repr(words), fps)
    if key not in _last:
        _last.clear()
        _last[key] = lipreading_agreement(generated, reference, words, fps)
    return _last[key]


@register
class LipReading(Metric):
    """Mean cosine similarity of the LRW reader's logits on generated vs real word windows
    (1 for the real video itself)."""

    name = "lipreading"
    needs_reference = True

    def compute(self, generated, reference=None, still=None, **context) -> float:
        return _agreement_of(generated, reference, context)["lipread_similarity"]


@register
class LipReadingTop1(Metric):
    """Share of word windows where the LRW reader's top-1 word is the same on both videos."""

    name = "lipread_top1"
    needs_reference = True

    def compute(self, generated, reference=None, still=None, **context) -> float:
        return _agreement_of(generated, reference, context)["lipread_agreement"]
