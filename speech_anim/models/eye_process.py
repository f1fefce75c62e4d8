"""The eye process: how open the eyes are at each frame, drawn from a model learnt on real eyes.

Not in the paper. There, blinks have to emerge from the noise GRU through the adversarial losses
alone; in our CPU-budget runs (model_card.md, sessions 3-7) they did so only now and then, locked to
the audio and with speckled frames. Here the generator's upper face is factorised instead:

    seed --EyeProcess (this file)--> openness o_t, one number per frame (1 = the clip's open eyes)
    [z_c, z_id, z_n, 1 - o_t] --FrameDecoder--> frames                  (trained on the real o_t)

In training the decoder is given each real clip's own openness (from its landmarks, `blinks.eye_openness`)
and an L1 on the eye band ties what it draws to the real eyes (`losses.eye_band_l1`), a supervised task
that a few hundred CPU steps can learn. This model supplies the openness at inference: an autoregressive
GRU over quantised openness, fitted by maximum likelihood to the real clips' curves (`train/fit_eye_process.py`),
then sampled with the animation's seed. So when, how often and how long the face blinks is learnt from
real video and random per seed, and does not depend on the audio (a silent clip blinks like a spoken one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .hub import SafeHubMixin


@dataclass
class EyeProcessConfig:
    bins: int = 30  # openness levels between 0 and max_openness, 0.05 apart
    max_openness: float = 1.5  # real GRID clips reach 1.3-1.4 of their median (wide eyes, looking up)
    hidden: int = 64
    fps: float = 25.0  # the frame rate its curves were learnt at
    # A drawn curve is the mean of the last `average` drawn levels. Real curves are continuous; drawn
    # levels jump between neighbours 0.05 apart, and one-frame bumps split a blink in two for the
    # blink detector (sampled 3 s clips: median 0.32 s, real 0.36 s). Two frames (40 ms) undo most of
    # it (0.40 s) and delay the eyes by half a frame.
    average: int = 2

    def __post_init__(self):
        if self.bins < 2 or self.hidden < 1 or not self.max_openness > 0 or not self.fps > 0 or self.average < 1:
            raise ValueError(f"EyeProcessConfig needs bins >= 2, hidden >= 1, max_openness > 0, fps > 0 and average >= 1, got {self}")


class EyeProcess(nn.Module, SafeHubMixin):
    """p(o_t | o_<t): a GRU reads the previous frame's openness level and predicts the next one's."""

    def __init__(self, config: EyeProcessConfig | None = None):
        super().__init__()
        if config is None:
            config = EyeProcessConfig()
        elif isinstance(config, dict):
            config = EyeProcessConfig(**config)
        self.config = config
        self._hub_mixin_config = config
        self.embed = nn.Embedding(config.bins + 1, config.hidden)  # the last index starts a clip
        self.gru = nn.GRU(config.hidden, config.hidden, batch_first=True)
        self.head = nn.Linear(config.hidden, config.bins)

    @property
    def start_token(self) -> int:
        return self.config.bins

    def quantise(self, openness: torch.Tensor) -> torch.Tensor:
        """Openness (any shape) -> level indices, long."""
        step = self.config.max_openness / self.config.bins
        return (openness / step).floor().clamp(0, self.config.bins - 1).long()

    def level(self, indices: torch.Tensor) -> torch.Tensor:
        """Level indices -> the openness at the middle of each level."""
        step = self.config.max_openness / self.config.bins
        return (indices.float() + 0.5) * step

    def nll(self, openness: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood (nats per frame) of B×T openness curves, each from its start."""
        target = self.quantise(openness)
        start = torch.full_like(target[:, :1], self.start_token)
        hidden, _ = self.gru(self.embed(torch.cat([start, target[:, :-1]], dim=1)))
        # -log p(o_t | o_<t), the cross-entropy of the predicted level distribution
        losses = F.cross_entropy(self.head(hidden).transpose(1, 2), target, reduction="none")
        if mask is None:
            return losses.mean()
        return (losses * mask).sum() / mask.sum().clamp(min=1)

    @torch.no_grad()
    def sample(self, batch: int, frames: int, generator: torch.Generator | None = None, state: tuple | None = None):
        """B×T openness drawn frame by frame, and the state that continues it: (GRU hidden, last level,
        the last `average - 1` drawn levels' openness).

        The uniforms come from `generator` (a CPU generator) one frame at a time, so a clip drawn in
        chunks with the returned state equals one drawn whole."""
        device = self.head.weight.device
        if state is None:
            hidden = torch.zeros(1, batch, self.config.hidden, device=device)
            last = torch.full((batch,), self.start_token, dtype=torch.long, device=device)
            recent = torch.zeros(batch, 0, device=device)
        else:
            hidden, last, recent = state
        levels = []
        for _ in range(frames):
            out, hidden = self.gru(self.embed(last)[:, None], hidden)
            cdf = self.head(out[:, 0]).float().softmax(-1).cumsum(-1).cpu()
            u = torch.rand(batch, 1, generator=generator)
            last = (cdf < u).sum(-1).clamp(max=self.config.bins - 1).to(device)  # inverse-CDF draw
            levels.append(last)
        drawn = self.level(torch.stack(levels, dim=1)) if levels else torch.zeros(batch, 0, device=device)
        # The mean of each frame's level and the ones before it (fewer at the start of a clip).
        history = torch.cat([recent, drawn], dim=1)
        window = torch.ones(1, 1, self.config.average, device=device)
        sums = F.conv1d(F.pad(history[:, None], (self.config.average - 1, 0)), window)[:, 0]
        counts = torch.arange(1, history.shape[1] + 1, device=device).clamp(max=self.config.average)
        openness = (sums / counts)[:, recent.shape[1]:]
        keep = max(0, history.shape[1] - (self.config.average - 1))  # the levels the next frame averages over
        return openness, (hidden, last, history[:, keep:])

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
