"""SyncNet-style audio-visual sync expert (after Chung & Zisserman, "Out of time", ACCV-W 2016).

A frozen evaluator, separate from the GAN's sync discriminator: two small conv streams embed
  - 0.2 s of speech (one `frame_audio` window, as a log-mel spectrogram), and
  - the 5 video frames that span the same 0.2 s (a grayscale box of the aligned 128×96 crop around
    the mouth and jaw, at half resolution, stacked as channels: early fusion),
onto the unit sphere, where in-sync pairs are close and shifted pairs are far (Euclidean distance,
trained with the contrastive loss by `scripts/train_syncnet.py` on the train split only).

Audio window `t` is centred on video frame `t` (see `speech_anim.audio`), and so is the video
window `t - 2 .. t + 2`: an in-sync pair is (video window t, audio window t).

The expert shipped in the package lives in `speech_anim/assets/syncnet.{json,safetensors}`;
`load_expert()` returns it frozen, in eval mode.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, VideoError
from .hub import SafeHubMixin, load_weights

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets"
EXPERT_CONFIG = ASSET_DIR / "syncnet.json"
EXPERT_WEIGHTS = ASSET_DIR / "syncnet.safetensors"

CROP_HEIGHT, CROP_WIDTH = 128, 96  # the canonical aligned crop (speech_anim.face)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 RGB -> gray


@dataclass
class SyncNetConfig:
    embed_dim: int = 128
    width: int = 16  # channels of the first conv stage; each later stage doubles it, up to 4×
    video_frames: int = 5  # 5 frames at 25 fps = the 0.2 s of one audio window
    # The mouth box in crop pixels (top, bottom, left, right): the canonical face's mouth spans
    # x 35..60, y 84..94 and its chin is at y 112, so this holds the lips and the jaw's travel.
    mouth_box: tuple[int, int, int, int] = (64, 120, 16, 80)
    mouth_scale: int = 2  # the box is averaged down by this factor
    sample_rate: int = 16000
    audio_window: int = 3200
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms -> 21 spectrogram columns per 0.2 s window
    n_mels: int = 40

    @property
    def mouth_shape(self) -> tuple[int, int]:
        top, bottom, left, right = self.mouth_box
        return (bottom - top) // self.mouth_scale, (right - left) // self.mouth_scale


class LogMel(nn.Module):
    """Fixed log-mel front end (not trained, not saved: the same on every machine), shared by the sync
    expert and models/mouth_motion.py: (N, samples) waveforms in [-1, 1] -> (N, n_mels, columns)."""

    def __init__(self, sample_rate: int, n_fft: int, win_length: int, hop_length: int, n_mels: int):
        super().__init__()
        import librosa

        mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("stft_window", torch.hann_window(win_length), persistent=False)
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(windows, self.n_fft, self.hop_length, self.win_length, self.stft_window,
                          center=True, pad_mode="constant", return_complex=True)  # fmt: skip
        # dB-like compression with a floor well below GRID's background noise; /4 keeps values O(1).
        return torch.log(self.mel_basis @ spec.abs().pow(2) + 1e-6) / 4.0


def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _stream(cin: int, width: int, embed_dim: int, input_hw: tuple[int, int]) -> nn.Sequential:
    """conv stem + three stride-2 stages, then a linear layer on the flattened map: the flatten
    keeps *where* in the window things happen, which is what sync is about."""
    w1, w2, w3 = width, 2 * width, 4 * width
    convs = nn.Sequential(_stage(cin, w1, 1), _stage(w1, w2, 2), _stage(w2, w3, 2), _stage(w3, w3, 2))
    with torch.no_grad():
        flat = convs(torch.zeros(1, cin, *input_hw)).numel()
    return nn.Sequential(convs, nn.Flatten(), nn.Dropout(0.2), nn.Linear(flat, embed_dim))


class SyncNet(nn.Module, SafeHubMixin):
    """Embeds audio windows and mouth windows so that in-sync pairs are close."""

    def __init__(self, config: SyncNetConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = SyncNetConfig(**config)
        if config is not None:
            config.mouth_box = tuple(config.mouth_box)  # a list after a trip through JSON
        self.config = config = config or SyncNetConfig()
        self._hub_mixin_config = config  # what save_pretrained writes to config.json
        self.front_end = LogMel(config.sample_rate, config.n_fft, config.win_length, config.hop_length, config.n_mels)
        columns = config.audio_window // config.hop_length + 1
        self.audio = _stream(1, config.width, config.embed_dim, (config.n_mels, columns))
        self.video = _stream(config.video_frames, config.width, config.embed_dim, config.mouth_shape)

    def log_mel(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, 3200) waveforms in [-1, 1] -> (B, 1, n_mels, 21) log-mel spectrograms."""
        return self.front_end(windows).unsqueeze(1)

    def embed_audio(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, 3200) audio windows -> (B, embed_dim) unit vectors."""
        return self.embed_log_mel(self.log_mel(windows))

    def embed_log_mel(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, 21) spectrograms from `log_mel` -> (B, embed_dim) unit vectors."""
        return F.normalize(self.audio(mels), dim=-1)

    def embed_video(self, mouths: torch.Tensor) -> torch.Tensor:
        """(B, 5, h, w) mouth windows in [-1, 1] (see `mouth_windows`) -> (B, embed_dim) unit vectors."""
        return F.normalize(self.video(mouths), dim=-1)

    def forward(self, windows: torch.Tensor, mouths: torch.Tensor) -> torch.Tensor:
        """Euclidean distance between each audio window and mouth window, (B,)."""
        return (self.embed_audio(windows) - self.embed_video(mouths)).norm(dim=-1)


