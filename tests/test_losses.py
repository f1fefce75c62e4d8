"""Eq. 2-7 on hand-made logits and frames with values worked out by hand."""

import math

import pytest
import torch

from speech_anim.errors import SpeechAnimError
from speech_anim.losses import (
    ABLATIONS,
    blend_mask_l1,
    decoded_frame_l1,
    eye_audio_invariance_l1,
    LOG_NAMES,
    LossInputError,
    LossWeights,
    d_eye_loss,
    d_frame_loss,
    d_sequence_loss,
    d_sync_loss,
    fake_accuracy,
    g_eye_loss,
    g_frame_loss,
    g_sequence_loss,
    g_sync_loss,
    generator_total,
    lower_half_l1,
    outside_features_weight,
    real_accuracy,
    silent_mouth_l1,
    upper_half_noise_diversity,
    upper_half_texture_excess,
)

LOG2 = math.log(2.0)
LOG3 = math.log(3.0)


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_undecided_discriminator_costs_log2_per_term():
    zeros = torch.zeros(4, dtype=torch.float64)
    assert d_frame_loss(zeros, zeros).item() == pytest.approx(2 * LOG2)
    assert d_sequence_loss(zeros, zeros).item() == pytest.approx(2 * LOG2)
    # Eq. 3: log 2 for the in-sync pairs + 1/2 log 2 + 1/2 log 2 for the two kinds of negatives.
    assert d_sync_loss(zeros, zeros, zeros).item() == pytest.approx(2 * LOG2)
    assert g_frame_loss(zeros).item() == pytest.approx(LOG2)
    assert g_sequence_loss(zeros).item() == pytest.approx(LOG2)
    assert g_sync_loss(zeros).item() == pytest.approx(0.5 * LOG2)


def test_d_losses_match_the_log_likelihoods():
    # A logit of log 3 means D = 3/4: -log(3/4) on the real side, -log(1/4) on the fake side.
    assert d_frame_loss(t(LOG3), t(LOG3)).item() == pytest.approx(math.log(4 / 3) + math.log(4))
    assert d_sequence_loss(t(LOG3, LOG3), t(-LOG3, -LOG3)).item() == pytest.approx(2 * math.log(4 / 3))
    expected = math.log(4 / 3) + 0.5 * math.log(4) + 0.5 * math.log(4 / 3)
    assert d_sync_loss(t(LOG3), t(LOG3), t(-LOG3)).item() == pytest.approx(expected)


def test_sync_negatives_have_half_weight():
    base = d_sync_loss(t(0.0), t(0.0), t(0.0))
    # Make one kind of pair wrongly judged (D = 3/4 on a negative, 1/4 on a positive) at a time.
    worse_out = d_sync_loss(t(0.0), t(LOG3), t(0.0))
    worse_fake = d_sync_loss(t(0.0), t(0.0), t(LOG3))
    worse_in = d_sync_loss(t(-LOG3), t(0.0), t(0.0))
    step = math.log(4) - LOG2  # softplus(log 3) - softplus(0)
    assert (worse_out - base).item() == pytest.approx(0.5 * step)
    assert (worse_fake - base).item() == pytest.approx(0.5 * step)
    assert (worse_in - base).item() == pytest.approx(step)


def test_losses_are_stable_for_huge_logits():
    big = t(1000.0)
    assert d_frame_loss(big, -big).item() == pytest.approx(0.0, abs=1e-12)
    assert d_frame_loss(-big, big).item() == pytest.approx(2000.0)
    assert g_frame_loss(-big).item() == pytest.approx(1000.0)
    logits = torch.tensor([1000.0, -1000.0], requires_grad=True)
    g_sequence_loss(logits).backward()
    assert torch.isfinite(logits.grad).all()


def test_gradient_of_generator_side_is_non_saturating():
    # Where D confidently rejects a fake, log(1 - D) has almost no gradient; -log D keeps a full one.
    logit = torch.tensor([-10.0], requires_grad=True)
    g_frame_loss(logit).backward()
    assert logit.grad.item() == pytest.approx(-torch.sigmoid(torch.tensor(10.0)).item())


