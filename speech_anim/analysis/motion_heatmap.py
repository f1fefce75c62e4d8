"""Motion heatmap of a set of videos (paper Fig. 19): mean optical-flow magnitude per pixel.

Each video is aligned to the canonical 128×96 crop (as `speech-anim evaluate` does), dense
Farnebäck flow is computed between consecutive grayscale frames, and its magnitude (pixels per
frame) is averaged over all frame pairs of all videos. A realistic talking head moves mostly
around the mouth and jaw, with some motion at the eyes (blinks) and brows.

    python -m speech_anim.analysis.motion_heatmap VIDEO_OR_DIR [...] --out motion.png [--title T]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from ..errors import SpeechAnimError
from . import save_figure

# Farnebäck parameters for 128×96 faces: a 3-level pyramid (scale 0.5) and a 9-pixel window
# follow lips moving a few pixels per frame without smearing motion across the face.
_FLOW = dict(pyr_scale=0.5, levels=3, winsize=9, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)


def flow_magnitude(frames: np.ndarray) -> np.ndarray:
    """(H, W) mean optical-flow magnitude over the consecutive frame pairs of T×H×W×3 uint8 frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
        raise SpeechAnimError(f"need at least 2 T×H×W×3 uint8 frames for optical flow, got {frames.dtype} {frames.shape}")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    total = np.zeros(frames.shape[1:3], np.float64)
    for previous, current in zip(gray[:-1], gray[1:]):
        flow = cv2.calcOpticalFlowFarneback(previous, current, None, **_FLOW)
        total += np.linalg.norm(flow, axis=-1)
    return (total / (len(gray) - 1)).astype(np.float32)


def motion_map(videos, progress: bool = False) -> np.ndarray:
    """Mean flow magnitude over a set of videos: paths (aligned when not 128×96 crops) or frame arrays."""
    from tqdm.auto import tqdm

    from ..metrics.evaluate import load_clip

    total, count = None, 0
    for video in tqdm(list(videos), desc="optical flow", unit="video", disable=not progress):
        frames = load_clip(video).crops if isinstance(video, (str, Path)) else video
        magnitude = flow_magnitude(frames)
        pairs = len(frames) - 1
        total = magnitude * pairs if total is None else total + magnitude * pairs
        count += pairs
    if total is None:
        raise SpeechAnimError("no videos given for the motion heatmap")
    return total / count


def plot_motion(motion: np.ndarray, path, background: np.ndarray | None = None, title: str | None = None,
                vmax: float | None = None) -> Path:  # fmt: skip
    """Save the heatmap (optionally over a faded face `background`) as an image file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(3.2, 4.0), dpi=150)
    if background is not None:
        axis.imshow(cv2.cvtColor(background, cv2.COLOR_RGB2GRAY), cmap="gray", alpha=0.5)
    image = axis.imshow(motion, cmap="jet", alpha=0.6 if background is not None else 1.0, vmin=0, vmax=vmax)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="flow (px / frame)")
    axis.set_axis_off()
    return save_figure(figure, path, title)


def _videos(inputs) -> list[Path]:
    from ..metrics.evaluate import list_media

    paths = []
    for item in map(Path, inputs):
        paths.extend(list_media(item).values() if item.is_dir() else [item])
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speech_anim.analysis.motion_heatmap", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="videos or folders of videos (or preprocessed .npz clips)")
    parser.add_argument("--out", required=True, help="figure (.png / .pdf)")
    parser.add_argument("--title")
    parser.add_argument("--limit", type=int, help="use at most this many videos")
    parser.add_argument("--vmax", type=float, help="colour scale maximum (use the same for figures you compare)")
    parser.add_argument("--save-array", help="also save the (128, 96) map as .npy")
    args = parser.parse_args(argv)
    try:
        videos = _videos(args.inputs)[: args.limit]
        motion = motion_map(videos, progress=True)
        from ..metrics.evaluate import load_clip

        background = load_clip(videos[0]).crops[0]
        plot_motion(motion, args.out, background, args.title, args.vmax)
        if args.save_array:
            np.save(args.save_array, motion)
    except SpeechAnimError as error:
        print(f"motion_heatmap: error: {error}", file=sys.stderr)
        return 2
    mouth, upper = motion[64:].mean(), motion[:64].mean()
    print(f"wrote {args.out}: {len(videos)} videos, mean flow {motion.mean():.3f} px/frame "
          f"(lower half {mouth:.3f}, upper half {upper:.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
