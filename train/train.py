"""Train the temporal GAN of the paper (§3.2-3.3) with Accelerate: one process or many, CPU or GPU.

    python train/train.py --config train/configs/tiny.yaml [key=value ...] [--no-seq ...] [--resume]
    accelerate launch --multi_gpu --num_processes 2 train/train.py --config train/configs/paper.yaml

The second line runs DDP over 2 GPUs, or over 2 CPU processes (gloo) on a machine without GPUs;
note that Accelerate 1.x's `accelerate launch --cpu --num_processes N` starts a single process.

Each step is one generator forward on a batch of clips, then the updates of the frame, sequence and
sync discriminators (and our eye discriminator, with lambda_eye > 0) on the detached fake video,
then the generator's update against the just-updated discriminators (Eq. 7). The objective lives
in `speech_anim.losses`; this file wires data, models and optimisers to it.

The run folder (runs/<name>/ or run_dir=...) holds:
    config.yaml            the settings of the run
    metrics.csv            step, epoch, time, name, value: every logged number
    tensorboard/           the same numbers and the sample strips, for TensorBoard
    samples/step_*.png     8 frames of each fixed validation clip: the real row above the generated one
    samples/step_*.mp4     the first of those clips, real | generated side by side, with its audio
    checkpoints/step_*/    accelerate save_state: models, optimisers, RNG states, progress (last K),
                           and with g_ema > 0 the averaged generator (generator_ema.safetensors)
    best/                  the generator at the best validation score (save_pretrained: safetensors,
                           config.json, model card; the averaged one with g_ema > 0); `--push-to-hub REPO`
                           uploads it
"""

import argparse
import csv
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration
from PIL import Image

from config import ConfigError, TrainConfig, load_config
from speech_anim import losses
from speech_anim.audio import SAMPLE_RATE, frame_audio, quiet_room
from speech_anim.data import TalkingFaceDataset, collate_clips
from speech_anim.errors import SpeechAnimError
from speech_anim.models import Generator, GeneratorConfig
from speech_anim.models.eye_process import EyeProcess
from speech_anim.models.generator import load_mouth_motion, mouth_motion_front_end
from speech_anim.models.discriminators import (
    EyeDiscriminator,
    EyeDiscriminatorConfig,
    FrameDiscriminator,
    FrameDiscriminatorConfig,
    SequenceDiscriminator,
    SequenceDiscriminatorConfig,
    SyncDiscriminator,
    SyncDiscriminatorConfig,
    cut_sync_pairs,
    sample_frame_indices,
    sample_sync_centres,
    take_frames,
)

SNIPPET = 5  # frames per sync snippet: 0.2 s at 25 fps
EXIT_ERROR, EXIT_NAN = 2, 3


# ---- bookkeeping that survives a restart ---------------------------------------------------------


@dataclass
class Progress:
    """Where the run is; saved with every checkpoint (accelerate's register_for_checkpointing)."""

    step: int = 0  # batches trained on, over the whole run
    epoch: int = 0
    batch: int = 0  # batches of `epoch` already trained on (skipped when resuming mid-epoch)
    best_score: float = -math.inf
    best_step: int = -1
    stale_epochs: int = 0  # validations since the best score improved
    best_metric: str = ""  # what best_score measures; a resumed run told to track another starts afresh

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class EpochShuffle(torch.utils.data.Sampler):
    """A permutation drawn from (seed, epoch) alone: every process draws the same one (Accelerate
    then hands each its share of the batches) and a resumed run draws the one it left.

    With `weights` (one per clip) an epoch is instead `size` clips drawn with replacement in
    proportion to them; the k-th draw of clip c in an epoch is index c + k * size, which the dataset
    reads as another sample of clip c (so repeats get their own windows).
    """

    def __init__(self, size: int, seed: int, weights: torch.Tensor | None = None):
        if weights is not None and len(weights) != size:
            raise ValueError(f"{len(weights)} weights for {size} clips")
        self.size, self.seed, self.epoch, self.weights = size, seed, 0, weights

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(_seed(self.seed, self.epoch))
        if self.weights is None:
            return iter(torch.randperm(self.size, generator=generator).tolist())
        drawn = torch.multinomial(self.weights, self.size, replacement=True, generator=generator).tolist()
        seen: dict[int, int] = {}
        indices = []
        for clip in drawn:
            indices.append(clip + self.size * seen.get(clip, 0))
            seen[clip] = seen.get(clip, 0) + 1
        return iter(indices)


def speaker_weights(speakers: list[str], balance: float) -> torch.Tensor | None:
    """Per-clip sampling weights n_s^-balance (n_s: clips of the clip's speaker); None for balance 0."""
    if not balance:
        return None
    counts = {speaker: speakers.count(speaker) for speaker in set(speakers)}
    return torch.tensor([counts[speaker] ** -balance for speaker in speakers], dtype=torch.float64)


def _seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys."""
    return int(np.random.SeedSequence(list(keys)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def step_rng(cfg: TrainConfig, step: int, rank: int) -> torch.Generator:
    """The randomness of one training step (noise, sampled frames and snippets), keyed by the step and
    the process, so that a resumed run draws exactly what the interrupted one would have."""
    return torch.Generator().manual_seed(_seed(cfg.seed, step, rank, 1))


# ---- models and optimisers -----------------------------------------------------------------------


def loss_weights(cfg: TrainConfig) -> losses.LossWeights:
    """Eq. 7's lambdas (and ours) from the config, with its ablations applied."""
    return losses.LossWeights(img=cfg.lambda_img, sync=cfg.lambda_sync, seq=cfg.lambda_seq, rec=cfg.lambda_rec,
                              div=cfg.lambda_div, silent=cfg.lambda_silent, eye=cfg.lambda_eye,
                              blend=cfg.lambda_blend, eye_audio=cfg.lambda_eye_audio,
                              texture=cfg.lambda_texture, decoded=cfg.lambda_decoded,
                              eye_rec=cfg.lambda_eye_rec).ablate(*cfg.ablations)


def generator_config(cfg: TrainConfig) -> GeneratorConfig:
    try:
        cepstra, phones = mouth_motion_front_end(cfg.mouth_motion) if cfg.mouth_motion else (0, 0)  # weights: build_models
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"mouth_motion: {error}") from None
    if phones and cfg.voice_warp:
        # Its phones are recognised in each clip's windows put back together, which a warp would garble.
        raise ConfigError(f"mouth_motion {cfg.mouth_motion} reads phones, recognised in the clip's own audio: set voice_warp: 0")
    return GeneratorConfig(width=cfg.g_width, audio_gru_layers=cfg.audio_gru_layers, output=cfg.g_output,
                           eye_input=cfg.eye_input, mouth_motion=bool(cfg.mouth_motion), mouth_cepstra=cepstra,
                           mouth_phones=phones)


