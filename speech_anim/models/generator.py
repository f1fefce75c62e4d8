"""The temporal generator (paper §3.1, Fig. 4): still face + speech windows -> video frames.

    still (B×3×128×96) --IdentityEncoder--> z_id (128), U-Net skip maps      once per clip
    audio (B×T×3200)   --ContentEncoder---> z_c (256 per frame, GRU)        streaming, stateful
    N(0, 0.6) noise    --NoiseGenerator---> z_n (10 per frame, GRU)         streaming, stateful
    [z_c, z_id, z_n]   --FrameDecoder-----> frames (B×T×3×128×96, tanh)     all B·T frames in one batch

With `eye_input=True` (not in the paper) the decoder also reads each frame's eye closure 1 - o_t, where
o_t is the eye openness: the real clip's in training, drawn from the learnt `EyeProcess` at inference
(models/eye_process.py explains why).

With `output="blend"` (not in the paper) the decoder also emits a per-pixel mask α and each frame is
α·decoded + (1-α)·still: the still's pixels pass through wherever the face does not move, so the
identity is right from the first step and training spends itself on the mouth and eyes. The paper's
generator (`output="frame"`) must re-synthesise every pixel through the skips, which on a CPU budget
of a few thousand steps leaves the upper face a blur (see model_card.md).

With `mouth_motion=True` as well (not in the paper) the still that the blend lets through is not the
still itself but, frame by frame, the still with its jaw and lips warped to where a `MouthMotion`
model, learnt from real landmarks, puts them for the speech (models/mouth_motion.py explains why).
With `eyelids="warp"` or `"both"` (not in the paper) that warp also shuts the still's own eyelids by
the frame's closure, under a decoder given open eyes or under the decoder's own lids.

Everything that depends only on the still (identity code and the decoder's skip contributions) is
computed once per clip and kept in `GeneratorState`, so generating a clip chunk by chunk costs the
same as one pass and, in eval mode, gives the same frames (the GRU states are carried along).
"""

import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from ..errors import AudioError, ImageError
from .eye_process import EyeProcess, EyeProcessConfig
from .hub import SafeHubMixin
from .mouth_motion import MouthMotion, MouthMotionConfig
from .syncnet import LUMA  # BT.601 luma weights: the brightness eye_colour="still" keeps
from .warp import warp_still

FRAME_HEIGHT, FRAME_WIDTH = 128, 96
# Five stride-2 stages take 128×96 to 4×3; the decoder fuses the identity maps of the deepest four.
ENCODER_CHANNELS = (64, 128, 256, 512, 1024)
OUTPUTS = ("frame", "blend")
EYELIDS = ("decoder", "warp", "both")
EYE_COLOURS = ("decoded", "still")
EYE_COLOUR_BLUR = 2.0  # px: the Gaussian the still's colour is blurred by for eye_colour="still"
# Blend mask starts at sigmoid(-2) ≈ 0.12: the first frames are nearly the still, not grey noise.
BLEND_MASK_BIAS = -2.0
SKIP_LEVELS = 4
AUDIO_CHANNELS = (16, 32, 64, 128, 256, 512)
# The eye maps (FrameDecoder, eye_input) are stored divided by this gain, as StyleGAN's equalised
# learning rate stores its weights: Adam moves a parameter by about lr per step whatever its gradient,
# and at lr 1e-4 a map that must grow to the size of the features (about 1) would take 10^4 steps.
EYE_MAP_GAIN = 50.0
# Where the eye closure may change the frame (eye_input): rows and columns of the canonical 128×96 crop
# around its brows (rows 36-43, columns 18-77) and eyes (rows 46-51, columns 25-70), with a margin, and
# a linear ramp of EYE_REGION_FEATHER pixels to the rest, which is decoded with the eyes open. Without
# this, the blinks the decoder learnt on s1 speckled the hair and background of every face (the
# closure reaches the whole frame through the latent), most of all on faces it never saw.
EYE_REGION = ((32, 62), (14, 82))  # (top, bottom), (left, right)
EYE_REGION_FEATHER = 4.0


