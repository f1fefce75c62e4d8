"""The training objectives of the paper (Eq. 2-7) as small pure functions of discriminator logits.

The paper writes each adversarial objective as a log-likelihood that D maximises and G minimises.
Here every D objective is its negation (a loss to minimise), computed from logits with `softplus`,
which is the numerically stable form of binary cross-entropy with logits:

    -log sigma(l)      = softplus(-l)       (the "real" side)
    -log(1 - sigma(l)) = softplus(l)        (the "fake" side)

The generator uses the non-saturating form (Goodfellow et al., 2014): instead of minimising
log(1 - D(G)), whose gradient vanishes while D easily rejects the fakes, it minimises -log D(G).
Every function returns a scalar tensor; `LOG_NAMES` gives the stable name each one is logged under.
"""

from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from .errors import SpeechAnimError
from .models.discriminators import EYE_ROWS


class LossInputError(SpeechAnimError, ValueError):
    """Tensors or settings given to a loss do not fit together."""


# Stable names for logging (TensorBoard groups by the prefix before '/').
LOG_NAMES = {
    "d_img": "loss/D/img",  # Eq. 2
    "d_sync": "loss/D/sync",  # Eq. 3
    "d_seq": "loss/D/seq",  # Eq. 4
    "g_img": "loss/G/adv_img",  # generator side of Eq. 2
    "g_sync": "loss/G/adv_sync",  # generator side of Eq. 3
    "g_seq": "loss/G/adv_seq",  # generator side of Eq. 4
    "g_rec": "loss/G/l1_lower",  # Eq. 6
    "g_div": "loss/G/noise_diversity",  # not in the paper: upper_half_noise_diversity
    "g_silent": "loss/G/silent_mouth",  # not in the paper: silent_mouth_l1
    "g_blend": "loss/G/blend_mask",  # not in the paper: blend_mask_l1
    "g_eye_audio": "loss/G/eye_audio_invariance",  # not in the paper: eye_audio_invariance_l1
    "g_texture": "loss/G/texture_excess",  # not in the paper: upper_half_texture_excess
    "g_decoded": "loss/G/decoded_l1",  # not in the paper: decoded_frame_l1
    "g_eye_rec": "loss/G/l1_eyes",  # not in the paper: eye_band_l1
    "d_eye": "loss/D/eye",  # not in the paper: d_eye_loss
    "g_eye": "loss/G/adv_eye",  # not in the paper: g_eye_loss
    "g_total": "loss/G/total",  # Eq. 7
    "acc_img_real": "acc/D/img_real",
    "acc_img_fake": "acc/D/img_fake",
    "acc_sync_in": "acc/D/sync_in",
    "acc_sync_out": "acc/D/sync_out",
    "acc_sync_fake": "acc/D/sync_fake",
    "acc_seq_real": "acc/D/seq_real",
    "acc_seq_fake": "acc/D/seq_fake",
    "acc_eye_real": "acc/D/eye_real",
    "acc_eye_fake": "acc/D/eye_fake",
}

# Eq. 3 splits the "not in sync" side evenly between real out-of-sync pairs and generated pairs.
SYNC_NEGATIVE_WEIGHT = 0.5

# Ablations of Table 5: each switch removes these terms of Eq. 7.
ABLATIONS = {
    "full": (),
    "no-adv": ("img", "sync", "seq", "eye"),
    "no-l1": ("rec",),
    "no-img": ("img",),
    "no-sync": ("sync",),
    "no-seq": ("seq",),
}
ADVERSARIAL_TERMS = ("img", "sync", "seq", "eye")


