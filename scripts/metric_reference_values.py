"""Reference values of the metrics on real GRID video (docs/metrics.md).

ACD: the face descriptor distance between a still (the first frame of a clip, aligned) and the
aligned frames of the same clip, of other clips of the same speaker, and of other speakers.
CPBD, and PSNR/SSIM/LMD between two different clips of one speaker, on the aligned crops.

    python scripts/metric_reference_values.py --clips 5 --step 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from speech_anim.face import FaceAligner
from speech_anim.metrics import get_metric
from speech_anim.metrics.identity import face_descriptors
from speech_anim.video import read_video

GRID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "grid"
SPEAKERS = ("s1", "s4", "s26", "s31")


def aligned_clip(path: Path, step: int, aligner: FaceAligner) -> np.ndarray:
    """Every `step`-th frame of a clip, each aligned to the canonical 128×96 crop."""
    frames, _ = read_video(path)
    return np.stack([aligner.align(frame).crop for frame in frames[::step]])


def summary(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4),
            "min": round(float(values.min()), 4), "max": round(float(values.max()), 4), "n": int(values.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=5, help="clips per speaker (the first ones by name)")
    parser.add_argument("--step", type=int, default=5, help="use every step-th frame")
    args = parser.parse_args()

    aligner = FaceAligner()
    crops = {s: [aligned_clip(p, args.step, aligner) for p in sorted((GRID / s / "video").glob("*.mp4"))[: args.clips]]
             for s in SPEAKERS}
    descriptors = {s: [face_descriptors(clip) for clip in clips] for s, clips in crops.items()}

    same_clip, same_speaker, other_speaker = [], [], []
    for s in SPEAKERS:
        for i, clip in enumerate(descriptors[s]):
            still = clip[0]
            same_clip += list(np.linalg.norm(clip[1:] - still, axis=1))
            for j, other in enumerate(descriptors[s]):
                if j != i:
                    same_speaker += list(np.linalg.norm(other - still, axis=1))
            for t in SPEAKERS:
                if t != s:
                    for other in descriptors[t]:
                        other_speaker += list(np.linalg.norm(other - still, axis=1))
    # Per-clip ACD as the metric reports it: the still against every frame of the video.
    acd = get_metric("acd")
    real_acd = [acd(clip, still=clip[0]) for s in SPEAKERS for clip in crops[s]]
    cpbd = get_metric("cpbd")
    report = {
        "frames_per_clip": int(len(crops["s1"][0])),
        "clips_per_speaker": args.clips,
        "acd_frame_distances": {
            "same_clip": summary(same_clip),
            "same_speaker_other_clip": summary(same_speaker),
            "other_speaker": summary(other_speaker),
        },
        "acd_real_clips_vs_own_first_frame": summary(real_acd),
        "cpbd_real_crops": {s: summary([cpbd(clip) for clip in crops[s]]) for s in SPEAKERS},
    }
    # Two different sentences of one speaker, frame by frame: what "unrelated but plausible" scores.
    a, b = crops["s1"][0], crops["s1"][1]
    n = min(len(a), len(b))
    report["s1_clip0_vs_clip1"] = {name: get_metric(name)(a[:n], b[:n]) for name in ("psnr", "ssim", "lmd")}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
