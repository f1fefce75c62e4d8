"""How good can a warped still's mouth be? Each clip's first frame warped by the clip's own real landmark
motion (`models/warp.warp_still`, no model), scored like the evaluation's LMD.

    python scripts/warp_oracle.py --data /work/data_cache/grid --split unseen
    python scripts/warp_oracle.py --data /work/data_cache/grid --split unseen --scale 0.5 --clips 4

The jaw and lip landmarks (dlib's, `face.crop_landmarks`, on the real frames) move from the first
frame's by `--scale` times their real motion; the LMD of the warped frames against the real ones is
printed beside the still's (the static baseline) and the inner-lip gap's s.d. beside the real one's.
With scale 1 it is the LMD a mouth motion model could reach with a perfect prediction; with 0.5, with
perfect timing and half the size of movement.

With --mouth-motion the motion is instead a MouthMotion model's prediction from the clip's speech (a
generator folder with mouth_motion, e.g. speech_anim/pretrained/grid-s1, or a train/fit_mouth_motion.py
folder): the warp alone, without the decoder's layer over it, which tells the two parts' errors apart.

    python scripts/warp_oracle.py --split unseen --mouth-motion speech_anim/pretrained/grid-s1
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from screen_eyes import preprocessed_ids, read_clip
from speech_anim.audio import frame_audio
from speech_anim.face import crop_landmarks, inner_lip_gap
from speech_anim.metrics.reference import MOUTH
from speech_anim.models.generator import load_mouth_motion
from speech_anim.models.mouth_motion import MOVING_POINTS
from speech_anim.models.warp import warp_still


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/data_cache/grid"))
    parser.add_argument("--split", default="unseen")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--mouth-motion", type=Path,
                        help="predict the motion from the speech with this model instead of taking the real one")
    args = parser.parse_args()
    predictor = None
    if args.mouth_motion is not None:
        predictor = load_mouth_motion(args.mouth_motion)
        predictor.eval()

    static, warped, gaps = [], [], []
    for clip_id in preprocessed_ids(args.data, args.split, args.clips):
        frames, sound = read_clip(args.data, clip_id)[:2]
        real = np.stack([crop_landmarks(f) for f in frames])
        if predictor is None:
            motion = args.scale * (real[:, list(MOVING_POINTS)] - real[:1, list(MOVING_POINTS)])
        else:
            windows = torch.from_numpy(frame_audio(sound, predictor.config.fps, frames=len(frames)))[None].float()
            with torch.no_grad():
                motion = args.scale * predictor(windows)[0][0].numpy()
        still = torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            video = warp_still(still, torch.from_numpy(real[0])[None], torch.from_numpy(motion)[None].float())[0]
        out = ((video.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        found = np.stack([crop_landmarks(f) for f in out])
        static.append(np.linalg.norm(real[:1, MOUTH] - real[:, MOUTH], axis=-1).mean())
        warped.append(np.linalg.norm(found[:, MOUTH] - real[:, MOUTH], axis=-1).mean())
        gaps.append((inner_lip_gap(found).std(), inner_lip_gap(real).std()))
        print(f"{clip_id}: LMD warped {warped[-1]:.3f}, still {static[-1]:.3f}", flush=True)
    source = "real motion" if predictor is None else f"{args.mouth_motion}'s predicted motion"
    print(f"{len(static)} clips of {args.split}, {source} x{args.scale:g}: LMD warped {np.mean(warped):.3f} "
          f"(still {np.mean(static):.3f}); inner-lip gap s.d. {np.mean([g[0] for g in gaps]):.2f} px "
          f"(real {np.mean([g[1] for g in gaps]):.2f})")


if __name__ == "__main__":
    main()
