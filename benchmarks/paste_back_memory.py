"""Peak memory of animating a large photo with paste-back and saving it, against the video's length.

    python benchmarks/paste_back_memory.py                          # 2048-pixel photo, 3 s and 12 s
    python benchmarks/paste_back_memory.py --side 4000 --seconds 3 --stacked

`AnimationResult.save` pastes each crop back into the photo while the encoder takes the frames, so
Python's peak should not grow with the length; `--stacked` also measures the old way (all full-photo
frames stacked in memory by `result.frames`, then written). Each case runs in a fresh process, since
the peak resident set size (getrusage's ru_maxrss) only ever grows. "child MB" is the largest peak
of its child processes: the encoder (x264's lookahead holds about 40 frames, so it depends on the
photo's size, not the video's length), or a child forked from the whole Python process before it
became ffmpeg, which then counts Python's memory at that moment.
The default model and the astronaut photo (resized) and GRID sentence from examples/ are used.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_case(side: int, seconds: float, stacked: bool) -> dict:
    """Animate and save once in this process; the figures as a dict."""
    from PIL import Image

    from speech_anim import Animator
    from speech_anim.audio import load_audio
    from speech_anim.video import write_video

    photo = np.asarray(Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize((side, side), Image.LANCZOS))
    speech = load_audio(EXAMPLES / "grid_s1_bbaf2n.wav")
    audio = np.resize(speech, int(seconds * 16000))  # the sentence repeated to the length asked for
    animator = Animator.from_pretrained(device="cpu")
    start = time.perf_counter()
    result = animator(photo, (audio, 16000), paste_back=True)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.mp4"
        if stacked:
            write_video(out, result.frames, result.fps, audio=result.audio)
        else:
            result.save(out)
        size = out.stat().st_size
    return dict(
        side=side, seconds=seconds, mode="stacked" if stacked else "pasted while encoding",
        frames=result.num_frames, wall_s=round(time.perf_counter() - start, 1), mp4_mb=round(size / 2**20, 1),
        python_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        child_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048, help="the photo's width and height in pixels")
    parser.add_argument("--seconds", type=float, nargs="+", default=[3.0, 12.0], help="video lengths to try")
    parser.add_argument("--stacked", action="store_true", help="also measure stacking all frames before writing")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case, in a child process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(**json.loads(args.case))))
        return

    print(f"{'mode':>22} | {'side':>5} | {'seconds':>7} | {'frames':>6} | {'Python MB':>9} | {'child MB':>9} | {'wall s':>6} | mp4 MB")
    for seconds in args.seconds:
        for stacked in ([False, True] if args.stacked else [False]):
            case = json.dumps(dict(side=args.side, seconds=seconds, stacked=stacked))
            done = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
                print(f"{'stacked' if stacked else 'pasted while encoding':>22} | {args.side:>5} | {seconds:>7g} | failed: {reason}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{r['mode']:>22} | {r['side']:>5} | {r['seconds']:>7g} | {r['frames']:>6} | {r['python_mb']:>9} | "
                  f"{r['child_mb']:>9} | {r['wall_s']:>6} | {r['mp4_mb']}")


if __name__ == "__main__":
    main()
