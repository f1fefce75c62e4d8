"""What the Gradio page (`app.py`) runs for one request: photo + speech -> video, crop, blinks, EAR plot.

Kept apart from the page layout so it can be called and tested without a server. Models are loaded
once per process and shared by all requests (the generator only reads its weights, so concurrent
requests can use one copy).
"""

from __future__ import annotations

import atexit
import numbers
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .animator import DEFAULT_CHECKPOINT, Animator
from .audio import SAMPLE_RATE, load_audio
from .blinks import BlinkStats, video_blinks
from .errors import AudioError, CheckpointError, FaceError, SeedError, SpeechAnimError
from .face import load_image
from .video import write_video

CHECKPOINT_ENV = "SPEECH_ANIM_CHECKPOINT"
MAX_AUDIO_ENV = "SPEECH_ANIM_MAX_AUDIO_SECONDS"
# The paper-size generator (55.7 M parameters) made 3 s of video in 8.3 s on 2 busy CPU cores
# (load average 6): 60 s of speech is a few minutes' wait on a CPU, far less on a GPU.
MAX_AUDIO_SECONDS_CPU = 60.0
MAX_AUDIO_SECONDS_GPU = 300.0
# Photos are shrunk to this long side before paste-back: a 12-megapixel phone photo would make a
# video that is slow to encode and to stream, and the face is only 128 pixels high anyway.
MAX_PHOTO_SIDE = 1024
# Generated videos older than this are removed from the app's output folder (gradio keeps its
# own copy for serving; see `delete_cache` in app.py).
OUTPUT_MAX_AGE_SECONDS = 2 * 3600

SUMMARY_HEADERS = ["Statistic", "Value"]
SUMMARY_NAMES = ["Blinks", "Blinks per second", "Mean blink duration (s)", "Median blink duration (s)",
                 "Video length (s)"]
BLINK_HEADERS = ["Blink", "Start (s)", "End (s)", "Duration (s)", "Min EAR"]

Progress = Callable[[float, str], None]


@dataclass
class AppResult:
    """Everything the page shows for one request."""

    video: Path  # H.264 + AAC mp4
    crop: np.ndarray  # the aligned 128×96 still the model was given
    crop_png: Path  # the same, as a PNG file (what the page shows)
    stats: BlinkStats = field(repr=False)
    summary: list[list]  # [name, value] rows: SUMMARY_NAMES
    blinks: list[list]  # one row per blink under BLINK_HEADERS
    figure: object = field(repr=False)  # matplotlib Figure of the EAR curve
    status: str  # one line of Markdown: what was made, with what, how fast


# ----------------------------------------------------------------------------------------------
# Settings


def max_audio_seconds() -> float:
    """The longest speech a request may give: $SPEECH_ANIM_MAX_AUDIO_SECONDS, else by device."""
    value = os.environ.get(MAX_AUDIO_ENV)
    if value:
        try:
            seconds = float(value)
        except ValueError:
            seconds = float("nan")
        if not seconds > 0:
            raise SpeechAnimError(f"{MAX_AUDIO_ENV}={value!r} is not a positive number of seconds: fix or unset it")
        return seconds
    return MAX_AUDIO_SECONDS_GPU if torch.cuda.is_available() else MAX_AUDIO_SECONDS_CPU


def default_checkpoint() -> str | None:
    """The model used when a request names none: $SPEECH_ANIM_CHECKPOINT, else the packaged one
    (None when it is not installed)."""
    if os.environ.get(CHECKPOINT_ENV):
        return os.environ[CHECKPOINT_ENV]
    if (DEFAULT_CHECKPOINT / "model.safetensors").is_file():
        return str(DEFAULT_CHECKPOINT)
    return None


def checkpoint_label(checkpoint: str | None) -> str:
    """A short name for a checkpoint: the packaged model's folder name, a Hub id, or a local path."""
    if checkpoint is None:
        return "no default model is installed"
    path = Path(checkpoint)
    if path.resolve() == DEFAULT_CHECKPOINT.resolve():
        return f"{DEFAULT_CHECKPOINT.name} (packaged)"
    return str(checkpoint)