def test_masked_logits_ignore_padding():
    logits = t(0.0, 0.0, float("inf"))
    mask = torch.tensor([True, True, False])
    assert g_frame_loss(logits, mask).item() == pytest.approx(LOG2)
    assert d_frame_loss(t(0.0), logits, fake_mask=mask).item() == pytest.approx(2 * LOG2)
    with pytest.raises(LossInputError):
        g_frame_loss(logits, torch.zeros(3, dtype=torch.bool))
    with pytest.raises(LossInputError):
        g_frame_loss(logits, torch.ones(2, dtype=torch.bool))


def test_lower_half_l1_counts_only_lower_rows_of_valid_frames():
    real = torch.zeros(1, 3, 3, 128, 96)
    fake = torch.zeros(1, 3, 3, 128, 96)
    fake[:, :, :, :64] = 5.0  # upper half: ignored
    fake[0, 0, :, 64:] = 1.0
    fake[0, 1, :, 64:] = -3.0
    fake[0, 2, :, 64:] = 100.0  # padding frame: ignored
    mask = torch.tensor([[True, True, False]])
    assert lower_half_l1(fake, real, mask).item() == pytest.approx(2.0)
    assert lower_half_l1(fake, real).item() == pytest.approx((1 + 3 + 100) / 3)
    # Row 64 is the first row of the lower half, row 63 the last of the upper half.
    one = torch.zeros(2, 3, 128, 96)
    one[0, :, 64] = 1.0
    assert lower_half_l1(one, torch.zeros_like(one)).item() == pytest.approx(1 / 64 / 2)


def test_lower_half_l1_uses_mean_over_pixels_of_uneven_masks():
    real = torch.zeros(2, 2, 3, 4, 2)
    fake = torch.zeros(2, 2, 3, 4, 2)
    fake[0, 0, 0, 2, 0] = 12.0  # one pixel of the 12 lower-half values of frame (0, 0)
    fake[1, 1, :, 2:] = 2.0  # all lower-half values of frame (1, 1)
    mask = torch.tensor([[True, False], [True, True]])
    # valid frames: (0,0) mean 1, (1,0) mean 0, (1,1) mean 2 -> 1
    assert lower_half_l1(fake, real, mask).item() == pytest.approx(1.0)


def test_lower_half_l1_rejects_mismatches():
    with pytest.raises(LossInputError):
        lower_half_l1(torch.zeros(1, 2, 3, 8, 6), torch.zeros(1, 3, 3, 8, 6))
    with pytest.raises(LossInputError):
        lower_half_l1(torch.zeros(1, 2, 3, 8, 6), torch.zeros(1, 2, 3, 8, 6), torch.ones(1, 3, dtype=torch.bool))


def test_paper_weights_and_total():
    w = LossWeights()
    assert (w.img, w.sync, w.seq, w.rec) == (1.0, 0.8, 0.2, 600.0)
    total = generator_total(img=t(1.0), sync=t(2.0), seq=t(3.0), rec=t(0.01), weights=w)
    assert total.item() == pytest.approx(1.0 + 1.6 + 0.6 + 6.0)


@pytest.mark.parametrize(
    "switch, zeroed, needed",
    [
        ("full", (), ("img", "sync", "seq")),
        ("no-adv", ("img", "sync", "seq"), ()),
        ("no-l1", ("rec",), ("img", "sync", "seq")),
        ("no-img", ("img",), ("sync", "seq")),
        ("no-sync", ("sync",), ("img", "seq")),
        ("no-seq", ("seq",), ("img", "sync")),
    ],
)
def test_ablations_zero_the_right_terms(switch, zeroed, needed):
    weights = LossWeights().ablate(switch)
    for term in ("img", "sync", "seq", "rec"):
        assert (getattr(weights, term) == 0) == (term in zeroed)
    assert weights.discriminators == needed
    terms = {"img": t(1.0), "sync": t(2.0), "seq": t(3.0), "rec": t(0.01)}
    expected = sum(getattr(LossWeights(), k) * v.item() for k, v in terms.items() if k not in zeroed)
    # Ablated terms may be left out entirely: their discriminator is never built.
    given = {k: v for k, v in terms.items() if k not in zeroed}
    assert generator_total(**given, weights=weights).item() == pytest.approx(expected)