def generator_from_checkpoint(path: Path) -> Generator:
    """The generator in `path`: a save_pretrained folder (a run's best/, an export) or one of a run's
    checkpoints/step_* folders, read with the run's config.yaml, whose moving average (EMA_FILE) is
    taken when the run kept one, else G. For the scripts that screen, average and export checkpoints."""
    from safetensors.torch import load_file

    path = Path(path)
    if (path / "config.json").is_file():
        return Generator.from_pretrained(str(path))
    run_config = path.parent.parent / "config.yaml"
    if not (path / "model.safetensors").is_file() or not run_config.is_file():
        raise ConfigError(f"{path} is neither a save_pretrained folder nor a train.py checkpoint (runs/NAME/checkpoints/step_*)")
    try:
        cfg = load_config(str(run_config))
    except ConfigError as error:  # e.g. a setting this version of train/config.py no longer knows
        raise ConfigError(f"{run_config}: {error}") from None
    generator = Generator(generator_config(cfg))
    weights = path / EMA_FILE if (path / EMA_FILE).is_file() else path / "model.safetensors"  # accelerate's file of G
    generator.load_state_dict(load_file(weights))
    return generator


def build_models(cfg: TrainConfig, weights: losses.LossWeights,
                 pretrained: bool = True) -> tuple[Generator, dict[str, torch.nn.Module]]:
    """The generator and the discriminators the weights need ('img', 'seq', 'sync', 'eye'), in that
    order: checkpoints store them by position. `pretrained=False` (a resumed run, whose checkpoint
    holds every weight) skips init_generator and eye_process."""
    generator = Generator(generator_config(cfg))
    if cfg.init_generator and pretrained:
        source = start_from_pretrained(generator, cfg.init_generator)
        if cfg.eye_input and not (cfg.eye_process or source.eye_input):
            raise ConfigError(f"init_generator {cfg.init_generator} has no eye process to start eye_input from: "
                              "pass eye_process=<a train/fit_eye_process.py folder>")
    if cfg.eye_process and pretrained:
        generator.eye_process.load_state_dict(EyeProcess.from_pretrained(cfg.eye_process).state_dict())
    if cfg.mouth_motion and pretrained:
        generator.mouth_motion.load_state_dict(load_mouth_motion(cfg.mouth_motion).state_dict())
    if cfg.mouth_motion:
        # Fitted beforehand on real landmarks (train/fit_mouth_motion.py): the image losses would teach it
        # to move the still wherever that helps the decoder, not where the lips go.
        generator.mouth_motion.requires_grad_(False)
    if cfg.eye_input:
        # Fitted beforehand (train/fit_eye_process.py) and only sampled at inference: training feeds
        # the real clips' openness, so nothing here should move it.
        generator.eye_process.requires_grad_(False)
    if cfg.eyes_only:
        # The lips, identity and sync of init_generator keep their weights; only the closure's maps learn.
        # BatchNorm running statistics still follow the training batches (train mode), which an average
        # of snapshots (scripts/average_checkpoints.py) needs anyway.
        generator.requires_grad_(False)
        generator.decoder.eye_maps.requires_grad_(True)
    builders = {
        "img": lambda: FrameDiscriminator(FrameDiscriminatorConfig(width=cfg.d_width)),
        "seq": lambda: SequenceDiscriminator(SequenceDiscriminatorConfig(width=cfg.d_width)),
        "sync": lambda: SyncDiscriminator(SyncDiscriminatorConfig(width=cfg.d_width)),
        "eye": lambda: EyeDiscriminator(EyeDiscriminatorConfig(width=cfg.d_width)),
    }
    return generator, {name: build() for name, build in builders.items() if name in weights.discriminators}


# What an exported generator may carry beside the networks train.py trains, set or attached after
# training (scripts/export_default_model.py): a run started from it (the shipped model, say) trains the
# networks without them, and the export puts them back.
ADDED_AT_EXPORT = ("eye_gain", "eye_curve", "mouth_motion")


def start_from_pretrained(generator: Generator, checkpoint: str) -> GeneratorConfig:
    """Copy a save_pretrained generator's weights into `generator`. Inputs that `generator` has and the
    checkpoint lacks (eye_input's closure) start with zero weights, so it starts as the checkpoint did.
    Its eye gain or curve and mouth motion (ADDED_AT_EXPORT) are left behind."""
    source = Generator.from_pretrained(checkpoint)
    ours, theirs = asdict(generator.config), asdict(source.config)
    differing = [k for k in ours if k not in ("eye_input", "mouth_cepstra", "mouth_phones", *ADDED_AT_EXPORT) and ours[k] != theirs[k]]
    if differing:
        raise ConfigError(f"init_generator {checkpoint} differs from this config in {', '.join(differing)}: "
                          "use matching g_width / g_output / audio_gru_layers")
    weights = source.state_dict()
    with torch.no_grad():
        for name, tensor in generator.state_dict().items():
            if name not in weights or name.startswith("mouth_motion."):  # a run's own comes from cfg.mouth_motion
                continue
            given = weights[name]
            if given.shape == tensor.shape:
                tensor.copy_(given)
            elif name == "decoder.project.weight" and given.shape[1] < tensor.shape[1]:
                tensor.zero_()
                tensor[:, : given.shape[1]] = given  # the latent's new columns come last
            else:
                raise ConfigError(f"init_generator {checkpoint}: {name} is {tuple(given.shape)}, this generator's "
                                  f"{tuple(tensor.shape)}")
    return source.config


def build_optimizers(cfg: TrainConfig, generator, discriminators) -> dict[str, torch.optim.Optimizer]:
    base = {"G": cfg.lr_g, "img": cfg.lr_img, "seq": cfg.lr_seq, "sync": cfg.lr_sync, "eye": cfg.lr_eye}
    models = {"G": generator, **discriminators}
    return {
        name: torch.optim.Adam(model.parameters(), lr=base[name], betas=(cfg.beta1, cfg.beta2))
        for name, model in models.items()
    }


