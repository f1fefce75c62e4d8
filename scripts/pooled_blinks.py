"""Blinks of whole folders of videos pooled together: rate, median and mean duration, count.

    python scripts/pooled_blinks.py "model=runs/eval/gen_s1_test/s1" "real=/work/data_cache/grid/clips/s1" \
        --ids speech_anim/data/splits/grid_test.txt

`speech-anim evaluate` averages each clip's blink rate and mean duration; issue #7's bar compares the
median blink duration of all the blinks of a set, which this prints (the same detector,
`blinks.video_blinks`, on the aligned 128×96 crops). Each argument is LABEL=FOLDER of videos or of
preprocessed .npz clips; `--ids` keeps the clips of a split list.
"""

import argparse
import sys

from speech_anim.blinks import pooled_rate, video_blinks
from speech_anim.errors import SpeechAnimError
from speech_anim.metrics.evaluate import load_clip, pair_files, read_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", help="LABEL=FOLDER")
    parser.add_argument("--ids", help="a split list (one clip id per line)")
    args = parser.parse_args()
    ids = read_ids(args.ids) if args.ids else None
    print("| | clips | blinks | blinks/s | median duration (s) | mean duration (s) |\n|---|---|---|---|---|---|")
    for item in args.sets:
        label, _, folder = item.partition("=")
        clips = pair_files(None, folder, ids)  # (name, None, path) of the folder's videos in the list
        stats = []
        for name, _, path in clips:
            clip = load_clip(path, name)
            stats.append(video_blinks(clip.crops, fps=clip.fps))
        rate, median, count = pooled_rate(stats)
        mean = sum(float(s.durations.sum()) for s in stats) / count if count else float("nan")
        print(f"| {label} | {len(clips)} | {count} | {rate:.3f} | {median:.3f} | {mean:.3f} |")


if __name__ == "__main__":
    try:
        main()
    except SpeechAnimError as error:
        sys.exit(f"pooled_blinks: {error}")