def test_ablations_combine_and_reject_nonsense():
    weights = LossWeights().ablate("no-sync", "no-seq")
    assert weights.discriminators == ("img",)
    assert set(ABLATIONS) == {"full", "no-adv", "no-l1", "no-img", "no-sync", "no-seq"}
    with pytest.raises(SpeechAnimError, match="unknown ablation"):
        LossWeights().ablate("no-gan")
    with pytest.raises(LossInputError, match="every loss weight is zero"):
        LossWeights().ablate("no-adv", "no-l1")
    with pytest.raises(LossInputError):
        LossWeights(rec=-1.0)
    with pytest.raises(LossInputError, match="sync term"):
        generator_total(img=t(1.0), seq=t(1.0), rec=t(1.0))


def test_accuracies():
    logits = t(2.0, -1.0, 0.0, 3.0)
    assert real_accuracy(logits).item() == pytest.approx(0.5)
    assert fake_accuracy(logits).item() == pytest.approx(0.25)
    mask = torch.tensor([True, True, False, False])
    assert real_accuracy(logits, mask).item() == pytest.approx(0.5)
    assert fake_accuracy(logits, mask).item() == pytest.approx(0.5)


def test_log_names_are_unique_and_grouped():
    names = list(LOG_NAMES.values())
    assert len(set(names)) == len(names)
    assert all(n.startswith(("loss/D/", "loss/G/", "acc/D/")) for n in names)


def test_noise_diversity_sees_only_the_upper_half_of_valid_frames():
    noise_a, noise_b = torch.zeros(1, 2, 4), torch.full((1, 2, 4), 0.5)  # mean |z_a - z_b| = 0.5
    fake_a = torch.zeros(1, 2, 3, 4, 2)
    fake_b = fake_a.clone()
    fake_b[..., 2:, :] = 1.0  # the mouth half differs: no diversity counted
    assert upper_half_noise_diversity(fake_a, fake_b, noise_a, noise_b, eps=1e-5) == pytest.approx(1e5)
    fake_b[:, 0, :, :2, :] = 0.2  # frame 0's upper half differs by 0.2 -> 0.1 per frame on average
    assert upper_half_noise_diversity(fake_a, fake_b, noise_a, noise_b, eps=0.0) == pytest.approx(0.5 / 0.1)
    # Frame 1 is padding: the mean is over frame 0 alone.
    mask = torch.tensor([[True, False]])
    assert upper_half_noise_diversity(fake_a, fake_b, noise_a, noise_b, mask, eps=0.0) == pytest.approx(0.5 / 0.2)


def test_noise_diversity_pushes_the_videos_apart():
    fake_a = torch.zeros(1, 2, 3, 4, 2, requires_grad=True)
    fake_b = torch.full((1, 2, 3, 4, 2), 0.1)
    upper_half_noise_diversity(fake_a, fake_b, torch.zeros(1, 2, 4), torch.ones(1, 2, 4)).backward()
    upper, lower = fake_a.grad[..., :2, :], fake_a.grad[..., 2:, :]
    assert (upper > 0).all() and (lower == 0).all()  # descending the loss moves fake_a away from fake_b


def test_noise_diversity_is_off_unless_weighted_and_rejects_mismatches():
    assert LossWeights().div == 0
    one = torch.tensor(1.0)
    assert generator_total(img=one, sync=one, seq=one, rec=one, div=torch.tensor(50.0)) == generator_total(
        img=one, sync=one, seq=one, rec=one)
    weights = LossWeights(div=0.5)
    assert generator_total(img=one, sync=one, seq=one, rec=one, div=torch.tensor(4.0), weights=weights) == (
        generator_total(img=one, sync=one, seq=one, rec=one) + 2.0)
    with pytest.raises(LossInputError, match="div term"):
        generator_total(img=one, sync=one, seq=one, rec=one, weights=weights)
    with pytest.raises(LossInputError, match="must match"):
        upper_half_noise_diversity(torch.zeros(1, 2, 3, 4, 2), torch.zeros(1, 3, 3, 4, 2), torch.zeros(1, 2, 4),
                                   torch.zeros(1, 2, 4))


