"""Validate the blink detector on real GRID video, two independent ways (docs/blinks.md).

1. `extract`: for every clip, the dlib EAR curve our detector sees and MediaPipe FaceLandmarker's
   eyeBlinkLeft/eyeBlinkRight blendshape scores (a different model, a different face mesh); one
   .npz per clip in --cache, so a rerun resumes. About 2.5 s per clip on one core.
2. `evaluate`: blink rate and durations of our detector over the cached clips, and its precision /
   recall against MediaPipe's blinks (paper Table 3 style), and against the hand annotations in
   tests/data/blink_annotations.json (made from scripts/blink_montage.py montages).

    python scripts/validate_blinks.py extract --cache /tmp/blink_cache          # all s1 clips
    python scripts/validate_blinks.py evaluate --cache /tmp/blink_cache

MediaPipe is an optional evaluation dependency: pip install mediapipe (the model file is
../shared/models/mediapipe/face_landmarker.task).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from speech_anim import blinks as blink_detector
from speech_anim.video import read_video

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
S1_VIDEOS = SHARED / "data" / "grid" / "s1" / "video"
MEDIAPIPE_MODEL = SHARED / "models" / "mediapipe" / "face_landmarker.task"
ANNOTATIONS = REPO / "tests" / "data" / "blink_annotations.json"

# A MediaPipe blink: a peak of the mean eyeBlink score of both eyes at least MP_HEIGHT high and
# MP_PROMINENCE above the lower of the two valleys beside it (GRID speakers: about 0.07-0.1 with the
# eyes open, 0.2-0.3 looking down, 0.45-0.8 closed; a double blink reopens the eyes only partly).
# Its span is where the score stays above half the prominence. Set by looking at the scores of
# bbaf2n, bgah3a, bgwu8p and brbg3s (three of them hand-annotated), before tuning our detector.
MP_HEIGHT, MP_PROMINENCE = 0.35, 0.1
# Events match when their frame spans overlap after widening each by this many frames.
MATCH_TOLERANCE = 2


# ----------------------------------------------------------------------------------------------
# Extraction


class BlendshapeReader:
    """MediaPipe FaceLandmarker (Tasks API, VIDEO mode) -> per-frame eyeBlinkLeft/Right scores."""

    def __init__(self, model: Path = MEDIAPIPE_MODEL):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self.mp, self.vision = mp, vision
        self.options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model)),
            running_mode=vision.RunningMode.VIDEO,
            output_face_blendshapes=True,
            num_faces=1,
        )

    def __call__(self, frames: np.ndarray, fps: float) -> np.ndarray:
        """(T, 2) eyeBlinkLeft, eyeBlinkRight scores; nan where no face was found."""
        scores = np.full((len(frames), 2), np.nan, np.float32)
        # A fresh landmarker per clip: VIDEO mode tracks the face across calls and needs
        # increasing timestamps, which restart with every clip.
        with self.vision.FaceLandmarker.create_from_options(self.options) as landmarker:
            for t, frame in enumerate(frames):
                image = self.mp.Image(image_format=self.mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
                result = landmarker.detect_for_video(image, int(round(t * 1000 / fps)))
                if result.face_blendshapes:
                    named = {c.category_name: c.score for c in result.face_blendshapes[0]}
                    scores[t] = named["eyeBlinkLeft"], named["eyeBlinkRight"]
        return scores


def extract(args) -> None:
    clips = sorted(S1_VIDEOS.glob("*.mp4"))
    if args.subset:
        clips = sorted(random.Random(args.seed).sample(clips, args.subset))
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    reader = BlendshapeReader()
    start = time.time()
    for i, path in enumerate(clips):
        target = cache / f"{path.stem}.npz"
        if target.exists():
            continue
        frames, fps = read_video(path)
        landmarks = blink_detector.video_landmarks(frames)
        np.savez(
            target,
            ear=blink_detector.eye_aspect_ratio(landmarks),
            eyes=landmarks[:, 36:48].astype(np.float32),
            blendshapes=reader(frames, fps),
            fps=fps,
        )
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(clips)} clips, {time.time() - start:.0f} s", flush=True)


# ----------------------------------------------------------------------------------------------
# Evaluation


def mediapipe_blinks(scores: np.ndarray, height: float = MP_HEIGHT, prominence: float = MP_PROMINENCE) -> list[tuple[int, int]]:
    """(start, end) frame spans of the blinks in (T, 2) eyeBlinkLeft/Right scores (nan: no face)."""
    from scipy.signal import find_peaks, peak_widths

    score = np.nan_to_num(np.nanmean(np.where(np.isnan(scores), 0.0, scores), axis=1))
    peaks, _ = find_peaks(score, height=height, prominence=prominence)
    if not len(peaks):
        return []
    _, _, left, right = peak_widths(score, peaks, rel_height=0.5)
    return [(int(np.floor(a)), int(np.ceil(b))) for a, b in zip(left, right)]


def scores(hits: int, detected: int, truth: int) -> dict:
    """Precision and recall with the counts they come from."""
    return {
        "precision": hits / detected if detected else float("nan"),
        "recall": hits / truth if truth else float("nan"),
        "detected": detected,
        "reference": truth,
        "matched": hits,
    }


def load_cache(cache: Path) -> dict:
    out = {}
    for path in sorted(cache.glob("*.npz")):
        with np.load(path) as data:
            out[path.stem] = {key: data[key] for key in data.files}
    if not out:
        sys.exit(f"no cached clips in {cache}: run `extract` first")
    return out


def evaluate_cache(data: dict, annotations: dict, **thresholds) -> dict:
    """Rate/durations of our detector, and precision/recall vs MediaPipe and vs the hand labels."""
    durations, count, seconds = [], 0, 0.0
    mp_hits = mp_detected = mp_truth = 0
    mp_durations = []
    hand_hits = hand_detected = hand_truth = 0
    for clip, item in data.items():
        fps = float(item["fps"])
        stats = blink_detector.detect_blinks(item["ear"], fps, **thresholds)
        spans = [(b.start, b.end) for b in stats.blinks]
        count += len(spans)
        seconds += stats.num_frames / fps
        durations += list(stats.durations)
        reference = mediapipe_blinks(item["blendshapes"])
        mp_durations += [(end - start + 1) / fps for start, end in reference]
        hits, detected, truth = blink_detector.match_blinks(spans, reference, MATCH_TOLERANCE)
        mp_hits, mp_detected, mp_truth = mp_hits + hits, mp_detected + detected, mp_truth + truth
        if clip in annotations:
            hits, detected, truth = blink_detector.match_blinks(spans, annotations[clip][0], MATCH_TOLERANCE, annotations[clip][1])
            hand_hits, hand_detected, hand_truth = hand_hits + hits, hand_detected + detected, hand_truth + truth
    return {
        "clips": len(data),
        "seconds": round(seconds, 2),
        "blinks": count,
        "blinks_per_second": count / seconds,
        "mean_duration": float(np.mean(durations)) if durations else float("nan"),
        "median_duration": float(np.median(durations)) if durations else float("nan"),
        "vs_mediapipe": scores(mp_hits, mp_detected, mp_truth),
        "mediapipe_blinks_per_second": mp_truth / seconds,
        "mediapipe_mean_duration_at_half_height": float(np.mean(mp_durations)) if mp_durations else float("nan"),
        "vs_hand": scores(hand_hits, hand_detected, hand_truth),
        "hand_clips": len([clip for clip in annotations if clip in data]),
    }


def load_annotations(path: Path = ANNOTATIONS) -> dict:
    """clip -> (blink spans, uncertain spans)."""
    if not path.exists():
        return {}
    clips = json.loads(path.read_text())["clips"]
    return {clip: (item["blinks"], item["uncertain"]) for clip, item in clips.items()}


def evaluate(args) -> None:
    data = load_cache(Path(args.cache))
    annotations = load_annotations()
    _, held_out = split(data, annotations)
    # The MediaPipe reference judged against the hand annotations, to know what it is worth.
    mp_vs_hand = np.zeros(3, int)
    for clip, (labelled, uncertain) in annotations.items():
        if clip in data:
            reference = mediapipe_blinks(data[clip]["blendshapes"])
            mp_vs_hand += blink_detector.match_blinks(reference, labelled, MATCH_TOLERANCE, uncertain)
    report = {
        "all_clips": evaluate_cache(data, annotations),
        "held_out_half": evaluate_cache(held_out, {}),
        "mediapipe_vs_hand": scores(*(int(v) for v in mp_vs_hand)),
    }
    print(json.dumps(report, indent=1))


# The detector's thresholds are tuned on half the clips (even positions in name order, hand
# annotated clips left out) and reported on the other half, the hand annotations and all clips.
GRID_SEARCH = {
    "min_drop": (0.2, 0.25, 0.3, 0.35),
    "min_rise": (0.08, 0.12, 0.16, 0.2),
    "max_closed": (0.7, 0.75, 0.8, 0.85),
    "bump_tolerance": (0.1, 0.15, 0.2, 0.25),
    "peak_tolerance": (0.02, 0.03, 0.05),
}


def split(data: dict, annotations: dict) -> tuple[dict, dict]:
    names = sorted(data)
    tuning = {n: data[n] for i, n in enumerate(names) if i % 2 == 0 and n not in annotations}
    held_out = {n: data[n] for i, n in enumerate(names) if i % 2 == 1}
    return tuning, held_out


def f1(report: dict) -> float:
    precision, recall = report["precision"], report["recall"]
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def tune(args) -> None:
    import itertools

    data = load_cache(Path(args.cache))
    annotations = load_annotations()
    tuning, _ = split(data, annotations)
    # The MediaPipe reference is computed once; only our detector changes.
    reference = {clip: mediapipe_blinks(item["blendshapes"]) for clip, item in tuning.items()}
    results = []
    names = list(GRID_SEARCH)
    for values in itertools.product(*GRID_SEARCH.values()):
        thresholds = dict(zip(names, values))
        counts = np.zeros(3, int)
        for clip, item in tuning.items():
            stats = blink_detector.detect_blinks(item["ear"], float(item["fps"]), **thresholds)
            counts += blink_detector.match_blinks([(b.start, b.end) for b in stats.blinks], reference[clip], MATCH_TOLERANCE)
        results.append((f1(scores(*(int(c) for c in counts))), thresholds, counts.tolist()))
    results.sort(key=lambda r: -r[0])
    print(f"{len(tuning)} tuning clips; best of {len(results)} threshold sets (F1 vs MediaPipe, matched/detected/reference):")
    for score, thresholds, counts in results[:10]:
        print(f"  F1 {score:.3f} {counts} {thresholds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("extract", help="cache EAR curves and MediaPipe blendshapes per clip")
    p.add_argument("--cache", required=True)
    p.add_argument("--subset", type=int, default=0, help="a random subset of this many s1 clips (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=extract)
    p = sub.add_parser("tune", help="grid-search the detector's thresholds against MediaPipe on the tuning half")
    p.add_argument("--cache", required=True)
    p.set_defaults(func=tune)
    p = sub.add_parser("evaluate", help="rate, durations, precision/recall from the cache")
    p.add_argument("--cache", required=True)
    p.set_defaults(func=evaluate)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
