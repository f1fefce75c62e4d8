"""Draw a grid of aligned crops from preprocessed clips: docs/aligned_s1.png.

    python scripts/aligned_montage.py [--root /work/data_cache/grid] [--out docs/aligned_s1.png]

One row per clip (several clips of s1 and of the other speakers), several frames across each
clip. Ticks on both sides of every row mark the crop's middle row: the eyes should sit above it
and the whole mouth below, in the same place in every frame (a stable, centred alignment).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from speech_anim.data.preprocess import clip_path, decode_frames

REPO = Path(__file__).resolve().parents[1]
ROWS = {"s1": 4, "s4": 2, "s26": 1, "s31": 1}  # clips per speaker
FRAMES = (0, 12, 25, 37, 50, 62, 74)
LABEL_WIDTH, TICK = 110, 6


def montage(root: Path) -> Image.Image:
    clips = json.loads((root / "index.json").read_text())["clips"]
    chosen = []
    for speaker, count in ROWS.items():
        ids = [c["id"] for c in clips if c["speaker"] == speaker]
        # Spread over the speaker's clips rather than the first few of one sentence family.
        chosen += [ids[i] for i in np.linspace(0, len(ids) - 1, count).round().astype(int)] if ids else []
    height, width = 128, 96
    canvas = Image.new("RGB", (LABEL_WIDTH + len(FRAMES) * width + 2 * TICK, len(chosen) * height + 20), "white")
    draw = ImageDraw.Draw(canvas)
    for column, frame in enumerate(FRAMES):
        draw.text((LABEL_WIDTH + TICK + column * width + 30, 4), f"t={frame}", fill="black")
    for row, clip_id in enumerate(chosen):
        with np.load(clip_path(root, clip_id)) as clip:
            count = len(clip["frame_offsets"]) - 1
            frames = decode_frames(clip["frames"], clip["frame_offsets"], [min(f, count - 1) for f in FRAMES])
        top = 20 + row * height
        draw.text((6, top + height // 2 - 6), clip_id, fill="black")
        for column, crop in enumerate(frames):
            canvas.paste(Image.fromarray(crop), (LABEL_WIDTH + TICK + column * width, top))
        right = LABEL_WIDTH + TICK + len(FRAMES) * width
        for x0 in (LABEL_WIDTH, right):
            draw.line([(x0, top + height // 2), (x0 + TICK - 1, top + height // 2)], fill="red", width=2)
    return canvas


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/work/data_cache/grid", help="preprocessed GRID (speech-anim preprocess --out)")
    parser.add_argument("--out", default=str(REPO / "docs" / "aligned_s1.png"))
    args = parser.parse_args()
    image = montage(Path(args.root))
    # A 256-colour palette keeps the picture ~3x smaller in the repository and faces still read well.
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(args.out, optimize=True)
    print(f"wrote {args.out} ({image.width}x{image.height})")


if __name__ == "__main__":
    main()
