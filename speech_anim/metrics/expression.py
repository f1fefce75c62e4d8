"""Expression metrics (paper §5, Table 6): blink rate and blink duration of a video, from `blinks.py`.

Neither has a better direction: a model should match real video (GRID in the paper: 0.39 blinks/s,
0.41 s; our measurement of real GRID s1 in docs/blinks.md).
"""

from __future__ import annotations

import hashlib

import numpy as np

from . import Metric, register

_last: dict = {}  # the blink statistics of the last video: both metrics are usually asked in turn


def blink_stats(frames: np.ndarray, fps: float = 25.0):
    """`blinks.video_blinks` of T×H×W×3 frames, remembered for the last video (keyed by its bytes)."""
    from ..blinks import video_blinks

    key = (hashlib.blake2b(np.ascontiguousarray(frames).data, digest_size=16).digest(), frames.shape, float(fps))
    if key not in _last:
        _last.clear()
        _last[key] = video_blinks(frames, fps=fps)
    return _last[key]


@register
class BlinksPerSecond(Metric):
    """Blinks per second (pass fps= when the video is not 25 fps)."""

    name = "blinks_per_second"
    higher_is_better = None

    def compute(self, generated, reference=None, still=None, fps: float = 25.0, **context) -> float:
        return blink_stats(generated, fps).blinks_per_second


@register
class BlinkDuration(Metric):
    """Mean blink duration in seconds, EAR peak to peak; nan for a video without blinks."""

    name = "blink_duration"
    higher_is_better = None

    def compute(self, generated, reference=None, still=None, fps: float = 25.0, **context) -> float:
        return blink_stats(generated, fps).mean_duration