def eye_region(height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH) -> torch.Tensor:
    """H×W weights: 1 inside EYE_REGION, 0 beyond its feather."""
    (top, bottom), (left, right) = EYE_REGION

    def ramp(n, lo, hi):
        x = torch.arange(n, dtype=torch.float32) + 0.5
        return ((x - lo) / EYE_REGION_FEATHER + 1).clamp(0, 1) * ((hi - x) / EYE_REGION_FEATHER + 1).clamp(0, 1)

    return ramp(height, top, bottom)[:, None] * ramp(width, left, right)[None, :]


@dataclass
class GeneratorConfig:
    """Sizes of the generator. `width` scales every conv channel count (1.0 = paper).

    `audio_gru_layers=1` is the paper; 2 reproduces the size of the authors' released model (~56 M).
    """

    width: float = 1.0
    audio_gru_layers: int = 1
    id_dim: int = 128
    content_dim: int = 256
    noise_dim: int = 10
    noise_variance: float = 0.6
    sample_rate: int = 16000
    fps: float = 25.0
    window_samples: int = 3200  # 0.2 s of audio per video frame (Eq. 1)
    output: str = "frame"  # "frame": the paper's decoder; "blend": decoded frame blended over the still
    eye_input: bool = False  # not the paper: the decoder reads the eye openness, drawn by an EyeProcess
    # Not in the paper: the eye process's draws are widened about open eyes before decoding,
    # o <- max(0, 1 + eye_gain (o - 1)). A trained decoder may draw a closure c as less than c (ours:
    # about 0.86 c, so that half-closed lids looked nearly open and shallow blinks were lost); the
    # gain is calibrated on validation clips after training (model_card.md). Openness given by the
    # caller (training, tests) is decoded as it is.
    eye_gain: float = 1.0
    # Not in the paper either, and in place of eye_gain: the decoder's measured eye response undone
    # (scripts/eye_response.py). eye_curve[k] is the openness to decode so that the frames show
    # openness k / (len - 1), for drawn openness in [0, 1] by linear interpolation (above 1 shifted
    # by eye_curve[-1] - 1). The response is not linear: a drawn 0.8 renders as 0.9, a drawn 0.5 as
    # 0.6, so the gain that deepened the bottoms of blinks left their first and last frames open.
    eye_curve: tuple[float, ...] = ()
    mouth_motion: bool = False  # not the paper: the blend's still moves its mouth (MouthMotion + warp)
    mouth_cepstra: int = 0  # its MouthMotionConfig.cepstra (0: it reads the log-mel bands)
    mouth_phones: int = 0  # its MouthMotionConfig.phones (0: it reads no phones; speech_anim/phones.py)
    # Not in the paper: who draws the eyelids of an eye_input generator. "decoder": the decoder, from the
    # closure 1 - o_t it reads. "warp" (needs mouth_motion): the moving still's own eyelids, shut by the
    # warp (models/warp.py) by the eye process's draw, under a decoder given open eyes, so that blinks
    # show in full on faces on which the decoder, which learnt its blinks on three GRID speakers, draws
    # them faintly or smeared. "both": the warp's lids under the decoder's. Needs no training: with open
    # eyes the warp is the mouth's alone.
    eyelids: str = "decoder"
    # Not in the paper: the colour of the eye region during a blink. "decoded": the decoder's, which
    # learnt the lids of three GRID speakers and draws them reddish on other faces. "still" (needs
    # eyelids="both"): as far as the lids close, the decoded frame's brightness with the colour of the
    # moving still, whose own lids the warp shut, blurred (EYE_COLOUR_BLUR) so the slit between them
    # takes the lids' colour. Brightness is what the blink detector reads; nothing is trained.
    eye_colour: str = "decoded"

    def __post_init__(self):
        if not self.width > 0:
            raise ValueError(f"GeneratorConfig.width must be > 0, got {self.width}")
        if self.audio_gru_layers < 1:
            raise ValueError(f"GeneratorConfig.audio_gru_layers must be >= 1, got {self.audio_gru_layers}")
        for name in ("id_dim", "content_dim", "noise_dim", "sample_rate", "window_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"GeneratorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.output not in OUTPUTS:
            raise ValueError(f"GeneratorConfig.output must be one of {OUTPUTS}, got {self.output!r}")
        if self.mouth_motion and self.output != "blend":
            raise ValueError("GeneratorConfig.mouth_motion moves the still that output='blend' lets through: set output='blend'")
        for name in ("mouth_cepstra", "mouth_phones"):
            if getattr(self, name) and not self.mouth_motion:
                raise ValueError(f"GeneratorConfig.{name} configures the mouth motion: set mouth_motion=True or {name}=0")
        if self.eyelids not in EYELIDS:
            raise ValueError(f"GeneratorConfig.eyelids must be one of {EYELIDS}, got {self.eyelids!r}")
        if self.eyelids != "decoder" and not (self.eye_input and self.mouth_motion):
            raise ValueError(f"GeneratorConfig.eyelids={self.eyelids!r} shuts the moving still's eyelids by the eye input: "
                             "set eye_input=True and mouth_motion=True, or eyelids='decoder'")  # fmt: skip
        if self.eye_colour not in EYE_COLOURS:
            raise ValueError(f"GeneratorConfig.eye_colour must be one of {EYE_COLOURS}, got {self.eye_colour!r}")
        if self.eye_colour == "still" and self.eyelids != "both":
            raise ValueError("GeneratorConfig.eye_colour='still' takes the colour of the still whose lids the warp shuts: "
                             "set eyelids='both'")
        if not self.eye_gain > 0:
            raise ValueError(f"GeneratorConfig.eye_gain must be > 0 (1 decodes the eye process's draws as they are), got {self.eye_gain}")
        self.eye_curve = tuple(float(x) for x in self.eye_curve)  # config.json holds a list
        if self.eye_curve:
            if len(self.eye_curve) < 2 or any(b < a for a, b in zip(self.eye_curve, self.eye_curve[1:])) or self.eye_curve[0] < 0:
                raise ValueError("GeneratorConfig.eye_curve must be at least 2 non-decreasing openness values >= 0 "
                                 f"(scripts/eye_response.py prints one), got {self.eye_curve}")
            if self.eye_gain != 1.0:
                raise ValueError("GeneratorConfig.eye_curve replaces eye_gain: set eye_gain=1.0 or eye_curve=()")

    def channels(self, base: int) -> int:
        return max(1, round(base * self.width))


@dataclass
class GeneratorState:
    """What a chunk hands to the next one: per-clip identity features and the two GRU states."""

    z_id: torch.Tensor  # B×id_dim
    skips: list[torch.Tensor]  # the decoder's per-clip skip contributions
    content: torch.Tensor | None = None  # layers×B×content_dim
    noise: torch.Tensor | None = None  # 1×B×noise_dim
    still: torch.Tensor | None = None  # B×3×H×W, kept for output="blend"
    eyes: tuple | None = None  # the EyeProcess's sampling state (EyeProcess.sample), for eye_input
    still_landmarks: torch.Tensor | None = None  # B×68×2 crop pixels, for mouth_motion
    mouth: torch.Tensor | None = None  # the MouthMotion GRU's state, for mouth_motion

    def detach(self) -> "GeneratorState":
        """Cut the autograd graph (truncated back-propagation through time)."""
        def cut(t):
            return None if t is None else t.detach()

        eyes = None if self.eyes is None else tuple(t.detach() for t in self.eyes)
        return GeneratorState(self.z_id.detach(), [s.detach() for s in self.skips], cut(self.content), cut(self.noise),
                              cut(self.still), eyes, cut(self.still_landmarks), cut(self.mouth))


def _conv_bn_relu(conv: nn.Module, channels: int, dims: int = 2) -> nn.Sequential:
    norm = nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    return nn.Sequential(conv, norm, nn.ReLU(inplace=True))


class IdentityEncoder(nn.Module):
    """Still face -> identity code z_id (tanh) and the intermediate maps for the U-Net skips."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        channels = [3] + [config.channels(c) for c in ENCODER_CHANNELS]
        self.blocks = nn.ModuleList(
            _conv_bn_relu(nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False), cout)
            for cin, cout in zip(channels[:-1], channels[1:])
        )
        final = (FRAME_HEIGHT >> len(ENCODER_CHANNELS), FRAME_WIDTH >> len(ENCODER_CHANNELS))  # 4×3
        self.to_code = nn.Conv2d(channels[-1], config.id_dim, final)

    def forward(self, still: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps = []
        x = still
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return torch.tanh(self.to_code(x).flatten(1)), maps


class ContentEncoder(nn.Module):
    """Raw 0.2 s waveform windows -> z_c per frame: 1-D convs per window, then a GRU across frames.

    The first kernel spans 5 ms with a 1 ms stride: long first filters on raw audio act as a learned
    band-pass filter bank (Dai et al., 2017, "Very deep CNNs for raw waveforms").
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        kernel, stride = round(0.005 * config.sample_rate), round(0.001 * config.sample_rate)
        padding = kernel // 2 - stride // 2  # one output per stride: 3200 samples -> 200 steps
        channels = [config.channels(c) for c in AUDIO_CHANNELS]
        layers = [_conv_bn_relu(nn.Conv1d(1, channels[0], kernel, stride, padding, bias=False), channels[0], dims=1)]
        length = (config.window_samples + 2 * padding - kernel) // stride + 1
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers.append(_conv_bn_relu(nn.Conv1d(cin, cout, 4, stride=2, padding=1, bias=False), cout, dims=1))
            length = length // 2
        if length < 1:
            raise ValueError(f"window_samples={config.window_samples} is too short for the audio encoder")
        self.convs = nn.Sequential(*layers)
        self.to_code = nn.Conv1d(channels[-1], config.content_dim, length)  # over what is left of the window
        self.gru = nn.GRU(config.content_dim, config.content_dim, config.audio_gru_layers, batch_first=True)
        self.window_samples = config.window_samples

    def forward(self, audio: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, samples = audio.shape
        codes = torch.tanh(self.to_code(self.convs(audio.reshape(batch * frames, 1, samples))))
        return self.gru(codes.view(batch, frames, -1), hidden)


class NoiseGenerator(nn.Module):
    """Per-frame Gaussian noise through a GRU: temporally coherent randomness (blinks, brows)."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.gru = nn.GRU(config.noise_dim, config.noise_dim, batch_first=True)
        self.noise_dim = config.noise_dim
        self.std = math.sqrt(config.noise_variance)

    def sample(self, batch: int, frames: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """B×T×noise_dim noise drawn frame by frame, so that consecutive chunks drawn from one
        `generator` give exactly the numbers of a single draw of the whole clip."""
        if generator is not None:
            device = generator.device
        draws = [torch.randn(batch, self.noise_dim, generator=generator, device=device) for _ in range(frames)]
        return self.std * torch.stack(draws, dim=1) if draws else torch.zeros(batch, 0, self.noise_dim, device=device)

    def forward(self, noise: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gru(noise, hidden)


class FrameDecoder(nn.Module):
    """Per-frame latent -> frame, with U-Net skips from the identity encoder (paper Fig. 4).

    At each of the four coarsest scales a 3×3 conv fuses [x, skip]; it is split into a conv on x and a
    conv on the skip (the same linear map), because the skip half depends only on the still and is
    computed once per clip by `encode_skips` instead of once per frame.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        channels = [config.channels(c) for c in reversed(ENCODER_CHANNELS)]  # 1024 … 64
        latent = config.content_dim + config.id_dim + config.noise_dim + int(config.eye_input)
        self.start = (FRAME_HEIGHT >> len(ENCODER_CHANNELS), FRAME_WIDTH >> len(ENCODER_CHANNELS))
        self.project = nn.Linear(latent, channels[0] * self.start[0] * self.start[1], bias=False)
        self.project_norm = nn.BatchNorm2d(channels[0])
        self.fuse_x = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1, bias=False) for c in channels[:SKIP_LEVELS])
        self.fuse_skip = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1, bias=False) for c in channels[:SKIP_LEVELS])
        self.fuse_norm = nn.ModuleList(nn.BatchNorm2d(c) for c in channels[:SKIP_LEVELS])
        self.up = nn.ModuleList(
            _conv_bn_relu(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False), cout)
            for cin, cout in zip(channels[:SKIP_LEVELS], channels[1:])
        )
        self.blend = config.output == "blend"
        self.to_rgb = nn.ConvTranspose2d(channels[-1], 4 if self.blend else 3, 4, stride=2, padding=1)
        if config.eye_input:
            # The closure also enters every scale as closure × a learnt map (C×h×w) added to the decoder's
            # features: through the 4×3 latent alone one number hardly moved the lids in 200 CPU steps,
            # while a map per scale gets a gradient at every pixel of the eyes. Zero at first, so a
            # generator started from one without eyes draws what it drew.
            sizes = [(c, self.start[0] << i, self.start[1] << i) for i, c in enumerate(channels[:SKIP_LEVELS])]
            sizes.append((channels[-1], FRAME_HEIGHT // 2, FRAME_WIDTH // 2))  # the input of to_rgb
            self.eye_maps = nn.ParameterList(nn.Parameter(torch.zeros(size)) for size in sizes)
        else:
            self.eye_maps = None

    def encode_skips(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-clip skip contributions from the identity encoder's maps (coarsest first)."""
        deepest = list(reversed(maps))[:SKIP_LEVELS]
        return [conv(m) for conv, m in zip(self.fuse_skip, deepest)]

    def forward(self, latent: torch.Tensor, skips: list[torch.Tensor], still: torch.Tensor | None = None,
                return_layers: bool = False, closure: torch.Tensor | None = None):
        """Frames B×T×3×H×W; with `return_layers` (blend only) also the blend mask α, B×T×1×H×W, and the
        decoded frame it lets through, B×T×3×H×W. `closure` (B×T, eye_input only): 1 - eye openness."""
        batch, frames, _ = latent.shape
        x = self.project(latent.reshape(batch * frames, -1)).view(batch * frames, -1, *self.start)
        x = torch.relu(self.project_norm(x))
        eyes = ([None] * (SKIP_LEVELS + 1) if closure is None
                else [closure.reshape(-1, 1, 1, 1) * (EYE_MAP_GAIN * m) for m in self.eye_maps])
        for fuse_x, skip, norm, up, eye in zip(self.fuse_x, skips, self.fuse_norm, self.up, eyes):
            if eye is not None:
                x = x + eye
            y = fuse_x(x)
            # Broadcast the clip's skip over its frames without copying it T times.
            y = (y.view(batch, frames, *y.shape[1:]) + skip[:, None]).view_as(y)
            x = up(torch.relu(norm(y)))
        if eyes[-1] is not None:
            x = x + eyes[-1]
        out = self.to_rgb(x).view(batch, frames, -1, FRAME_HEIGHT, FRAME_WIDTH)
        if not self.blend:
            return torch.tanh(out)
        alpha, decoded = torch.sigmoid(out[:, :, 3:]), torch.tanh(out[:, :, :3])
        # `still` is B×3×H×W, or B×T×3×H×W when it moves (mouth_motion).
        video = alpha * decoded + (1 - alpha) * (still if still.dim() == 5 else still[:, None])
        return (video, alpha, decoded) if return_layers else video


class Generator(nn.Module, SafeHubMixin):
    """Still face + per-frame audio windows -> talking-head video in [-1, 1]."""

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        if config is None:
            config = GeneratorConfig()
        elif isinstance(config, dict):
            config = GeneratorConfig(**config)
        self.config = config
        self._hub_mixin_config = config  # what save_pretrained writes to config.json
        self.identity_encoder = IdentityEncoder(config)
        self.content_encoder = ContentEncoder(config)
        self.noise_generator = NoiseGenerator(config)
        self.decoder = FrameDecoder(config)
        self.eye_process = EyeProcess(EyeProcessConfig(fps=config.fps)) if config.eye_input else None
        self.mouth_motion = (MouthMotion(MouthMotionConfig(sample_rate=config.sample_rate, window_samples=config.window_samples,
                                                           fps=config.fps, cepstra=config.mouth_cepstra,
                                                           phones=config.mouth_phones))
                             if config.mouth_motion else None)  # fmt: skip
        if config.eye_input:  # not saved: a function of the crop's geometry
            self.register_buffer("eye_region", eye_region(), persistent=False)
        self.apply(_init_weights)
        if config.output == "blend":
            nn.init.constant_(self.decoder.to_rgb.bias[3], BLEND_MASK_BIAS)

    def set_eye_gain(self, gain: float) -> None:
        """Decode the eye process's draws with this GeneratorConfig.eye_gain from now on, in place of any
        eye curve (and save it with the model): how a gain calibrated on validation clips is tried and shipped."""
        if not self.config.eye_input:
            raise ValueError("this generator has no eye input (eye_input=False), so no eye gain to set: drop the gain")
        self._reconfigure(eye_gain=gain, eye_curve=())

    def set_eye_curve(self, curve) -> None:
        """Decode the eye process's draws through this GeneratorConfig.eye_curve from now on (and save
        it with the model), in place of any eye gain: how a measured eye response is undone and shipped."""
        if not self.config.eye_input:
            raise ValueError("this generator has no eye input (eye_input=False), so no eye curve to set: drop the curve")
        self._reconfigure(eye_curve=tuple(curve), eye_gain=1.0)

    def set_eyelids(self, eyelids: str) -> None:
        """Draw the eyelids this way (GeneratorConfig.eyelids) from now on, and save it with the model;
        nothing is retrained, so a trained generator can be screened and shipped either way."""
        self._reconfigure(eyelids=eyelids)

    def set_eye_colour(self, eye_colour: str) -> None:
        """Colour the closing eyes this way (GeneratorConfig.eye_colour) from now on, and save it with
        the model; nothing is retrained."""
        self._reconfigure(eye_colour=eye_colour)

    def _reconfigure(self, **changes) -> None:
        # The settings that need no new weights: GeneratorConfig checks the changed values, and
        # save_pretrained writes what is set here.
        self.config = replace(self.config, **changes)
        self._hub_mixin_config = self.config

    def decode_openness(self, drawn: torch.Tensor) -> torch.Tensor:
        """The openness the decoder is given for the eye process's draws: through eye_curve, or widened
        by eye_gain, or as drawn."""
        if self.config.eye_curve:
            knots = torch.tensor(self.config.eye_curve, dtype=drawn.dtype, device=drawn.device)
            position = drawn.clamp(0.0, 1.0) * (len(knots) - 1)
            low = position.floor().long().clamp(max=len(knots) - 2)
            inside = knots[low] + (position - low) * (knots[low + 1] - knots[low])
            return torch.where(drawn > 1.0, drawn - 1.0 + knots[-1], inside)
        if self.config.eye_gain != 1.0:
            return (1.0 + self.config.eye_gain * (drawn - 1.0)).clamp(min=0.0)
        return drawn

    def sample_noise(self, batch: int, frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """B×T×noise_dim noise, N(0, noise_variance); chunk-invariant for a given `generator`."""
        device = None if generator is not None else next(self.parameters()).device
        return self.noise_generator.sample(batch, frames, generator, device)

    def init_state(self, still: torch.Tensor, still_landmarks: torch.Tensor | None = None) -> GeneratorState:
        """Encode the still once: identity code and decoder skips for every chunk of the clip.
        `still_landmarks` (B×68×2, crop pixels, e.g. `face.crop_landmarks`) are needed with mouth_motion."""
        if still.dim() != 4 or tuple(still.shape[1:]) != (3, FRAME_HEIGHT, FRAME_WIDTH):
            raise ImageError(f"still must be B×3×{FRAME_HEIGHT}×{FRAME_WIDTH}, got {tuple(still.shape)}; align the face first")
        if self.config.mouth_motion:
            if still_landmarks is None:
                raise ValueError("this generator moves the still's mouth (mouth_motion): pass still_landmarks, "
                                 "B×68×2 in crop pixels (face.crop_landmarks of the crop)")  # fmt: skip
            if tuple(still_landmarks.shape) != (still.shape[0], 68, 2):
                raise ValueError(f"still_landmarks must be {still.shape[0]}×68×2 (crop pixels), got {tuple(still_landmarks.shape)}")
            still_landmarks = still_landmarks.to(still)
        else:
            still_landmarks = None
        z_id, maps = self.identity_encoder(still)
        return GeneratorState(z_id, self.decoder.encode_skips(maps), still=still if self.config.output == "blend" else None,
                              still_landmarks=still_landmarks)  # fmt: skip

    def forward(self, still: torch.Tensor | None, audio: torch.Tensor, noise: torch.Tensor | None = None,
                state: GeneratorState | None = None, return_state: bool = False,
                generator: torch.Generator | None = None, return_layers: bool = False,
                openness: torch.Tensor | None = None, still_landmarks: torch.Tensor | None = None,
                phones: torch.Tensor | None = None):
        """Frames B×T×3×128×96 for audio windows B×T×window_samples.

        `noise` (B×T×noise_dim) defaults to `sample_noise(B, T, generator)`. With eye_input, `openness`
        (B×T, 1 = open) defaults to the eye process's draw from `generator` (after the noise's, if that
        is drawn too; pass `noise` to draw chunk-invariant eyes from `generator`). With `state` (from a
        previous chunk's `return_state=True`, or `init_state`) the still is not encoded again and may be
        None; the returned state continues the clip. `return_layers` (output="blend" only) also returns the
        blend mask α (B×T×1×128×96) and the decoded frames it blends over the still (B×T×3×128×96), after
        the video and before the state, for `losses.blend_mask_l1` and `losses.decoded_frame_l1`.
        `still_landmarks` (B×68×2 crop pixels) go with the still for a mouth_motion generator. `phones`
        (B×T×columns labels, `MouthMotion.window_phones`) go to a mouth motion that reads them; without
        them it recognises them in `audio`, which must then be whole clips (the Animator streams them).
        """
        if audio.dim() != 3 or audio.shape[2] != self.config.window_samples or audio.shape[1] == 0:
            raise AudioError(f"audio must be B×T×{self.config.window_samples} windows with T >= 1, got {tuple(audio.shape)}")
        if return_layers and self.config.output != "blend":
            raise ValueError(f"return_layers needs output='blend' (this generator's output is {self.config.output!r})")
        if state is None:
            if still is None:
                raise ImageError("Generator needs a still image (or a state from a previous chunk)")
            state = self.init_state(still, still_landmarks)
        batch, frames = audio.shape[:2]
        if state.z_id.shape[0] != batch:
            raise AudioError(f"audio batch {batch} does not match the still batch {state.z_id.shape[0]}")
        if noise is None:
            noise = self.sample_noise(batch, frames, generator)
        elif tuple(noise.shape) != (batch, frames, self.config.noise_dim):
            raise ValueError(f"noise must be {batch}×{frames}×{self.config.noise_dim}, got {tuple(noise.shape)}")

        eye_state = state.eyes
        if phones is not None and not self.config.mouth_phones:
            raise ValueError("this generator's mouth motion reads no phones (mouth_phones=0): drop them")
        if not self.config.eye_input:
            if openness is not None:
                raise ValueError("this generator has no eye input (eye_input=False): drop the openness")
        elif openness is None:
            openness, eye_state = self.eye_process.sample(batch, frames, generator, state.eyes)
            openness = self.decode_openness(openness)
        elif tuple(openness.shape) != (batch, frames):
            raise ValueError(f"openness must be {batch}×{frames}, got {tuple(openness.shape)}")

        z_c, content_state = self.content_encoder(audio, state.content)
        z_n, noise_state = self.noise_generator(noise.to(z_c), state.noise)
        z_id = state.z_id[:, None].expand(batch, frames, -1)
        latent = torch.cat([z_c, z_id, z_n], dim=-1)
        still, mouth_state = state.still, state.mouth
        if self.config.mouth_motion:
            displacement, mouth_state = self.mouth_motion(audio, state.mouth, phones)
            # eye_gain and eye_curve, measured on the renderer (scripts/eye_response.py), apply to the warp too.
            lids = 1.0 - openness.to(displacement) if self.config.eyelids != "decoder" else None
            still = warp_still(state.still, state.still_landmarks, displacement, lids)  # B×T×3×H×W
        if self.config.eye_input:  # the latent with open eyes: closure 0, whose eye maps add nothing
            shut = latent.new_zeros(batch, frames)
            opened = torch.cat([latent, shut[..., None]], -1)
        if self.config.eyelids == "warp":  # decoded with open eyes only
            video = self.decoder(opened, state.skips, still, return_layers=return_layers)
        elif not self.config.eye_input:
            video = self.decoder(latent, state.skips, still, return_layers=return_layers)
        else:
            # Decoded twice in one batch, with the frame's eyes and with open eyes: the first inside the
            # eye region, the second everywhere else.
            closure = 1.0 - openness.to(z_c)
            both = torch.cat([torch.cat([latent, closure[..., None]], -1), opened])
            skips = [skip.repeat(2, 1, 1, 1) for skip in state.skips]
            still = None if still is None else still.repeat(2, *[1] * (still.dim() - 1))
            out = self.decoder(both, skips, still, return_layers=return_layers, closure=torch.cat([closure, shut]))
            region = self.eye_region.to(z_c)
            layers = out if return_layers else (out,)  # (video,) or (video, alpha, decoded)
            mixed = tuple(region * eyes + (1 - region) * opened for eyes, opened in (layer.chunk(2) for layer in layers))
            if self.config.eye_colour == "still":
                # Where and as far as the lids close: the frame's brightness, the moving still's colour.
                shut_region = region * closure.clamp(0, 1)[..., None, None, None]
                mixed = (recolour(mixed[0], still.chunk(2)[0], shut_region), *mixed[1:])
            video = mixed if return_layers else mixed[0]
        if not return_state:
            return video
        state = GeneratorState(state.z_id, state.skips, content_state, noise_state, state.still, eye_state,
                               state.still_landmarks, mouth_state)
        return (*video, state) if return_layers else (video, state)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


def recolour(video: torch.Tensor, still: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """video (..., 3, H, W) with, by `weight` (broadcast to it), its luma kept and its colour (RGB
    minus luma) that of `still` (the same shape), blurred by EYE_COLOUR_BLUR."""
    luma = video.new_tensor(LUMA).view(3, 1, 1)
    colour = still - (still * luma).sum(-3, keepdim=True)
    colour = gaussian_blur(colour.reshape(-1, *colour.shape[-3:]), EYE_COLOUR_BLUR).reshape(colour.shape)
    recoloured = (video * luma).sum(-3, keepdim=True) + colour
    return weight * recoloured + (1 - weight) * video


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """N×C×H×W blurred by a Gaussian of `sigma` px (separable, edges replicated)."""
    radius = max(1, int(round(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).repeat(images.shape[1], 1)[:, None]  # C×1×K
    padded = nn.functional.pad(images, (radius, radius, radius, radius), mode="replicate")
    across = nn.functional.conv2d(padded, kernel[..., None, :], groups=images.shape[1])
    return nn.functional.conv2d(across, kernel[..., :, None], groups=images.shape[1])


def _init_weights(module: nn.Module) -> None:
    # DCGAN initialisation for the convolutions; GRUs and linears keep PyTorch's defaults.
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _mouth_motion_source(path) -> tuple[dict, bool]:
    """The config.json in `path` and whether it is a generator's (with mouth_motion) rather than a fit's."""
    import json
    from pathlib import Path

    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{path} has no config.json: give a train/fit_mouth_motion.py folder or a generator with mouth_motion")
    values = json.loads(config.read_text())
    if "mouth_motion" not in values:
        return values, False
    if not values["mouth_motion"]:
        raise ValueError(f"{path} is a generator without mouth_motion: give one with it or a train/fit_mouth_motion.py folder")
    return values, True


def mouth_motion_front_end(path) -> tuple[int, int]:
    """MouthMotionConfig (cepstra, phones) of the MouthMotion that `load_mouth_motion(path)` loads, from its config alone."""
    values, is_generator = _mouth_motion_source(path)
    if is_generator:
        return values.get("mouth_cepstra", 0), values.get("mouth_phones", 0)
    config = MouthMotionConfig(**values)
    return config.cepstra, config.phones


def load_mouth_motion(path) -> MouthMotion:
    """The MouthMotion in `path`: a train/fit_mouth_motion.py folder, or a generator folder with
    mouth_motion (the shipped model, say), whose own is taken out."""
    _, is_generator = _mouth_motion_source(path)
    if not is_generator:
        return MouthMotion.from_pretrained(str(path))
    return Generator.from_pretrained(str(path)).mouth_motion
