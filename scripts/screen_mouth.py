"""Screen a generator's mouth on a split (by default s31, the unseen speaker) in a minute or two of one CPU core.

    python scripts/screen_mouth.py runs/cpu-small-voices/checkpoints/step_00001600
    python scripts/screen_mouth.py speech_anim/pretrained/grid-s1 --split test --clips 20 --json runs/mouth.json
    python scripts/screen_mouth.py runs/cpu-small-speakers/checkpoints/step_00002500 --split train --speaker s4

CHECKPOINT is a `save_pretrained` folder or a train.py `checkpoints/step_*` folder (as for
scripts/screen_eyes.py). Each clip is animated from its first frame with seed k for the k-th clip,
as scripts/evaluate_model.sh does, and compared with the real clip:

- articulation: the standard deviation over time of the inner-lip gap (`face.inner_lip_gap`, crop
  pixels), generated vs real, and their correlation: how far and how much in step with the real
  mouth the generated one opens and closes;
- LMD: the evaluation's mouth landmark distance (as `metrics.reference.LMD`), beside the static
  baseline's (the still repeated), which a model must beat; split into the mouth's shape (LMD of the
  20 points about their mean) and its place (how far, and which way, the mean lies from the real one);
- lip sync: our SyncNet-style expert's confidence and offset, beside the real clips'.

With --cross, also the mouth-opening s.d. of the first 5 faces of the split and of the s1 validation
clips, each animated with the same-index clip's speech of either speaker: a model that moves one face
little whatever the voice has not learnt that face's motion; one that moves every face less with one
voice has not learnt that voice (for the default model before the augmented runs: s1's face with
s31's voice 1.47 px, s31's face with s1's voice 0.66 px; real 1.3-1.5 and 2.4).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from screen_eyes import load_generator, preprocessed_ids, read_clip  # load_generator: a save_pretrained folder or a train.py checkpoint
from speech_anim import Animator
from speech_anim.face import crop_landmarks, inner_lip_gap
from speech_anim.metrics.reference import MOUTH
from speech_anim.metrics.sync import av_sync


def _lmd(mouth: np.ndarray, real: np.ndarray) -> float:
    """metrics.reference.LMD on landmarks already found: mean distance of the 20 mouth points."""
    return float(np.linalg.norm(mouth - real, axis=-1).mean())


def _shape_and_place(mouth: np.ndarray, real: np.ndarray, suffix: str = "") -> dict:
    """LMD's two parts for (T, 20, 2) mouth points: about their means (shape) and of the means (place)."""
    centre, real_centre = mouth.mean(1, keepdims=True), real.mean(1, keepdims=True)
    offset = (centre - real_centre)[:, 0]
    return {f"shape{suffix}": float(np.linalg.norm((mouth - centre) - (real - real_centre), axis=-1).mean()),
            f"place{suffix}": float(np.linalg.norm(offset, axis=-1).mean()),
            f"place_dx{suffix}": float(offset[:, 0].mean()), f"place_dy{suffix}": float(offset[:, 1].mean())}


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, default=Path("/work/data_cache/grid"))
    parser.add_argument("--split", default="unseen", help="a split of speech_anim/data/splits (unseen: s31)")
    parser.add_argument("--speaker", help="only this speaker's clips of the split (e.g. s4 of train: has the model learnt his mouth?)")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--cross", action="store_true", help="also swap voices with s1 validation clips")
    args = parser.parse_args()

    animator = Animator(load_generator(args.checkpoint).eval(), device="cpu")
    ids = preprocessed_ids(args.data, args.split, args.clips, args.speaker)
    if not ids:
        raise SystemExit(f"screen_mouth: no clip of split {args.split!r}{f' by {args.speaker}' if args.speaker else ''} "
                         f"in {args.data}: run `speech-anim preprocess` first (or check --speaker)")
    rows = []
    for k, clip_id in enumerate(ids):
        frames, sound, _ = read_clip(args.data, clip_id)
        video = animator.animate_crop(frames[0], (sound, 16000), seed=k)
        n = min(len(video), len(frames))
        video, real = video[:n], frames[:n]
        points, points_real = crop_landmarks(video), crop_landmarks(real)  # what metrics.reference.LMD reads
        gap_generated, gap_real = inner_lip_gap(points), inner_lip_gap(points_real)
        mouth_generated, mouth_real = points[:, MOUTH], points_real[:, MOUTH]
        mouth_static = np.repeat(points_real[:1, MOUTH], n, axis=0)  # the still is the first real frame
        sync, real_sync = av_sync(video, sound, 25.0), av_sync(real, sound, 25.0)
        rows.append({
            "id": clip_id, "sd_generated": float(gap_generated.std()), "sd_real": float(gap_real.std()),
            "correlation": float(np.corrcoef(gap_generated, gap_real)[0, 1]),
            "lmd": _lmd(mouth_generated, mouth_real), "lmd_static": _lmd(mouth_static, mouth_real),
            "confidence": sync.confidence, "offset": sync.offset, "confidence_real": real_sync.confidence,
            **_shape_and_place(mouth_generated, mouth_real), **_shape_and_place(mouth_static, mouth_real, "_static"),
        })  # fmt: skip
    mean = {key: float(np.nanmean([row[key] for row in rows])) for key in rows[0] if key != "id"}
    in_sync = sum(abs(row["offset"]) <= 1 for row in rows)
    print(f"{args.checkpoint} on {len(rows)} clips of {args.split}{f' ({args.speaker})' if args.speaker else ''}:")
    print(f"  mouth opening s.d. {mean['sd_generated']:.2f} px (real {mean['sd_real']:.2f}), correlation {mean['correlation']:.2f}")
    print(f"  LMD {mean['lmd']:.3f} (static baseline {mean['lmd_static']:.3f}): shape {mean['shape']:.2f} "
          f"(static {mean['shape_static']:.2f}), place {mean['place']:.2f} px off (static {mean['place_static']:.2f}), "
          f"{mean['place_dx']:+.2f} px right, {mean['place_dy']:+.2f} px down (static {mean['place_dx_static']:+.2f}, "
          f"{mean['place_dy_static']:+.2f})")
    print(f"  sync confidence {mean['confidence']:.3f} (real {mean['confidence_real']:.3f}, "
          f"{mean['confidence'] / mean['confidence_real']:.2f}x), {in_sync} of {len(rows)} clips within one frame")
    report = {"checkpoint": str(args.checkpoint), "split": args.split, "speaker": args.speaker, "mean": mean, "in_sync": in_sync, "clips": rows}
    if args.cross:
        report["cross"] = cross_voices(animator, args.data, ids, args.split)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def cross_voices(animator: Animator, data: Path, ids: list[str], split: str, clips: int = 5) -> dict:
    """Mouth-opening s.d. (px) for each face x voice pairing of `ids` and the s1 validation clips."""
    others = preprocessed_ids(data, "val", clips)
    groups = {split: [read_clip(data, i) for i in ids[:clips]], "s1 val": [read_clip(data, i) for i in others]}
    table = {}
    for face_group, faces in groups.items():
        for voice_group, voices in groups.items():
            spreads = []
            for k, ((frames, _, _), (_, sound, _)) in enumerate(zip(faces, voices)):
                video = animator.animate_crop(frames[0], (sound, 16000), seed=k)
                spreads.append(float(inner_lip_gap(crop_landmarks(video)).std()))
            table[f"face {face_group}, voice {voice_group}"] = float(np.mean(spreads))
            print(f"  face of {face_group}, voice of {voice_group}: mouth opening s.d. {np.mean(spreads):.2f} px")
    return table


if __name__ == "__main__":
    main()