def test_eye_terms_have_eq4s_form_without_audio_and_are_off_by_default():
    zeros = torch.zeros(4, dtype=torch.float64)
    assert d_eye_loss(zeros, zeros).item() == pytest.approx(2 * LOG2)
    assert d_eye_loss(t(LOG3, LOG3), t(-LOG3, -LOG3)).item() == pytest.approx(2 * math.log(4 / 3))
    assert g_eye_loss(t(-LOG3)).item() == pytest.approx(math.log(4))
    assert LossWeights().eye == 0 and "eye" not in LossWeights().discriminators
    weights = LossWeights(eye=0.5)
    assert weights.discriminators == ("img", "sync", "seq", "eye")
    assert weights.ablate("no-adv").discriminators == ()
    total = generator_total(img=t(1.0), sync=t(2.0), seq=t(3.0), rec=t(0.01), eye=t(2.0), weights=weights)
    assert total.item() == pytest.approx(1.0 + 1.6 + 0.6 + 6.0 + 1.0)
    with pytest.raises(LossInputError, match="eye term"):
        generator_total(img=t(1.0), sync=t(2.0), seq=t(3.0), rec=t(0.01), weights=weights)
    assert (LOG_NAMES["d_eye"], LOG_NAMES["g_eye"]) == ("loss/D/eye", "loss/G/adv_eye")


def test_blend_mask_penalty_is_the_mean_mask_over_valid_frames():
    alpha = torch.zeros(1, 2, 1, 4, 2)
    alpha[0, 0, 0, :2] = 1.0  # frame 0: half its pixels let the decoded frame through
    assert blend_mask_l1(alpha).item() == pytest.approx(0.25)
    assert blend_mask_l1(alpha, torch.tensor([[True, False]])).item() == pytest.approx(0.5)
    assert LossWeights().blend == 0 and LOG_NAMES["g_blend"] == "loss/G/blend_mask"
    with pytest.raises(LossInputError, match="blend mask"):
        blend_mask_l1(torch.zeros(1, 2, 3, 4, 2))


def test_decoded_frame_is_compared_with_the_real_one_over_the_whole_frame():
    real = torch.zeros(1, 2, 3, 4, 2)
    decoded = real.clone()
    decoded[:, 0, :, :1] = 1.0  # frame 0's top row (hair, where α is usually shut) is off by 1
    assert decoded_frame_l1(decoded, real).item() == pytest.approx(0.125)
    assert decoded_frame_l1(decoded, real, torch.tensor([[True, False]])).item() == pytest.approx(0.25)
    assert LossWeights().decoded == 0 and LOG_NAMES["g_decoded"] == "loss/G/decoded_l1"
    with pytest.raises(LossInputError, match="one B x T"):
        decoded_frame_l1(decoded, real[:, :1])


def test_blend_mask_penalty_can_spare_the_parts_of_the_face_that_move():
    weight = outside_features_weight()
    assert weight.shape == (128, 96)
    assert weight[48, 30] == weight[48, 66] == 0  # both eyes (canonical face: rows 46-51)
    assert weight[38, 48] == 0  # between the brows
    assert weight[88, 48] == weight[108, 48] == 0  # the mouth and the chin below it
    assert weight[5, 48] == weight[64, 2] == weight[125, 5] == 1  # hair, cheek's edge, background
    assert weight[70, 48] == 1  # the nose does not move with the words or the blinks
    alpha = torch.zeros(1, 1, 1, 128, 96)
    alpha[..., 40:56, 20:76] = 1.0  # open over the eyes only: free
    assert blend_mask_l1(alpha, weight=weight) == 0 and blend_mask_l1(alpha) > 0
    alpha[..., :16, :] = 1.0  # and over the hair: that costs its share of the frame
    assert blend_mask_l1(alpha, weight=weight).item() == pytest.approx(16 / 128)
    with pytest.raises(LossInputError, match="weight map"):
        blend_mask_l1(alpha, weight=torch.ones(64, 48))


