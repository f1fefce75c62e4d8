"""Train the SyncNet-style evaluation expert (speech_anim/models/syncnet.py) on the train split.

Chung & Zisserman's recipe, scaled to a 2-core CPU: pairs of (5 mouth frames, 0.2 s of audio)
that are in sync (label 1) or shifted by 2..15 frames within the same clip, or taken from another
clip (label 0), and the contrastive loss on their Euclidean distance,

    L = y d^2 + (1 - y) max(margin - d, 0)^2.

Every clip of the split is loaded once: mouths at half resolution (≈0.2 MB a clip) and 16 kHz
audio, so a step only gathers windows. Augmentation (the expert must also judge generated video):
brightness/contrast jitter, a ±1 pixel shift, occasional blur, horizontal flips, audio gain.
The audio's log-mel spectrograms are computed once per frame at load time (pairs are drawn at
whole-frame shifts), which leaves the two small conv streams as nearly all of a step's work.
At the end the val clips are scored with `speech_anim.metrics.sync.av_sync` (their offset should
be 0), and `--ship` writes the model to speech_anim/assets/syncnet.{json,safetensors}.

    nohup python scripts/train_syncnet.py --data /work/data_cache/grid --out runs/syncnet --ship \
        > runs/syncnet.log 2>&1 &
    python scripts/train_syncnet.py --data /work/data_cache/grid --report test unseen   # score it
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from speech_anim.audio import frame_audio
from speech_anim.data.datasets import TalkingFaceDataset
from speech_anim.data.preprocess import clip_path, decode_frames
from speech_anim.metrics.sync import av_sync
from speech_anim.models.syncnet import SyncNet, SyncNetConfig, mouth_frames, save_expert

MAX_SHIFT = 15  # negatives are shifted by MIN_SHIFT..MAX_SHIFT frames within their clip
MIN_SHIFT = 2  # 2 frames = 80 ms: windows still overlap by 60%, which is what makes sync precise


class Clips:
    """All mouths and per-frame log-mel spectrograms of a split, in flat tensors for fast gathers.

    The spectrogram of frame t's audio window is computed once here (with the model's own fixed
    front end), since every pair the training draws uses whole-frame shifts.
    """

    def __init__(self, root: Path, split: str, model: SyncNet):
        config = model.config
        entries = TalkingFaceDataset(root, split).clips
        self.ids = [e["id"] for e in entries]
        mouths, mels, self.lengths = [], [], []
        for entry in entries:
            with np.load(clip_path(root, entry["id"]), allow_pickle=False) as clip:
                crops = decode_frames(clip["frames"], clip["frame_offsets"])
                sound = clip["audio"].astype(np.float32) / 32768.0
            windows = frame_audio(sound, float(entry["fps"]), frames=len(crops), window=config.audio_window)
            with torch.no_grad():
                mels.append(model.log_mel(torch.from_numpy(windows)).half())
            mouths.append(mouth_frames(crops, config).half())
            self.lengths.append(len(crops))
        self.lengths = np.array(self.lengths)
        self.start = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.mouths, self.mels = torch.cat(mouths), torch.cat(mels)

    def __len__(self) -> int:
        return len(self.ids)

    def mouth_windows(self, clip: np.ndarray, t: np.ndarray, frames: int) -> torch.Tensor:
        offsets = np.arange(frames) - frames // 2
        index = np.clip(t[:, None] + offsets, 0, self.lengths[clip][:, None] - 1) + self.start[clip][:, None]
        return self.mouths[torch.from_numpy(index)].float()

    def log_mels(self, clip: np.ndarray, t: np.ndarray) -> torch.Tensor:
        return self.mels[torch.from_numpy(self.start[clip] + t)].float()


def draw_batch(clips: Clips, batch: int, rng: np.random.Generator, frames: int, cross: float):
    """Half in-sync pairs, half out-of-sync: (mouth windows, log-mels, labels)."""
    clip = rng.integers(0, len(clips), batch)
    t = (rng.random(batch) * clips.lengths[clip]).astype(np.int64)
    positive = np.arange(batch) < batch // 2
    # Negatives: the same clip shifted by MIN_SHIFT..MAX_SHIFT frames (flipped in sign when that
    # leaves the clip), or, with probability `cross`, another clip.
    k = rng.integers(MIN_SHIFT, MAX_SHIFT + 1, batch) * rng.choice([-1, 1], batch)
    outside = (t + k < 0) | (t + k >= clips.lengths[clip])
    k[outside] = -k[outside]
    audio_clip, audio_t = clip.copy(), np.clip(t + k, 0, clips.lengths[clip] - 1)
    other = ~positive & (rng.random(batch) < cross)
    audio_clip[other] = (clip[other] + rng.integers(1, len(clips), other.sum())) % len(clips)
    audio_t[other] = (rng.random(other.sum()) * clips.lengths[audio_clip[other]]).astype(np.int64)
    audio_clip[positive], audio_t[positive] = clip[positive], t[positive]
    labels = torch.from_numpy(positive.astype(np.float32))
    return clips.mouth_windows(clip, t, frames), clips.log_mels(audio_clip, audio_t), labels


def augment(mouths: torch.Tensor, mels: torch.Tensor, generator: torch.Generator):
    """Photometric and small geometric jitter of the mouths (the same for all 5 frames of a
    window), random flips, occasional 3×3 blur; a random audio gain (-12..+6 dB), which is an
    offset of the log-mel (log(g^2 mel) / 4 = log(mel) / 4 + log(g) / 2)."""
    b = len(mouths)
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    mouths = mouths * (0.7 + 0.6 * rand(b, 1, 1, 1)) + (rand(b, 1, 1, 1) - 0.5) * 0.4
    flip = rand(b) < 0.5
    mouths[flip] = mouths[flip].flip(-1)
    dy, dx = (rand(2) * 3).long() - 1
    mouths = torch.roll(mouths, shifts=(int(dy), int(dx)), dims=(-2, -1))
    blur = rand(b) < 0.3
    if blur.any():
        mouths[blur] = F.avg_pool2d(mouths[blur], 3, stride=1, padding=1, count_include_pad=False)
    gain_db = rand(b, 1, 1, 1) * 18 - 12
    mels = mels + math.log(10) * gain_db / 20 / 2
    return mouths.clamp(-1.5, 1.5), mels


def contrastive_loss(distance: torch.Tensor, label: torch.Tensor, margin: float) -> torch.Tensor:
    return (label * distance.pow(2) + (1 - label) * F.relu(margin - distance).pow(2)).mean()


def validate(model: SyncNet, root: Path, ids: list[str], shifts=(0,)) -> dict:
    """Offsets found on clips whose audio is shifted by each of `shifts` frames: the share found
    exactly and within one frame, and the mean confidence (and offset) at each shift."""
    from speech_anim.metrics.sync import shift_audio

    was_training = model.training
    model.eval()
    found = {s: [] for s in shifts}
    confidence = {s: [] for s in shifts}
    for clip_id in ids:
        with np.load(clip_path(root, clip_id), allow_pickle=False) as clip:
            crops = decode_frames(clip["frames"], clip["frame_offsets"])
            sound = clip["audio"].astype(np.float32) / 32768.0
        for s in shifts:
            result = av_sync(crops, shift_audio(sound, s), model=model)
            found[s].append(result.offset)
            confidence[s].append(result.confidence)
    model.train(was_training)
    out = {}
    for s in shifts:
        offsets = np.array(found[s])
        out[f"shift {s:+d}"] = {
            "exact": float(np.mean(offsets == s)),
            "within1": float(np.mean(np.abs(offsets - s) <= 1)),
            "mean_offset": float(offsets.mean()),
            "confidence": float(np.mean(confidence[s])),
        }
    if 0 in shifts and len(shifts) > 1:
        # Share of clips whose found offset moves exactly with the shift (found - shift the same at
        # every shift): a clip that reads one frame off in sync then reads one frame off everywhere.
        deviation = np.array([np.array(found[s]) - s for s in shifts])
        out["same_deviation_at_all_shifts"] = float(np.mean((deviation == deviation[0]).all(axis=0)))
    return out


def report(args) -> None:
    """Score the shipped expert on whole splits (no training): in sync and with ±5-frame shifts."""
    from speech_anim.models.syncnet import load_expert

    model = load_expert()
    for split in args.report:
        ids = [e["id"] for e in TalkingFaceDataset(args.data, split).clips]
        print(f"{split} ({len(ids)} clips): {json.dumps(validate(model, args.data, ids, shifts=(0, -5, 5)))}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="preprocessed dataset (speech-anim preprocess --out)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--out", type=Path, help="run folder: checkpoint (save_pretrained) + val.json")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--max-minutes", type=float, default=30.0, help="stop early (cosine schedule is cut short)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--cross", type=float, default=0.2, help="share of negatives taken from another clip")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--val-clips", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="1 is fastest on a busy 2-core machine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ship", action="store_true", help="write the result to speech_anim/assets/syncnet.*")
    parser.add_argument("--report", nargs="+", metavar="SPLIT",
                        help="no training: score the shipped expert on these splits (e.g. test unseen)")  # fmt: skip
    args = parser.parse_args()
    if args.report:
        torch.set_num_threads(args.threads)
        report(args)
        return
    if args.out is None:
        parser.error("--out is required for training")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    config = SyncNetConfig(width=args.width, embed_dim=args.embed_dim)
    model = SyncNet(config)

    began = time.time()
    clips = Clips(args.data, args.split, model)
    val_ids = TalkingFaceDataset(args.data, args.val_split).clips
    val_ids = [e["id"] for e in val_ids][:: max(1, len(val_ids) // args.val_clips)][: args.val_clips]
    print(f"loaded {len(clips)} {args.split} clips ({clips.lengths.sum()} frames) in {time.time() - began:.0f} s; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters", flush=True)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    began = time.time()
    step = 0
    log = {"loss": 0.0, "pos": 0.0, "neg": 0.0, "n": 0}
    while step < args.steps and (time.time() - began) < args.max_minutes * 60:
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps)) * min(1.0, (step + 1) / 100)
        for group in optimizer.param_groups:
            group["lr"] = lr
        mouths, mels, label = draw_batch(clips, args.batch, rng, config.video_frames, args.cross)
        mouths, mels = augment(mouths, mels, generator)
        distance = (model.embed_log_mel(mels) - model.embed_video(mouths)).norm(dim=-1)
        loss = contrastive_loss(distance, label, args.margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        log["loss"] += loss.item()
        log["pos"] += distance[label > 0].mean().item()
        log["neg"] += distance[label == 0].mean().item()
        log["n"] += 1
        if step % 50 == 0:
            n = log["n"]
            print(f"step {step} loss {log['loss'] / n:.4f} d(sync) {log['pos'] / n:.3f} d(shifted) {log['neg'] / n:.3f} "
                  f"lr {lr:.2e} {(time.time() - began) / step:.2f} s/step", flush=True)
            log = {"loss": 0.0, "pos": 0.0, "neg": 0.0, "n": 0}
        if step % 1000 == 0:
            print(f"step {step} val {validate(model, args.data, val_ids[:10])}", flush=True)
            model.save_pretrained(args.out)

    model.eval()
    model.save_pretrained(args.out)
    print(f"trained {step} steps in {(time.time() - began) / 60:.1f} min", flush=True)
    scores = validate(model, args.data, val_ids, shifts=(0, -5, 5))
    print(f"val ({len(val_ids)} clips): {json.dumps(scores)}", flush=True)
    (args.out / "val.json").write_text(json.dumps({"steps": step, "val_clips": val_ids, **scores}, indent=2))
    if args.ship:
        save_expert(model)
        print("wrote speech_anim/assets/syncnet.json and syncnet.safetensors", flush=True)


if __name__ == "__main__":
    main()
