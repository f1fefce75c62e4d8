"""Write the GRID split lists shipped in speech_anim/data/splits/ for the data in ../shared.

    python scripts/make_splits.py [--root ../shared/data/grid]

- s1 (1000 sentences) is split by sentence 80/10/10 with a fixed seed: grid_train/val/test.txt;
- every clip of s4 and s26 goes to train (too few speakers to spare any for testing);
- s31 is held out whole as the unseen-speaker test set: grid_unseen.txt.
The lists name every clip of the corpus, also those preprocessing may later skip (the Dataset warns
about and leaves out listed clips it cannot find). Rerunning gives the same files.
"""

import argparse
from pathlib import Path

import numpy as np

from speech_anim.data.readers import read_clips

SEED = 1
SPLIT_SPEAKER = "s1"  # split by sentence
TRAIN_SPEAKERS = ("s4", "s26")  # all clips train
UNSEEN_SPEAKERS = ("s31",)  # all clips test, never seen in training
FRACTIONS = (0.8, 0.1, 0.1)
OUT = Path(__file__).resolve().parents[1] / "speech_anim" / "data" / "splits"


def make_splits(root) -> dict[str, list[str]]:
    records = read_clips("grid", root)
    by_speaker: dict[str, list[str]] = {}
    for record in records:
        by_speaker.setdefault(record.speaker, []).append(record.id)
    sentences = sorted(by_speaker.get(SPLIT_SPEAKER, []))
    order = np.random.default_rng(SEED).permutation(len(sentences))
    n_train = round(FRACTIONS[0] * len(sentences))
    n_val = round(FRACTIONS[1] * len(sentences))
    shuffled = [sentences[i] for i in order]
    splits = {
        "train": shuffled[:n_train] + [i for s in TRAIN_SPEAKERS for i in by_speaker.get(s, [])],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
        "unseen": [i for s in UNSEEN_SPEAKERS for i in by_speaker.get(s, [])],
    }
    return {name: sorted(ids) for name, ids in splits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "grid"))
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, ids in make_splits(args.root).items():
        (out / f"grid_{name}.txt").write_text("".join(f"{i}\n" for i in ids))
        speakers = sorted({i.split("/")[0] for i in ids}, key=lambda s: int(s[1:]))
        print(f"grid_{name}.txt: {len(ids)} clips ({', '.join(speakers)})")


if __name__ == "__main__":
    main()
