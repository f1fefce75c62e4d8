"""The discriminators (the paper's three and our eye discriminator) at tiny widths: shapes, what each one looks at, masking, input helpers,
and safetensors round trips."""

import json

import pytest
import torch

from speech_anim.errors import SpeechAnimError
from speech_anim.losses import d_frame_loss
from speech_anim.models.discriminators import (
    DiscriminatorInputError,
    EyeDiscriminator,
    EyeDiscriminatorConfig,
    FrameDiscriminator,
    FrameDiscriminatorConfig,
    SequenceDiscriminator,
    SequenceDiscriminatorConfig,
    SyncDiscriminator,
    SyncDiscriminatorConfig,
    cut_sync_pairs,
    frame_lengths,
    sample_frame_indices,
    sample_shifted_centres,
    sample_sync_centres,
    take_frames,
)

TINY = 1 / 16


def frame_d():
    return FrameDiscriminator(FrameDiscriminatorConfig(width=TINY))


def sequence_d():
    return SequenceDiscriminator(SequenceDiscriminatorConfig(width=TINY, video_dim=8, audio_dim=8, hidden_dim=8))


def sync_d():
    return SyncDiscriminator(SyncDiscriminatorConfig(width=TINY, embedding_dim=8))


def eye_d():
    return EyeDiscriminator(EyeDiscriminatorConfig(width=TINY, feature_dim=8))


def video(batch, frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames, 3, 128, 96, generator=g) * 2 - 1


def audio(batch, frames, seed=1):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, frames, 3200, generator=g)


def test_output_shapes():
    torch.manual_seed(0)
    v, a = video(3, 5), audio(3, 5)
    assert frame_d()(v[:, 0], v[:, 1]).shape == (3,)
    assert sequence_d()(v, a).shape == (3,)
    assert sequence_d()(v, a, torch.tensor([[1, 1, 1, 0, 0]] * 3, dtype=torch.bool)).shape == (3,)
    assert sync_d()(v, a[:, 2]).shape == (3,)
    assert eye_d()(v, v[:, 0]).shape == (3,)


def test_frame_d_looks_at_frame_and_still():
    torch.manual_seed(0)
    d = frame_d().eval()
    v = video(2, 3)
    with torch.no_grad():
        base = d(v[:, 0], v[:, 1])
        assert not torch.allclose(base, d(v[:, 2], v[:, 1]))
        assert not torch.allclose(base, d(v[:, 0], v[:, 2]))


def test_sequence_d_ignores_padding_after_the_end():
    torch.manual_seed(0)
    d = sequence_d().train()  # GroupNorm: the same in train and eval mode
    v, a = video(2, 7), audio(2, 7)
    mask = torch.tensor([[True] * 4 + [False] * 3, [True] * 7])
    with torch.no_grad():
        padded = d(v, a, mask)
        # The first clip alone, cut at its end: the same logit as with 3 padding frames after it.
        alone = d(v[:1, :4], a[:1, :4])
        assert torch.allclose(padded[0], alone[0], atol=1e-5)
        # Different padding content changes nothing either.
        v2, a2 = v.clone(), a.clone()
        v2[0, 4:] = -v2[0, 4:]
        a2[0, 4:] = torch.randn_like(a2[0, 4:])
        assert torch.allclose(d(v2, a2, mask), padded, atol=1e-5)
        # A valid frame does change it, and the audio matters too (Eq. 4 conditions on it).
        v3 = v.clone()
        v3[0, 3] = -v3[0, 3]
        assert not torch.allclose(d(v3, a, mask)[0], padded[0], atol=1e-4)
        a3 = a.clone()
        a3[0, :4] = torch.flip(a3[0, :4], dims=[-1])
        assert not torch.allclose(d(v, a3, mask)[0], padded[0], atol=1e-4)
        # The second clip does not depend on the first (no statistics across the batch).
        assert torch.allclose(d(v3, a, mask)[1], padded[1], atol=1e-5)


def test_eye_d_sees_only_the_eye_band_of_valid_frames_and_the_still():
    torch.manual_seed(0)
    d = eye_d()
    v, still = video(2, 9), video(2, 1, seed=5)[:, 0]
    mask = torch.tensor([[True] * 6 + [False] * 3, [True] * 9])
    with torch.no_grad():
        base = d(v, still, mask)
        outside = v.clone()
        outside[..., :32, :] = torch.rand_like(outside[..., :32, :])
        outside[..., 64:, :] = torch.rand_like(outside[..., 64:, :])  # the mouth: no audio, no say
        assert torch.equal(d(outside, still, mask), base)
        padding = v.clone()
        padding[0, 6:] = -padding[0, 6:]
        assert torch.allclose(d(padding, still, mask), base, atol=1e-7)
        assert torch.allclose(d(v[:1, :6], still[:1]), base[:1], atol=1e-7)
        # At initialisation (weights ~N(0, 0.02)) a change moves the logit by ~1e-4: far above 1e-6.
        closed = v.clone()
        closed[0, 3, :, 40:56] = 0.0  # one frame's eyes change: a blink shows
        changed = d(closed, still, mask)
        assert (changed[0] - base[0]).abs() > 1e-6 and torch.allclose(changed[1], base[1], atol=1e-7)
        other_still = still.clone()
        other_still[:, :, 32:64] = -other_still[:, :, 32:64]
        assert ((d(v, other_still, mask) - base).abs() > 1e-6).all()


