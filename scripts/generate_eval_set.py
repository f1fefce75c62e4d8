"""Generate one video per preprocessed clip of a split, for `speech-anim evaluate`.

    python scripts/generate_eval_set.py --data /work/data_cache/grid --split test --out /work/runs/gen/s1_test
    python scripts/generate_eval_set.py --data /work/data_cache/grid --split unseen --out /work/runs/gen/s31 \
        --checkpoint runs/cpu-small-blend/best

Each clip's still is its first aligned frame and its audio the clip's own sound track, as in the
paper's evaluation (§5); the video is the 128×96 aligned crop (H.264, with the sound), written to
OUT/<clip id>.mp4 so `evaluate --generated OUT --reference DATA/clips` pairs it by name.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speech_anim import Animator
from speech_anim.data.datasets import read_split, split_file
from speech_anim.data.preprocess import decode_frames
from speech_anim.video import write_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="output folder of `speech-anim preprocess`")
    parser.add_argument("--split", required=True, help="split name (train/val/test/unseen) or a .txt list of clip ids")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", help="generator folder or Hub id (default: the shipped model)")
    parser.add_argument("--seed", type=int, default=0, help="the first clip's seed; the k-th clip gets seed + k")
    parser.add_argument("--limit", type=int, help="only the first N clips of the split")
    args = parser.parse_args()

    marker = args.data / "dataset.json"
    dataset = json.loads(marker.read_text())["dataset"] if marker.is_file() else "grid"
    ids = read_split(args.split if args.split.endswith(".txt") else split_file(dataset, args.split))
    ids = ids[: args.limit] if args.limit else ids
    animator = Animator.from_pretrained(args.checkpoint)
    missing = 0
    for index, clip_id in enumerate(tqdm(ids, unit="clip", disable=None)):
        path = args.data / "clips" / f"{clip_id}.npz"
        if not path.is_file():  # preprocessing skipped it (no face in the first frames)
            missing += 1
            continue
        with np.load(path) as clip:
            still = decode_frames(clip["frames"], clip["frame_offsets"], [0])[0]
            meta = json.loads(str(clip["meta"]))
            audio = clip["audio"].astype(np.float32) / 32768.0
        sample_rate = int(meta.get("sample_rate", 16000))
        fps = float(meta.get("fps", animator.fps))
        # A seed per clip: the eye process would draw the same blinks in every clip from one seed.
        frames = animator.animate_crop(still, (audio, sample_rate), seed=args.seed + index, fps=fps)
        out = args.out / f"{clip_id}.mp4"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_video(out, frames, fps, audio=audio, sample_rate=sample_rate)
    print(f"{len(ids) - missing} videos in {args.out}" + (f" ({missing} clips not preprocessed)" if missing else ""))


if __name__ == "__main__":
    main()
