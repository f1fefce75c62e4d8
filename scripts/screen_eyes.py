"""Screen a generator's eyes and silent mouth on validation clips, in a few minutes of one CPU core.

    python scripts/screen_eyes.py runs/cpu-small-eyes/checkpoints/step_00000600 [--clips 20]
    python scripts/screen_eyes.py runs/cpu-small-eyes/best --json runs/screen_best.json

CHECKPOINT is a `save_pretrained` folder or one of train.py's `checkpoints/step_*` folders (its run's
config.yaml gives the generator's sizes; a run with g_ema > 0 is screened by its moving average). Printed, on the first N clips of the s1 validation split
(stills: each clip's first frame, as in scripts/evaluate_model.sh):

- rendering (eye_input generators): the generator given each real clip's own eye openness (read as
  `--openness` says: `frames` for a generator trained with TrainConfig.openness frames); how
  closely the openness read off its frames follows the real one (correlation), and how many of the
  real clips' blinks it reproduces (blinks.match_blinks);
- blinks: the animation as a user gets it (the eye process's draw, seed k for the k-th clip),
  blinks per second and median duration by `blinks.video_blinks`, beside the real clips' and those
  of the drawn openness curves themselves (what a faithful renderer would show);
- quiet room: 8 s of faint pink noise (tests/test_default_model.py's): blinks, and how far the mouth
  opens beyond the still's (95th percentile of the inner-lip gap, pixels);
- lip sync: our SyncNet-style expert's confidence and offset on those animations;
- seeds: the mean upper-face difference between seeds 0 and 1 on the first clip (grey levels).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from speech_anim import Animator, audio
from speech_anim.animator import EYE_SEED_OFFSET
from speech_anim.animator import _to_tensor as to_tensor, _to_uint8 as to_uint8  # the pipeline's own conversions
from speech_anim.blinks import detect_blinks, eye_openness, match_blinks, pooled_rate, video_blinks
from speech_anim.data.datasets import OPENNESS_SOURCES, frame_openness, read_split, split_file
from speech_anim.data.preprocess import clip_path, decode_frames
from speech_anim.face import crop_landmarks, inner_lip_gap
from speech_anim.metrics.sync import av_sync
from speech_anim.models import Generator
from speech_anim.models.generator import EYE_COLOURS, EYELIDS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from config import ConfigError  # noqa: E402  (train/config.py)
from train import generator_from_checkpoint  # noqa: E402  (train/train.py knows its checkpoints' layout)


def load_generator(checkpoint: Path) -> Generator:
    """train.generator_from_checkpoint, with its complaint as one line."""
    try:
        return generator_from_checkpoint(checkpoint)
    except ConfigError as error:
        sys.exit(f"{Path(sys.argv[0]).stem}: {error}")


def eye_curve_argument(text: str) -> tuple[float, ...]:
    """--eye-curve: comma-separated openness values, or a scripts/eye_response.py --json file."""
    path = Path(text)
    if path.suffix == ".json":
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"no such file {text}: write it with scripts/eye_response.py --json")
        return tuple(json.loads(path.read_text())["eye_curve"])
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither comma-separated numbers nor an eye_response .json") from None


def add_eye_options(parser: argparse.ArgumentParser, whose: str) -> None:
    """--eye-gain, --eye-curve, --eyelids and --eye-colour: how the eyes are drawn, for screening and for export alike."""
    parser.add_argument("--eye-gain", type=float,
                        help=f"decode the eye process's draws with this GeneratorConfig.eye_gain {whose} "
                             "(calibrated with scripts/screen_eyes.py --eye-gain on validation clips)")
    parser.add_argument("--eye-curve", type=eye_curve_argument,
                        help=f"decode them through this GeneratorConfig.eye_curve {whose}, in place of a gain "
                             "(comma-separated, or the --json of scripts/eye_response.py)")
    parser.add_argument("--eyelids", choices=EYELIDS,
                        help=f"GeneratorConfig.eyelids {whose}: who draws them (decoder, the still's warp, or both)")
    parser.add_argument("--eye-colour", choices=EYE_COLOURS,
                        help=f"GeneratorConfig.eye_colour {whose}: the closing lids' colour (decoded, or the still's)")


def set_eye_options(generator: Generator, args: argparse.Namespace) -> None:
    """Apply add_eye_options' flags to the generator, or exit with the reason in one line."""
    try:
        if args.eye_gain is not None:
            generator.set_eye_gain(args.eye_gain)
        if args.eye_curve is not None:
            generator.set_eye_curve(args.eye_curve)
        if args.eyelids is not None:
            generator.set_eyelids(args.eyelids)
        if args.eye_colour is not None:
            generator.set_eye_colour(args.eye_colour)
    except ValueError as error:
        sys.exit(f"{Path(sys.argv[0]).stem}: {args.checkpoint}: {error}")


def preprocessed_ids(data: Path, split: str, limit: int, speaker: str | None = None) -> list[str]:
    """The first `limit` clips of a GRID split list (of one speaker's, if given) that preprocessing kept in `data`."""
    ids = [i for i in read_split(split_file("grid", split)) if speaker is None or i.split("/")[0] == speaker]
    return [i for i in ids if clip_path(data, i).is_file()][:limit]


