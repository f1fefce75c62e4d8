"""How much the generated mouth moves, with faces and voices of two speakers swapped.

    python scripts/mouth_motion.py [--checkpoint DIR] [--data /work/data_cache/grid] [--clips 5]

For the first N clips of the s1 test split and of the unseen speaker s31, each face (the clip's
first frame) is animated with each speaker's voice (the same-index clip's audio). Printed: the
standard deviation over a clip of the inner-lip gap (`face.inner_lip_gap`, crop pixels), averaged
over the clips, for the 2×2 combinations and for the real videos. A model that under-articulates
one face whatever the voice has not learnt that face's motion; one that moves every face less
with one voice has not learnt that voice (model_card.md, "How far three training speakers
generalise").
"""

import argparse
from pathlib import Path

import numpy as np

from speech_anim import Animator
from speech_anim.data.datasets import read_split, split_file
from speech_anim.data.preprocess import decode_frames
from speech_anim.face import crop_landmarks, inner_lip_gap


def clip(data: Path, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
    """All frames (T×128×96×3 uint8) and the audio (float32 at 16 kHz) of a preprocessed clip."""
    with np.load(data / "clips" / f"{clip_id}.npz") as stored:
        frames = decode_frames(stored["frames"], stored["frame_offsets"], range(len(stored["frame_offsets"]) - 1))
        return frames, stored["audio"].astype(np.float32) / 32768


def motion(frames: np.ndarray) -> float:
    return float(np.std(inner_lip_gap(crop_landmarks(frames))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="generator folder (default: the shipped model)")
    parser.add_argument("--data", default="/work/data_cache/grid", help="output folder of `speech-anim preprocess`")
    parser.add_argument("--clips", type=int, default=5)
    args = parser.parse_args()
    data = Path(args.data)
    speakers = {"s1": read_split(split_file("grid", "test"))[: args.clips],
                "s31": read_split(split_file("grid", "unseen"))[: args.clips]}
    clips = {name: [clip(data, i) for i in ids] for name, ids in speakers.items()}
    animator = Animator.from_pretrained(args.checkpoint, device="cpu")
    for face in clips:
        for voice in clips:
            values = [motion(animator.animate_crop(frames[0], (sound, 16000), seed=0))
                      for (frames, _), (_, sound) in zip(clips[face], clips[voice])]
            print(f"{face} face + {voice} voice: {np.mean(values):.2f} px", flush=True)
    for name in clips:
        print(f"real {name}: {np.mean([motion(frames) for frames, _ in clips[name]]):.2f} px", flush=True)


if __name__ == "__main__":
    main()