# ----------------------------------------------------------------------------------------------
# Models, loaded once per process


_animators: dict[tuple[str, str], Animator] = {}
_animators_lock = threading.Lock()
_MAX_CACHED_MODELS = 4  # user-chosen checkpoints must not fill the memory


def load_animator(checkpoint: str | None, device: str | None = None) -> Animator:
    """The `Animator` for `checkpoint` (folder or Hub repo id), loaded on first use and then reused."""
    if checkpoint is None:
        raise CheckpointError(
            "no trained default model is installed: enter a checkpoint (a folder saved with "
            "save_pretrained or a Hub repo id) under Advanced"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (str(checkpoint), device)
    with _animators_lock:  # one load per checkpoint even when requests arrive together
        if key not in _animators:
            if len(_animators) >= _MAX_CACHED_MODELS:
                _animators.pop(next(iter(_animators)))
            _animators[key] = Animator.from_pretrained(checkpoint, device=device)
        return _animators[key]


# ----------------------------------------------------------------------------------------------
# One request


def animate(
    image,
    audio,
    seed: int = 0,
    paste_back: bool = True,
    checkpoint: str | None = None,
    progress: Progress | None = None,
    face=None,
) -> AppResult:
    """Animate a photo (path / PIL / array) with speech (path or (array, sr)); see `AppResult`.
    `face`: in a photo of several, the face to animate, counted from 0 from the left (None: the largest).

    Raises `SpeechAnimError` subclasses with one-line messages for anything wrong with the inputs.
    """
    report = progress or (lambda fraction, stage: None)
    started = time.perf_counter()
    seed = _check_seed(seed)
    face = _check_face(face)

    report(0.0, "reading the photo and the speech")
    photo = _shrink(load_image(image))
    signal = load_audio(audio)
    seconds, cap = len(signal) / SAMPLE_RATE, max_audio_seconds()
    if seconds > cap:
        raise AudioError(f"the speech is {seconds:.1f} s long but this app takes at most {cap:g} s: trim it")

    report(0.02, "loading the model")
    animator = load_animator(checkpoint)
    report(0.05, "aligning the face")
    result = animator(
        photo,
        (signal, SAMPLE_RATE),
        seed=seed,
        paste_back=paste_back,
        face=face,
        progress=lambda fraction, stage: report(0.05 + 0.75 * fraction, stage),
    )

    report(0.82, "measuring blinks")
    # On the crops, where the landmarks need no face detection.
    stats = video_blinks(result.crops, fps=result.fps)

    name = f"speech_anim_seed{seed}_{uuid.uuid4().hex[:8]}"
    video = _output_dir() / f"{name}.mp4"
    # Pasted back and encoded a frame at a time: 300 s of a 1024-pixel photo would be 23 GB at once.
    result.save(video, progress=lambda fraction, stage: report(0.85 + 0.14 * fraction, stage))
    # The crop goes to the page as a file of its own. Handed over as an array, gradio 6 writes it to
    # a cache path named by its content, in place: two requests with the same photo rewrote one file
    # while it was being served, and a download came back cut short. Files are cached by a rename.
    crop_png = _output_dir() / f"{name}_crop.png"
    Image.fromarray(result.crop).save(crop_png)
    elapsed = time.perf_counter() - started
    report(1.0, "done")
    status = (
        f"**{result.num_frames} frames** ({result.duration:.2f} s at {result.fps:g} fps), seed {seed}, "
        f"model `{checkpoint_label(checkpoint)}` on {animator.device.type}, made in {elapsed:.1f} s"
    )
    return AppResult(
        video=video,
        crop=result.crop,
        crop_png=crop_png,
        stats=stats,
        summary=summary_rows(stats),
        blinks=blink_rows(stats),
        figure=ear_figure(stats),
        status=status,
    )


def user_message(error: SpeechAnimError, paths: dict[str, str] | None = None) -> str:
    """The error's one-line message with server-side upload paths replaced by the user's file names."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    for path, name in (paths or {}).items():
        message = message.replace(str(path), name)
    return message


def _whole_number(value) -> int | None:
    """`value` as an int when it is a whole number, else None. A page's number field sends 1.0 as
    readily as 1; integers are taken as they are, not through a float (2^63 - 1 would round up)."""
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def _check_seed(seed) -> int:
    if seed is None or seed == "":
        return 0
    value = _whole_number(seed)
    if value is None or not 0 <= value < 2**63:
        raise SeedError(f"the seed must be a whole number from 0 to 2^63 - 1, got {seed!r}")
    return value


def _check_face(face) -> int | None:
    """None (the largest face) or a whole number from 0."""
    if face is None or face == "":
        return None
    value = _whole_number(face)
    if value is None or value < 0:
        raise FaceError(f"the face number must be a whole number from 0 (the leftmost face), got {face!r}; "
                        "leave it empty for the largest face")
    return value


def _shrink(photo: np.ndarray) -> np.ndarray:
    import cv2

    height, width = photo.shape[:2]
    scale = MAX_PHOTO_SIDE / max(height, width)
    if scale >= 1:
        return photo
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA)


_output_root: Path | None = None
_output_lock = threading.Lock()


def _output_dir() -> Path:
    """This process's folder for generated videos; old ones are pruned, all removed at exit."""
    global _output_root
    with _output_lock:
        if _output_root is None:
            _output_root = Path(tempfile.mkdtemp(prefix="speech_anim_app_"))
            atexit.register(shutil.rmtree, _output_root, ignore_errors=True)
        now = time.time()
        for old in [*_output_root.glob("*.mp4"), *_output_root.glob("*.png")]:
            try:
                if now - old.stat().st_mtime > OUTPUT_MAX_AGE_SECONDS:
                    old.unlink()
            except FileNotFoundError:
                pass
        return _output_root


# ----------------------------------------------------------------------------------------------
# Tables and plot


def summary_rows(stats: BlinkStats) -> list[list]:
    """[name, value] rows for SUMMARY_NAMES; the durations are None when there are no blinks."""

    def duration(value):
        return round(float(value), 3) if np.isfinite(value) else None

    values = [
        len(stats.blinks),
        round(stats.blinks_per_second, 3),
        duration(stats.mean_duration),
        duration(stats.median_duration),
        round(stats.num_frames / stats.fps, 2),
    ]
    return [[name, value] for name, value in zip(SUMMARY_NAMES, values)]


def blink_rows(stats: BlinkStats) -> list[list]:
    """One row per blink under BLINK_HEADERS: start and end are the EAR peaks around it, in seconds."""
    return [
        [
            i + 1,
            round(blink.start / stats.fps, 3),
            round(blink.end / stats.fps, 3),
            round(blink.duration(stats.fps), 3),
            round(float(blink.min_ear), 3),
        ]
        for i, blink in enumerate(stats.blinks)
    ]


def ear_figure(stats: BlinkStats):
    """The eye-aspect-ratio curve over time with each detected blink shaded and its minimum marked.

    Built with matplotlib's object API (no pyplot state), so concurrent requests do not share a figure.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 2.8), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    times = np.arange(stats.num_frames) / stats.fps
    axes.plot(times, stats.ear, color="#2b6cb0", linewidth=1.6, label="EAR")
    finite = np.isfinite(stats.ear)
    if finite.any():
        axes.axhline(float(np.median(stats.ear[finite])), color="#718096", linestyle="--", linewidth=1,
                     label="open-eye level (median)")
    for i, blink in enumerate(stats.blinks):
        axes.axvspan(blink.start / stats.fps, blink.end / stats.fps, color="#f6ad55", alpha=0.35,
                     label="blink" if i == 0 else None)
        axes.plot(blink.bottom / stats.fps, blink.min_ear, "o", color="#c05621", markersize=5)
    title = f"{len(stats.blinks)} blink{'s' if len(stats.blinks) != 1 else ''} detected"
    axes.set_title("Eye aspect ratio over time", fontsize=10, loc="left")
    axes.set_title(title, fontsize=10, loc="right")
    axes.set_xlabel("time (s)")
    axes.set_ylabel("eye aspect ratio")
    axes.set_xlim(0, max(times[-1] if len(times) else 0, 1 / stats.fps))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8, framealpha=0.9)
    return figure
