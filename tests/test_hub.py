import json
import os

import huggingface_hub.constants
import pytest
import torch

from speech_anim.errors import CheckpointError
from speech_anim.models.generator import Generator, GeneratorConfig

TINY = GeneratorConfig(width=0.125)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE at import time; patch the constant it consults.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = Generator(TINY)
    # Non-trivial BN statistics, so that the round trip has to restore buffers too.
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 128, 96), torch.randn(2, 3, 3200))
    return model.eval()


def _run(model):
    g = torch.Generator().manual_seed(0)
    still, audio = torch.randn(1, 3, 128, 96, generator=g), torch.randn(1, 4, 3200, generator=g)
    with torch.no_grad():
        return model(still, audio, noise=model.sample_noise(1, 4, g))


def test_round_trip_is_exact(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "README.md"} <= set(os.listdir(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["width"] == 0.125
    card = (tmp_path / "README.md").read_text()
    assert "Generator" in card and '"width": 0.125' in card
    loaded = Generator.from_pretrained(tmp_path, strict=True)
    assert loaded.config == TINY
    assert not loaded.training
    torch.testing.assert_close(_run(loaded), _run(model), atol=0, rtol=0)


def test_fp16_file_loads_as_fp32(model, tmp_path):
    model.save_pretrained(tmp_path / "fp32")
    model.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    size = lambda d: (tmp_path / d / "model.safetensors").stat().st_size  # noqa: E731
    assert size("fp16") < 0.6 * size("fp32")
    loaded = Generator.from_pretrained(tmp_path / "fp16")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    torch.testing.assert_close(_run(loaded), _run(model), atol=2e-3, rtol=0)


def test_pickle_checkpoint_is_refused_without_unpickling(model, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(CheckpointError, match="is a pickle checkpoint; convert it to safetensors") as info:
        Generator.from_pretrained(tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="pickle"):
        Generator.from_pretrained(tmp_path / "pytorch_model.bin")


def test_dir_with_only_a_pt_file_is_refused(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "generator.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        Generator.from_pretrained(tmp_path)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_missing_file_is_named(model, tmp_path, missing):
    model.save_pretrained(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(CheckpointError, match=f"has no {missing}"):
        Generator.from_pretrained(tmp_path)


@pytest.mark.parametrize("change", [{"width": 0.25}, {"audio_gru_layers": 2}])
def test_config_weights_mismatch(model, tmp_path, change):
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match="weights do not match config.json .*different model size"):
        Generator.from_pretrained(tmp_path, strict=True)


def test_invalid_config_and_corrupt_weights(model, tmp_path):
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "width": -1}))
    with pytest.raises(CheckpointError, match="does not describe a valid Generator"):
        Generator.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        Generator.from_pretrained(tmp_path)


def test_hub_repo_id_from_the_offline_cache(model, tmp_path):
    # Lay out a Hub cache entry by hand: models--{owner}--{name}/refs/main + snapshots/{commit}/.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--someone--speech-anim-tiny"
    model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = Generator.from_pretrained("someone/speech-anim-tiny", cache_dir=tmp_path / "cache")
    torch.testing.assert_close(_run(loaded), _run(model), atol=0, rtol=0)


def test_animator_loads_a_tagged_revision_from_the_cache(model, tmp_path):
    from speech_anim import Animator

    repo = tmp_path / "models--someone--speech-anim-tiny"
    (repo / "refs").mkdir(parents=True)
    torch.manual_seed(1)
    other = Generator(TINY).eval()
    for commit, saved, ref in (("a" * 40, model, "main"), ("b" * 40, other, "v2")):
        saved.save_pretrained(repo / "snapshots" / commit)
        (repo / "refs" / ref).write_text(commit)
    main = Animator.from_pretrained("someone/speech-anim-tiny", device="cpu", cache_dir=tmp_path)
    tagged = Animator.from_pretrained("someone/speech-anim-tiny", device="cpu", cache_dir=tmp_path, revision="v2",
                                      local_files_only=True)
    torch.testing.assert_close(_run(main.generator), _run(model), atol=0, rtol=0)
    torch.testing.assert_close(_run(tagged.generator), _run(other), atol=0, rtol=0)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        Animator.from_pretrained("someone/speech-anim-tiny", device="cpu", cache_dir=tmp_path, revision="v3")


def test_unknown_repo_or_path_offline(tmp_path):
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        Generator.from_pretrained("someone/not-downloaded", cache_dir=tmp_path)
    with pytest.raises(CheckpointError, match="neither an existing directory nor a valid Hub repo id"):
        Generator.from_pretrained(tmp_path / "no" / "such" / "dir")