def _mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `values` over the entries where `mask` is True (all entries when mask is None)."""
    if values.numel() == 0:
        raise LossInputError("a loss got an empty tensor of logits: give at least one sample")
    if mask is None:
        return values.mean()
    if mask.shape != values.shape:
        raise LossInputError(f"mask shape {tuple(mask.shape)} differs from logits shape {tuple(values.shape)}: give one flag per logit")
    mask = mask.bool()
    count = mask.sum()
    if count == 0:
        raise LossInputError("the mask selects no logits: give at least one valid sample")
    # `where`, not a product: padded entries may hold anything, including inf.
    return torch.where(mask, values, torch.zeros_like(values)).sum() / count


def _real(logits, mask=None):
    # -E[log D] = E[softplus(-l)]
    return _mean(F.softplus(-logits), mask)


def _fake(logits, mask=None):
    # -E[log(1 - D)] = E[softplus(l)]
    return _mean(F.softplus(logits), mask)


# ---- discriminator side: minimise the negated objectives ------------------------------------------


def d_frame_loss(real_logits, fake_logits, real_mask=None, fake_mask=None) -> torch.Tensor:
    """Eq. 2, negated: D_img on real frames S(x) vs generated frames S(G(x_1, z)), both with the still x_1.

    L_img = E_x[log D_img(S(x), x_1)] + E_z[log(1 - D_img(S(G(x_1, z)), x_1))]
    loss  = mean softplus(-l_real) + mean softplus(l_fake)
    """
    return _real(real_logits, real_mask) + _fake(fake_logits, fake_mask)


def d_sync_loss(in_sync_logits, out_of_sync_logits, fake_logits) -> torch.Tensor:
    """Eq. 3, negated: in-sync real pairs p_in vs out-of-sync real pairs p_out and generated pairs p_f.

    L_sync = E[log D_sync(p_in)] + 1/2 E[log(1 - D_sync(p_out))] + 1/2 E[log(1 - D_sync(S_snip(p_f)))]
    loss   = mean softplus(-l_in) + 1/2 mean softplus(l_out) + 1/2 mean softplus(l_fake)
    """
    return (
        _real(in_sync_logits)
        + SYNC_NEGATIVE_WEIGHT * _fake(out_of_sync_logits)
        + SYNC_NEGATIVE_WEIGHT * _fake(fake_logits)
    )


def d_sequence_loss(real_logits, fake_logits) -> torch.Tensor:
    """Eq. 4, negated: D_seq on real videos x vs generated videos G(x_1, z), both with their audio a.

    L_seq = E_{x,a}[log D_seq(x, a)] + E_{z,a}[log(1 - D_seq(G(x_1, z), a))]
    loss  = mean softplus(-l_real) + mean softplus(l_fake)
    """
    return _real(real_logits) + _fake(fake_logits)


def d_eye_loss(real_logits, fake_logits) -> torch.Tensor:
    """Not in the paper: D_eye on the eye band E(x) of real videos vs generated ones, with the still's.

    L_eye = E_x[log D_eye(E(x), x_1)] + E_z[log(1 - D_eye(E(G(x_1, z)), x_1))]   (Eq. 4's form, no audio)
    loss  = mean softplus(-l_real) + mean softplus(l_fake)
    """
    return _real(real_logits) + _fake(fake_logits)


# ---- generator side: non-saturating ---------------------------------------------------------------


def g_frame_loss(fake_logits, mask=None) -> torch.Tensor:
    """Generator side of Eq. 2: -E[log D_img(S(G(x_1, z)), x_1)] = mean softplus(-l_fake)."""
    return _real(fake_logits, mask)


def g_sync_loss(fake_logits) -> torch.Tensor:
    """Generator side of Eq. 3: the generated pairs enter L_sync with weight 1/2, which is kept.

    loss = -1/2 E[log D_sync(S_snip(p_f))] = 1/2 mean softplus(-l_fake)
    """
    return SYNC_NEGATIVE_WEIGHT * _real(fake_logits)


def g_sequence_loss(fake_logits) -> torch.Tensor:
    """Generator side of Eq. 4: -E[log D_seq(G(x_1, z), a)] = mean softplus(-l_fake)."""
    return _real(fake_logits)


def g_eye_loss(fake_logits) -> torch.Tensor:
    """Generator side of L_eye (ours): -E[log D_eye(E(G(x_1, z)), x_1)] = mean softplus(-l_fake)."""
    return _real(fake_logits)


def lower_half_l1(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 6: mean |G - x| over the lower half of the frame (rows H/2..H, where the mouth is).

    L_L1 = sum_{p in [0, W] x [H/2, H]} |F_p - G_p|, taken here as a mean over those pixels, the
    channels and the valid frames so that its size does not depend on resolution or clip length.
    `fake`, `real`: (..., 3, H, W), e.g. B x T x 3 x 128 x 96; `mask`: the leading dims (B x T), True
    for real frames, False for padding.
    """
    _check_frames(fake, real)
    height = fake.shape[-2]
    return _rows_l1(fake, real, height // 2, height, mask)


def eye_band_l1(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor | None = None,
                closure: torch.Tensor | None = None, closure_weight: float = 0.0) -> torch.Tensor:
    """Ours, for generators given the real clip's eye openness (eye_input): Eq. 6 over the eye band.

    L_eyes = sum_t w_t m_t l_t / sum_t w_t m_t,  l_t = mean_{p in [0, W] x EYE_ROWS} |F_p - G_p|
    (rows 32:64 of 128: brows, lids, eyes; over channels), m_t the valid frames, and
    w_t = 1 + closure_weight * closure_t with closure_t = (1 - o_t)+ the real eyes' closure (B×T).
    Told how open the real eyes are, the generator can be held to them frame by frame, so blinking is
    learnt as a supervised task, not left to the discriminators alone. With closure_weight 0 every
    frame counts alike; blinks are a tenth of the frames, and a generator held to them that way drew
    half-closed lids nearly open, so shallow blinks went missing and the rest came out short.
    """
    _check_frames(fake, real, min_height=EYE_ROWS[1])
    if not closure_weight:
        return _rows_l1(fake, real, *EYE_ROWS, mask)
    if closure is None or closure.shape != fake.shape[:-3]:
        raise LossInputError(f"closure_weight needs the real eyes' closure shaped {tuple(fake.shape[:-3])}, got "
                             f"{None if closure is None else tuple(closure.shape)}")
    return _rows_l1(fake, real, *EYE_ROWS, mask, weight=1 + closure_weight * closure.clamp(min=0))


def _check_frames(fake: torch.Tensor, real: torch.Tensor, min_height: int = 0) -> None:
    """Generated and real videos of one shape, (..., C, H, W) with at least `min_height` rows."""
    if fake.shape != real.shape:
        raise LossInputError(f"generated {tuple(fake.shape)} and real {tuple(real.shape)} videos differ in shape: compare matching clips")
    if fake.dim() < 3 or fake.shape[-2] < min_height:
        rows = f" with H >= {min_height}" if min_height else ""
        raise LossInputError(f"expected frames shaped (..., C, H, W){rows}, got {tuple(fake.shape)}")


def _rows_l1(a: torch.Tensor, b: torch.Tensor, top: int, bottom: int, mask: torch.Tensor | None,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """mean |a - b| over rows top:bottom of every valid frame; (..., C, H, W) frames, mask (...);
    with `weight` (...), the mean weighted per frame: sum w m l / sum w m."""
    per_frame = (a[..., top:bottom, :] - b[..., top:bottom, :]).abs().flatten(start_dim=-3).mean(dim=-1)
    if mask is not None and mask.shape != per_frame.shape:
        raise LossInputError(f"mask shape {tuple(mask.shape)} does not match the frames' leading dims {tuple(per_frame.shape)}")
    # Every frame has the same pixel count, so the mean of per-frame means is the mean over pixels.
    if weight is None:
        return _mean(per_frame, mask)
    return _mean(per_frame * weight, mask) / _mean(weight, mask)  # both means over the same valid frames


def upper_half_noise_diversity(fake_a: torch.Tensor, fake_b: torch.Tensor, noise_a: torch.Tensor,
                               noise_b: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 0.05) -> torch.Tensor:
    """Not in the paper: mode seeking (Mao et al., CVPR 2019) on the upper half of the face.

    L_div = 1 / (mean|G(z_a) - G(z_b)|_upper / mean|z_a - z_b| + eps), for two videos generated from
    the same still and audio with different noise. Without it our CPU-sized runs learn to ignore the
    noise: every seed gives the same video and blinks follow the audio only, so none come in silence
    (paper Fig. 17 has them). The upper half is where the noise should act (blinks, brows); the mouth
    is left to the audio. 1/x fades as the videos differ, so realism (D_img, D_seq) keeps the last word.

    MSGAN's eps is 1e-5: a generator that already ignores its noise (ratio ~0.003) then gets a
    gradient of ~1e5, and its faces fell apart within ten steps (validation PSNR 26.7 -> 20.3 dB at
    lambda 0.1). eps = 0.05 caps the gradient at 1/eps^2.
    `fake_*`: B x T x 3 x H x W; `noise_*`: B x T x noise_dim; `mask`: B x T, True for real frames.
    """
    if fake_a.shape != fake_b.shape or noise_a.shape != noise_b.shape:
        raise LossInputError(f"the two videos {tuple(fake_a.shape)}, {tuple(fake_b.shape)} and noises "
                             f"{tuple(noise_a.shape)}, {tuple(noise_b.shape)} must match in shape")
    if fake_a.dim() != 5 or noise_a.shape[:2] != fake_a.shape[:2]:
        raise LossInputError(f"expected B x T x C x H x W videos and B x T x D noise, got {tuple(fake_a.shape)} "
                             f"and {tuple(noise_a.shape)}")
    image_change = _rows_l1(fake_a, fake_b, 0, fake_a.shape[-2] // 2, mask)
    noise_change = _mean((noise_a - noise_b).abs().mean(-1), mask)
    return 1.0 / (image_change / noise_change + eps)


def silent_mouth_l1(fake_silent: torch.Tensor, still: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Not in the paper: with no speech, the lower face stays as the still has it.

    L_silent = mean_t |G(still, quiet)_t - still| over the lower half (Eq. 6's region), for a video
    generated from the still and a quiet room's audio (faint noise, `audio.quiet_room`). The paper's
    model learned this from GRID's pauses (its Fig. 17); ours, trained on short windows of speech,
    opened its mouth 2 px to quiet-room noise. The upper half is left free, for blinks.
    `fake_silent`: B x T x 3 x H x W; `still`: B x 3 x H x W; `mask`: B x T, True for real frames.
    """
    if fake_silent.dim() != 5 or still.shape != fake_silent.shape[:1] + fake_silent.shape[2:]:
        raise LossInputError(f"expected a B x T x C x H x W video and its B x C x H x W stills, got "
                             f"{tuple(fake_silent.shape)} and {tuple(still.shape)}")
    return lower_half_l1(fake_silent, still[:, None].expand_as(fake_silent), mask)


def blend_mask_l1(alpha: torch.Tensor, mask: torch.Tensor | None = None,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Not in the paper: the blend generator's mask α should stay shut where the face does not move.

    L_blend = mean_{t,p} w(p) α_t(p), over the valid frames (GANimation's attention-mask penalty, Pumarola
    et al., ECCV 2018), w = 1 everywhere unless a H x W `weight` is given (`outside_features_weight`).
    Without it our generator, asked by D_eye for blinks, opened α over the whole upper face whenever
    the eyes closed, and the decoder's coarse hair and skin showed through: the still's pixels are
    better everywhere the blink does not reach.
    `alpha`: B x T x 1 x H x W in [0, 1]; `mask`: B x T, True for real frames.
    """
    if alpha.dim() != 5 or alpha.shape[2] != 1:
        raise LossInputError(f"expected a B x T x 1 x H x W blend mask, got {tuple(alpha.shape)}")
    if weight is not None:
        if weight.shape != alpha.shape[-2:]:
            raise LossInputError(f"blend weight map {tuple(weight.shape)} does not match the mask's "
                                 f"{tuple(alpha.shape[-2:])} frames: build it for this frame size")
        alpha = alpha * weight.to(alpha)
    return _mean(alpha.flatten(2).mean(-1), mask)


def decoded_frame_l1(decoded: torch.Tensor, real: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Not in the paper: the blend generator's decoded frame, before blending, should be the real frame.

    L_decoded = mean_t |D_t - x_t| over the whole frame, D_t the decoder's frame that the mask α lets
    through and x_t the real one. Where α stays shut nothing else constrains D_t, so it was whatever
    helped elsewhere; when D_eye asked for a blink and α opened over the eyes, that showed: speckles,
    then (with the texture term) red smears where the lids should be. With D_t a face everywhere,
    what a blink lets through is skin and lids. A small weight: the blended frame carries Eq. 6.
    `decoded`, `real`: B x T x 3 x H x W; `mask`: B x T, True for real frames.
    """
    if decoded.shape != real.shape or decoded.dim() != 5:
        raise LossInputError(f"expected decoded and real videos of one B x T x C x H x W shape, got "
                             f"{tuple(decoded.shape)} and {tuple(real.shape)}")
    return _rows_l1(decoded, real, 0, decoded.shape[-2], mask)


# Margins (pixels of the 128 x 96 crop) around the canonical landmarks of the parts that move.
_FEATURE_MARGIN = 6
_EYES_AND_BROWS = list(range(17, 27)) + list(range(36, 48))
_MOUTH_AND_CHIN = list(range(48, 68)) + list(range(5, 12))


def outside_features_weight(height: int = 128, width: int = 96) -> torch.Tensor:
    """The `weight` for `blend_mask_l1` that leaves the blend mask free over the eyes, brows, mouth and
    chin of the canonical face (boxes around their landmarks) and penalises it elsewhere.

    A uniform penalty strong enough to keep the decoder's speckled hair out of blink frames
    (lambda_blend 50) also shut the mask over the eyes, and the blinks went with it; a weak one
    (20) kept the blinks and the speckles. Crops are aligned to the canonical face, so these boxes
    are where the eyes and mouth of every training and inference crop lie.
    """
    from .face import CROP_HEIGHT, CROP_WIDTH, canonical_landmarks  # the crop geometry lives in face.py

    points = canonical_landmarks() * (width / CROP_WIDTH, height / CROP_HEIGHT)
    weight = torch.ones(height, width)
    for part in (_EYES_AND_BROWS, _MOUTH_AND_CHIN):
        (left, top), (right, bottom) = points[part].min(0) - _FEATURE_MARGIN, points[part].max(0) + _FEATURE_MARGIN
        weight[max(int(top), 0):int(bottom) + 1, max(int(left), 0):int(right) + 1] = 0.0
    return weight


def _total_variation(frames: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertical and between horizontal neighbours, per frame."""
    return ((frames[..., 1:, :] - frames[..., :-1, :]).abs().flatten(start_dim=-3).mean(-1)
            + (frames[..., :, 1:] - frames[..., :, :-1]).abs().flatten(start_dim=-3).mean(-1))


def upper_half_texture_excess(fake: torch.Tensor, still: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Not in the paper: no finer texture above the nose than the still has.

    L_texture = mean_t max(0, TV(U(G_t)) - TV(U(still))), U the upper half (rows 0:H/2) and TV the
    mean absolute difference between neighbouring pixels. Our blink frames came with coloured
    speckles and checkerboard around the eyes and in the hair (most likely the decoder's stride-2
    transposed convolutions, showing wherever the blend mask opened for a blink): they raised the upper half's TV by 0.04-0.09
    over the still's, where clean frames sit within 0.005. A blink itself smooths the eye, so the
    hinge leaves it alone; the lower half is tied to the real frames by Eq. 6 already.
    `fake`: B x T x 3 x H x W; `still`: B x 3 x H x W; `mask`: B x T, True for real frames.
    """
    if fake.dim() != 5 or still.shape != fake.shape[:1] + fake.shape[2:]:
        raise LossInputError(f"expected a B x T x C x H x W video and its B x C x H x W stills, got "
                             f"{tuple(fake.shape)} and {tuple(still.shape)}")
    half = fake.shape[-2] // 2
    excess = F.relu(_total_variation(fake[..., :half, :]) - _total_variation(still[:, None, :, :half, :]))
    return _mean(excess, mask)


def eye_audio_invariance_l1(fake: torch.Tensor, fake_silent: torch.Tensor,
                            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Not in the paper: the eyes do what the noise says, whatever is being said.

    L_eye_audio = mean_t |E(G(still, audio, z))_t - E(G(still, quiet, z))_t|, E the eye band (rows
    32:64, `EYE_ROWS`), for two videos from the same still and noise z, one with the clip's speech and
    one with a quiet room's audio. GRID's s1 blinks at much the same point of every sentence, and
    our generators learnt that from the audio: with D_eye they blinked at the real rate in speech,
    on the same frames for every seed, and never in silence. With the speech taken out of the eye
    band the only clock left there is the noise, and D_eye still asks for blinks.
    `fake`, `fake_silent`: B x T x 3 x H x W; `mask`: B x T, True for real frames.
    """
    if fake.shape != fake_silent.shape or fake.dim() != 5:
        raise LossInputError(f"expected two B x T x C x H x W videos of one shape, got {tuple(fake.shape)} "
                             f"and {tuple(fake_silent.shape)}")
    return _rows_l1(fake, fake_silent, *EYE_ROWS, mask)


# ---- Eq. 7 -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossWeights:
    """The lambdas of Eq. 7 (paper defaults: lambda_img 1, lambda_sync 0.8, lambda_seq 0.2, lambda_L1 600)."""

    img: float = 1.0
    sync: float = 0.8
    seq: float = 0.2
    rec: float = 600.0
    div: float = 0.0  # not in the paper: upper_half_noise_diversity
    silent: float = 0.0  # not in the paper: silent_mouth_l1
    eye: float = 0.0  # not in the paper: g_eye_loss (D_eye)
    blend: float = 0.0  # not in the paper: blend_mask_l1
    eye_audio: float = 0.0  # not in the paper: eye_audio_invariance_l1
    texture: float = 0.0  # not in the paper: upper_half_texture_excess
    decoded: float = 0.0  # not in the paper: decoded_frame_l1
    eye_rec: float = 0.0  # not in the paper: eye_band_l1

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not value >= 0:  # also catches NaN
                raise LossInputError(f"loss weight {f.name}={value} must be >= 0: use 0 to switch the term off")
        if all(getattr(self, f.name) == 0 for f in fields(self)):
            raise LossInputError("every loss weight is zero so the generator cannot learn: keep at least one term")

    def ablate(self, *switches: str) -> "LossWeights":
        """These weights with the terms removed by Table 5's switches ('no-adv', 'no-l1', 'no-img', ...)."""
        zeroed = {}
        for switch in switches:
            if switch not in ABLATIONS:
                raise LossInputError(f"unknown ablation {switch!r}: choose from {', '.join(ABLATIONS)}")
            zeroed.update({term: 0.0 for term in ABLATIONS[switch]})
        return replace(self, **zeroed)

    @property
    def discriminators(self) -> tuple[str, ...]:
        """The discriminators that must be built and trained: those whose term has a non-zero weight."""
        return tuple(term for term in ADVERSARIAL_TERMS if getattr(self, term) > 0)


def generator_total(
    *,
    img: torch.Tensor | None = None,
    sync: torch.Tensor | None = None,
    seq: torch.Tensor | None = None,
    rec: torch.Tensor | None = None,
    div: torch.Tensor | None = None,
    silent: torch.Tensor | None = None,
    eye: torch.Tensor | None = None,
    blend: torch.Tensor | None = None,
    eye_audio: torch.Tensor | None = None,
    texture: torch.Tensor | None = None,
    decoded: torch.Tensor | None = None,
    eye_rec: torch.Tensor | None = None,
    weights: LossWeights = LossWeights(),
) -> torch.Tensor:
    """Eq. 7, generator side: L = lambda_img L_img + lambda_sync L_sync + lambda_seq L_seq + lambda_L1 L_L1
    (+ lambda_div L_div + lambda_silent L_silent + lambda_eye L_eye + lambda_blend L_blend
    + lambda_eye_audio L_eye_audio + lambda_texture L_texture + lambda_decoded L_decoded
    + lambda_eyes L_eyes, ours, off by default).

    Terms whose weight is zero are skipped (and may be None), so an ablated run never needs the
    discriminator it does not train; a term with a non-zero weight must be given.
    """
    terms = {"img": img, "sync": sync, "seq": seq, "rec": rec, "div": div, "silent": silent, "eye": eye,
             "blend": blend, "eye_audio": eye_audio, "texture": texture, "decoded": decoded, "eye_rec": eye_rec}
    total = None
    for name, value in terms.items():
        weight = getattr(weights, name)
        if weight == 0:
            continue
        if value is None:
            raise LossInputError(f"the {name} term has weight {weight} but was not given: pass it or ablate it")
        total = weight * value if total is None else total + weight * value
    return total


# ---- accuracies for logging ---------------------------------------------------------------------


@torch.no_grad()
def real_accuracy(logits, mask=None) -> torch.Tensor:
    """Fraction of samples D calls real (logit > 0, i.e. D > 1/2): use on real frames / videos and in-sync pairs."""
    return _mean((logits > 0).float(), mask)


@torch.no_grad()
def fake_accuracy(logits, mask=None) -> torch.Tensor:
    """Fraction of samples D calls fake (logit < 0): use on generated samples and out-of-sync pairs."""
    return _mean((logits < 0).float(), mask)