def mouth_frames(crops, config: SyncNetConfig | None = None) -> torch.Tensor:
    """Aligned crops (T×128×96×3 uint8 numpy, or T×3×128×96 float tensor in [-1, 1]) ->
    (T, h, w) float tensor in [-1, 1]: the grayscale mouth box at 1/`mouth_scale` resolution."""
    config = config or SyncNetConfig()
    if isinstance(crops, np.ndarray):
        if crops.ndim != 4 or crops.shape[1:] != (CROP_HEIGHT, CROP_WIDTH, 3) or crops.dtype != np.uint8:
            raise VideoError(
                f"expected aligned T×{CROP_HEIGHT}×{CROP_WIDTH}×3 uint8 crops, got {crops.dtype} {crops.shape}: "
                "align the video to the canonical crop first"
            )
        video = torch.tensor(crops).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # a copy: crops may be read-only
    else:
        video = crops.float()
        if video.ndim != 4 or tuple(video.shape[1:]) != (3, CROP_HEIGHT, CROP_WIDTH):
            raise VideoError(f"expected T×3×{CROP_HEIGHT}×{CROP_WIDTH} crops, got {tuple(video.shape)}")
    luma = torch.tensor(LUMA, dtype=video.dtype, device=video.device).view(1, 3, 1, 1)
    top, bottom, left, right = config.mouth_box
    gray = (video[:, :, top:bottom, left:right] * luma).sum(1, keepdim=True)
    return F.avg_pool2d(gray, config.mouth_scale)[:, 0]


def mouth_windows(mouths: torch.Tensor, frames: int = 5) -> torch.Tensor:
    """(T, h, w) -> (T, frames, h, w): window t holds frames t - frames//2 .. t + frames//2,
    with the first and last frame repeated past the ends."""
    half = frames // 2
    index = (torch.arange(len(mouths))[:, None] + torch.arange(-half, half + 1)[None]).clamp(0, len(mouths) - 1)
    return mouths[index.to(mouths.device)]


@lru_cache(maxsize=1)
def _expert() -> SyncNet:
    for path in (EXPERT_CONFIG, EXPERT_WEIGHTS):
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: reinstall speech_anim or train it with scripts/train_syncnet.py")
    try:
        config = json.loads(EXPERT_CONFIG.read_text())
        known = {f.name for f in fields(SyncNetConfig)}
        model = SyncNet(SyncNetConfig(**{k: v for k, v in config.items() if k in known}))
    except (json.JSONDecodeError, TypeError) as error:
        raise CheckpointError(f"{EXPERT_CONFIG} is not a valid SyncNet config ({error}); reinstall speech_anim") from None
    load_weights(model, str(EXPERT_WEIGHTS))
    model.eval().requires_grad_(False)
    return model


def load_expert() -> SyncNet:
    """The frozen sync expert shipped with the package (eval mode, no gradients, on the CPU)."""
    return _expert()


def save_expert(model: SyncNet, directory: Path = ASSET_DIR) -> None:
    """Write `model` as the shipped expert: syncnet.json + syncnet.safetensors (fp16, < 5 MB)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / EXPERT_WEIGHTS.name), metadata={"format": "pt"})
    (directory / EXPERT_CONFIG.name).write_text(json.dumps(asdict(model.config), indent=2) + "\n")
