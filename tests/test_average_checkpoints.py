"""scripts/average_checkpoints.py: the shipped generator is the mean of a run's last checkpoints."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from speech_anim.models import Generator, GeneratorConfig

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "average_checkpoints.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_the_average_holds_the_mean_weights_and_the_last_counters(tmp_path):
    folders = []
    for seed in range(3):
        torch.manual_seed(seed)
        generator = Generator(GeneratorConfig(width=0.0625, output="blend"))
        for buffer in generator.buffers():
            if not buffer.is_floating_point():
                buffer.fill_(seed + 1)
        generator.save_pretrained(tmp_path / f"g{seed}")
        folders.append(tmp_path / f"g{seed}")
    result = _run(*folders, "--out", tmp_path / "mean")
    assert result.returncode == 0, result.stderr[-2000:]
    states = [Generator.from_pretrained(str(f)).state_dict() for f in folders]
    mean = Generator.from_pretrained(str(tmp_path / "mean")).state_dict()
    for key, value in mean.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, sum(s[key] for s in states) / 3)
        else:
            assert torch.equal(value, states[-1][key])
    assert json.loads((tmp_path / "mean" / "training.json").read_text())["averaged_from"] == [str(f) for f in folders]


def test_generators_of_other_sizes_are_refused_in_one_line(tmp_path):
    Generator(GeneratorConfig(width=0.0625)).save_pretrained(tmp_path / "small")
    Generator(GeneratorConfig(width=0.125)).save_pretrained(tmp_path / "large")
    result = _run(tmp_path / "small", tmp_path / "large", "--out", tmp_path / "mean")
    assert result.returncode != 0 and "different generator configs" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mean").exists()
