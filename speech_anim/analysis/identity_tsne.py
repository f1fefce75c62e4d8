"""t-SNE of the generator's identity encodings, coloured by speaker (paper Fig. 11).

Frames of several clips per speaker go through the trained generator's `IdentityEncoder`; their
128-d codes z_id are embedded in 2-D with t-SNE. A good identity encoder puts each speaker's
frames together whatever the mouth is doing. Besides the figure, the script prints the
silhouette score of the speaker labels in the 128-d code space (1 = perfectly separated
speakers, 0 = no structure), a number to compare checkpoints with.

    python -m speech_anim.analysis.identity_tsne --data /work/data_cache/grid --checkpoint DIR --out tsne.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import SpeechAnimError
from . import save_figure


def sample_frames(root, split="all", clips_per_speaker: int = 20, frames_per_clip: int = 5, seed: int = 0):
    """(frames N×128×96×3 uint8, speakers N) from a preprocessed dataset: evenly spaced clips of
    each speaker and random frames of each clip."""
    from ..data.datasets import TalkingFaceDataset
    from ..data.preprocess import clip_path, decode_frames

    dataset = TalkingFaceDataset(root, None if split == "all" else split)
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list] = {}
    for entry in dataset.clips:
        by_speaker.setdefault(entry["speaker"], []).append(entry)
    frames, speakers = [], []
    for speaker, entries in sorted(by_speaker.items()):
        chosen = entries[:: max(1, len(entries) // clips_per_speaker)][:clips_per_speaker]
        for entry in chosen:
            with np.load(clip_path(dataset.root, entry["id"]), allow_pickle=False) as clip:
                offsets = clip["frame_offsets"]
                picks = np.sort(rng.choice(len(offsets) - 1, min(frames_per_clip, len(offsets) - 1), replace=False))
                frames.append(decode_frames(clip["frames"], offsets, picks))
            speakers += [speaker] * len(picks)
    return np.concatenate(frames), np.array(speakers)


@torch.no_grad()
def identity_codes(encoder, frames: np.ndarray, batch: int = 64) -> np.ndarray:
    """(N, id_dim) identity codes of aligned crops through a generator's IdentityEncoder."""
    encoder.eval()
    codes = []
    for i in range(0, len(frames), batch):
        x = torch.from_numpy(frames[i : i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        codes.append(encoder(x)[0])
    return torch.cat(codes).numpy()


def embed_tsne(codes: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(codes) - 1) // 3)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(codes)


def plot_tsne(points: np.ndarray, speakers: np.ndarray, path, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 4.0), dpi=150)
    for speaker in sorted(set(speakers), key=lambda s: (len(s), s)):
        mask = speakers == speaker
        axis.scatter(points[mask, 0], points[mask, 1], s=6, label=speaker)
    axis.legend(markerscale=2, fontsize=7)
    axis.set_xticks([]), axis.set_yticks([])
    return save_figure(figure, path, title)


def _encoder(checkpoint, random_init: bool):
    from ..models.generator import Generator, GeneratorConfig

    if random_init:
        torch.manual_seed(0)
        return Generator(GeneratorConfig()).identity_encoder
    if checkpoint is None:
        from ..animator import DEFAULT_CHECKPOINT

        checkpoint = DEFAULT_CHECKPOINT
        if not Path(checkpoint).is_dir():
            raise SpeechAnimError(f"no generator shipped at {checkpoint}: pass --checkpoint DIR (or --random-init for an untrained encoder)")
    return Generator.from_pretrained(str(checkpoint)).identity_encoder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speech_anim.analysis.identity_tsne", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="preprocessed dataset (speech-anim preprocess --out)")
    parser.add_argument("--split", default="all", help="all, train, val, test, unseen or a list file")
    parser.add_argument("--checkpoint", help="generator directory or Hub id (default: the shipped generator)")
    parser.add_argument("--random-init", action="store_true", help="an untrained encoder (a baseline for the figure)")
    parser.add_argument("--clips-per-speaker", type=int, default=20)
    parser.add_argument("--frames-per-clip", type=int, default=5)
    parser.add_argument("--out", required=True, help="figure (.png / .pdf)")
    parser.add_argument("--title")
    args = parser.parse_args(argv)
    try:
        encoder = _encoder(args.checkpoint, args.random_init)
        frames, speakers = sample_frames(args.data, args.split, args.clips_per_speaker, args.frames_per_clip)
        if len(set(speakers)) < 2:
            raise SpeechAnimError(f"{args.data} ({args.split}) has one speaker: the figure needs at least two")
        codes = identity_codes(encoder, frames)
        plot_tsne(embed_tsne(codes), speakers, args.out, args.title)
    except SpeechAnimError as error:
        print(f"identity_tsne: error: {error}", file=sys.stderr)
        return 2
    from sklearn.metrics import silhouette_score

    score = silhouette_score(codes, speakers)
    counts = ", ".join(f"{s}: {n}" for s, n in zip(*np.unique(speakers, return_counts=True)))
    print(f"wrote {args.out}: {len(codes)} frames ({counts}); speaker silhouette in code space {score:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