def read_clip(data: Path, clip_id: str):
    with np.load(clip_path(data, clip_id)) as clip:
        frames = decode_frames(clip["frames"], clip["frame_offsets"])
        sound = clip["audio"].astype(np.float32) / 32768.0
        openness = eye_openness(clip["landmarks"])
    return frames, sound, openness


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, default=Path("/work/data_cache/grid"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    add_eye_options(parser, "instead of the checkpoint's")
    parser.add_argument("--openness", choices=OPENNESS_SOURCES, default="landmarks",
                        help="where the real openness given in the rendering row is read, as the generator's training "
                             "read it (TrainConfig.openness): the preprocessing's tracked landmarks or dlib on the crops")
    args = parser.parse_args()

    generator = load_generator(args.checkpoint).eval()
    set_eye_options(generator, args)
    animator = Animator(generator, device="cpu")
    ids = preprocessed_ids(args.data, args.split, args.clips)
    clips = [read_clip(args.data, i) for i in ids]
    if args.openness == "frames":
        curves = frame_openness(args.data, ids)
        clips = [(frames, sound, curves[i]) for i, (frames, sound, _) in zip(ids, clips)]
    report = {"checkpoint": str(args.checkpoint), "clips": len(ids)}

    real = [detect_blinks(eye_openness(crop_landmarks(frames)), 25.0) for frames, _, _ in clips]
    if generator.config.eye_input:
        correlations, matched, found, rendered_stats = [], 0, 0, []
        for (frames, sound, openness), real_stats in zip(clips, real):
            still = to_tensor(frames[0])
            windows = torch.from_numpy(audio.frame_audio(sound, 25.0, frames=len(frames)))[None]
            noise = generator.sample_noise(1, len(frames), generator=torch.Generator().manual_seed(0))
            landmarks = torch.from_numpy(crop_landmarks(frames[0]))[None] if generator.config.mouth_motion else None
            video = generator(still, windows, noise=noise, openness=torch.from_numpy(openness)[None], still_landmarks=landmarks)
            rendered = to_uint8(video[0])
            drawn = eye_openness(crop_landmarks(rendered))
            correlations.append(np.corrcoef(drawn, openness)[0, 1])
            ours = detect_blinks(drawn, 25.0)
            rendered_stats.append(ours)
            matched += match_blinks([(b.start, b.end) for b in ours.blinks], [(b.start, b.end) for b in real_stats.blinks])[0]
            found += len(real_stats.blinks)
        rate, median, count = pooled_rate(rendered_stats)
        report["rendering"] = {"openness_correlation": float(np.nanmean(correlations)), "real_blinks_reproduced": matched,
                               "real_blinks": found, "per_second": rate, "median_duration": median}
        print(f"rendering: openness read off the frames follows the real one with r = {np.nanmean(correlations):.2f}; "
              f"{matched} of the {found} real blinks reproduced; {rate:.3f} blinks/s, median {median:.2f} s in all")

    # A seed per clip: one seed for all would draw the same blinks in every clip.
    videos = [animator.animate_crop(frames[0], (sound, 16000), seed=k) for k, (frames, sound, _) in enumerate(clips)]
    animated = [video_blinks(video, fps=25.0) for video in videos]
    syncs = [av_sync(video, sound, 25.0) for video, (_, sound, _) in zip(videos, clips)]
    confidence, in_sync = float(np.mean([s.confidence for s in syncs])), sum(abs(s.offset) <= 1 for s in syncs)
    report["sync"] = {"confidence": confidence, "in_sync": in_sync}
    print(f"lip sync (our expert): confidence {confidence:.3f}, {in_sync} of {len(syncs)} clips within one frame")
    named = [("real clips", real), ("animated", animated)]
    if generator.config.eye_input:  # what the eye process drew for those animations, read as curves
        drawn = [detect_blinks(generator.eye_process.sample(1, len(frames), torch.Generator().manual_seed(k + EYE_SEED_OFFSET))[0][0].numpy(), 25.0)
                 for k, (frames, _, _) in enumerate(clips)]
        named.append(("drawn by the eye process", drawn))
    for name, stats in named:
        rate, median, count = pooled_rate(stats)
        report[f"blinks_{name.split()[0]}"] = {"per_second": rate, "median_duration": median, "count": count}
        print(f"blinks, {name}: {rate:.3f}/s, median {median:.2f} s ({count} in {len(stats)} clips)")

    still = clips[0][0][0]
    quiet = audio.quiet_room(8 * 16000, 1e-3, np.random.default_rng(0))
    silent = animator.animate_crop(still, (quiet, 16000), seed=0)
    gap = inner_lip_gap(crop_landmarks(silent))
    opening = float(np.percentile(gap, 95) - inner_lip_gap(crop_landmarks(still[None]))[0])
    silent_blinks = len(video_blinks(silent, fps=25.0).blinks)
    report["quiet_room"] = {"blinks": silent_blinks, "mouth_opening_p95": opening}
    print(f"quiet room, 8 s: {silent_blinks} blinks, mouth {opening:.2f} px beyond the still's (95th percentile)")

    frames, sound, _ = clips[0]
    a, b = (animator.animate_crop(frames[0], (sound, 16000), seed=s).astype(np.float32) for s in (0, 1))
    seeds = float(np.abs(a[:, :64] - b[:, :64]).mean())
    report["seed_upper_difference"] = seeds
    print(f"seeds 0 and 1: upper faces differ by {seeds:.2f} grey levels on average")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
