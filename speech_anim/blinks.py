"""Blinks: the eye aspect ratio (EAR) of every frame and the blinks it shows (paper §5, Eq. 8, Fig. 8).

EAR (Soukupová & Čech 2016) is the height of the eye over its width, from the six landmarks of each
eye, averaged over both eyes. It is about constant while the eye is open and drops sharply during a
blink. A blink is a local minimum of the EAR that lies well below the EAR peaks on either side; those
peaks are its start and end (Fig. 8), so a blink lasts from the last open frame before it to the
first open frame after it.

The thresholds are relative to the clip's open-eye EAR (its median), so they do not depend on the
shape of a person's eyes or on the face size. Their defaults were tuned on real GRID s1 video; see
docs/blinks.md for how they were validated (MediaPipe blendshapes and hand annotations).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import SpeechAnimError

# iBUG 68-point eye contours, in the order p1..p6 of Eq. 8: outer corner, two upper lid points,
# inner corner, two lower lid points (p2-p6 and p3-p5 face each other).
LEFT_EYE = (36, 37, 38, 39, 40, 41)
RIGHT_EYE = (42, 43, 44, 45, 46, 47)

# Defaults tuned on real GRID s1 video (scripts/validate_blinks.py, docs/blinks.md). All are
# fractions of the clip's open-eye EAR.
MIN_DROP = 0.20  # the higher peak lies at least this far above the minimum
MIN_RISE = 0.12  # and the lower one at least this far (eyes often reopen only partly, looking down)
MAX_CLOSED = 0.75  # the minimum lies at most this high (the eye is at least partly closed)
PEAK_TOLERANCE = 0.02  # a rise smaller than this is landmark noise, not a new peak
BUMP_TOLERANCE = 0.25  # a fall smaller than this, inside a blink, is lid flutter, not a reopening
MAX_SIDE_SECONDS = 0.4  # each peak is at most this far from the minimum: a blink is a sharp drop
PEAK_PATIENCE_SECONDS = 0.08  # a peak is where the EAR stops rising for this long (2 frames at 25 fps)


class BlinkError(SpeechAnimError, ValueError):
    """Landmarks or an EAR curve that blinks cannot be measured on."""


@dataclass(frozen=True)
class Blink:
    """One blink: EAR peaks `start` and `end` (frame indices, inclusive) around the minimum `bottom`."""

    start: int
    end: int
    frames: int  # end - start + 1
    min_ear: float
    bottom: int

    def duration(self, fps: float) -> float:
        """Seconds from the start peak to the end peak."""
        return (self.end - self.start) / fps


@dataclass
class BlinkStats:
    """The blinks of one video and the EAR curve they were found in."""

    blinks_per_second: float
    mean_duration: float  # seconds; nan when there are no blinks
    median_duration: float  # seconds; nan when there are no blinks
    blinks: list[Blink]
    ear: np.ndarray = field(repr=False)  # (T,) float32, nan where no face was found
    fps: float
    num_frames: int

    @property
    def durations(self) -> np.ndarray:
        return np.array([blink.duration(self.fps) for blink in self.blinks], dtype=np.float64)

    def to_dict(self, ear: bool = True) -> dict:
        """JSON-ready: nan durations become None, the EAR curve a list (omitted with ear=False)."""
        out = {
            "blinks_per_second": self.blinks_per_second,
            "mean_duration": _finite_or_none(self.mean_duration),
            "median_duration": _finite_or_none(self.median_duration),
            "num_blinks": len(self.blinks),
            "blinks": [asdict(blink) for blink in self.blinks],
            "fps": self.fps,
            "num_frames": self.num_frames,
        }
        if ear:
            out["ear"] = [_finite_or_none(round(float(v), 5)) for v in self.ear]
        return out


def _finite_or_none(value):
    return float(value) if np.isfinite(value) else None


def eye_aspect_ratio(landmarks) -> np.ndarray:
    """Eq. 8 averaged over both eyes: (T, 68, 2) landmarks -> (T,) float32 ((68, 2) -> a 0-d array)."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape[-2:] != (68, 2):
        raise BlinkError(f"eye_aspect_ratio needs iBUG 68-point landmarks (..., 68, 2), got shape {points.shape}")

    def ear(eye):
        p1, p2, p3, p4, p5, p6 = (points[..., i, :] for i in eye)
        height = np.linalg.norm(p2 - p6, axis=-1) + np.linalg.norm(p3 - p5, axis=-1)
        width = np.linalg.norm(p1 - p4, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(width > 0, height / (2.0 * width), np.nan)

    return ((ear(LEFT_EYE) + ear(RIGHT_EYE)) / 2.0).astype(np.float32)


def eye_openness(landmarks) -> np.ndarray:
    """How open the eyes are at each frame, as a fraction of the clip's open-eye EAR (its median):
    (T, 68, 2) landmarks -> (T,) float32, about 1 while the eyes are open and 0.3-0.6 at the bottom of
    a blink. The generator is conditioned on this (models/eye_process.py); nan EARs count as open."""
    ear = eye_aspect_ratio(landmarks)
    finite = np.isfinite(ear) & (ear > 0)
    if not finite.any():
        return np.ones(len(ear), np.float32)
    return np.where(finite, ear / np.median(ear[finite]), 1.0).astype(np.float32)


def detect_blinks(
    ear,
    fps: float = 25.0,
    *,
    min_drop: float = MIN_DROP,
    min_rise: float = MIN_RISE,
    max_closed: float = MAX_CLOSED,
    peak_tolerance: float = PEAK_TOLERANCE,
    bump_tolerance: float = BUMP_TOLERANCE,
    max_side_seconds: float = MAX_SIDE_SECONDS,
) -> BlinkStats:
    """Find blinks in an EAR curve (T,). Frames without a face (nan) never belong to a blink.

    Thresholds are fractions of the open-eye EAR (the median of the finite values). A candidate is
    a local minimum at most `max_closed` high. Its start and end are the peaks found by walking
    outwards from it while the EAR keeps rising (see `_walk_to_peak`), at most `max_side_seconds`
    away. It is a blink when the higher peak lies `min_drop` above the minimum and the lower one
    `min_rise` above it; a peak cut off by the clip's first or last frame is not required. Deeper
    minima are taken first; candidates overlapping an accepted blink (beyond a shared peak) are dropped.
    """
    ear = np.asarray(ear, dtype=np.float32).reshape(-1)
    if not (np.isfinite(fps) and fps > 0):
        raise BlinkError(f"fps must be a positive number, got {fps}")
    count = len(ear)
    finite = np.isfinite(ear)
    blinks: list[Blink] = []
    if finite.sum() >= 3 and np.median(ear[finite]) > 0:
        relative = ear / np.median(ear[finite])
        walk = dict(
            max_side=max(1, int(round(max_side_seconds * fps))),
            patience=max(2, int(round(PEAK_PATIENCE_SECONDS * fps))),
            rise=peak_tolerance,
            fall=bump_tolerance,
        )
        blinks = _find_blinks(relative, finite, min_drop, min_rise, max_closed, walk)
        blinks = [Blink(b.start, b.end, b.frames, round(float(ear[b.bottom]), 5), b.bottom) for b in blinks]
    durations = np.array([b.duration(fps) for b in blinks])
    return BlinkStats(
        blinks_per_second=len(blinks) / (count / fps) if count else 0.0,
        mean_duration=float(durations.mean()) if len(blinks) else float("nan"),
        median_duration=float(np.median(durations)) if len(blinks) else float("nan"),
        blinks=blinks,
        ear=ear,
        fps=float(fps),
        num_frames=count,
    )


def pooled_rate(stats: list[BlinkStats]) -> tuple[float, float, int]:
    """Blinks per second, median duration (s; nan without blinks) and count over several videos'
    stats together, as a corpus is summarised: each blink counts once, however long its video."""
    durations = np.concatenate([s.durations for s in stats]) if stats else np.zeros(0)
    seconds = sum(s.num_frames / s.fps for s in stats)
    median = float(np.median(durations)) if len(durations) else float("nan")
    return (len(durations) / seconds if seconds else 0.0), median, len(durations)


def _find_blinks(ear, finite, min_drop, min_rise, max_closed, walk) -> list[Blink]:
    padded = np.where(finite, ear, np.inf)
    # Local minima (a flat bottom counts once, at its first frame).
    left = np.concatenate([[np.inf], padded[:-1]])
    right = np.concatenate([padded[1:], [np.inf]])
    minima = np.flatnonzero(finite & (padded < left) & (padded <= right) & (padded <= max_closed))
    taken = np.zeros(len(ear), bool)
    found = []
    for bottom in minima[np.argsort(padded[minima], kind="stable")]:
        if taken[bottom]:
            continue
        start, start_cut = _walk_to_peak(ear, finite, bottom, -1, **walk)
        end, end_cut = _walk_to_peak(ear, finite, bottom, +1, **walk)
        depths = sorted(ear[peak] - ear[bottom] for peak, cut in ((start, start_cut), (end, end_cut)) if not cut)
        if not depths or depths[-1] < min_drop or (len(depths) == 2 and depths[0] < min_rise):
            continue
        # Neighbouring blinks may share a peak (a double blink), not the frames between peaks.
        if taken[start + 1 : end].any():
            continue
        taken[start + 1 : end] = True
        found.append(Blink(int(start), int(end), int(end - start + 1), float(ear[bottom]), int(bottom)))
    return sorted(found, key=lambda blink: blink.start)


def _walk_to_peak(ear, finite, bottom, step, max_side, patience, rise, fall) -> tuple[int, bool]:
    """The EAR peak beside a minimum in direction `step`, and whether the clip's edge cut the walk.

    A frame becomes the new peak when it rises more than `rise` above the current one, so noise on
    the open-eye plateau does not drag the peak along it. The walk goes on through dips of less
    than `fall` below the peak (the lids flutter while closed) and ends at a larger fall (the eye
    reopened and a second blink follows), after `patience` frames without a new peak, or
    `max_side` frames from the minimum. Reaching the clip's edge (or a frame without a face) right
    after a new peak means the EAR was still rising: the true peak is unseen, the walk is cut.
    """
    peak = t = bottom
    while True:
        nxt = t + step
        if nxt < 0 or nxt >= len(ear) or not finite[nxt]:
            return peak, peak == t
        if abs(nxt - bottom) > max_side:
            return peak, False
        t = nxt
        if ear[t] > ear[peak] + rise:
            peak = t
        elif ear[t] < ear[peak] - fall or abs(t - peak) > patience:
            return peak, False


# ----------------------------------------------------------------------------------------------
# Videos


def video_landmarks(frames, progress=None) -> np.ndarray:
    """(T, 68, 2) landmarks of a full-size video's frames (T×H×W×3 uint8), nan before the first face.

    The face is detected once (dlib HOG, `face.FaceAligner`) and then tracked: each frame's box is
    the detected box moved and scaled with the previous frame's stable points (nose, eye corners).
    A fixed box per face keeps the landmarks steadier than a new detection per frame, whose box
    jumps by whole pyramid steps.
    """
    from .errors import FaceError
    from .face import STABLE_POINTS, FaceAligner

    aligner = FaceAligner()
    out = np.full((len(frames), 68, 2), np.nan, np.float32)
    anchor = None  # (box centre - stable centre, box size / stable spread) at detection
    box = None
    for t, frame in enumerate(frames):
        if box is None:
            try:
                box = np.asarray(aligner.detect(frame), np.float64)
            except FaceError:
                continue
        points = aligner.landmarks(frame, tuple(box))
        out[t] = points
        stable = points[STABLE_POINTS].astype(np.float64)
        centre, spread = stable.mean(0), np.linalg.norm(stable - stable.mean(0), axis=1).mean()
        if anchor is None:
            anchor = ((box[:2] + box[2:]) / 2 - centre, (box[2:] - box[:2]) / spread)
        middle, half = centre + anchor[0], anchor[1] * spread / 2
        box = np.concatenate([middle - half, middle + half])
        if progress is not None:
            progress(t + 1, len(frames))
    if anchor is None:
        raise BlinkError("no face found in any frame of the video: pass a video of a frontal face")
    return out


def video_blinks(video, fps: float | None = None, **thresholds) -> BlinkStats:
    """Blinks of a video: a path (read with `video.read_video`), or T×H×W×3 uint8 frames.

    Aligned 128×96 crops (e.g. generated frames) get their landmarks from `face.crop_landmarks`
    without detection; any other frame size is detected and tracked (`video_landmarks`).
    `fps` defaults to the file's rate, or 25 for frames. `thresholds` go to `detect_blinks`.
    """
    from .face import CROP_HEIGHT, CROP_WIDTH, crop_landmarks

    if isinstance(video, (str, Path)):
        from .video import read_video

        frames, file_fps = read_video(video)
        fps = fps or file_fps
    else:
        frames = np.asarray(video)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
            raise BlinkError(f"video_blinks needs a path or T×H×W×3 uint8 frames, got {frames.dtype} {frames.shape}")
    fps = float(fps or 25.0)
    if frames.shape[1:3] == (CROP_HEIGHT, CROP_WIDTH):
        landmarks = crop_landmarks(frames)
    else:
        landmarks = video_landmarks(frames)
    return detect_blinks(eye_aspect_ratio(landmarks), fps, **thresholds)


# ----------------------------------------------------------------------------------------------
# Command line


def add_cli(subparsers) -> None:
    """Add `speech-anim blinks VIDEO [--json]`."""
    p = subparsers.add_parser("blinks", help="count the blinks in a video (EAR, paper §5)")
    p.add_argument("video", help="a video file (a full-size face or aligned 128×96 crops)")
    p.add_argument("--json", action="store_true", help="print JSON (with the per-frame EAR curve)")
    p.add_argument("--fps", type=float, default=None, help="override the file's frame rate")
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:
    stats = video_blinks(args.video, fps=args.fps)
    if args.json:
        print(json.dumps(stats.to_dict(), indent=1))
        return 0
    seconds = stats.num_frames / stats.fps
    count = len(stats.blinks)
    print(f"{args.video}: {count} blinks in {seconds:.2f} s ({stats.num_frames} frames at {stats.fps:g} fps)")
    print(f"blinks per second: {stats.blinks_per_second:.3f}")
    if stats.blinks:
        print(f"blink duration: mean {stats.mean_duration:.3f} s, median {stats.median_duration:.3f} s")
        for b in stats.blinks:
            print(f"  frames {b.start}-{b.end} ({b.duration(stats.fps):.2f} s), min EAR {b.min_ear:.3f} at frame {b.bottom}")
    return 0


# ----------------------------------------------------------------------------------------------
# Agreement with reference blinks (validation against annotations or another detector)


def match_blinks(detected, reference, tolerance: int = 2, ignore=()) -> tuple[int, int, int]:
    """One-to-one matches between two lists of (start, end) frame spans: (matched, detected, reference).

    Two spans match when they overlap after widening each by `tolerance` frames; detections that
    match no reference span but touch an `ignore` span (an ambiguous event) are left out of the
    detected count. Precision = matched / detected, recall = matched / reference.
    """
    def touches(a, b):
        return a[0] - tolerance <= b[1] and b[0] <= a[1] + tolerance

    reference = [tuple(span) for span in reference]
    used, matched, counted = set(), 0, 0
    for span in sorted(tuple(s) for s in detected):
        partner = next((j for j, ref in enumerate(reference) if j not in used and touches(span, ref)), None)
        if partner is not None:
            used.add(partner)
            matched += 1
            counted += 1
        elif not any(touches(span, other) for other in ignore):
            counted += 1
    return matched, counted, len(reference)
