"""Fit the eye process (speech_anim/models/eye_process.py) to the eye openness of real clips.

    python train/fit_eye_process.py --data ../data_cache/grid --out runs/eye-process
    python train/fit_eye_process.py --data ../data_cache/grid --openness frames --out runs/eye-process-frames
    python train/train.py --config train/configs/cpu-small-eyes.yaml eye_process=runs/eye-process ...

Maximum likelihood: each frame's openness level given the ones before it. The training sequences are
chains of randomly ordered whole clips, so the model learns eyes that go on blinking for as long as it
is sampled (a GRID clip is 3 s; an animation may last minutes) and cannot learn where a sentence starts.
It prints the blink statistics (`blinks.detect_blinks` on the curves themselves) of real validation
clips beside those of sampled curves: the rate and durations a rendered video can reach at best.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speech_anim.blinks import detect_blinks, eye_openness, pooled_rate  # noqa: E402
from speech_anim.data.datasets import TalkingFaceDataset, frame_openness  # noqa: E402
from speech_anim.data.preprocess import clip_path  # noqa: E402
from speech_anim.models.eye_process import EyeProcess, EyeProcessConfig  # noqa: E402


def clip_openness(root, split, source: str = "landmarks", workers: int = 1) -> list[np.ndarray]:
    """The openness curve of every clip of `split`: read off the landmarks preprocessing tracked (no
    frame is decoded; what the shipped decoder was trained on), or with source "frames" off the
    crops, as the evaluation reads video (`datasets.frame_openness`, which says why it matters)."""
    ids = [entry["id"] for entry in TalkingFaceDataset(root, split).clips]
    if source == "frames":
        return list(frame_openness(root, ids, workers).values())
    curves = []
    for clip_id in ids:
        with np.load(clip_path(Path(root), clip_id)) as clip:
            curves.append(eye_openness(clip["landmarks"]))
    return curves


def chains(curves: list[np.ndarray], batch: int, clips_per_chain: int, rng: np.random.Generator) -> torch.Tensor:
    """B sequences, each `clips_per_chain` random clips end to end, cut to the shortest chain."""
    picks = [np.concatenate([curves[i] for i in rng.integers(0, len(curves), clips_per_chain)]) for _ in range(batch)]
    length = min(len(p) for p in picks)
    return torch.from_numpy(np.stack([p[:length] for p in picks]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../data_cache/grid", help="output of `speech-anim preprocess`")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--out", default="runs/eye-process")
    parser.add_argument("--steps", type=int, default=600)  # validation NLL is lowest near 500-600; it overfits after
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--clips-per-chain", type=int, default=6)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--openness", choices=("landmarks", "frames"), default="landmarks",
                        help="read the real curves off the tracked landmarks, or off the crops as the evaluation reads video (see clip_openness)")
    parser.add_argument("--workers", type=int, default=2, help="processes for --openness frames")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train, val = (clip_openness(args.data, split, args.openness, args.workers) for split in (args.train_split, args.val_split))
    model = EyeProcess(EyeProcessConfig())
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, args.steps)
    val_batch = chains(val, 64, args.clips_per_chain, np.random.default_rng(1))
    print(f"{len(train)} train and {len(val)} validation clips")
    started = time.time()
    for step in range(1, args.steps + 1):
        loss = model.nll(chains(train, args.batch, args.clips_per_chain, rng))
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if step % 250 == 0 or step == args.steps:
            with torch.no_grad():
                val_nll = model.nll(val_batch).item()
            print(f"step {step}: train nll {loss.item():.3f}, val nll {val_nll:.3f} nats/frame ({time.time() - started:.0f} s)")

    model.eval()
    fps = model.config.fps
    draw = torch.Generator().manual_seed(args.seed)
    clips, _ = model.sample(400, 75, draw)
    long, _ = model.sample(50, 10 * int(fps), draw)
    real = pooled_rate([detect_blinks(c, fps) for c in val])
    print(f"real validation clips:  {real[0]:.3f} blinks/s, median {real[1]:.2f} s ({real[2]} blinks)")
    for name, curves in (("sampled 3 s clips", clips), ("sampled 10 s clips", long)):
        rate, median, count = pooled_rate([detect_blinks(c, fps) for c in curves.numpy()])
        print(f"{name}: {rate:.3f} blinks/s, median {median:.2f} s ({count} blinks)")
    model.save_pretrained(args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