def test_texture_excess_counts_only_detail_beyond_the_stills_above_the_nose():
    still = torch.zeros(1, 3, 8, 4)
    still[..., :4, ::2] = 0.5  # vertical stripes in the upper half: TV = 0 down + 0.5 across
    fake = still[:, None].repeat(1, 3, 1, 1, 1)
    assert upper_half_texture_excess(fake, still) == 0
    fake[:, 1, :, :4] = 0.0  # frame 1 smoother than the still (lids closed): no penalty
    fake[:, 2, :, 0] = 1.0  # frame 2, a bright top row: down 3 / 12, across 0.5 * 9 / 12, TV 0.625
    assert upper_half_texture_excess(fake, still).item() == pytest.approx(0.125 / 3)
    assert upper_half_texture_excess(fake, still, torch.tensor([[False, True, True]])).item() == pytest.approx(0.125 / 2)
    fake[:, :, :, 4:] = torch.rand(1, 3, 3, 4, 4)  # the lower half is Eq. 6's business
    assert upper_half_texture_excess(fake, still).item() == pytest.approx(0.125 / 3)
    assert LossWeights().texture == 0 and LOG_NAMES["g_texture"] == "loss/G/texture_excess"
    with pytest.raises(LossInputError, match="stills"):
        upper_half_texture_excess(fake, still[..., :4, :])


def test_silent_mouth_compares_the_lower_half_of_every_valid_frame_with_the_still():
    still = torch.zeros(2, 3, 4, 2)
    fake = torch.zeros(2, 3, 3, 4, 2)
    fake[..., :2, :] = 1.0  # eyes and brows may move freely in silence
    assert silent_mouth_l1(fake, still) == 0
    fake[:, 0, :, 2:, :] = 0.6  # an open mouth in frame 0 of both clips: 0.6 over one frame in three
    assert silent_mouth_l1(fake, still) == pytest.approx(0.2)
    assert silent_mouth_l1(fake, still, torch.tensor([[True, False, False]] * 2)) == pytest.approx(0.6)
    assert LossWeights().silent == 0 and LOG_NAMES["g_silent"] == "loss/G/silent_mouth"
    with pytest.raises(LossInputError, match="stills"):
        silent_mouth_l1(fake, still[:1])


def test_eye_audio_invariance_compares_only_the_eye_band_of_the_two_passes():
    fake, quiet = torch.zeros(1, 2, 3, 128, 96), torch.zeros(1, 2, 3, 128, 96)
    fake[..., :32, :] = 1.0  # hair and forehead, and
    fake[..., 64:, :] = 1.0  # nose and mouth may follow the speech
    assert eye_audio_invariance_l1(fake, quiet) == 0
    fake[:, 0, :, 32:48, :] = 0.5  # lids half down in frame 0 with speech, open without: half the band
    assert eye_audio_invariance_l1(fake, quiet).item() == pytest.approx(0.125)
    assert eye_audio_invariance_l1(fake, quiet, torch.tensor([[True, False]])).item() == pytest.approx(0.25)
    assert eye_audio_invariance_l1(quiet, fake).item() == pytest.approx(0.125)  # symmetric: both passes move
    assert LossWeights().eye_audio == 0 and LOG_NAMES["g_eye_audio"] == "loss/G/eye_audio_invariance"
    with pytest.raises(LossInputError, match="one shape"):
        eye_audio_invariance_l1(fake, quiet[:, :1])


def test_eye_band_l1_weighs_closing_frames_by_the_real_closure():
    from speech_anim import losses

    real = torch.zeros(1, 2, 3, 128, 96)
    fake = real.clone()
    fake[0, 0, :, 40] = 1.0  # frame 0 is wrong in one row of the eye band, frame 1 in two
    fake[0, 1, :, 40:42] = 1.0
    per_frame = torch.tensor([1 / 32, 2 / 32])
    plain = losses.eye_band_l1(fake, real)
    assert torch.isclose(plain, per_frame.mean())
    # frame 0 fully closed (weight 1 + 4 = 5), frame 1 open (weight 1)
    closure = torch.tensor([[1.0, 0.0]])
    weighted = losses.eye_band_l1(fake, real, closure=closure, closure_weight=4.0)
    assert torch.isclose(weighted, (5 * per_frame[0] + per_frame[1]) / 6)
    # a masked-out frame counts for nothing, however closed
    masked = losses.eye_band_l1(fake, real, torch.tensor([[0.0, 1.0]]), closure, 4.0)
    assert torch.isclose(masked, per_frame[1])
    assert torch.equal(losses.eye_band_l1(fake, real, closure=closure, closure_weight=0.0), plain)
    with pytest.raises(losses.LossInputError, match="closure"):
        losses.eye_band_l1(fake, real, closure_weight=4.0)