def learning_rates(cfg: TrainConfig, epoch: int) -> dict[str, float]:
    """Step decay of §3.3: -2 % (G) and -10 % (discriminators) every `decay_every` epochs. A pure
    function of the epoch, so a resumed run needs no scheduler state."""
    g = (1 - cfg.g_decay) ** (epoch // cfg.decay_every)
    d = (1 - cfg.d_decay) ** (epoch // cfg.decay_every)
    return {"G": cfg.lr_g * g, "img": cfg.lr_img * d, "seq": cfg.lr_seq * d, "sync": cfg.lr_sync * d, "eye": cfg.lr_eye * d}


# ---- one training step -----------------------------------------------------------------------------


def update(accelerator: Accelerator, optimizer, loss: torch.Tensor) -> None:
    # backward, step, then zero: under gradient accumulation the wrapped optimizer only steps and
    # zeroes on the micro-batch that completes the accumulation.
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def sync_discriminator_step(accelerator, d_sync, optimizer, video, fake, audio, shifted, centres) -> dict:
    """One update of D_sync (Eq. 3) on real in-sync, real out-of-sync and fake pairs of `centres`."""
    real_pairs = cut_sync_pairs(video, audio, centres)
    shifted_pairs = cut_sync_pairs(video, shifted, centres)
    fake_pairs = cut_sync_pairs(fake, audio, centres)
    with accelerator.autocast():
        logits = d_sync(*(torch.cat(parts) for parts in zip(real_pairs, shifted_pairs, fake_pairs))).float()
    in_sync, out_of_sync, fake_logits = logits.chunk(3)
    loss = losses.d_sync_loss(in_sync, out_of_sync, fake_logits)
    update(accelerator, optimizer, loss)
    return {
        "d_sync": loss.detach(),
        "acc_sync_in": losses.real_accuracy(in_sync),
        "acc_sync_out": losses.fake_accuracy(out_of_sync),
        "acc_sync_fake": losses.fake_accuracy(fake_logits),
    }


def train_step(accelerator, cfg, weights, generator, discriminators, optimizers, batch, rng) -> dict:
    """D_img, D_seq, D_eye, D_sync then G on one batch; returns the step's losses and accuracies (by key of
    `losses.LOG_NAMES`), as detached tensors."""
    still, video, audio, shifted, mask = (batch[k] for k in ("still", "video", "audio", "audio_shifted", "mask"))
    logs = {}
    with accelerator.accumulate(generator, *discriminators.values()):
        unwrapped = accelerator.unwrap_model(generator)
        openness = real_openness(unwrapped, batch)
        noise = unwrapped.sample_noise(video.shape[0], video.shape[1], generator=rng).to(video.device)
        # Passes: (audio windows, noise) per video the step generates from the batch's stills.
        passes = {"speech": (audio, noise)}
        if weights.silent > 0 or weights.eye_audio > 0:
            # The same stills and noise with nobody speaking. D_img judges frames against the still
            # without audio, so it judges these too: the L1 terms leave their upper half free. D_seq needs
            # audio, and no real clip is silent for 1.6 s: it judges them against real clips made silent,
            # their eyes over the still's mouth with the same quiet audio. Eyes move much the same
            # whether one speaks or not, so this is where blinks in silence come from.
            passes["silent"] = (quiet_room_windows(*audio.shape[:2], float(batch["fps"][0]), rng).to(audio.device), noise)
        if weights.div > 0:  # other noise, for the diversity term only
            passes["other"] = (audio, unwrapped.sample_noise(video.shape[0], video.shape[1], generator=rng).to(video.device))
        # All passes go through the generator as one batch. Its BatchNorm layers normalise a training
        # batch by the batch's own statistics and, at inference, by running averages over training
        # batches: a batch of silence alone was normalised by statistics of silence, so the silent
        # term fell to 0.0004 in training while the same generator in eval mode opened the mouth to
        # quiet-room audio (0.035). In one batch every pass sees the statistics inference will use.
        windows, noises = (torch.cat(parts) for parts in zip(*passes.values()))
        # Every pass has the real clip's eyes: they move much the same whether one speaks or not.
        eyes = None if openness is None else openness.repeat(len(passes), 1)
        still_points = batch["still_landmarks"].to(still).repeat(len(passes), 1, 1)  # used with mouth_motion
        with accelerator.autocast():
            if weights.blend > 0 or weights.decoded > 0:  # the blend's layers are penalised too
                videos, alpha, decoded = generator(still.repeat(len(passes), 1, 1, 1), windows, noise=noises,
                                                   openness=eyes, return_layers=True, still_landmarks=still_points)
                masks = dict(zip(passes, alpha.float().chunk(len(passes))))
                decoded_frames = dict(zip(passes, decoded.float().chunk(len(passes))))
            else:
                videos = generator(still.repeat(len(passes), 1, 1, 1), windows, noise=noises, openness=eyes,
                                   still_landmarks=still_points)
        generated = dict(zip(passes, videos.float().chunk(len(passes))))
        fake = generated["speech"]
        judged, seq_real, seq_audio, seq_mask = [fake], video, audio, mask  # what D_img and D_seq see
        if "silent" in generated:
            fake_silent = generated["silent"]
            judged = [fake, fake_silent]
            seq_real, seq_audio = torch.cat([video, silenced(video, still)]), torch.cat([audio, passes["silent"][0]])
            seq_mask = mask.repeat(2, 1)
        # The same frames and snippets are judged in the D and the G updates.
        frame_index = sample_frame_indices(mask, rng)
        centres = sample_sync_centres(mask, rng, SNIPPET)
        fake_d = fake.detach()

        # ---- discriminators, on the detached fake video (Eq. 2, 4, 3)
        if "img" in discriminators:
            with accelerator.autocast():
                frames = torch.cat([take_frames(video, frame_index), *(take_frames(f.detach(), frame_index) for f in judged)])
                logits = discriminators["img"](frames, still.repeat(1 + len(judged), 1, 1, 1)).float()
            real, fake_logits = logits[: len(still)], logits[len(still) :]
            loss = losses.d_frame_loss(real, fake_logits)
            update(accelerator, optimizers["img"], loss)
            logs.update(d_img=loss.detach(), acc_img_real=losses.real_accuracy(real),
                        acc_img_fake=losses.fake_accuracy(fake_logits))
        if "seq" in discriminators:
            with accelerator.autocast():
                logits = discriminators["seq"](torch.cat([seq_real, *(f.detach() for f in judged)]),
                                               seq_audio.repeat(2, 1, 1), seq_mask.repeat(2, 1)).float()
            real, fake_logits = logits.chunk(2)
            loss = losses.d_sequence_loss(real, fake_logits)
            update(accelerator, optimizers["seq"], loss)
            logs.update(d_seq=loss.detach(), acc_seq_real=losses.real_accuracy(real),
                        acc_seq_fake=losses.fake_accuracy(fake_logits))
        if "eye" in discriminators:
            # No audio here, so the silent pass's eyes are judged against the real clips' own.
            with accelerator.autocast():
                logits = discriminators["eye"](torch.cat([video, *(f.detach() for f in judged)]),
                                               still.repeat(1 + len(judged), 1, 1, 1), mask.repeat(1 + len(judged), 1)).float()
            real, fake_logits = logits[: len(video)], logits[len(video) :]
            loss = losses.d_eye_loss(real, fake_logits)
            update(accelerator, optimizers["eye"], loss)
            logs.update(d_eye=loss.detach(), acc_eye_real=losses.real_accuracy(real),
                        acc_eye_fake=losses.fake_accuracy(fake_logits))
        if "sync" in discriminators:
            logs.update(sync_discriminator_step(accelerator, discriminators["sync"], optimizers["sync"],
                                                video, fake_d, audio, shifted, centres))

        # ---- generator (Eq. 7) against the updated discriminators. They are called unwrapped and
        # frozen: their gradients are not needed, and must not be all-reduced or accumulated.
        judges = {name: accelerator.unwrap_model(d).requires_grad_(False) for name, d in discriminators.items()}
        terms = {}
        with accelerator.autocast():
            if "img" in judges:
                frames = torch.cat([take_frames(f, frame_index) for f in judged])
                terms["img"] = losses.g_frame_loss(judges["img"](frames, still.repeat(len(judged), 1, 1, 1)).float())
            if "seq" in judges:
                terms["seq"] = losses.g_sequence_loss(judges["seq"](torch.cat(judged), seq_audio, seq_mask).float())
            if "eye" in judges:
                terms["eye"] = losses.g_eye_loss(judges["eye"](torch.cat(judged), still.repeat(len(judged), 1, 1, 1),
                                                               mask.repeat(len(judged), 1)).float())
            if "sync" in judges:
                terms["sync"] = losses.g_sync_loss(judges["sync"](*cut_sync_pairs(fake, audio, centres)).float())
        if weights.rec > 0:
            terms["rec"] = losses.lower_half_l1(fake, video, mask)
        if weights.eye_rec > 0:  # the generator was given the real eyes' openness, so it can draw them
            closure = 1 - batch["openness"].to(fake.device) if cfg.eye_rec_closure else None
            terms["eye_rec"] = losses.eye_band_l1(fake, video, mask, closure, cfg.eye_rec_closure)
        if weights.div > 0:
            terms["div"] = losses.upper_half_noise_diversity(fake, generated["other"], noise, passes["other"][1], mask,
                                                             eps=cfg.div_eps)
        if weights.silent > 0:
            terms["silent"] = losses.silent_mouth_l1(fake_silent, still, mask)
        if weights.eye_audio > 0:
            terms["eye_audio"] = losses.eye_audio_invariance_l1(fake, fake_silent, mask)
        if weights.blend > 0:  # over the videos the discriminators judge
            blend_weight = losses.outside_features_weight(*still.shape[-2:]) if cfg.blend_free_features else None
            terms["blend"] = losses.blend_mask_l1(torch.cat([masks[name] for name in ("speech", "silent") if name in masks]),
                                                  mask.repeat(len(judged), 1), blend_weight)
        if weights.decoded > 0:  # speech pass only: it has real frames
            terms["decoded"] = losses.decoded_frame_l1(decoded_frames["speech"], video, mask)
        if weights.texture > 0:
            terms["texture"] = losses.upper_half_texture_excess(torch.cat(judged), still.repeat(len(judged), 1, 1, 1),
                                                                mask.repeat(len(judged), 1))
        total = losses.generator_total(**terms, weights=weights)
        update(accelerator, optimizers["G"], total)
        for judge in judges.values():
            judge.requires_grad_(True)
    logs.update({f"g_{name}": value.detach() for name, value in terms.items()}, g_total=total.detach())
    return logs


def real_openness(model: Generator, batch: dict) -> torch.Tensor | None:
    """The batch's real eye openness (B x T) for a generator with eye_input, else None."""
    return batch["openness"] if model.config.eye_input else None


def silenced(video: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
    """Real clips as if silent: each frame's upper face over the still's lower face, B x T x 3 x H x W.
    The two meet in a linear ramp over rows 3H/8..5H/8 (the nose), so that no seam gives them away."""
    height = video.shape[-2]
    rows = torch.arange(height, dtype=video.dtype, device=video.device)
    upper = ((5 * height / 8 - rows) / (height / 4)).clamp(0, 1)[:, None]  # 1 above the nose, 0 below
    return video * upper + still[:, None] * (1 - upper)


def quiet_room_windows(batch: int, frames: int, fps: float, rng: torch.Generator) -> torch.Tensor:
    """B x T x window audio windows of a quiet room: pink noise from -80 to -40 dBFS RMS (log-uniform),
    exact zeros for a quarter of the clips (digital silence, e.g. a muted track)."""
    draw = np.random.default_rng(int(torch.randint(2**31, (1,), generator=rng)))
    clips = []
    for _ in range(batch):
        rms = 0.0 if draw.random() < 0.25 else 10 ** draw.uniform(-4, -2)
        # A few frames more than the clip, so that the last windows reach into noise, not zero padding.
        signal = quiet_room(int(np.ceil((frames + 5) * SAMPLE_RATE / fps)), rms, draw)
        clips.append(frame_audio(signal, fps, frames=frames))
    return torch.from_numpy(np.stack(clips))


def log_name(key: str) -> str:
    return losses.LOG_NAMES.get(key, key)


# ---- validation, samples, export ------------------------------------------------------------------


@torch.no_grad()
def validate(accelerator, cfg, generator, discriminators, loader, metrics=()) -> dict[str, float]:
    """Metrics on whole validation clips, generated with fixed noise (the same every validation).

    val/l1_lower        Eq. 6 between generated and real clips
    val/<metric>        each of `metrics` (speech_anim.metrics, cfg.val_metrics: PSNR, SSIM, ...)
    val/sync_*          D_sync on non-overlapping 0.2 s snippets: accuracy on real in-sync pairs
                        (sync_real_in), real pairs with shifted audio (sync_real_out), generated pairs
                        (sync_fake_in: called in sync), and the fraction of snippets whose own audio
                        D_sync rates above the shifted audio (sync_rank_real, sync_rank_fake)
    """
    model = accelerator.unwrap_model(generator)
    model.eval()
    d_sync = accelerator.unwrap_model(discriminators["sync"]).eval() if "sync" in discriminators else None
    rows = []
    for index, batch in enumerate(loader):
        still, video, audio, shifted, mask = (batch[k] for k in ("still", "video", "audio", "audio_shifted", "mask"))
        rng = torch.Generator().manual_seed(_seed(cfg.seed, index, accelerator.process_index, 2))
        noise = model.sample_noise(video.shape[0], video.shape[1], generator=rng).to(video.device)
        with accelerator.autocast():
            fake = model(still, audio, noise=noise, openness=real_openness(model, batch),
                         still_landmarks=batch["still_landmarks"].to(still)).float()
        columns = {"val/l1_lower": torch.stack([losses.lower_half_l1(f, v, m) for f, v, m in zip(fake, video, mask)])}
        lengths = batch["lengths"].tolist()
        # The AV metrics (av_confidence, ...) need each clip's sound: raw audio cut to the clip's frames.
        fps, rate = model.config.fps, model.config.sample_rate
        sounds = [a[: round(n * rate / fps)].cpu().numpy() for a, n in zip(batch["raw_audio"], lengths)]
        for metric in metrics:
            columns[f"val/{metric.name}"] = torch.tensor(
                [metric(_to_uint8(f[:n]), _to_uint8(v[:n]), audio=sound, fps=fps)
                 for f, v, n, sound in zip(fake, video, lengths, sounds)], device=video.device
            )
        if d_sync is not None:
            columns.update(_sync_scores(accelerator, d_sync, video, fake, audio, shifted, batch["lengths"]))
        rows.append(torch.stack([columns[k].float() for k in sorted(columns)], dim=1))
        names = sorted(columns)
    model.train()
    if d_sync is not None:
        d_sync.train()
    # gather_for_metrics drops the clips Accelerate repeated to give every process equal batches.
    table = accelerator.gather_for_metrics(torch.cat(rows))
    return {name: float(value) for name, value in zip(names, table.mean(dim=0))}


def _sync_scores(accelerator, d_sync, video, fake, audio, shifted, lengths) -> dict[str, torch.Tensor]:
    half = SNIPPET // 2
    names = {"in": "sync_real_in", "out": "sync_real_out", "fake": "sync_fake_in",
             "rank_real": "sync_rank_real", "rank_fake": "sync_rank_fake"}
    scores = {k: torch.zeros(len(video), device=video.device) for k in names}
    count = torch.zeros(len(video), device=video.device)
    for centre in range(half, video.shape[1] - half, SNIPPET):
        valid = (lengths.to(video.device) > centre + half).float()  # snippets inside each clip only
        centres = torch.full((len(video),), centre, device=video.device)
        pairs = [cut_sync_pairs(v, a, centres) for v, a in ((video, audio), (video, shifted), (fake, audio), (fake, shifted))]
        with accelerator.autocast():
            logits = d_sync(*(torch.cat(parts) for parts in zip(*pairs))).float()
        real_in, real_out, fake_in, fake_out = logits.chunk(4)
        scores["in"] += valid * (real_in > 0)
        scores["out"] += valid * (real_out < 0)
        scores["fake"] += valid * (fake_in > 0)
        scores["rank_real"] += valid * (real_in > real_out)
        scores["rank_fake"] += valid * (fake_in > fake_out)
        count += valid
    return {f"val/{names[k]}": v / count.clamp(min=1) for k, v in scores.items()}


def frame_metrics(names: list[str]) -> list:
    """The validation metrics of speech_anim.metrics, resolved before training (a typo fails now,
    not after the first epoch)."""
    if not names:
        return []
    from speech_anim.metrics import get_metric  # imported only when asked for: it loads more models

    return [get_metric(name) for name in names]


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """T×3×H×W in [-1, 1] -> T×H×W×3 uint8."""
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def score_of(cfg: TrainConfig, metrics: dict[str, float]) -> tuple[str, float]:
    """The early-stopping signal (higher is better): D_sync's ranking of generated snippets' own audio
    over shifted audio; without a sync discriminator, minus the lower-half L1."""
    if cfg.early_stop_metric in metrics:
        return cfg.early_stop_metric, metrics[cfg.early_stop_metric]
    return "val/l1_lower", -metrics["val/l1_lower"]


@torch.no_grad()
def write_samples(accelerator, cfg, generator, batch, step: int, tracker) -> Path:
    """A strip of frames of fixed validation clips (real row, generated row per clip) as PNG, and the
    first clip as real | generated video with its audio."""
    model = accelerator.unwrap_model(generator)
    model.eval()
    still, video, audio = (batch[k].to(accelerator.device) for k in ("still", "video", "audio"))
    rng = torch.Generator().manual_seed(_seed(cfg.seed, 3))
    noise = model.sample_noise(video.shape[0], video.shape[1], generator=rng).to(video.device)
    openness = real_openness(model, batch)
    with accelerator.autocast():
        fake = model(still, audio, noise=noise, openness=None if openness is None else openness.to(video.device),
                     still_landmarks=batch["still_landmarks"].to(still)).float()
    model.train()
    rows = []
    for real_clip, fake_clip, length in zip(video, fake, batch["lengths"].tolist()):
        picks = np.linspace(0, length - 1, 8).round().astype(int)
        rows += [np.concatenate(list(_to_uint8(clip[picks])), axis=1) for clip in (real_clip, fake_clip)]
    strip = np.concatenate(rows, axis=0)
    folder = cfg.path / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"step_{step:08d}.png"
    Image.fromarray(strip).save(png)
    if tracker is not None:
        tracker.log_images({"samples": strip[None]}, step=step, dataformats="NHWC")

    from speech_anim.video import write_video

    length = int(batch["lengths"][0])
    side_by_side = np.concatenate([_to_uint8(video[0, :length]), _to_uint8(fake[0, :length])], axis=2)
    audio_track = batch["raw_audio"][0].cpu().numpy()
    write_video(folder / f"step_{step:08d}.mp4", side_by_side, float(batch["fps"][0]), audio=audio_track)
    return png


def export_best(accelerator, cfg, generator, progress: Progress, metrics: dict) -> Path:
    """The generator with `save_pretrained` into <run>/best, and how it was trained in its card."""
    best = cfg.path / "best"
    model = accelerator.unwrap_model(generator)
    model.save_pretrained(best)
    info = {"step": progress.step, "epoch": progress.epoch, "metrics": metrics, "config": asdict(cfg)}
    (best / "training.json").write_text(json.dumps(info, indent=1, default=str))
    card = best / "README.md"
    lines = [f"\n\n## Training\n\nTrained with `train/train.py` (config `{cfg.name}`) for {progress.step} steps "
             f"({progress.epoch} epochs) on `{cfg.data}` (split `{cfg.train_split}`); exported at the best "
             f"validation score. Validation:\n"]
    lines += [f"- {name}: {value:.4f}" for name, value in sorted(metrics.items())]
    card.write_text(card.read_text() + "\n".join(lines) + "\n")
    return best


def push_to_hub(best: Path, repo: str) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not (best / "model.safetensors").is_file():
        raise ConfigError(f"nothing to push: {best} has no exported generator (no validation ran); train at least one epoch")
    try:
        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(best), commit_message="speech_anim generator (best validation score)")
    except (HfHubHTTPError, OSError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"could not push {best} to Hub repo {repo} ({message}): log in with `hf auth login` and check the repo id") from None


# ---- checkpoints ---------------------------------------------------------------------------------------


def checkpoints(cfg: TrainConfig) -> list[Path]:
    """Finished checkpoints, oldest first (unfinished ones end in .tmp and are ignored)."""
    folder = cfg.path / "checkpoints"
    return sorted(p for p in folder.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp")) if folder.is_dir() else []


def save_checkpoint(accelerator: Accelerator, cfg: TrainConfig, step: int, ema: torch.nn.Module | None = None) -> Path:
    """accelerate save_state into checkpoints/step_N; written under a .tmp name and renamed, so a run
    killed while saving leaves the previous checkpoint as the newest one. Keeps the last `keep_last`."""
    final = cfg.path / "checkpoints" / f"step_{step:08d}"
    partial = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if ema is not None:
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}, partial / EMA_FILE,
                      metadata={"format": "pt"})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        for old in checkpoints(cfg)[: -cfg.keep_last]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def with_new_discriminators(accelerator, checkpoint: Path, names: list[str], models: dict,
                            optimizers: dict) -> tuple[Path, list[str]]:
    """The checkpoint to resume from, and the discriminators it lacks.

    Checkpoints store models and optimisers by position (G, then 'img', 'seq', 'sync', 'eye' as
    built). A run resumed with a discriminator switched on that was off when the checkpoint was saved
    (e.g. lambda_eye=0.5 from a run without it) has one more at the end: a copy of the checkpoint with
    that one's initial weights and a fresh optimiser added lets it go on. The copy sits in the run
    folder (all processes must read it) under a name that is never taken for a checkpoint."""
    from safetensors.torch import save_file

    saved = len(list(checkpoint.glob("model*.safetensors"))) or len(list(checkpoint.glob("pytorch_model*.bin")))
    added = names[saved:]
    if not added:
        return checkpoint, []
    copy = checkpoint.parent.parent / f"resume_{checkpoint.name}_with_{'_'.join(added)}"
    if accelerator.is_main_process:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(checkpoint, copy)
        for index, name in enumerate(names):
            if name in added:
                state = {k: v.detach().cpu().contiguous() for k, v in accelerator.unwrap_model(models[name]).state_dict().items()}
                save_file(state, copy / f"model_{index}.safetensors", metadata={"format": "pt"})
                torch.save(optimizers[name].state_dict(), copy / f"optimizer_{index}.bin")
    accelerator.wait_for_everyone()
    return copy, added


def broadcast_buffers(accelerator: Accelerator, models) -> None:
    """Give every process rank 0's BatchNorm statistics. DDP broadcasts buffers at the start of each
    forward, but every process then updates them with its own batch."""
    if accelerator.num_processes > 1:
        for model in models:
            for buffer in accelerator.unwrap_model(model).buffers():
                torch.distributed.broadcast(buffer, src=0)


EMA_FILE = "generator_ema.safetensors"


def ema_update(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * model for the weights. Buffers (BatchNorm
    statistics) are copied: they are averages already, of the activations of the current weights."""
    with torch.no_grad():
        for kept, current in zip(average.parameters(), model.parameters()):
            kept.lerp_(current.detach(), 1.0 - decay)
        for kept, current in zip(average.buffers(), model.buffers()):
            kept.copy_(current)


def start_ema(accelerator: Accelerator, generator, checkpoint: Path | None) -> Generator:
    """The averaged generator: the checkpoint's, or a copy of G (a new run, or one resumed from a
    checkpoint saved without g_ema)."""
    import copy

    from safetensors.torch import load_file

    average = copy.deepcopy(accelerator.unwrap_model(generator)).requires_grad_(False)
    if checkpoint is not None and (checkpoint / EMA_FILE).is_file():
        average.load_state_dict(load_file(checkpoint / EMA_FILE, device=str(accelerator.device)))
    elif checkpoint is not None:
        accelerator.print(f"{checkpoint} has no {EMA_FILE}: the moving average starts from its generator", flush=True)
    return average


def weights_digest(accelerator: Accelerator, models: dict) -> dict[str, str]:
    """sha256 of each model's parameters and buffers (to check that processes hold the same weights)."""
    digests = {}
    for name, model in models.items():
        hasher = hashlib.sha256()
        for key, tensor in sorted(accelerator.unwrap_model(model).state_dict().items()):
            hasher.update(key.encode())
            hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digests[name] = hasher.hexdigest()
    return digests


# ---- logging -------------------------------------------------------------------------------------------


class MetricsCSV:
    """metrics.csv: one row per number (step, epoch, time, name, value). On resume, rows past the
    checkpoint's step (written by the interrupted run after it) are dropped."""

    FIELDS = ("step", "epoch", "time", "name", "value")

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        kept = []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as file:
                kept = [row for row in csv.DictReader(file) if int(row["step"]) <= resume_step]
        self._write(kept, "w")

    def _write(self, rows, mode) -> None:
        with open(self.path, mode, newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.FIELDS)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def log(self, values: dict[str, float], step: int, epoch: int, elapsed: float) -> None:
        rows = [{"step": step, "epoch": epoch, "time": f"{elapsed:.1f}", "name": k, "value": f"{v:.6g}"}
                for k, v in values.items()]
        self._write(rows, "a")


class Meter:
    """Sums of the step values between two log lines, and the training time they took."""

    def __init__(self):
        self.sums, self.steps, self.seconds = {}, 0, 0.0

    def add(self, values: dict[str, torch.Tensor], seconds: float) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0) + value.float()
        self.steps += 1
        self.seconds += seconds

    def results(self, accelerator, samples_per_step: int) -> dict[str, float]:
        """Means over the steps and the processes, under their log names, and the throughput."""
        keys = sorted(self.sums)
        means = accelerator.reduce(torch.stack([self.sums[k] for k in keys]), reduction="mean") / self.steps
        results = {log_name(k): float(v) for k, v in zip(keys, means)}
        results["perf/samples_per_s"] = self.steps * samples_per_step / self.seconds
        results["perf/seconds_per_step"] = self.seconds / self.steps
        return results


