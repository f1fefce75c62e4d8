"""Fit the mouth motion (speech_anim/models/mouth_motion.py) to the lip and jaw landmarks of real clips.

    python train/fit_mouth_motion.py --data /work/data_cache/grid --out runs/mouth-motion

Regression, whole clips at a time: each frame's displacement of the jaw and lip landmarks from the
clip's first frame (GRID clips start in silence with the mouth at rest, and the evaluation's still is
that frame), from the speech windows up to and around that frame, by L1. Each clip's voice is warped by
a random rate (`audio.warped_windows`, as `voice_warp` in train.py) and its level by a random gain, so
that three voices sound like many. Each clip is also set at a random place in a longer stretch of a
quiet room (`audio.quiet_room`, at a random level, or digital silence), where the mouth must stay at
rest: GRID's silences last half a second, and fitted on clips alone the model let the mouth drift
open in 4 s of silence (inner-lip gap up to 2.5 px). It prints, on the validation split, the mean distance of the
predicted lip landmarks from the real ones beside that of a mouth that stays at rest: with a perfect
warp (which dlib follows to 0.4 px, see the module docstring) that is the LMD a still can reach.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speech_anim.audio import quiet_room, warped_windows  # noqa: E402
from speech_anim.data.datasets import TalkingFaceDataset, clip_phone_tracks  # noqa: E402
from speech_anim.data.preprocess import clip_path  # noqa: E402
from speech_anim.models.mouth_motion import LIP_POINTS, MOVING_POINTS, MouthMotion, MouthMotionConfig  # noqa: E402
from speech_anim.phones import LABEL_SAMPLES  # noqa: E402

LIPS = [MOVING_POINTS.index(p) for p in LIP_POINTS]


def load_clips(root, split, phones: bool = False) -> list[dict]:
    """Audio (float32), the moving points' displacement from frame 0 (T×K×2) and, with `phones`, the
    phone track (`phones.phone_track`, computed once and cached beside the clips) of every clip."""
    entries = TalkingFaceDataset(root, split).clips
    tracks = clip_phone_tracks(root, [e["id"] for e in entries], workers=2) if phones else {}
    clips = []
    for entry in entries:
        with np.load(clip_path(Path(root), entry["id"])) as clip:
            points = clip["landmarks"][:, list(MOVING_POINTS)].astype(np.float32)
            clips.append({"id": entry["id"], "audio": clip["audio"].astype(np.float32) / 32768.0,
                          "target": points - points[:1], "speaker": entry["id"].split("/")[0],
                          "phones": tracks.get(entry["id"])})  # fmt: skip
    return clips


def batch_of(clips, rng: np.random.Generator | None, frames: int, rate_range=(1.0, 1.0), gain_db=0.0, length=None,
             model: MouthMotion | None = None):
    """Audio windows B×length×3200 and targets B×length×K×2 of the first `frames` frames of each clip
    (clips shorter are skipped by the caller), each read at a random rate and gain when `rng` is given.
    With `length` > frames (and `rng`) the clip sits at a random frame of `length` frames of a quiet room
    (target: at rest); without, `length` = frames. For a `model` that reads phones, also their labels
    under its columns, B×length×columns, read at the same rate (silence in the quiet room), else None."""
    length = length or frames
    windows, targets, labels = [], [], []
    hop = 16000 / 25.0
    for clip in clips:
        rate = float(np.exp(rng.uniform(*np.log(rate_range)))) if rng is not None else 1.0
        gain = float(10 ** (rng.uniform(-gain_db, gain_db) / 20)) if rng is not None else 1.0
        target = np.zeros((length, *clip["target"].shape[1:]), np.float32)
        if length > frames:
            offset = int(rng.integers(0, length - frames + 1))
            level = 0.0 if rng.random() < 0.2 else float(np.exp(rng.uniform(np.log(1e-4), np.log(3e-3))))
            signal = quiet_room(int(length * hop), rms=level, rng=rng)
            speech = clip["audio"][: int(frames * hop)]
            start = int(offset * hop)
            signal[start : start + len(speech)] = speech
        else:
            offset, signal = 0, clip["audio"]
        target[offset : offset + frames] = clip["target"][:frames]
        windows.append(np.clip(gain * warped_windows(signal, np.arange(length), rate), -1, 1))
        targets.append(target)
        if model is not None and model.config.phones:
            # The track of the clip's own audio, cut where its speech is cut; a quiet room is silence.
            track = clip["phones"][: int(frames * hop) // LABEL_SAMPLES] if length > frames else clip["phones"]
            labels.append(model.window_phones(track, np.arange(length), rate, int(offset * hop)))
    phones = torch.from_numpy(np.stack(labels)) if labels else None
    return torch.from_numpy(np.stack(windows)), torch.from_numpy(np.stack(targets)), phones


def lip_errors(model, clips, frames) -> tuple[float, float]:
    """Mean distance (px) of predicted and of resting lip landmarks from the real ones, over the frames."""
    model.eval()
    predicted, resting = [], []
    with torch.no_grad():
        for start in range(0, len(clips), 32):
            audio, target, phones = batch_of(clips[start : start + 32], None, frames, model=model)
            displacement, _ = model(audio, phones=phones)
            predicted.append((displacement - target)[:, :, LIPS].norm(dim=-1).mean().item() * len(audio))
            resting.append(target[:, :, LIPS].norm(dim=-1).mean().item() * len(audio))
    model.train()
    return sum(predicted) / len(clips), sum(resting) / len(clips)


def silent_opening(model, seconds: float = 4.0) -> float:
    """The widest the inner lips open (px) in `seconds` of a quiet room: 0 is right."""
    windows = warped_windows(quiet_room(int(seconds * 16000), rng=np.random.default_rng(0)), np.arange(int(seconds * 25)), 1.0)
    model.eval()
    with torch.no_grad():
        displacement, _ = model(torch.from_numpy(windows)[None])
    model.train()
    gap = displacement[0, :, MOVING_POINTS.index(66), 1] - displacement[0, :, MOVING_POINTS.index(62), 1]
    return float(gap.max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../data_cache/grid", help="output of `speech-anim preprocess`")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--out", default="runs/mouth-motion")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--voice-warp", type=float, default=0.2, help="rates drawn log-uniformly in [1/(1+w), 1+w]")
    parser.add_argument("--gain-db", type=float, default=6.0)
    parser.add_argument("--length", type=int, default=150, help="frames of quiet room each training clip sits in (6 s)")
    parser.add_argument("--speaker-balance", type=float, default=0.5,
                        help="clip weights ∝ (clips of its speaker)^-b: 0 = as the data, 1 = every speaker equally")
    parser.add_argument("--hold-out-speaker",
                        help="leave this training speaker out and report the lip error on its clips too: how well the "
                             "motion carries to a voice it never heard (for choosing settings; fit the final model on all)")
    parser.add_argument("--cepstra", type=int, default=0,
                        help="read this many cepstral coefficients instead of the log-mel bands (MouthMotionConfig.cepstra)")
    parser.add_argument("--phones", type=int, default=0,
                        help="also read the phones a recogniser hears, embedded in this many dimensions (MouthMotionConfig.phones)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    frames = 74  # the shortest GRID clips; every clip is cut to it
    phones = args.phones > 0
    train = [c for c in load_clips(args.data, args.train_split, phones) if len(c["target"]) >= frames]
    val = [c for c in load_clips(args.data, args.val_split, phones) if len(c["target"]) >= frames]
    held_out = [c for c in train if c["speaker"] == args.hold_out_speaker]
    if args.hold_out_speaker and not held_out:
        raise SystemExit(f"fit_mouth_motion: no {args.train_split} clips of speaker {args.hold_out_speaker!r} to hold out")
    train = [c for c in train if c["speaker"] != args.hold_out_speaker]
    speakers = [c["speaker"] for c in train]
    counts = {s: speakers.count(s) for s in set(speakers)}
    weights = np.array([counts[s] ** -args.speaker_balance for s in speakers])
    weights /= weights.sum()
    print(f"{len(train)} train clips {counts}, {len(val)} validation clips")
    model = MouthMotion(MouthMotionConfig(cepstra=args.cepstra, phones=args.phones))
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, args.steps)
    rates = (1 / (1 + args.voice_warp), 1 + args.voice_warp)
    started = time.time()
    for step in range(1, args.steps + 1):
        picks = [train[i] for i in rng.choice(len(train), args.batch, p=weights)]
        audio, target, labels = batch_of(picks, rng, frames, rates, args.gain_db, max(args.length, frames), model)
        displacement, _ = model(audio, phones=labels)
        # L1 over every moving point and frame: the lips and jaw of the real clip, relative to frame 0.
        loss = (displacement - target).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if step % 250 == 0 or step == args.steps:
            error, rest = lip_errors(model, val, frames)
            line = (f"step {step}: train L1 {loss.item():.3f} px; validation lip error {error:.3f} px (a mouth at rest: {rest:.3f}); "
                    f"lips part {silent_opening(model):.2f} px in 4 s of silence")
            if held_out:
                line += ", held-out {}: {:.3f} px (at rest: {:.3f})".format(args.hold_out_speaker, *lip_errors(model, held_out, frames))
            print(f"{line} ({time.time() - started:.0f} s)", flush=True)
    model.eval()
    model.save_pretrained(args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
