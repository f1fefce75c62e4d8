"""Screen a generator's mouth on a split (by default s31, the unseen speaker) in a minute or two of one CPU core.

    python scripts/screen_mouth.py runs/cpu-small-voices/checkpoints/step_00001600
    python scripts/screen_mouth.py speech_anim/pretrained/grid-s1 --split test --clips 20 --json runs/mouth.json

CHECKPOINT is a `save_pretrained` folder or a train.py `checkpoints/step_*` folder (as for
scripts/screen_eyes.py). Each clip is animated from its first frame with seed k for the k-th clip,
as scripts/evaluate_model.sh does, and compared with the real clip:

- articulation: the standard deviation over time of the inner-lip gap (`face.inner_lip_gap`, crop
  pixels), generated vs real, and their correlation: how far and how much in step with the real
  mouth the generated one opens and closes;
- LMD: the evaluation's mouth landmark distance (`metrics.reference.LMD`), beside the static
  baseline's (the still repeated), which a model must beat;
- lip sync: our SyncNet-style expert's confidence and offset, beside the real clips'.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from screen_eyes import load_generator, read_clip  # a save_pretrained folder or a train.py checkpoint
from speech_anim import Animator
from speech_anim.data.datasets import read_split, split_file
from speech_anim.data.preprocess import clip_path
from speech_anim.face import crop_landmarks, inner_lip_gap
from speech_anim.metrics.reference import LMD
from speech_anim.metrics.sync import av_sync


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, default=Path("/work/data_cache/grid"))
    parser.add_argument("--split", default="unseen", help="a split of speech_anim/data/splits (unseen: s31)")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    animator = Animator(load_generator(args.checkpoint).eval(), device="cpu")
    ids = [i for i in read_split(split_file("grid", args.split)) if clip_path(args.data, i).is_file()][: args.clips]
    if not ids:
        raise SystemExit(f"screen_mouth: no clip of split {args.split!r} in {args.data}: run `speech-anim preprocess` first")
    lmd = LMD()
    rows = []
    for k, clip_id in enumerate(ids):
        frames, sound, _ = read_clip(args.data, clip_id)
        video = animator.animate_crop(frames[0], (sound, 16000), seed=k)
        n = min(len(video), len(frames))
        video, real = video[:n], frames[:n]
        gap_generated, gap_real = inner_lip_gap(crop_landmarks(video)), inner_lip_gap(crop_landmarks(real))
        static = np.repeat(frames[:1], n, axis=0)
        sync, real_sync = av_sync(video, sound, 25.0), av_sync(real, sound, 25.0)
        rows.append({
            "id": clip_id, "sd_generated": float(gap_generated.std()), "sd_real": float(gap_real.std()),
            "correlation": float(np.corrcoef(gap_generated, gap_real)[0, 1]),
            "lmd": lmd.compute(video, real), "lmd_static": lmd.compute(static, real),
            "confidence": sync.confidence, "offset": sync.offset, "confidence_real": real_sync.confidence,
        })  # fmt: skip
    mean = {key: float(np.nanmean([row[key] for row in rows])) for key in rows[0] if key != "id"}
    in_sync = sum(abs(row["offset"]) <= 1 for row in rows)
    print(f"{args.checkpoint} on {len(rows)} clips of {args.split}:")
    print(f"  mouth opening s.d. {mean['sd_generated']:.2f} px (real {mean['sd_real']:.2f}), correlation {mean['correlation']:.2f}")
    print(f"  LMD {mean['lmd']:.3f} (static baseline {mean['lmd_static']:.3f})")
    print(f"  sync confidence {mean['confidence']:.3f} (real {mean['confidence_real']:.3f}, "
          f"{mean['confidence'] / mean['confidence_real']:.2f}x), {in_sync} of {len(rows)} clips within one frame")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "mean": mean,
                                         "in_sync": in_sync, "clips": rows}, indent=1))


if __name__ == "__main__":
    main()