def all_finite(accelerator, values: dict[str, torch.Tensor]) -> bool:
    """Whether every process's losses are finite (all processes must agree to stop together)."""
    bad = (~torch.isfinite(torch.stack([v.float() for v in values.values()]))).any().float()
    return float(accelerator.reduce(bad, reduction="sum")) == 0


def report_non_finite(accelerator, cfg, values: dict[str, torch.Tensor], step: int) -> None:
    local = [log_name(k) for k, v in values.items() if not torch.isfinite(v)]
    kept = checkpoints(cfg)
    if accelerator.is_main_process:
        print(f"train: error: {local[0] if local else 'a loss on another process'} is not finite at step {step}: "
              f"stopped; the last good checkpoint is {kept[-1] if kept else 'none (none was saved yet)'}: resume "
              f"from it with --resume (e.g. with lower learning rates)", file=sys.stderr, flush=True)


def print_line(accelerator, step: int, epoch: int, values: dict[str, float]) -> None:
    parts = [f"step {step} epoch {epoch}"]
    g = [f"{k.split('/')[-1]} {values[k]:.4g}" for k in sorted(values) if k.startswith("loss/G/")]
    d = [f"{k.split('/')[-1]} {values[k]:.4g}" for k in sorted(values) if k.startswith("loss/D/")]
    parts += ["G " + " ".join(g)] + (["D " + " ".join(d)] if d else [])
    if "perf/samples_per_s" in values:
        parts.append(f"{values['perf/samples_per_s']:.2f} samples/s")
    accelerator.print(" | ".join(parts), flush=True)


