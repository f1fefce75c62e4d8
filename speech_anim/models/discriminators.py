"""The three discriminators of the paper (§3.2) and the helpers that cut their inputs from clips.

    FrameDiscriminator     [frame, still] (6×128×96)       -> logit  "is this a real frame of this person?"  Eq. 2
    SequenceDiscriminator  video B×T + audio windows B×T    -> logit  "is this a real video for this audio?"   Eq. 4
    SyncDiscriminator      5 frames (lower half) + 0.2 s    -> logit  "are lips and speech in sync?"           Eq. 3
    EyeDiscriminator       eye band of B×T frames + still   -> logit  "do these eyes move like real ones?"     ours

Every discriminator outputs logits (the losses in `speech_anim.losses` apply the sigmoid in a
numerically stable way). Normalisation is GroupNorm, never BatchNorm: its statistics are per sample
(per frame in the sequence discriminator), so a logit never depends on what else is in the batch:
real and fake batches can be scored separately or together, and padding frames after the end of a
clip cannot leak into the frames before it.
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpeechAnimError
from .hub import SafeHubMixin

FRAME_HEIGHT, FRAME_WIDTH = 128, 96
# Five stride-2 convolutions take 128×96 to 4×3; a sixth, 4×3 conv gives the logit (six layers).
FRAME_CHANNELS = (64, 128, 256, 512, 1024)
# The sequence discriminator runs on every frame of every clip (T times the frame discriminator's
# work), so its per-step encoder is half as wide.
SEQUENCE_CHANNELS = (32, 64, 128, 256, 512)
# Causal temporal kernels of these sizes, one per spatial stage: the first two see 3 frames each,
# so the feature of step t sees frames t-4..t, 0.2 s like the sync discriminator's snippets.
SEQUENCE_TEMPORAL_KERNELS = (3, 3, 1, 1, 1)
# The sync discriminator's video stream sees the lower half (64×96) of 5 frames stacked channel-wise
# (early fusion, as in SyncNet); four stride-2 stages take 64×96 to 4×6.
SYNC_VIDEO_CHANNELS = (64, 128, 256, 512)
AUDIO_CHANNELS = (16, 32, 64, 128, 256)
# The eye discriminator sees rows 32:64 of the aligned crop: the brows (from row ~36) and the eyes
# (rows ~46-51 in `face.canonical_landmarks`). Four stride-2 stages take 32×96 to 2×6.
EYE_ROWS = (32, 64)
EYE_CHANNELS = (32, 64, 128, 256)
LEAK = 0.2


class DiscriminatorInputError(SpeechAnimError, ValueError):
    """A discriminator, its config or a helper got tensors of the wrong shape or settings that do not fit."""


# ---- configs -------------------------------------------------------------------------------------


class _Sizes:
    """Shared by the configs: channel counts scaled by `width`, and positivity checks."""

    def channels(self, base: int) -> int:
        return max(1, round(base * self.width))

    def _check_positive(self, *names: str) -> None:
        for name in names:
            if not getattr(self, name) > 0:  # also catches NaN
                raise DiscriminatorInputError(f"{type(self).__name__}.{name} must be > 0, got {getattr(self, name)}")


@dataclass
class FrameDiscriminatorConfig(_Sizes):
    """Sizes of the frame discriminator. `width` scales every conv channel count (1.0 = full size)."""

    width: float = 1.0

    def __post_init__(self):
        self._check_positive("width")


@dataclass
class SequenceDiscriminatorConfig(_Sizes):
    """Sizes of the sequence discriminator. `width` scales every conv channel count."""

    width: float = 1.0
    video_dim: int = 256  # per-step video feature
    audio_dim: int = 256  # per-step audio feature
    hidden_dim: int = 256  # GRU state
    sample_rate: int = 16000
    window_samples: int = 3200  # 0.2 s of audio per video frame (Eq. 1)

    def __post_init__(self):
        self._check_positive("width", "video_dim", "audio_dim", "hidden_dim", "sample_rate", "window_samples")


@dataclass
class SyncDiscriminatorConfig(_Sizes):
    """Sizes of the sync discriminator. `width` scales every conv channel count.

    A snippet is `window_samples` of audio and the video frames they span:
    3200 samples at 16 kHz = 0.2 s = 5 frames at 25 fps.
    """

    width: float = 1.0
    embedding_dim: int = 256
    sample_rate: int = 16000
    fps: float = 25.0
    window_samples: int = 3200

    def __post_init__(self):
        self._check_positive("width", "embedding_dim", "sample_rate", "fps", "window_samples")
        frames = self.window_samples * self.fps / self.sample_rate
        if abs(frames - round(frames)) > 1e-6 or round(frames) % 2 == 0:
            raise DiscriminatorInputError(
                f"window_samples={self.window_samples} spans {frames:g} frames at {self.fps:g} fps and "
                f"{self.sample_rate} Hz: it must span an odd whole number of frames (3200 at 16 kHz, 25 fps = 5)"
            )

    @property
    def snippet_frames(self) -> int:
        return round(self.window_samples * self.fps / self.sample_rate)


@dataclass
class EyeDiscriminatorConfig(_Sizes):
    """Sizes of the eye discriminator. `width` scales every conv channel count."""

    width: float = 1.0
    feature_dim: int = 128  # per-frame eye feature and temporal channels

    def __post_init__(self):
        self._check_positive("width", "feature_dim")


def _config(cls, config):
    if config is None:
        return cls()
    if isinstance(config, dict):
        return cls(**config)
    if not isinstance(config, cls):
        raise DiscriminatorInputError(f"expected a {cls.__name__} or a dict, got {type(config).__name__}")
    return config


# ---- building blocks ---------------------------------------------------------------------------


def _group_norm(channels: int) -> nn.GroupNorm:
    # Up to 32 groups that divide the channels (tiny test widths fall back to fewer groups).
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def _down2d(cin: int, cout: int, norm: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        layers.append(_group_norm(cout))
    layers.append(nn.LeakyReLU(LEAK, inplace=True))
    return nn.Sequential(*layers)


class _AudioWindowEncoder(nn.Module):
    """One raw audio window (N×samples) -> a feature vector (N×out_dim) with 1-D convs.

    The first kernel spans ~15 ms with a ~3 ms stride (250 / 50 samples at 16 kHz): a learned filter
    bank on the raw waveform; four stride-2 stages follow and a last conv covers what is left.
    """

    def __init__(self, channels: list[int], out_dim: int, window_samples: int, sample_rate: int):
        super().__init__()
        kernel = max(2, round(250 * sample_rate / 16000))
        stride = max(1, round(50 * sample_rate / 16000))
        padding = (kernel - stride) // 2
        length = (window_samples + 2 * padding - kernel) // stride + 1
        layers = [nn.Conv1d(1, channels[0], kernel, stride, padding), nn.LeakyReLU(LEAK, inplace=True)]
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv1d(cin, cout, 4, stride=2, padding=1, bias=False), _group_norm(cout),
                       nn.LeakyReLU(LEAK, inplace=True)]
            length //= 2
        if length < 1:
            raise DiscriminatorInputError(f"window_samples={window_samples} is too short for the audio encoder: use 3200 (0.2 s)")
        layers.append(nn.Conv1d(channels[-1], out_dim, length))
        self.layers = nn.Sequential(*layers)
        self.window_samples = window_samples

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.layers(windows.reshape(-1, 1, self.window_samples)).flatten(1)


class _CausalConv3dBlock(nn.Module):
    """A 3-D conv that looks back `kernel_t - 1` frames (never ahead), halving H and W, then a
    per-frame GroupNorm and LeakyReLU: step t depends on frames <= t only."""

    def __init__(self, cin: int, cout: int, kernel_t: int, norm: bool):
        super().__init__()
        self.kernel_t = kernel_t
        self.conv = nn.Conv3d(cin, cout, (kernel_t, 4, 4), stride=(1, 2, 2), padding=(0, 1, 1), bias=not norm)
        self.norm = _group_norm(cout) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B×C×T×H×W
        x = self.conv(F.pad(x, (0, 0, 0, 0, self.kernel_t - 1, 0)))
        if self.norm is not None:
            batch, channels, frames, height, width = x.shape
            per_frame = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
            x = self.norm(per_frame).view(batch, frames, channels, height, width).transpose(1, 2)
        return F.leaky_relu(x, LEAK)


def _init_weights(module: nn.Module) -> None:
    # DCGAN initialisation for the convolutions (as in the generator); GRUs and linears keep PyTorch's.
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.GroupNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _check_frames(name: str, x: torch.Tensor, leading: int, height: int = FRAME_HEIGHT) -> None:
    if x.dim() != leading + 3 or tuple(x.shape[-3:]) != (3, height, FRAME_WIDTH):
        dims = "×".join(["B", "T"][:leading] + ["3", str(height), str(FRAME_WIDTH)])
        raise DiscriminatorInputError(f"{name} must be {dims} (aligned crops in [-1, 1]), got {tuple(x.shape)}")


# ---- the discriminators ------------------------------------------------------------------------


class FrameDiscriminator(nn.Module, SafeHubMixin):
    """D_img (Eq. 2): a 6-layer CNN on a frame and the still identity frame stacked channel-wise.

    Seeing the still lets it reject frames that are sharp but show someone else (or drift away from
    the person): realism *for this identity*.
    """

    def __init__(self, config: FrameDiscriminatorConfig | None = None):
        super().__init__()
        config = _config(FrameDiscriminatorConfig, config)
        self.config = config
        self._hub_mixin_config = config  # what save_pretrained writes to config.json
        channels = [6] + [config.channels(c) for c in FRAME_CHANNELS]
        self.blocks = nn.Sequential(
            *(_down2d(cin, cout, norm=i > 0) for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])))
        )
        final = (FRAME_HEIGHT >> len(FRAME_CHANNELS), FRAME_WIDTH >> len(FRAME_CHANNELS))  # 4×3
        self.to_logit = nn.Conv2d(channels[-1], 1, final)
        self.apply(_init_weights)

    def forward(self, frame: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
        """frame, still: B×3×128×96 -> logits (B,)."""
        _check_frames("frame", frame, 1)
        _check_frames("still", still, 1)
        if frame.shape[0] != still.shape[0]:
            raise DiscriminatorInputError(f"frame batch {frame.shape[0]} differs from still batch {still.shape[0]}: give one still per frame")
        return self.to_logit(self.blocks(torch.cat([frame, still], dim=1))).flatten()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


class SequenceDiscriminator(nn.Module, SafeHubMixin):
    """D_seq (Eq. 4): is this video real, given its audio?

    Per step: causal spatio-temporal convolutions on the frames (transient features, frames t-4..t)
    and an audio encoding of the step's 0.2 s window; a 1-layer GRU runs over the steps and a single
    linear layer classifies its output at the last valid step of each clip. Every stage is causal or
    per step, so frames and audio after a clip's end (padding) do not change its logit.
    """

    def __init__(self, config: SequenceDiscriminatorConfig | None = None):
        super().__init__()
        config = _config(SequenceDiscriminatorConfig, config)
        self.config = config
        self._hub_mixin_config = config
        channels = [3] + [config.channels(c) for c in SEQUENCE_CHANNELS]
        self.video_encoder = nn.Sequential(
            *(_CausalConv3dBlock(cin, cout, kt, norm=i > 0)
              for i, (cin, cout, kt) in enumerate(zip(channels[:-1], channels[1:], SEQUENCE_TEMPORAL_KERNELS)))
        )
        final = (FRAME_HEIGHT >> len(SEQUENCE_CHANNELS), FRAME_WIDTH >> len(SEQUENCE_CHANNELS))
        self.to_video_feature = nn.Conv3d(channels[-1], config.video_dim, (1, *final))
        self.audio_encoder = _AudioWindowEncoder([config.channels(c) for c in AUDIO_CHANNELS], config.audio_dim,
                                                 config.window_samples, config.sample_rate)
        self.gru = nn.GRU(config.video_dim + config.audio_dim, config.hidden_dim, num_layers=1, batch_first=True)
        self.classifier = nn.Linear(config.hidden_dim, 1)
        self.apply(_init_weights)

    def forward(self, video: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """video B×T×3×128×96, audio windows B×T×window_samples, mask B×T (True = valid, a prefix of
        each row; None = all valid) -> logits (B,)."""
        _check_frames("video", video, 2)
        batch, frames = video.shape[:2]
        if tuple(audio.shape) != (batch, frames, self.config.window_samples):
            raise DiscriminatorInputError(
                f"audio must be {batch}×{frames}×{self.config.window_samples} windows (one per frame), got {tuple(audio.shape)}"
            )
        lengths = frame_lengths(mask, batch, frames, video.device)

        x = self.video_encoder(video.transpose(1, 2))  # B×C×T×h×w
        video_feature = F.leaky_relu(self.to_video_feature(x), LEAK).flatten(2).transpose(1, 2)  # B×T×video_dim
        audio_feature = F.leaky_relu(self.audio_encoder(audio), LEAK).view(batch, frames, -1)
        steps, _ = self.gru(torch.cat([video_feature, audio_feature], dim=-1))  # B×T×hidden
        # The GRU is causal, so its output at a clip's last valid step has seen exactly that clip.
        last = steps[torch.arange(batch, device=steps.device), lengths - 1]
        return self.classifier(last).flatten()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


class EyeDiscriminator(nn.Module, SafeHubMixin):
    """D_eye (not in the paper): do the eyes and brows of this video move like a real person's?

    D_seq is the paper's only judge of blinks, but it sees the whole face with the audio, where the
    mouth dominates: in our CPU-sized runs it asked for blinks late and tied them to the audio. D_eye
    sees only the eye band (rows 32:64, `EYE_ROWS`) of every frame, stacked with the still's, and no
    audio, so a video whose eyes never close in 1.6 s is easy to catch and the blinks it asks for
    cannot be tied to the speech: the generator must make them from its noise.

    Per frame a 2-D CNN encodes the band; two temporal convolutions (5 frames, then 5 with dilation
    2: 13 frames, about half a second, as long as a slow blink) run over the clip, and the logit
    comes from the mean and the max over time of their output, the max so that one blink anywhere
    in the clip counts. Padded frames (mask False) are zeroed before the temporal convolutions and
    left out of the mean and max, so they do not change the logit.
    """

    def __init__(self, config: EyeDiscriminatorConfig | None = None):
        super().__init__()
        config = _config(EyeDiscriminatorConfig, config)
        self.config = config
        self._hub_mixin_config = config
        channels = [6] + [config.channels(c) for c in EYE_CHANNELS]
        self.frame_encoder = nn.Sequential(
            *(_down2d(cin, cout, norm=i > 0) for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])))
        )
        final = ((EYE_ROWS[1] - EYE_ROWS[0]) >> len(EYE_CHANNELS), FRAME_WIDTH >> len(EYE_CHANNELS))  # 2×6
        self.to_feature = nn.Conv2d(channels[-1], config.feature_dim, final)
        self.temporal = nn.ModuleList([
            nn.Conv1d(config.feature_dim, config.feature_dim, 5, padding=2),
            nn.Conv1d(config.feature_dim, config.feature_dim, 5, padding=4, dilation=2),
        ])
        self.classifier = nn.Linear(2 * config.feature_dim, 1)
        self.apply(_init_weights)

    def forward(self, video: torch.Tensor, still: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """video B×T×3×128×96 (full frames; only rows 32:64 are used), still B×3×128×96, mask B×T
        (True = valid, a prefix of each row; None = all valid) -> logits (B,)."""
        _check_frames("video", video, 2)
        _check_frames("still", still, 1)
        batch, frames = video.shape[:2]
        if still.shape[0] != batch:
            raise DiscriminatorInputError(f"still batch {still.shape[0]} differs from video batch {batch}: give one still per clip")
        lengths = frame_lengths(mask, batch, frames, video.device)
        valid = (torch.arange(frames, device=video.device)[None] < lengths[:, None])[:, None]  # B×1×T

        top, bottom = EYE_ROWS
        band = video[:, :, :, top:bottom]
        still_band = still[:, None, :, top:bottom].expand_as(band)
        x = torch.cat([band, still_band], dim=2).flatten(0, 1)  # B·T×6×32×96
        x = F.leaky_relu(self.to_feature(self.frame_encoder(x)), LEAK).view(batch, frames, -1).transpose(1, 2)
        for conv in self.temporal:
            x = F.leaky_relu(conv(x * valid), LEAK)
        mean = (x * valid).sum(-1) / lengths[:, None]
        peak = x.masked_fill(~valid, -torch.inf).amax(-1)
        return self.classifier(torch.cat([mean, peak], dim=1)).flatten()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


class SyncDiscriminator(nn.Module, SafeHubMixin):
    """D_sync (Eq. 3, Fig. 5): are 0.2 s of speech and the matching 5 frames in sync?

    Two streams embed the audio window and the lower half of the frames (the mouth; the upper half is
    never looked at); the Euclidean distance between the embeddings goes through a single-layer
    perceptron: logit = w·d + b.
    """

    def __init__(self, config: SyncDiscriminatorConfig | None = None):
        super().__init__()
        config = _config(SyncDiscriminatorConfig, config)
        self.config = config
        self._hub_mixin_config = config
        snippet = config.snippet_frames
        channels = [3 * snippet] + [config.channels(c) for c in SYNC_VIDEO_CHANNELS]
        self.video_encoder = nn.Sequential(
            *(_down2d(cin, cout, norm=i > 0) for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])))
        )
        final = ((FRAME_HEIGHT // 2) >> len(SYNC_VIDEO_CHANNELS), FRAME_WIDTH >> len(SYNC_VIDEO_CHANNELS))  # 4×6
        self.to_video_embedding = nn.Conv2d(channels[-1], config.embedding_dim, final)
        self.audio_encoder = _AudioWindowEncoder([config.channels(c) for c in AUDIO_CHANNELS], config.embedding_dim,
                                                 config.window_samples, config.sample_rate)
        self.perceptron = nn.Linear(1, 1)
        self.apply(_init_weights)
        # A larger distance should mean "out of sync": start with a negative slope.
        nn.init.constant_(self.perceptron.weight, -1.0)
        nn.init.constant_(self.perceptron.bias, 1.0)

    def embed(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Video and audio embeddings (B×embedding_dim each) of snippets B×5×3×128×96 and windows B×3200."""
        snippet = self.config.snippet_frames
        if video.dim() != 5 or video.shape[1] != snippet:
            raise DiscriminatorInputError(f"video must be B×{snippet}×3×{FRAME_HEIGHT}×{FRAME_WIDTH} snippets, got {tuple(video.shape)}")
        _check_frames("video", video, 2)
        if tuple(audio.shape) != (video.shape[0], self.config.window_samples):
            raise DiscriminatorInputError(
                f"audio must be {video.shape[0]}×{self.config.window_samples} windows (one per snippet), got {tuple(audio.shape)}"
            )
        lower = video[:, :, :, FRAME_HEIGHT // 2 :].flatten(1, 2)  # B×(5·3)×64×96
        video_embedding = self.to_video_embedding(self.video_encoder(lower)).flatten(1)
        return video_embedding, self.audio_encoder(audio)

    def distance(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Per-snippet distance between the embeddings (B,), scaled by 1/sqrt(embedding_dim) so that its
        size does not depend on the embedding size; the small epsilon keeps the gradient finite at 0."""
        video_embedding, audio_embedding = self.embed(video, audio)
        squared = (video_embedding - audio_embedding).pow(2).mean(dim=1)
        return torch.sqrt(squared + 1e-8)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """video B×5×3×128×96 (full frames; only rows 64:128 are used), audio B×3200 -> logits (B,)."""
        return self.perceptron(self.distance(video, audio)[:, None]).flatten()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


# ---- cutting discriminator inputs from clips -------------------------------------------------------


def frame_lengths(mask: torch.Tensor | None, batch: int, frames: int, device=None) -> torch.Tensor:
    """Valid frames per clip (B,) from a B×T mask whose True entries form a prefix of each row."""
    if mask is None:
        return torch.full((batch,), frames, dtype=torch.long, device=device)
    if tuple(mask.shape) != (batch, frames):
        raise DiscriminatorInputError(f"mask must be {batch}×{frames} (one flag per frame), got {tuple(mask.shape)}")
    mask = mask.bool()
    lengths = mask.sum(dim=1)
    prefix = torch.arange(frames, device=mask.device)[None] < lengths[:, None]
    if not torch.equal(prefix, mask):
        raise DiscriminatorInputError("mask must be True for each clip's first frames and False after its end (padding at the end only)")
    if (lengths == 0).any():
        raise DiscriminatorInputError("a clip in the batch has no valid frames: drop empty clips")
    return lengths.to(device) if device is not None else lengths


def _uniform_below(limits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One integer per entry, uniform in [0, limit)."""
    device = generator.device if generator is not None else limits.device
    draws = torch.rand(limits.shape, generator=generator, device=device).to(limits.device)
    return torch.minimum((draws * limits).long(), limits - 1)


def sample_frame_indices(mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """S(x) of Eq. 2: one frame index per clip, uniform over its valid frames (B,)."""
    lengths = frame_lengths(mask, *mask.shape[:2])
    return _uniform_below(lengths, generator)


def take_frames(video: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """video B×T×3×H×W, indices (B,) -> frames B×3×H×W (use the same indices for real and fake)."""
    if video.dim() != 5 or tuple(indices.shape) != (video.shape[0],):
        raise DiscriminatorInputError(f"take_frames needs a B×T×3×H×W video and B indices, got {tuple(video.shape)} and {tuple(indices.shape)}")
    return video[torch.arange(video.shape[0], device=video.device), indices.to(video.device)]


def sample_sync_centres(mask: torch.Tensor, generator: torch.Generator | None = None, snippet_frames: int = 5) -> torch.Tensor:
    """Centre frames (B,) of random snippets lying wholly inside each clip's valid frames."""
    half = snippet_frames // 2
    lengths = frame_lengths(mask, *mask.shape[:2])
    if (lengths < snippet_frames).any():
        raise DiscriminatorInputError(
            f"a clip has {int(lengths.min())} frames, fewer than the {snippet_frames} of a sync snippet: use clips of at least {snippet_frames} frames"
        )
    return half + _uniform_below(lengths - 2 * half, generator)


def sample_shifted_centres(
    centres: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None, min_shift: int = 5
) -> torch.Tensor:
    """Audio centres (B,) for out-of-sync pairs: another frame of the same clip, at least `min_shift`
    frames from `centres`, uniform over the clip's valid frames that qualify.

    The default of 5 frames (0.2 s) means the shifted audio window shares no sample with the one that
    belongs to the snippet, so the pair is out of sync over its whole length. Every centre has such a
    frame in clips of at least 2 * min_shift + 1 frames (11; GRID clips have 75).
    """
    lengths = frame_lengths(mask, *mask.shape[:2])
    centres = centres.to(lengths.device)
    before = (centres - min_shift + 1).clamp(min=0)  # frames 0 .. c - min_shift
    after = (lengths - centres - min_shift).clamp(min=0)  # frames c + min_shift .. L - 1
    choices = before + after
    if (choices == 0).any():
        raise DiscriminatorInputError(
            f"a clip of {int(lengths[choices == 0][0])} frames has no frame {min_shift} or more away from its snippet: "
            f"use longer clips or a smaller min_shift"
        )
    pick = _uniform_below(choices, generator)
    return torch.where(pick < before, pick, centres + min_shift + (pick - before))


def cut_sync_pairs(
    video: torch.Tensor, audio: torch.Tensor, centres: torch.Tensor, audio_centres: torch.Tensor | None = None,
    snippet_frames: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(snippets B×5×3×H×W, audio windows B×window) for the sync discriminator.

    `audio` holds the per-frame windows (B×T×window, Eq. 1): the window of frame c spans exactly the
    0.2 s of frames c-2..c+2, so the in-sync pair of centre c is (video[c-2 : c+3], audio[c]).
    `audio_centres` picks the audio of other frames (out-of-sync pairs, see `sample_shifted_centres`);
    a shifted recording supplied by the dataset can be passed as `audio` instead. Pass the generated
    video with the real audio for the fake pairs p_f.
    """
    if video.dim() != 5 or audio.dim() != 3 or audio.shape[:2] != video.shape[:2]:
        raise DiscriminatorInputError(
            f"cut_sync_pairs needs a B×T×3×H×W video and B×T×window audio windows, got {tuple(video.shape)} and {tuple(audio.shape)}"
        )
    batch, frames = video.shape[:2]
    half = snippet_frames // 2
    centres = centres.to(video.device).long()
    audio_centres = centres if audio_centres is None else audio_centres.to(video.device).long()
    if tuple(centres.shape) != (batch,) or tuple(audio_centres.shape) != (batch,):
        raise DiscriminatorInputError(f"give one centre frame per clip ({batch}), got {tuple(centres.shape)} and {tuple(audio_centres.shape)}")
    if (centres < half).any() or (centres > frames - 1 - half).any():
        raise DiscriminatorInputError(f"snippet centres must lie in [{half}, {frames - 1 - half}] for {frames}-frame clips, got {centres.tolist()}")
    if (audio_centres < 0).any() or (audio_centres >= frames).any():
        raise DiscriminatorInputError(f"audio centres must lie in [0, {frames - 1}], got {audio_centres.tolist()}")
    rows = torch.arange(batch, device=video.device)
    snippet_index = centres[:, None] + torch.arange(-half, half + 1, device=video.device)[None]  # B×5
    return video[rows[:, None], snippet_index], audio[rows, audio_centres]
