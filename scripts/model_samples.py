"""Look at a generator: docs/samples_s1.png, docs/unseen_face.png and docs/sample.mp4.

    python scripts/model_samples.py [--checkpoint DIR] [--data /work/data_cache/grid] [--out docs]

- samples_s1.png: 4 s1 test sentences, real frames above generated ones (every 8th frame), each
  generated from the clip's first aligned frame and its own sound.
- unseen_face.png: the same for 2 clips of s31 (never trained on), and the astronaut photo
  (examples/astronaut.png) speaking examples/grid_s1_bbaf2n.wav: its aligned crop and the
  pasted-back frames.
- sample.mp4: one test sentence, real | generated side by side, with its sound.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from speech_anim import Animator
from speech_anim.audio import load_audio
from speech_anim.data.datasets import read_split, split_file
from speech_anim.data.preprocess import clip_path, decode_frames
from speech_anim.video import write_video

REPO = Path(__file__).resolve().parents[1]
COLUMNS = tuple(range(4, 75, 8))  # 9 frames spread over a 3 s clip
LABEL_WIDTH = 150


def load_clip(root: Path, clip_id: str):
    with np.load(clip_path(root, clip_id)) as clip:
        frames = decode_frames(clip["frames"], clip["frame_offsets"])
        audio = clip["audio"].astype(np.float32) / 32768.0
        meta = json.loads(str(clip["meta"]))
    return frames, audio, meta


def sheet(rows: list[tuple[str, np.ndarray]], columns=COLUMNS) -> Image.Image:
    """Rows of (label, T×H×W×3 frames), frames `columns` across, labels on the left."""
    height, width = rows[0][1].shape[1:3]
    canvas = Image.new("RGB", (LABEL_WIDTH + len(columns) * width, len(rows) * height + 16), "white")
    draw = ImageDraw.Draw(canvas)
    for c, t in enumerate(columns):
        draw.text((LABEL_WIDTH + c * width + width // 2 - 12, 2), f"t={t}", fill="black")
    for r, (label, frames) in enumerate(rows):
        y = 16 + r * height
        for line, text in enumerate(label.split("\n")):
            draw.text((6, y + height // 2 - 14 + 12 * line), text, fill="black")
        for c, t in enumerate(columns):
            frame = frames[min(t, len(frames) - 1)]
            canvas.paste(Image.fromarray(frame).resize((width, height)), (LABEL_WIDTH + c * width, y))
    return canvas


def around_face(frames: np.ndarray, box, scale: float = 1.8) -> np.ndarray:
    """Cut a 3:4 (width:height) window around the face box out of full-size frames."""
    x0, y0, x1, y1 = box
    height = scale * max(y1 - y0, (x1 - x0) * 4 / 3)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    top = int(np.clip(cy - height / 2, 0, frames.shape[1] - height))
    left = int(np.clip(cx - height * 3 / 8, 0, frames.shape[2] - height * 3 / 4))
    return frames[:, top : top + int(height), left : left + int(height * 3 / 4)]


def real_and_generated(animator, root, clip_id, seed):
    real, audio, meta = load_clip(root, clip_id)
    fake = animator.animate_crop(real[0], (audio, meta["sample_rate"]), seed=seed, fps=meta["fps"])
    return real, fake, audio, meta, f'"{meta.get("transcript") or ""}"'



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="generator folder (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=Path("/work/data_cache/grid"))
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    animator = Animator.from_pretrained(args.checkpoint, device="cpu")
    args.out.mkdir(parents=True, exist_ok=True)

    rows, first = [], None
    for clip_id in read_split(split_file("grid", "test"))[:4]:
        real, fake, audio, meta, words = real_and_generated(animator, args.data, clip_id, args.seed)
        rows += [(f"{clip_id} real\n{words}", real), (f"{clip_id} generated", fake)]
        first = first or (clip_id, real, fake, audio, meta)
    sheet(rows).save(args.out / "samples_s1.png")

    rows = []
    for clip_id in read_split(split_file("grid", "unseen"))[:2]:
        real, fake, _, _, words = real_and_generated(animator, args.data, clip_id, args.seed)
        rows += [(f"{clip_id} real\n(unseen speaker)\n{words}", real), (f"{clip_id} generated", fake)]
    photo = REPO / "examples" / "astronaut.png"
    speech = REPO / "examples" / "grid_s1_bbaf2n.wav"
    crop = animator.align(photo).crop
    still = np.repeat(crop[None], 75, axis=0)
    rows += [("astronaut photo\n(aligned still)", still),
             ("astronaut speaking\ns1/bbaf2n", animator.animate_crop(crop, speech, seed=args.seed))]
    result = animator(photo, speech, seed=args.seed, paste_back=True)
    rows.append(("astronaut, pasted\nback into the photo", around_face(result.frames, result.face_box)))
    sheet(rows).save(args.out / "unseen_face.png")

    clip_id, real, fake, audio, meta = first
    side = np.concatenate([real[: len(fake)], fake], axis=2)
    side = np.stack([np.asarray(Image.fromarray(f).resize((side.shape[2] * 2, side.shape[1] * 2), Image.BICUBIC)) for f in side])
    write_video(args.out / "sample.mp4", side, meta["fps"], audio=audio, sample_rate=meta["sample_rate"])
    print(f"wrote samples_s1.png, unseen_face.png and sample.mp4 ({clip_id}: real | generated) in {args.out}")


if __name__ == "__main__":
    main()