# ---- the run -------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of settings (train/configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="settings that replace the file's")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of the run folder")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the best generator to this Hub repo at the end")
    for switch, removes in (("no-adv", "every adversarial term"), ("no-l1", "the L1 term"),
                            ("no-img", "the frame discriminator"), ("no-sync", "the sync discriminator"),
                            ("no-seq", "the sequence discriminator")):
        parser.add_argument(f"--{switch}", dest="ablations", action="append_const", const=switch,
                            help=f"ablation (Table 5): remove {removes}")
    return parser.parse_intermixed_args(argv)  # key=value may come before or after the switches


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides, args.ablations or [])
        return train(cfg, resume=args.resume, hub_repo=args.push_to_hub)
    except SpeechAnimError as error:
        print(f"train: error: {error}", file=sys.stderr)
        return EXIT_ERROR


def train(cfg: TrainConfig, resume: bool = False, hub_repo: str | None = None) -> int:
    weights = loss_weights(cfg)

    # ---- data: items are drawn from (seed, epoch, index), so every process and every restart sees
    # the same sub-sequences, stills and shifts
    train_set = TalkingFaceDataset(cfg.data, cfg.train_split, frames=cfg.frames, mirror=cfg.mirror, seed=cfg.seed,
                                   colour_jitter=cfg.colour_jitter, voice_warp=cfg.voice_warp,
                                   geometry_jitter=cfg.geometry_jitter, mouth_jitter=cfg.mouth_jitter,
                                   rest_still=cfg.rest_still, openness=cfg.openness)
    val_set = TalkingFaceDataset(cfg.data, cfg.val_split, frames=None, seed=cfg.seed, rest_still=cfg.rest_still,
                                 openness=cfg.openness)
    if cfg.val_clips:
        val_set = torch.utils.data.Subset(val_set, range(min(cfg.val_clips, len(val_set))))

    # ---- processes and devices
    accelerator = Accelerator(
        cpu=_cpu_processes(),
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=None if cfg.tracker == "none" else cfg.tracker,
        project_dir=str(cfg.path),
        dataloader_config=DataLoaderConfiguration(even_batches=True),
    )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # the initial weights: the same on every process
    run = cfg.path
    last = checkpoints(cfg)[-1] if resume and checkpoints(cfg) else None
    if resume and last is None:
        accelerator.print(f"no checkpoint in {run / 'checkpoints'}: starting from scratch", flush=True)
    if len(train_set) < cfg.batch_size * accelerator.num_processes:
        raise ConfigError(f"{len(train_set)} training clips are fewer than one batch ({cfg.batch_size} x "
                          f"{accelerator.num_processes} processes): lower batch_size or add clips")
    sampler = EpochShuffle(len(train_set), cfg.seed,
                           speaker_weights([clip["speaker"] for clip in train_set.clips], cfg.speaker_balance))
    loader_options = dict(collate_fn=collate_clips, num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
                          worker_init_fn=_leave_stop_signals_to_the_main_process)
    train_loader = torch.utils.data.DataLoader(train_set, cfg.batch_size, sampler=sampler, drop_last=True, **loader_options)
    val_loader = torch.utils.data.DataLoader(val_set, cfg.batch_size, shuffle=False, **loader_options)
    val_metrics = frame_metrics(cfg.val_metrics)
    sample_batch = collate_clips([val_set[i] for i in range(min(cfg.sample_clips, len(val_set)))])

    # ---- models
    generator, discriminators = build_models(cfg, weights, pretrained=last is None)
    optimizers = build_optimizers(cfg, generator, discriminators)
    names = ["G", *discriminators]
    prepared = accelerator.prepare(generator, *discriminators.values(), *optimizers.values(), train_loader, val_loader)
    generator, *rest = prepared[: len(names)]
    discriminators = dict(zip(discriminators, rest))
    optimizers = dict(zip(names, prepared[len(names) : 2 * len(names)]))
    train_loader, val_loader = prepared[-2:]
    models = {"G": generator, **discriminators}

    progress = Progress()
    accelerator.register_for_checkpointing(progress)
    if last is not None:
        source, added = with_new_discriminators(accelerator, last, names, models, optimizers)
        try:
            accelerator.load_state(str(source))
        except (RuntimeError, ValueError, KeyError, OSError) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"{last} does not fit this config ({message[:200]}): resume with the settings the run "
                              f"started with ({run / 'config.yaml'}) or start a new run_dir") from None
        finally:
            if source != last and accelerator.is_main_process:
                shutil.rmtree(source, ignore_errors=True)
        accelerator.print(f"resumed from {last} (step {progress.step}, epoch {progress.epoch}, "
                          f"batch {progress.batch} of the epoch)"
                          + "".join(f"; D_{name} starts afresh" for name in added), flush=True)

    # What validation, the samples and best/ show: G itself, or its moving average (g_ema).
    ema = start_ema(accelerator, generator, last) if cfg.g_ema else None
    shown = ema if ema is not None else generator
    synced = [*models.values(), *([ema] if ema is not None else [])]  # whose BatchNorm statistics rank 0 gives the rest

    if accelerator.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    csv_log = MetricsCSV(run / "metrics.csv", progress.step if last is not None else None) if accelerator.is_main_process else None
    tracker = None
    if cfg.tracker != "none":
        hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in asdict(cfg).items()}
        accelerator.init_trackers("tensorboard", config=hparams)
        tracker = accelerator.get_tracker(cfg.tracker) if accelerator.is_main_process else None

    def log(values: dict[str, float]) -> None:
        if accelerator.is_main_process:
            csv_log.log(values, progress.step, progress.epoch, time.time() - started)
        accelerator.log(values, step=progress.step)

    accelerator.print(
        f"{cfg.name}: {len(train_set)} training clips, {len(val_set)} validation clips, "
        f"{len(train_loader)} batches of {cfg.batch_size} x {accelerator.num_processes} processes per epoch on "
        f"{accelerator.device} ({cfg.mixed_precision}); G {_count(generator) / 1e6:.2f} M parameters"
        f" ({_count(generator, trainable=True) / 1e6:.2f} M trained)"
        + "".join(f", D_{n} {_count(d) / 1e6:.2f} M" for n, d in discriminators.items())
        + (f"; ablations {', '.join(cfg.ablations)}" if cfg.ablations else ""),
        flush=True,
    )

    # ---- the loop
    started = time.time()
    meter = Meter()
    saved_step = progress.step if last is not None else -1
    validated = False
    stop = None
    stop_signal, signalled = StopSignal(), False
    while stop is None and progress.epoch < cfg.epochs:
        rates = learning_rates(cfg, progress.epoch)
        for name, optimizer in optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = rates[name]
        # Accelerate's loader sets its epoch counter on the sampler and dataset when iterated: set it
        # to the run's epoch (a resumed run restarts the counter), then skip the batches already done.
        train_loader.set_epoch(progress.epoch)
        sampler.set_epoch(progress.epoch)
        train_set.set_epoch(progress.epoch)
        batches = accelerator.skip_first_batches(train_loader, progress.batch) if progress.batch else train_loader

        tick = time.perf_counter()
        for batch in batches:
            rng = step_rng(cfg, progress.step, accelerator.process_index)
            values = train_step(accelerator, cfg, weights, generator, discriminators, optimizers, batch, rng)
            progress.step += 1
            progress.batch += 1
            if ema is not None:
                ema_update(ema, accelerator.unwrap_model(generator), cfg.g_ema)
            if not all_finite(accelerator, values):
                report_non_finite(accelerator, cfg, values, progress.step)
                accelerator.end_training()
                return EXIT_NAN
            meter.add(values, time.perf_counter() - tick)  # data loading included, bookkeeping below not

            if progress.step % cfg.log_every == 0:
                logged = meter.results(accelerator, cfg.batch_size * accelerator.num_processes)
                logged.update({f"lr/{name}": rates[name] for name in optimizers})
                log(logged)
                print_line(accelerator, progress.step, progress.epoch, logged)
                meter = Meter()
            if progress.step % cfg.sample_every == 0 and accelerator.is_main_process:
                write_samples(accelerator, cfg, shown, sample_batch, progress.step, tracker)
            if progress.step % cfg.save_every == 0:
                save_checkpoint(accelerator, cfg, progress.step, ema)
                saved_step = progress.step
            if cfg.max_steps is not None and progress.step >= cfg.max_steps:
                stop = f"reached max_steps={cfg.max_steps}"
                break
            if stop_signal.requested(accelerator):
                signalled = True
                stop = f"stopped by {stop_signal.name or 'a signal'}; resume with --resume"
                break
            tick = time.perf_counter()
        else:  # the epoch is complete
            progress.epoch += 1
            progress.batch = 0

        if not signalled and (stop is None or not validated):  # a signalled stop saves, it does not validate
            # ---- validation: after every epoch (and once at the end of a run cut short before one)
            broadcast_buffers(accelerator, synced)
            val_loader.set_epoch(0)  # the same stills and shifted audio every validation
            metrics = validate(accelerator, cfg, shown, discriminators, val_loader, val_metrics)
            validated = True
            name, score = score_of(cfg, metrics)
            log({**metrics, "val/score": score})
            accelerator.print(f"validation after epoch {progress.epoch}: "
                              + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())), flush=True)
            if progress.best_metric != name:
                if progress.best_metric:
                    accelerator.print(f"early stopping now tracks {name} (was {progress.best_metric}): best score reset")
                progress.best_metric, progress.best_score, progress.stale_epochs = name, -math.inf, 0
            if score > progress.best_score:
                progress.best_score, progress.best_step, progress.stale_epochs = score, progress.step, 0
                if accelerator.is_main_process:
                    best = export_best(accelerator, cfg, shown, progress, metrics)
                    accelerator.print(f"new best {name} {score:.4f}: generator exported to {best}", flush=True)
            else:
                progress.stale_epochs += 1
                if progress.stale_epochs >= cfg.patience:
                    stop = stop or f"early stopping: {name} has not improved for {cfg.patience} validations"

    # ---- the end
    stop_signal.restore()
    stop = stop or f"trained {cfg.epochs} epochs"
    broadcast_buffers(accelerator, synced)
    if saved_step != progress.step:
        save_checkpoint(accelerator, cfg, progress.step, ema)
    if accelerator.is_main_process:
        write_samples(accelerator, cfg, shown, sample_batch, progress.step, tracker)
    digest = weights_digest(accelerator, models)
    (run / f"weights_rank{accelerator.process_index}.json").write_text(json.dumps(digest, indent=1))
    accelerator.print(f"done after {progress.step} steps ({stop}); best {progress.best_score:.4f} at step "
                      f"{progress.best_step}", flush=True)
    accelerator.wait_for_everyone()
    if hub_repo and accelerator.is_main_process:
        push_to_hub(run / "best", hub_repo)
        accelerator.print(f"pushed {run / 'best'} to https://huggingface.co/{hub_repo}", flush=True)
    accelerator.end_training()
    return 0


