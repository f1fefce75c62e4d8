"""How far a generator's rendered eyes close for each eye openness it is given: its eye response.

    python scripts/eye_response.py speech_anim/pretrained/grid-s1 [--clips 12] [--json runs/eye_response.json]

The decoder is trained on the real openness of each frame (`blinks.eye_openness`, dlib's EAR over
the clip's median), so a faithful renderer gives back, read off its frames by the same landmarks,
the openness it was given. Ours does not quite (model_card.md, stage 6): a blink drawn to 0.6 comes
out nearer 0.7, and the lids of a drawn blink's first and last frames hardly move, so the detector
finds fewer and shorter blinks in the video than the eye process drew.

For each still (the first frame of the first N clips of each training and validation speaker:
s1 validation, s4 and s26 training clips; never s31 or the s1 test split), the generator renders a
second of open eyes and then holds each input openness 1.00, 0.95, ..., 0.00 for three frames, over
faint room noise. Printed: the mean rendered openness per input level (the middle frame of each
hold, over the open second's median EAR), and the eye curve that undoes it: for each wanted openness
0, 0.05, ..., 1, the input that renders it (`GeneratorConfig.eye_curve`, shipped with
`scripts/export_default_model.py --eye-curve`). The eye process's draws are then decoded through
that curve instead of `eye_gain`. Openness given to the generator is decoded as it is, so the
checkpoint's own eye_gain or eye_curve do not enter the measurement, unless `--decoded` puts them
in (then the first rows say how far the eyes close as shipped; wanted: the input row). `--eyelids`
measures the lids of another drawer (the decoder's, the still's warp, or both) than the checkpoint's.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from speech_anim import audio
from speech_anim.animator import _to_tensor as to_tensor, _to_uint8 as to_uint8  # the pipeline's own conversions
from speech_anim.blinks import eye_aspect_ratio
from speech_anim.data.preprocess import clip_path, decode_frames
from speech_anim.face import crop_landmarks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screen_eyes import add_eye_options, load_generator, preprocessed_ids, set_eye_options  # noqa: E402

LEVELS = np.round(np.arange(1.0, -1e-9, -0.05), 2)  # 1.00 ... 0.00
HOLD = 3  # frames per level
OPEN = 25  # frames of open eyes first: the EAR these are read against


CALIBRATION = (("val", "s1"), ("train", "s4"), ("train", "s26"))
UNSEEN = (("unseen", "s31"),)  # --unseen: a diagnosis of the held-out face, never a calibration


def stills(data: Path, per_speaker: int, sources=CALIBRATION) -> list[tuple[str, np.ndarray]]:
    """First frames of the first `per_speaker` preprocessed clips of each (split, speaker)."""
    chosen = []
    for split, speaker in sources:
        for clip_id in preprocessed_ids(data, split, per_speaker, speaker):
            with np.load(clip_path(data, clip_id)) as clip:
                chosen.append((clip_id, decode_frames(clip["frames"], clip["frame_offsets"], [0])[0]))
    return chosen


def openness_schedule() -> np.ndarray:
    return np.concatenate([np.ones(OPEN), np.repeat(LEVELS, HOLD)]).astype(np.float32)


@torch.inference_mode()
def response(generator, still: np.ndarray, decoded: bool = False) -> np.ndarray:
    """Rendered openness at each of LEVELS for one still (nan where no face was found); with `decoded`,
    each level goes through the generator's eye_curve or eye_gain first, as the eye process's draws do."""
    schedule = openness_schedule()
    given = generator.decode_openness(torch.from_numpy(schedule)) if decoded else torch.from_numpy(schedule)
    quiet = audio.quiet_room(int(len(schedule) / 25.0 * 16000) + 3200, 1e-3, np.random.default_rng(0))
    windows = torch.from_numpy(audio.frame_audio(quiet, 25.0, frames=len(schedule)))[None]
    noise = generator.sample_noise(1, len(schedule), generator=torch.Generator().manual_seed(0))
    landmarks = torch.from_numpy(crop_landmarks(still))[None] if generator.config.mouth_motion else None
    video = generator(to_tensor(still), windows, noise=noise, openness=given[None], still_landmarks=landmarks)
    ear = eye_aspect_ratio(crop_landmarks(to_uint8(video[0])))
    open_ear = np.nanmedian(ear[:OPEN])
    middles = OPEN + np.arange(len(LEVELS)) * HOLD + HOLD // 2
    return ear[middles] / open_ear


def inverse_curve(rendered: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Inputs (on LEVELS' scale) that render each wanted openness, by linear interpolation of the
    mean response made monotone; an openness the renderer cannot reach takes the nearest input."""
    inputs, out = LEVELS[::-1], np.maximum.accumulate(rendered[::-1])  # ascending input, non-decreasing output
    out = out + np.arange(len(out)) * 1e-6  # strictly increasing, for np.interp
    return np.round(np.interp(wanted, out, inputs), 4) + 0.0  # + 0.0: no -0.0 in config.json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, default=Path("/work/data_cache/grid"))
    parser.add_argument("--clips", type=int, default=12, help="stills per speaker")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--decoded", action="store_true",
                        help="pass each level through the checkpoint's eye_curve / eye_gain first: how far its eyes close as shipped")
    parser.add_argument("--unseen", action="store_true",
                        help="measure on the unseen speaker s31's stills instead (to diagnose her blinks; its curve is not for shipping)")
    add_eye_options(parser, "to measure with (the gain and curve count with --decoded)")
    args = parser.parse_args()

    generator = load_generator(args.checkpoint).eval()
    set_eye_options(generator, args)
    if not generator.config.eye_input:
        sys.exit("eye_response: this generator has no eye input (eye_input=False): it has no eye response to measure")
    faces = stills(args.data, args.clips, UNSEEN if args.unseen else CALIBRATION)
    if not faces:
        sys.exit(f"eye_response: no preprocessed clips under {args.data}: run `speech-anim preprocess` first")
    curves = np.stack([response(generator, still, args.decoded) for _, still in faces])
    by_speaker = {s: np.nanmean(curves[[i for i, (c, _) in enumerate(faces) if c.split("/")[0] == s]], axis=0)
                  for s in sorted({c.split("/")[0] for c, _ in faces})}
    mean = np.nanmean(curves, axis=0)
    wanted = np.round(np.linspace(0.0, 1.0, 21), 2)
    curve = inverse_curve(mean, wanted)

    print(f"{len(faces)} stills; rendered openness (read off the frames) per input openness:")
    print("input    " + " ".join(f"{x:5.2f}" for x in LEVELS))
    print("mean     " + " ".join(f"{x:5.2f}" for x in mean))
    for speaker, values in by_speaker.items():
        print(f"{speaker:<9}" + " ".join(f"{x:5.2f}" for x in values))
    print("eye curve: input that renders openness " + ", ".join(f"{w:.2f}" for w in wanted[::4]) + ": "
          + ", ".join(f"{x:.2f}" for x in curve[::4]))
    print("--eye-curve " + ",".join(f"{x:.3f}" for x in curve))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "unseen": args.unseen, "decoded": args.decoded, "stills": [c for c, _ in faces],
                                         "levels": LEVELS.tolist(), "rendered_mean": mean.tolist(),
                                         "rendered_by_speaker": {s: v.tolist() for s, v in by_speaker.items()},
                                         "wanted": wanted.tolist(), "eye_curve": curve.tolist()}, indent=1))


if __name__ == "__main__":
    main()
