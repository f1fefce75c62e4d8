"""The eye process (models/eye_process.py): a learnt, seeded model of how open the eyes are."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speech_anim.blinks import detect_blinks, pooled_rate
from speech_anim.models.eye_process import EyeProcess, EyeProcessConfig

REPO = Path(__file__).resolve().parents[1]


def synthetic_curves(count: int, frames: int, rate: float, blink_frames: int, seed: int) -> torch.Tensor:
    """Open eyes (1 with a little jitter) closing to 0.4 for `blink_frames` at Poisson times."""
    rng = np.random.default_rng(seed)
    curves = 1.0 + 0.02 * rng.standard_normal((count, frames))
    dip = 1.0 - 0.6 * np.sin(np.linspace(0, np.pi, blink_frames))
    for curve in curves:
        t = int(rng.exponential(25 / rate))
        while t + blink_frames < frames:
            curve[t : t + blink_frames] = dip
            t += blink_frames + 3 + int(rng.exponential(25 / rate))
    return torch.from_numpy(curves.astype(np.float32))


def blink_rate(curves: torch.Tensor) -> tuple[float, float]:
    rate, median, _ = pooled_rate([detect_blinks(c.numpy(), 25.0) for c in curves])
    return rate, median


def test_levels_cover_the_openness_range_and_round_trip():
    model = EyeProcess(EyeProcessConfig(bins=30, max_openness=1.5))
    openness = torch.tensor([-0.2, 0.0, 0.49, 1.0, 1.49, 3.0])
    levels = model.quantise(openness)
    assert levels.tolist() == [0, 0, 9, 20, 29, 29]
    assert torch.allclose(model.level(levels)[1:5], openness[1:5], atol=0.05 / 2 + 1e-6)


def test_fitted_to_blinking_curves_it_blinks_at_their_rate_and_length():
    torch.manual_seed(0)
    model = EyeProcess(EyeProcessConfig(hidden=32))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    train = synthetic_curves(64, 250, rate=0.8, blink_frames=8, seed=0)
    first = model.nll(train).item()
    for step in range(150):
        loss = model.nll(train[torch.randint(0, 64, (16,))])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert model.nll(train).item() < first - 1.0  # nats per frame
    real_rate, real_duration = blink_rate(synthetic_curves(64, 250, rate=0.8, blink_frames=8, seed=1))
    sampled, _ = model.sample(64, 250, torch.Generator().manual_seed(0))
    rate, duration = blink_rate(sampled)
    assert abs(rate - real_rate) < 0.25, (rate, real_rate)
    assert abs(duration - real_duration) < 0.1, (duration, real_duration)


def test_sampling_is_seeded_and_chunk_invariant():
    torch.manual_seed(0)
    model = EyeProcess().eval()
    whole, _ = model.sample(3, 40, torch.Generator().manual_seed(7))
    again, _ = model.sample(3, 40, torch.Generator().manual_seed(7))
    other, _ = model.sample(3, 40, torch.Generator().manual_seed(8))
    draw = torch.Generator().manual_seed(7)
    first, state = model.sample(3, 11, draw)
    rest, _ = model.sample(3, 29, draw, state)
    assert torch.equal(whole, again) and not torch.equal(whole, other)
    assert torch.equal(torch.cat([first, rest], dim=1), whole)
    assert whole.shape == (3, 40) and whole.min() >= 0 and whole.max() <= model.config.max_openness


def test_saves_and_loads_as_safetensors(tmp_path):
    model = EyeProcess(EyeProcessConfig(hidden=16))
    model.save_pretrained(tmp_path / "eyes")
    assert (tmp_path / "eyes" / "model.safetensors").is_file()
    loaded = EyeProcess.from_pretrained(str(tmp_path / "eyes"))
    assert loaded.config == model.config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="bins >= 2"):
        EyeProcessConfig(bins=1)


def test_fit_script_fits_real_clips_and_reports_their_blinks(clips, tmp_path, capsys):
    sys.path.insert(0, str(REPO / "train"))
    import fit_eye_process

    out = tmp_path / "eyes"
    assert fit_eye_process.main(["--data", str(clips), "--train-split", "all", "--val-split", "all",
                                 "--out", str(out), "--steps", "3", "--batch", "4"]) == 0
    printed = capsys.readouterr().out
    assert "real validation clips:" in printed and "sampled 10 s clips:" in printed
    assert EyeProcess.from_pretrained(str(out)).config == EyeProcessConfig()



def test_the_fit_reads_curves_off_the_crops_with_openness_frames(clips, tmp_path, capsys):
    import shutil

    sys.path.insert(0, str(REPO / "train"))
    import fit_eye_process
    from speech_anim.data.datasets import frame_openness

    root = tmp_path / "grid"
    shutil.copytree(clips, root)  # the curves are cached beside the clips
    assert fit_eye_process.main(["--data", str(root), "--train-split", "all", "--val-split", "all", "--openness", "frames",
                                 "--out", str(tmp_path / "eyes"), "--steps", "2", "--batch", "2", "--workers", "1"]) == 0
    ids = ["s1/bbaf2n", "s1/bbaf3s", "s1/bbaf4p"]
    curves = fit_eye_process.clip_openness(root, "all", "frames")
    assert all(np.array_equal(a, b) for a, b in zip(curves, frame_openness(root, ids).values()))
    assert not np.array_equal(curves[0], fit_eye_process.clip_openness(root, "all", "landmarks")[0])