class StopSignal:
    """SIGTERM or Ctrl-C asks the loop to stop after the current step and save a checkpoint, so
    stopping a run by hand (or a scheduler's SIGTERM) loses nothing; a second Ctrl-C kills at once."""

    def __init__(self):
        self.name = None
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook's worker): no handler
                pass

    def _handle(self, signum, frame):
        if self.name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name

    def requested(self, accelerator) -> bool:
        """True on every process once any process got a signal (they must stop at the same step)."""
        flag = torch.tensor([1.0 if self.name else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, "max").item()) if accelerator.num_processes > 1 else bool(flag.item())

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """Ctrl-C, `pkill -f train.py` and schedulers signal the whole process group, data-loader workers
    included; a worker that dies of it makes the main process raise before StopSignal can save. The
    workers ignore both signals and end when the main process shuts the loader down."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _cpu_processes() -> bool:
    """True for several processes on a machine without GPUs. Accelerate 1.x's `accelerate launch --cpu`
    starts one process whatever --num_processes says (it needs mpirun for more), and under
    `accelerate launch --multi_gpu` / torchrun without CUDA each process would train alone; telling
    Accelerate that this is a CPU run makes it join them with gloo (DistributedType.MULTI_CPU)."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _count(model, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


if __name__ == "__main__":
    sys.exit(main())
