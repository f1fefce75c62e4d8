"""Copy a trained generator into the package as the default model (speech_anim/pretrained/grid-s1).

    python scripts/export_default_model.py runs/cpu-small/best

Weights are stored as float16 (half the size; they load as float32), the model card is
model_card.md, and the run's training.json (step, epoch, validation metrics, config) travels along
so the shipped model says exactly where it came from.
"""

import argparse
import shutil
from pathlib import Path

import torch

from speech_anim.animator import DEFAULT_CHECKPOINT
from speech_anim.models.generator import Generator

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a generator saved with save_pretrained (e.g. runs/NAME/best)")
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    args = parser.parse_args()

    generator = Generator.from_pretrained(str(args.checkpoint))
    if args.out.exists():
        shutil.rmtree(args.out)
    generator.save_pretrained(args.out, dtype=torch.float16)
    shutil.copy(REPO / "model_card.md", args.out / "README.md")
    if (args.checkpoint / "training.json").is_file():
        shutil.copy(args.checkpoint / "training.json", args.out / "training.json")

    reloaded = Generator.from_pretrained(str(args.out))
    size = (args.out / "model.safetensors").stat().st_size / 2**20
    params = sum(p.numel() for p in reloaded.parameters()) / 1e6
    print(f"exported {args.checkpoint} -> {args.out} ({params:.1f} M parameters, {size:.1f} MiB float16)")


if __name__ == "__main__":
    main()