def test_masks_must_be_prefixes():
    d = sequence_d()
    v, a = video(1, 4), audio(1, 4)
    with pytest.raises(DiscriminatorInputError, match="padding at the end"):
        d(v, a, torch.tensor([[True, False, True, False]]))
    with pytest.raises(DiscriminatorInputError, match="no valid frames"):
        d(v, a, torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(DiscriminatorInputError):
        d(v, a, torch.ones(1, 5, dtype=torch.bool))
    assert frame_lengths(torch.tensor([[1, 1, 0], [1, 1, 1]]), 2, 3).tolist() == [2, 3]


def test_sync_d_sees_only_the_lower_half():
    torch.manual_seed(0)
    d = sync_d().eval()
    v, a = video(2, 5), audio(2, 1)[:, 0]
    with torch.no_grad():
        base = d(v, a)
        upper = v.clone()
        upper[:, :, :, :64] = torch.rand_like(upper[:, :, :, :64])
        assert torch.equal(d(upper, a), base)
        lower = v.clone()
        lower[:, :, :, 64:] = torch.rand_like(lower[:, :, :, 64:])
        assert not torch.allclose(d(lower, a), base, atol=1e-4)
        assert not torch.allclose(d(v, torch.flip(a, dims=[-1])), base, atol=1e-4)
        # The logit is a single perceptron on the embedding distance.
        expected = d.perceptron.weight[0, 0] * d.distance(v, a) + d.perceptron.bias[0]
        assert torch.allclose(base, expected)


def test_wrong_inputs_raise_one_line_errors():
    v = video(2, 5)
    with pytest.raises(SpeechAnimError, match="frame must be B×3×128×96"):
        frame_d()(v[:, 0, :, :64], v[:, 1])
    with pytest.raises(DiscriminatorInputError, match="one still per frame"):
        frame_d()(v[:, 0], v[:1, 1])
    with pytest.raises(DiscriminatorInputError, match="audio must be"):
        sequence_d()(v, audio(2, 4))
    with pytest.raises(DiscriminatorInputError, match="snippets"):
        sync_d()(v[:, :4], audio(2, 1)[:, 0])
    with pytest.raises(DiscriminatorInputError, match="one still per clip"):
        eye_d()(v, v[:1, 0])
    with pytest.raises(DiscriminatorInputError, match="width"):
        FrameDiscriminatorConfig(width=0)
    with pytest.raises(DiscriminatorInputError, match="feature_dim"):
        EyeDiscriminatorConfig(feature_dim=0)
    with pytest.raises(DiscriminatorInputError, match="odd whole number"):
        SyncDiscriminatorConfig(window_samples=2560)


def test_frame_sampling_is_uniform_over_valid_frames_and_seedable():
    mask = torch.tensor([[True] * 3 + [False] * 5, [True] * 8])
    draws = torch.stack([sample_frame_indices(mask, torch.Generator().manual_seed(s)) for s in range(200)])
    assert set(draws[:, 0].tolist()) == {0, 1, 2}
    assert set(draws[:, 1].tolist()) == set(range(8))
    again = sample_frame_indices(mask, torch.Generator().manual_seed(7))
    assert torch.equal(again, draws[7])
    v = torch.arange(2 * 8, dtype=torch.float32).view(2, 8, 1, 1, 1).expand(2, 8, 3, 4, 2)
    frames = take_frames(v, torch.tensor([2, 5]))
    assert frames.shape == (2, 3, 4, 2)
    assert frames[:, 0, 0, 0].tolist() == [2.0, 13.0]


def test_sync_pairs_are_aligned_and_shifted_pairs_are_far():
    batch, frames = 2, 14
    # 11 = 2 * 5 + 1 frames: the shortest clip in which every snippet centre has an audio centre
    # at least 5 frames away.
    mask = torch.tensor([[True] * 11 + [False] * 3, [True] * 14])
    # Frame t of clip b is filled with 100 b + t, audio window t with 1000 + 100 b + t.
    ids = (100 * torch.arange(batch)[:, None] + torch.arange(frames)[None]).float()
    v = ids[:, :, None, None, None].expand(batch, frames, 3, 128, 96)
    a = (1000 + ids)[:, :, None].expand(batch, frames, 3200)
    centres = sample_sync_centres(mask, torch.Generator().manual_seed(0))
    snippets, windows = cut_sync_pairs(v, a, centres)
    assert snippets.shape == (2, 5, 3, 128, 96) and windows.shape == (2, 3200)
    for b in range(batch):
        c = int(centres[b])
        assert snippets[b, :, 0, 0, 0].tolist() == [100 * b + t for t in range(c - 2, c + 3)]
        assert windows[b, 0].item() == 1000 + 100 * b + c

    seen = set()
    for seed in range(300):
        g = torch.Generator().manual_seed(seed)
        centres = sample_sync_centres(mask, g)
        assert ((centres >= 2) & (centres <= torch.tensor([8, 11]))).all()
        shifted = sample_shifted_centres(centres, mask, g)
        assert ((shifted - centres).abs() >= 5).all()
        assert ((shifted >= 0) & (shifted < torch.tensor([11, 14]))).all()
        _, out_windows = cut_sync_pairs(v, a, centres, shifted)
        assert out_windows[:, 0].tolist() == (1000 + 100 * torch.arange(2) + shifted).tolist()
        seen.update(shifted[mask.sum(1) == 11].tolist())
    # Every frame of the short clip that is 5 or more from some centre in [2, 8] is used; no padding frame.
    assert seen == {0, 1, 2, 3, 7, 8, 9, 10}


def test_sync_helpers_reject_short_clips():
    short = torch.tensor([[True] * 4 + [False] * 4])
    with pytest.raises(DiscriminatorInputError, match="fewer than the 5"):
        sample_sync_centres(short)
    with pytest.raises(DiscriminatorInputError, match="no frame 5 or more away"):
        sample_shifted_centres(torch.tensor([4]), torch.ones(1, 9, dtype=torch.bool))
    with pytest.raises(DiscriminatorInputError, match="centres must lie"):
        cut_sync_pairs(video(1, 6), audio(1, 6), torch.tensor([4]))


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    v, a = video(2, 5), audio(2, 5)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    cases = []
    f = frame_d()
    cases.append((f, f(v[:, 0], v[:, 1])))
    s = sequence_d()
    cases.append((s, s(v, a, mask)))
    y = sync_d()
    cases.append((y, y(v, a[:, 2])))
    e = eye_d()
    cases.append((e, e(v, v[:, 0], mask)))
    for model, logits in cases:
        logits.sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert missing == [], type(model).__name__


def test_frame_d_learns_to_separate_two_kinds_of_frames():
    torch.manual_seed(0)
    d = frame_d()
    still = video(4, 1, seed=3)[:, 0]
    real = video(4, 1, seed=4)[:, 0] * 0.5 + 0.5
    fake = video(4, 1, seed=5)[:, 0] * 0.5 - 0.5
    losses = _train_to_separate(d, d_frame_loss, real, fake, still, steps=15)
    assert losses[-1] < 0.25 * losses[0]


def _train_to_separate(d, d_loss, real, fake, still, steps: int) -> list[float]:
    """Adam (GAN betas) on `d_loss(d(real, still), d(fake, still))`; the loss after every step."""
    optimiser = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(steps):
        loss = d_loss(d(real, still), d(fake, still))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def test_eye_d_learns_to_tell_eyes_that_blink_from_eyes_that_never_do():
    """Both sets show the same eyes; in the real clips they shut for 3 frames somewhere in the clip."""
    from speech_anim.losses import d_eye_loss

    torch.manual_seed(0)
    d = eye_d()
    still = video(8, 1, seed=3)[:, 0]
    fake = still[:, None].repeat(1, 16, 1, 1, 1)
    real = fake.clone()
    for clip, start in enumerate(torch.randint(0, 13, (8,)).tolist()):
        real[clip, start : start + 3, :, 44:54] = 0.4  # lids over the eyes
    losses = _train_to_separate(d, d_eye_loss, real, fake, still, steps=30)
    assert losses[-1] < 0.25 * losses[0]
    held_out = fake[:2].clone()
    held_out[0, 7:10, :, 44:54] = 0.4  # a clip it was not trained on, blinking once
    with torch.no_grad():
        logits = d(held_out, still[:2])
    assert logits[0] > 0 > logits[1]


@pytest.mark.parametrize("make", [frame_d, sequence_d, sync_d, eye_d])
def test_safetensors_round_trip(make, tmp_path):
    torch.manual_seed(0)
    model = make().eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["width"] == TINY
    loaded = type(model).from_pretrained(tmp_path)
    assert loaded.config == model.config
    v, a = video(2, 5), audio(2, 5)
    with torch.no_grad():
        if isinstance(model, FrameDiscriminator):
            args = (v[:, 0], v[:, 1])
        elif isinstance(model, SequenceDiscriminator):
            args = (v, a)
        elif isinstance(model, EyeDiscriminator):
            args = (v, v[:, 0])
        else:
            args = (v, a[:, 2])
        assert torch.equal(model(*args), loaded(*args))
