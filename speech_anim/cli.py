"""The `speech-anim` command.

Subcommands live next to the code they drive (`animate` here, `preprocess` in data/preprocess.py,
`blinks` in blinks.py, `evaluate` in metrics/); each module exposes `add_cli(subparsers)`. Errors
caused by input are `SpeechAnimError`s: they are printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings

from .errors import SpeechAnimError

# Modules that contribute subcommands, imported only when the parser is built.
_SUBCOMMAND_MODULES = (
    "speech_anim.data.preprocess",
    "speech_anim.blinks",
    "speech_anim.metrics.evaluate",
)


def _add_animate(subparsers) -> None:
    p = subparsers.add_parser("animate", help="animate a face photo with a speech clip")
    p.add_argument("--image", required=True, help="face photo (jpg, png, ...)")
    p.add_argument("--audio", required=True, help="speech (wav, flac, mp3, ogg, m4a, or a video's audio)")
    p.add_argument("--out", required=True, help="output video: .mp4 (H.264 + AAC; also .m4v, .mov), .mkv (H.264 + Opus) or .webm (VP9 + Opus)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="generator directory or Hub repo id (default: the model shipped with the package)",
    )
    p.add_argument("--revision", default=None,
                   help="with a Hub repo id: the branch, tag or commit to download (default: main)")
    p.add_argument("--seed", type=int, default=0, help="seed of the expression noise (blinks, brows)")
    p.add_argument("--fps", type=float, default=None,
                   help="output frame rate (default: the model's, 25); the model runs at its own rate and its "
                        "frames are repeated or dropped to fill this one")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--paste-back", action="store_true", help="paste the face back into the full photo")
    p.add_argument("--face", type=int, default=None,
                   help="in a photo of several faces, the one to animate, counted from 0 from the left (default: the largest)")
    p.add_argument("--backend", default="dlib", choices=["dlib", "insightface"], help="face detector")
    p.add_argument("--json", action="store_true",
                   help="print the run as one JSON object (video, frames, seed, face box, blinks) instead of text")
    p.set_defaults(func=_run_animate)


def _run_animate(args) -> int:
    from tqdm.auto import tqdm

    from .animator import Animator
    from .blinks import video_blinks
    from .video import check_output_path

    out = check_output_path(args.out)  # before the model loads and the frames are made
    if args.revision is not None and args.checkpoint is None:
        raise SpeechAnimError("--revision picks a version of a Hub model: give its repo id with --checkpoint too")
    animator = Animator.from_pretrained(args.checkpoint, device=args.device, backend=args.backend, revision=args.revision)
    # disable=None: no bar when stderr is not a terminal (logs, CI), so errors stay one line.
    with tqdm(total=100, unit="%", leave=False, disable=None) as bar:
        shown = [None]

        def progress(fraction: float, stage: str) -> None:
            if stage != shown[0]:  # a bar per stage: generating the frames, then encoding them
                shown[0] = stage
                bar.reset()
                bar.set_description(stage)
            bar.update(round(100 * fraction) - bar.n)

        result = animator(
            args.image, args.audio, seed=args.seed, fps=args.fps, paste_back=args.paste_back, progress=progress,
            face=args.face,
        )
        # Pasted back and encoded a frame at a time: memory stays that of the crops for any photo size.
        result.save(out, progress=progress)
    # Measured on the generated crops, as the app does: the blink detector of `speech-anim blinks`.
    blinks = video_blinks(result.crops, fps=result.fps)
    if args.json:
        record = dict(video=str(out), frames=result.num_frames, duration=round(result.duration, 3), fps=result.fps,
                      seed=result.seed, face_box=list(result.face_box), blinks=blinks.to_dict(ear=False))
        print(json.dumps(record))
        return 0
    print(f"wrote {out} ({result.num_frames} frames, {result.duration:.2f} s, seed {result.seed})")
    line = f"blinks: {len(blinks.blinks)} ({blinks.blinks_per_second:.2f} per second)"
    if blinks.blinks:
        line += f", median {blinks.median_duration:.2f} s, mean {blinks.mean_duration:.2f} s"
    print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-anim", description="Speech-driven facial animation: one photo + speech -> talking head."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_animate(subparsers)
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module: surface it
                raise
            continue
        module.add_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Warnings (several faces in a photo, audio cut to the frames) read like the errors: one line each.
    plain = warnings.formatwarning
    warnings.formatwarning = lambda message, *_, **__: f"speech-anim {args.command}: warning: {message}\n"
    try:
        return int(args.func(args) or 0)
    except SpeechAnimError as exc:
        print(f"speech-anim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"speech-anim {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = plain


if __name__ == "__main__":
    sys.exit(main())
