"""Frame montages of the eye region of videos, for annotating blinks by hand.

Each montage is a grid of every frame's eye region, enlarged and numbered by frame index, with no
EAR or detector output on it, so the annotation does not lean on the detector being checked.
The annotations made from them live in tests/data/blink_annotations.json. With --ear, the EAR
curve and the detected blinks are drawn under the frames instead (for documentation).

    python scripts/blink_montage.py ../shared/data/grid/s1/video/bbaf2n.mp4 --out /tmp/montages
    python scripts/blink_montage.py --random 10 --seed 1 --out /tmp/montages   # 10 random s1 clips
    python scripts/blink_montage.py ../shared/data/grid/s1/video/bbaf2n.mp4 --frames 36 65 --ear --out docs
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from speech_anim.blinks import detect_blinks, eye_aspect_ratio, video_landmarks
from speech_anim.video import read_video

S1_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "grid" / "s1" / "video"
EYES = list(range(36, 48)) + list(range(17, 27))  # eye contours and brows: the eyes with some context


def eye_region(frames: np.ndarray, landmarks: np.ndarray, scale: float = 2.0) -> np.ndarray:
    """The same eye-region box (from the median landmarks) cut from every frame and enlarged."""
    points = np.nanmedian(landmarks[:, EYES], axis=0)
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    pad_x, pad_y = 0.15 * (x1 - x0), 0.6 * (y1 - y0)
    x0, x1 = int(max(x0 - pad_x, 0)), int(min(x1 + pad_x, frames.shape[2]))
    y0, y1 = int(max(y0 - 0.2 * pad_y, 0)), int(min(y1 + pad_y, frames.shape[1]))
    size = (round((x1 - x0) * scale), round((y1 - y0) * scale))
    return np.stack([cv2.resize(f[y0:y1, x0:x1], size, interpolation=cv2.INTER_CUBIC) for f in frames])


def montage(tiles: np.ndarray, columns: int = 10, title: str = "", start: int = 0) -> np.ndarray:
    """Tiles in a grid, each numbered with its frame index (from `start`) in its top-left corner."""
    count, height, width = tiles.shape[:3]
    rows = -(-count // columns)
    header = 24 if title else 0
    sheet = np.full((header + rows * (height + 2), columns * (width + 2), 3), 255, np.uint8)
    if title:
        cv2.putText(sheet, title, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i, tile in enumerate(tiles):
        y, x = header + (i // columns) * (height + 2), (i % columns) * (width + 2)
        tile = tile.copy()
        cv2.rectangle(tile, (0, 0), (26, 16), (255, 255, 255), -1)
        cv2.putText(tile, str(start + i), (2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        sheet[y : y + height, x : x + width] = tile
    return sheet


def ear_plot(ear: np.ndarray, first: int, last: int, fps: float, width: int) -> np.ndarray:
    """The EAR curve of frames first..last with the detector's blinks shaded, as an RGB image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = detect_blinks(ear, fps)
    figure, axis = plt.subplots(figsize=(width / 100, 2.2), dpi=100)
    frames = np.arange(first, last + 1)
    axis.plot(frames, ear[first : last + 1], "k.-", lw=1)
    for blink in stats.blinks:
        if blink.end >= first and blink.start <= last:
            axis.axvspan(max(blink.start, first), min(blink.end, last), color="tab:orange", alpha=0.3)
    axis.set_xlim(first - 0.5, last + 0.5)
    axis.set_xlabel("frame")
    axis.set_ylabel("EAR")
    axis.set_title("eye aspect ratio; shaded: detected blinks, EAR peak to peak", fontsize=9)
    figure.tight_layout()
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(figure)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", help="video files")
    parser.add_argument("--random", type=int, default=0, help="add this many random s1 clips")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random")
    parser.add_argument("--columns", type=int, default=10)
    parser.add_argument("--scale", type=float, default=2.0, help="enlargement of the eye region")
    parser.add_argument("--frames", type=int, nargs=2, metavar=("FIRST", "LAST"), help="only these frames")
    parser.add_argument("--ear", action="store_true", help="draw the EAR curve and detected blinks underneath")
    parser.add_argument("--out", required=True, help="folder for the PNG montages")
    args = parser.parse_args()

    videos = [Path(v) for v in args.videos]
    if args.random:
        videos += random.Random(args.seed).sample(sorted(S1_VIDEOS.glob("*.mp4")), args.random)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in videos:
        frames, fps = read_video(path)
        landmarks = video_landmarks(frames)
        first, last = args.frames if args.frames else (0, len(frames) - 1)
        tiles = eye_region(frames[first : last + 1], landmarks, args.scale)
        sheet = montage(tiles, args.columns, title=f"{path.name}: frames {first}-{last} of {len(frames)}", start=first)
        if args.ear:
            plot = ear_plot(eye_aspect_ratio(landmarks), first, last, fps, sheet.shape[1])
            plot = cv2.resize(plot, (sheet.shape[1], round(plot.shape[0] * sheet.shape[1] / plot.shape[1])))
            sheet = np.concatenate([sheet, plot])
        target = out / (f"blinks_{path.stem}.png" if args.ear else f"{path.stem}.png")
        # 256 colours are plenty for skin and lids, and keep the files small enough for docs/.
        Image.fromarray(sheet).quantize(256).save(target, optimize=True)
        print(target)

if __name__ == "__main__":
    main()
