"""Audio-visual sync: offset and confidence as SyncNet defines them (Chung & Zisserman 2016).

Every video frame `t` gets a mouth embedding (frames t-2..t+2) and every audio window `t` an audio
embedding (0.2 s centred on frame t), both from the frozen expert in `speech_anim.models.syncnet`.
For each shift `s` in -15..15 frames, the distance curve is the mean over all frames of
||video_t - audio_{t+s}||, the audio shifted circularly (see `distance_curve`). Then

- offset = the shift with the smallest mean distance, in frames. Positive: the sound comes late
  (the audio that matches frame t plays at frame t + offset); 0 is in sync.
- confidence = median - min of the curve: how clearly one shift stands out. A still face gives
  the same distance at every shift, so its confidence is 0 (and its offset means nothing).

Distances are between unit vectors (0..2), so our confidences are on a different scale from the
original SyncNet's (whose embeddings are not normalised); compare them only with each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from ..audio import SAMPLE_RATE, frame_audio
from ..errors import VideoError
from ..models.syncnet import SyncNet, load_expert, mouth_frames, mouth_windows
from . import Metric, MetricError, register

MAX_SHIFT = 15
# The curve is averaged over at least this many frames at every shift: shorter clips get fewer shifts.
_MIN_OVERLAP = 10


@dataclass
class SyncResult:
    offset: int  # frames; positive = audio late
    confidence: float  # median - min of `distances`
    min_distance: float
    shifts: np.ndarray  # (2 * max_shift + 1,) int
    distances: np.ndarray  # mean distance at each shift

    def as_dict(self) -> dict:
        return {"av_offset": self.offset, "av_confidence": self.confidence, "av_min_distance": self.min_distance}


@torch.no_grad()
def embed(crops, audio: np.ndarray, fps: float = 25.0, model: SyncNet | None = None, batch: int = 256):
    """Per-frame (video, audio) embeddings, each (T, D), of aligned crops and their 16 kHz sound."""
    model = model or load_expert()
    mouths = mouth_windows(mouth_frames(crops, model.config), model.config.video_frames)
    windows = torch.from_numpy(frame_audio(np.asarray(audio, np.float32), fps, SAMPLE_RATE, frames=len(mouths)))
    video = torch.cat([model.embed_video(mouths[i : i + batch]) for i in range(0, len(mouths), batch)])
    sound = torch.cat([model.embed_audio(windows[i : i + batch]) for i in range(0, len(windows), batch)])
    return video.numpy(), sound.numpy()


def distance_curve(video: np.ndarray, audio: np.ndarray, max_shift: int = MAX_SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """Mean ||video_t - audio_{(t+s) mod T}|| over all T frames, for s in -max_shift..max_shift
    -> (shifts, distances).

    The audio is shifted circularly, so every point of the curve pairs all video frames with all
    audio frames and only their alignment changes. Dropping the frames that a shift pushes out
    instead would change *which* audio is compared at each shift: a still, closed mouth is
    closest to silence, so its curve would fall towards whichever shift keeps the most silence
    (measured: a still face then gets a confident offset of ±15 or 0). Circularly, a still face's
    curve is flat (confidence 0). Clips shorter than 2 * max_shift + 10 frames get a smaller
    max_shift.
    """
    frames = len(video)
    max_shift = min(max_shift, (frames - _MIN_OVERLAP) // 2)
    if max_shift < 1:
        raise VideoError(
            f"the clip has {frames} frames; sync needs at least {_MIN_OVERLAP + 2}: evaluate longer clips"
        )
    shifts = np.arange(-max_shift, max_shift + 1)
    distances = np.array([np.linalg.norm(video - np.roll(audio, -s, axis=0), axis=1).mean() for s in shifts])
    return shifts, distances


def av_sync(crops, audio: np.ndarray, fps: float = 25.0, max_shift: int = MAX_SHIFT,
            model: SyncNet | None = None) -> SyncResult:  # fmt: skip
    """AV offset and confidence of aligned crops (T×128×96×3 uint8) and their 16 kHz mono audio."""
    video, sound = embed(crops, audio, fps, model)
    shifts, distances = distance_curve(video, sound, max_shift)
    best = int(np.argmin(distances))
    return SyncResult(
        offset=int(shifts[best]),
        confidence=float(np.median(distances) - distances[best]),
        min_distance=float(distances[best]),
        shifts=shifts,
        distances=distances,
    )


def shift_audio(audio: np.ndarray, frames: int, fps: float = 25.0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The same length of audio played `frames` video frames later (positive) or earlier
    (negative), zero filled: what `av_sync` should then report as its offset."""
    samples = min(int(round(frames * sample_rate / fps)), len(audio))
    samples = max(samples, -len(audio))
    out = np.zeros_like(audio)
    if samples >= 0:
        out[samples:] = audio[: len(audio) - samples]
    else:
        out[:samples] = audio[-samples:]
    return out


# ---------------------------------------------------------------------------------------------
# The two numbers as registered metrics. Both come from one `av_sync` run: the last result is
# kept, keyed by the bytes of the frames and the audio, so asking for the offset and then the
# confidence of the same video embeds it once.
_last: dict = {}


def _digest(array: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(array).data, digest_size=16).digest()


def _sync_of(generated: np.ndarray, context: dict) -> SyncResult:
    audio = context.get("audio")
    if audio is None:
        raise MetricError("the AV sync metrics need the speech: pass audio= (16 kHz mono samples)")
    audio = np.asarray(audio, np.float32)
    fps = float(context.get("fps") or 25.0)
    key = (_digest(generated), generated.shape, _digest(audio), len(audio), fps)
    if key not in _last:
        _last.clear()
        _last[key] = av_sync(generated, audio, fps)
    return _last[key]


@register
class AVOffset(Metric):
    """Frames by which the sound lags the mouth (SyncNet's offset; 0 is in sync)."""

    name = "av_offset"
    higher_is_better = False  # closer to 0 is better

    def compute(self, generated, reference=None, still=None, **context) -> float:
        return _sync_of(generated, context).offset


@register
class AVConfidence(Metric):
    """SyncNet's confidence: median - min of the distance-vs-shift curve (near 0 for a still face)."""

    name = "av_confidence"

    def compute(self, generated, reference=None, still=None, **context) -> float:
        return _sync_of(generated, context).confidence
