"""Copy a trained generator into the package as the default model (speech_anim/pretrained/grid-s1).

    python scripts/export_default_model.py runs/cpu-small/best
    python scripts/export_default_model.py runs/cpu-small-eyes/checkpoints/step_00001000 --eye-process runs/eye-process
    python scripts/export_default_model.py runs/export_refine150 --eye-gain 1.25 --mouth-motion runs/mouth-motion
    python scripts/export_default_model.py speech_anim/pretrained/grid-s1 --eye-curve runs/eye_response.json --out runs/export_curve
    python scripts/export_default_model.py speech_anim/pretrained/grid-s1 --eyelids both --out runs/export_both

Weights are stored as float16 (half the size; they load as float32), the model card is
model_card.md, and the run's training.json (step, epoch, validation metrics, config) travels along
so the shipped model says exactly where it came from.
"""

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import torch
import yaml

from speech_anim.animator import DEFAULT_CHECKPOINT
from screen_eyes import add_eye_options, load_generator, set_eye_options  # load_generator: a save_pretrained folder or a train.py checkpoint
from speech_anim.models.eye_process import EyeProcess
from speech_anim.models.generator import Generator, load_mouth_motion
from speech_anim.models.mouth_motion import MouthMotion

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path,
                        help="a generator saved with save_pretrained (e.g. runs/NAME/best) or a train.py checkpoints/step_* folder")
    parser.add_argument("--eye-process", type=Path, help="put this fitted EyeProcess (train/fit_eye_process.py) in the generator")
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    add_eye_options(parser, "to ship")
    parser.add_argument("--mouth-motion", type=Path,
                        help="give the generator this MouthMotion: a train/fit_mouth_motion.py folder, or a generator folder with "
                             "mouth_motion (e.g. the shipped model) whose own it takes; its blend's still then moves its mouth")
    args = parser.parse_args()

    generator = load_generator(args.checkpoint)
    set_eye_options(generator, args)
    if args.eye_process:
        if generator.eye_process is None:
            raise SystemExit(f"export: {args.checkpoint} has no eye input (eye_input=false): drop --eye-process")
        generator.eye_process.load_state_dict(EyeProcess.from_pretrained(str(args.eye_process)).state_dict())
    if args.mouth_motion:
        try:
            motion = load_mouth_motion(args.mouth_motion)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"export: --mouth-motion {error}") from None
        generator = with_mouth_motion(generator, motion, args.checkpoint)
    if args.out.exists():
        shutil.rmtree(args.out)
    generator.save_pretrained(args.out, dtype=torch.float16)
    shutil.copy(REPO / "model_card.md", args.out / "README.md")
    if (args.checkpoint / "training.json").is_file():
        shutil.copy(args.checkpoint / "training.json", args.out / "training.json")
    elif (args.checkpoint.parent.parent / "config.yaml").is_file():  # a train.py checkpoint: say which
        config = yaml.safe_load((args.checkpoint.parent.parent / "config.yaml").read_text())
        info = {"step": int(args.checkpoint.name.rsplit("_", 1)[-1]), "checkpoint": str(args.checkpoint),
                "config": config, "eye_process": str(args.eye_process) if args.eye_process else None}
        # A run started from another generator says what that one was, so the chain of stages travels along.
        start = Path(config.get("init_generator") or "") / "training.json"
        if config.get("init_generator") and start.is_file():
            info["init_generator_training"] = json.loads(start.read_text())
        (args.out / "training.json").write_text(json.dumps(info, indent=1))
    if args.mouth_motion and (args.out / "training.json").is_file():
        info = json.loads((args.out / "training.json").read_text())
        info["mouth_motion"] = str(args.mouth_motion)
        (args.out / "training.json").write_text(json.dumps(info, indent=1))

    reloaded = Generator.from_pretrained(str(args.out))
    size = (args.out / "model.safetensors").stat().st_size / 2**20
    params = sum(p.numel() for p in reloaded.parameters()) / 1e6
    print(f"exported {args.checkpoint} -> {args.out} ({params:.1f} M parameters, {size:.1f} MiB float16)")


def with_mouth_motion(generator: Generator, motion: MouthMotion, name) -> Generator:
    """The same generator with mouth_motion on and `motion` as its MouthMotion (every other weight kept)."""
    if generator.config.output != "blend":
        raise SystemExit(f"export: {name} has output={generator.config.output!r}; mouth motion moves the blend's still: drop --mouth-motion")
    moved = Generator(dataclasses.replace(generator.config, mouth_motion=True, mouth_cepstra=motion.config.cepstra,
                                          mouth_phones=motion.config.phones))
    own = {k: v for k, v in generator.state_dict().items() if not k.startswith("mouth_motion.")}  # replaced, if it had one
    missing, unexpected = moved.load_state_dict(own, strict=False)
    if unexpected or any(not key.startswith("mouth_motion.") for key in missing):
        raise SystemExit(f"export: {name} does not fit a mouth-motion generator (unexpected {unexpected[:3]}, missing {missing[:3]})")
    moved.mouth_motion.load_state_dict(motion.state_dict())
    return moved


if __name__ == "__main__":
    main()
