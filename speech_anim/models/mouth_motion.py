"""Mouth motion: where the lips and jaw move while a sentence is spoken, predicted from the speech.

Not in the paper. The paper's decoder (and our blend decoder) has to draw every mouth itself; trained on
three GRID speakers on a CPU, ours learnt s1's mouth and drew other faces' mouths nearly still (s31:
inner-lip gap s.d. 0.56 px against her 2.41; landmark distance no better than a still face's). The
motion of the mouth is largely the same from face to face, a function of the sounds, while its look is
the face's own. So it is factorised, as the eyes are (models/eye_process.py):

    audio windows (B×T×3200) --MouthMotion (this file)--> displacement of the jaw and lip landmarks,
                                                          B×T×len(MOVING_POINTS)×2, crop pixels
    still + its landmarks + displacement --warp.warp_still--> the still with its mouth moved, per frame

and the generator's blend (`output="blend"`) lays its decoded layer over that moving still instead of
over the still itself. The displacement is relative to a face at rest (mouth closed, as GRID's first
frames are), learnt by regression on the real clips' landmarks (`train/fit_mouth_motion.py`), in the
canonical crop, where alignment has already brought every face to one scale.

Warping the real first frame of each s31 clip by her own landmark motion gives an LMD of 0.36 px
against 1.58 for the still (scripts/warp_oracle.py): dlib reads a warped mouth where it was moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..phones import PHONES, column_phones, label_indices, phone_track, windows_signal
from .hub import SafeHubMixin
from .syncnet import LogMel

JAW_POINTS = tuple(range(2, 15))  # iBUG 2-14: the jaw line from below the ears round the chin
LIP_POINTS = tuple(range(48, 68))  # outer and inner lip contours
MOVING_POINTS = JAW_POINTS + LIP_POINTS
# What the warp holds still: brows, nose and eyes (17-47). The jaw's ends (0-1, 15-16) sit beside the
# ears and barely move in speech; they are left out, and the crop's border anchors the rest.
FIXED_POINTS = tuple(range(17, 48))


@dataclass
class MouthMotionConfig:
    sample_rate: int = 16000
    window_samples: int = 3200  # one frame's 0.2 s window (audio.frame_audio)
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms -> 21 columns per window
    n_mels: int = 40
    # > 0: the network reads the first `cepstra` cepstral coefficients (an orthonormal DCT of the log-mel
    # bands) instead of the bands. They keep the spectrum's envelope (the formants, where the tongue
    # and lips are) and drop its fine ripple, which for higher voices is the pitch's harmonics: what
    # differs most between three male training voices and a woman's.
    cepstra: int = 0
    # > 0: the network also reads the phone heard under each column (speech_anim/phones.py, a recogniser
    # trained on many voices), embedded in this many dimensions beside the bands or cepstra.
    phones: int = 0
    channels: int = 64
    hidden: int = 128
    fps: float = 25.0

    def __post_init__(self):
        if min(self.sample_rate, self.window_samples, self.n_fft, self.win_length, self.hop_length,
               self.n_mels, self.channels, self.hidden) < 1 or not self.fps > 0:
            raise ValueError(f"MouthMotionConfig needs positive sizes and fps, got {self}")
        if self.phones < 0:
            raise ValueError(f"MouthMotionConfig.phones is an embedding size (0: no phones), got {self.phones}")
        if not 0 <= self.cepstra <= self.n_mels:
            raise ValueError(f"MouthMotionConfig.cepstra must be between 0 (the mel bands) and n_mels={self.n_mels}, got {self.cepstra}")


class MouthMotion(nn.Module, SafeHubMixin):
    """Per-frame speech window -> displacement of MOVING_POINTS from the face at rest (crop px).

    A fixed log-mel front end (as the sync expert's), a small CNN per window, and a GRU across frames, so
    that it streams chunk by chunk with its state like the generator's other recurrent parts.
    """

    def __init__(self, config: MouthMotionConfig | dict | None = None):
        super().__init__()
        if config is None:
            config = MouthMotionConfig()
        elif isinstance(config, dict):
            config = MouthMotionConfig(**config)
        self.config = config
        self._hub_mixin_config = config
        self.front_end = LogMel(config.sample_rate, config.n_fft, config.win_length, config.hop_length, config.n_mels)
        # 1-D convolutions over the window's 21 columns with the mel bands as channels: a tenth of the
        # cost of 2-D ones over the spectrogram (1.9 s a training step at 32 channels), for a task that
        # needs the spectrum's shape at each moment more than patterns across bands.
        # No normalisation layers: with BatchNorm the validation error swung by half a pixel from one
        # evaluation to the next (its running statistics follow the batches' speakers), and a per-window
        # norm would erase the difference between silence and speech.
        if config.cepstra:
            self.register_buffer("dct", dct_matrix(config.n_mels, config.cepstra), persistent=False)
        if config.phones:
            self.phone_embedding = nn.Embedding(len(PHONES), config.phones)
        c = config.channels
        self.convs = nn.Sequential(
            nn.Conv1d((config.cepstra or config.n_mels) + config.phones, c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv1d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv1d(2 * c, 2 * c, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool1d(3), nn.Flatten(),
        )  # fmt: skip
        self.project = nn.Linear(6 * c, config.hidden)
        self.gru = nn.GRU(config.hidden, config.hidden, batch_first=True)
        self.head = nn.Linear(config.hidden, 2 * len(MOVING_POINTS))
        nn.init.zeros_(self.head.weight)  # an untrained model moves nothing
        nn.init.zeros_(self.head.bias)

    def log_mel(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, window_samples) waveforms in [-1, 1] -> (N, n_mels, columns)."""
        return self.front_end(windows)

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, window_samples) -> what the convolutions read: log-mel bands or their cepstra (N, C, columns)."""
        bands = self.log_mel(windows)
        return bands if not self.config.cepstra else torch.einsum("cm,nmt->nct", self.dct, bands)

    @property
    def columns(self) -> int:
        """Spectrogram columns per window (a centred STFT): 21 for 0.2 s at a 10 ms hop."""
        return self.config.window_samples // self.config.hop_length + 1

    @property
    def _window_geometry(self) -> dict:
        """Where the spectrogram columns of a frame's window lie, as phones.label_indices takes it."""
        return dict(fps=self.config.fps, window=self.config.window_samples, hop_length=self.config.hop_length,
                    columns=self.columns)  # fmt: skip

    def window_phones(self, track, frame_indices, rate: float = 1.0, offset: int = 0) -> np.ndarray:
        """The labels of a phone track (phones.phone_track) under each column of frames' windows, (T, columns)."""
        return column_phones(track, frame_indices, rate, offset, **self._window_geometry)

    def labels_needed(self, frame_indices) -> np.ndarray:
        """For each frame, how long a phone track must be for `window_phones` to see all of its columns."""
        return label_indices(frame_indices, **self._window_geometry).max(axis=1) + 1

    def recognise(self, audio: torch.Tensor) -> torch.Tensor:
        """Phone labels B×T×columns for windows B×T×window_samples that are whole clips from their frame 0:
        each clip's signal put back together from its windows and decoded as `phones.phone_track` would."""
        labels = []
        for clip in audio.detach().cpu().float().numpy():
            signal, start = windows_signal(clip, self.config.fps)
            # The first windows' zero padding lies before the recording, the last ones' after it.
            signal = np.trim_zeros(signal[max(0, -start) :], "b")
            labels.append(self.window_phones(phone_track(signal), np.arange(len(clip))))
        return torch.from_numpy(np.stack(labels)).to(audio.device)

    def forward(self, audio: torch.Tensor, hidden: torch.Tensor | None = None,
                phones: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio windows B×T×window_samples -> (displacement B×T×len(MOVING_POINTS)×2, GRU state).

        A model that reads phones takes their labels under each column, B×T×columns (`window_phones`);
        without them it recognises them itself, treating each clip of `audio` as whole (`recognise`).
        """
        batch, frames, samples = audio.shape
        if samples != self.config.window_samples:
            raise ValueError(f"MouthMotion needs windows of {self.config.window_samples} samples, got {samples}")
        features = self.features(audio.reshape(batch * frames, samples))
        if self.config.phones:
            if phones is None:
                phones = self.recognise(audio)
            if tuple(phones.shape) != (batch, frames, self.columns):
                raise ValueError(f"phones must be {batch}×{frames}×{self.columns} labels, got {tuple(phones.shape)}")
            embedded = self.phone_embedding(phones.reshape(batch * frames, -1).long().to(audio.device))
            features = torch.cat([features, embedded.transpose(1, 2)], 1)
        elif phones is not None:
            raise ValueError("this mouth motion reads no phones (MouthMotionConfig.phones = 0): drop them")
        codes = torch.relu(self.project(self.convs(features)))
        out, hidden = self.gru(codes.view(batch, frames, -1), hidden)
        return self.head(out).view(batch, frames, len(MOVING_POINTS), 2), hidden


def dct_matrix(bands: int, keep: int) -> torch.Tensor:
    """The first `keep` rows of the orthonormal DCT-II over `bands` values (keep × bands)."""
    n = torch.arange(bands, dtype=torch.float64)
    k = torch.arange(keep, dtype=torch.float64)[:, None]
    matrix = torch.cos(torch.pi * (n + 0.5) * k / bands) * (2.0 / bands) ** 0.5
    matrix[0] /= 2.0**0.5
    return matrix.float()
