"""Average the generator weights of several checkpoints into one save_pretrained folder.

    python scripts/average_checkpoints.py runs/cpu-small-settle/checkpoints/step_0000{2400,2500,2600} --out runs/settle-avg

On a CPU budget our GAN's generator swings from checkpoint to checkpoint (s31's lip-sync confidence
went 0.17, 0.16, 0.12, 0.09 over steps 1800-2000). The mean of consecutive snapshots (Polyak
averaging, as the exponential moving averages of StyleGAN's G_ema or stochastic weight averaging)
sits in the middle of those swings. Each CHECKPOINT is a save_pretrained folder or a train.py
`checkpoints/step_*` folder (scripts/screen_eyes.py); all must have the same config. Floating-point
weights and BatchNorm statistics are averaged; integer buffers (batch counters) are the last one's.
The folder's training.json names the checkpoints and holds the last one's run config, and
scripts/export_default_model.py carries it into the package.
"""

import argparse
import json
from pathlib import Path

import torch
import yaml

from screen_eyes import load_generator


def average(generators) -> dict:
    states = [g.state_dict() for g in generators]
    out = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            out[key] = torch.stack([s[key].float() for s in states]).mean(0).to(last.dtype)
        else:
            out[key] = last.clone()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        raise SystemExit("average_checkpoints: give at least two checkpoints to average")
    generators = [load_generator(path) for path in args.checkpoints]
    configs = {repr(g.config) for g in generators}
    if len(configs) > 1:
        raise SystemExit(f"average_checkpoints: the checkpoints have different generator configs ({len(configs)}): average one run's")
    model = generators[-1]
    model.load_state_dict(average(generators))
    model.save_pretrained(args.out)
    info = {"averaged_from": [str(p) for p in args.checkpoints]}
    run_config = args.checkpoints[-1].parent.parent / "config.yaml"
    if run_config.is_file():  # train.py checkpoints: their steps and the run's settings
        info["steps"] = [int(p.name.rsplit("_", 1)[-1]) for p in args.checkpoints if p.name.startswith("step_")]
        info["config"] = yaml.safe_load(run_config.read_text())
    (args.out / "training.json").write_text(json.dumps(info, indent=1))
    print(f"averaged {len(generators)} generators ({', '.join(info['averaged_from'])}) -> {args.out}")


if __name__ == "__main__":
    main()
