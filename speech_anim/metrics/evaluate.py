"""`speech-anim evaluate`: the paper's Table 6 columns for a folder of generated videos.

    speech-anim evaluate --generated DIR --reference DIR [--still DIR] --out report.json [--csv clips.csv]
    speech-anim evaluate --baseline static --reference DIR --out report.json

Generated videos, reference videos and stills are paired by name (the path under their folder
without its extension; a unique file stem also pairs). Videos that are not already aligned 128×96
crops (any raw video, of any size) are aligned with the preprocessing pipeline's tracker and
smoothing (`speech_anim.data.preprocess`); preprocessed clips (`.npz` from `speech-anim
preprocess`) are read as they are. Word timings for the lip-reading metric come from the clip's
metadata or a GRID `.align` file beside the video (or in `../align/`), or from `--align DIR`.

The static baseline is each reference's first aligned frame repeated for every frame, with the
reference's sound: a model must beat it on sync, LMD and blinks.

Per clip values go to the JSON (and CSV); the table shows the mean over clips. Non-finite values
are written as the strings "inf" / "-inf" and as null for "no value" (e.g. blink duration of a
video without blinks), so the JSON stays valid.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import FaceError, SpeechAnimError
from . import METRICS, MetricError, get_metric
from . import lipreading as _lipreading  # noqa: F401  (registers lipreading, lipread_top1)
from . import sync as _sync  # noqa: F401  (registers av_offset, av_confidence)

# (metric name, column title) of the paper's Table 6, in its order.
TABLE_COLUMNS = (
    ("psnr", "PSNR"), ("ssim", "SSIM"), ("cpbd", "CPBD"), ("acd", "ACD"), ("lmd", "LMD"),
    ("lipreading", "Lip-read"), ("av_offset", "AV offset"), ("av_confidence", "AV conf"),
    ("blinks_per_second", "Blinks/s"), ("blink_duration", "Blink dur (s)"),
)  # fmt: skip
DEFAULT_METRICS = tuple(name for name, _ in TABLE_COLUMNS)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
CROP_SHAPE = (128, 96, 3)


# ---------------------------------------------------------------------------------------------
# Loading and aligning clips


@dataclass
class Clip:
    """One video as the metrics see it: aligned crops, its sound, frame rate and word timings."""

    name: str
    crops: np.ndarray  # T×128×96×3 uint8
    audio: np.ndarray | None  # 16 kHz mono float32, None when the file has no sound
    fps: float
    words: list | None = None  # [(word, start_s, end_s)]


def align_frames(frames: np.ndarray, aligner=None) -> np.ndarray:
    """Raw frames of any size -> aligned T×128×96×3 crops, the way `speech-anim preprocess` does
    it (detect, track, smooth the landmarks over time, warp to the canonical face)."""
    from ..data.preprocess import ClipSkipped, smooth_landmarks, track_landmarks
    from ..face import align_with_landmarks

    aligner = aligner or _default_aligner()
    try:
        landmarks, _, _ = track_landmarks(frames, aligner)
    except ClipSkipped as skipped:
        raise FaceError(f"cannot align the video ({skipped}): it needs a visible frontal face in every frame") from None
    placement = smooth_landmarks(landmarks)
    return np.stack([align_with_landmarks(frame, points).crop for frame, points in zip(frames, placement)])


def _find_words(path: Path, align_dir: Path | None) -> list | None:
    from ..data.readers import read_grid_align

    candidates = [path.with_suffix(".align"), path.parent.parent / "align" / f"{path.stem}.align"]
    if align_dir is not None:
        candidates.insert(0, align_dir / f"{path.stem}.align")
    for candidate in candidates:
        if candidate.is_file():
            return read_grid_align(candidate)
    return None


@lru_cache(maxsize=1)
def _default_aligner():
    from ..face import FaceAligner

    return FaceAligner()


def load_clip(path, name: str | None = None, align_dir=None) -> Clip:
    """A video file (aligned if it is not a 128×96 crop) or a preprocessed `.npz` clip."""
    path = Path(path)
    name = name or path.stem
    if path.suffix == ".npz":
        from ..data.preprocess import decode_frames

        try:
            with np.load(path, allow_pickle=False) as data:
                crops = decode_frames(data["frames"], data["frame_offsets"])
                audio = data["audio"].astype(np.float32) / 32768.0
                meta = json.loads(str(data["meta"]))
        except (OSError, KeyError, ValueError) as error:
            raise SpeechAnimError(f"{path} is not a clip written by `speech-anim preprocess` ({error}); pass videos or preprocessed clips") from None
        words = [(w["word"], w["start"], w["end"]) for w in meta["words"]] if meta.get("words") else None
        return Clip(name, crops, audio, float(meta["fps"]), words or _find_words(path, align_dir))

    if not path.is_file():
        raise SpeechAnimError(f"video file not found: {path}; check the path")
    crops, audio, fps = _read_aligned(path.resolve(), path.stat().st_mtime_ns)
    return Clip(name, crops, audio, fps, _find_words(path, align_dir))


@lru_cache(maxsize=8)
def _read_aligned(path: Path, mtime_ns: int):
    """(crops, audio or None, fps) of a video file; the last few are kept, since aligning a raw
    video takes seconds and one run often needs a clip twice (ground truth, then a baseline)."""
    from ..audio import load_audio
    from ..errors import AudioError
    from ..video import read_video

    frames, fps = read_video(path)
    try:
        audio = load_audio(path)
    except AudioError:
        audio = None  # a silent generated video: the reference's sound is used instead
    crops = frames if frames.shape[1:] == CROP_SHAPE else align_frames(frames)
    crops.flags.writeable = False
    if audio is not None:
        audio.flags.writeable = False
    return crops, audio, fps


def load_still(path) -> np.ndarray:
    """A still image as an aligned 128×96 crop (aligned only when it is not one already)."""
    from ..face import load_image

    image = load_image(path)
    if image.shape == CROP_SHAPE:
        return image
    return _default_aligner().align(image).crop


def static_clip(reference: Clip, still: np.ndarray | None = None) -> Clip:
    """The static baseline: `still` (default: the reference's first frame) for every frame."""
    frame = reference.crops[0] if still is None else still
    crops = np.repeat(frame[None], len(reference.crops), axis=0)
    return Clip(reference.name, crops, reference.audio, reference.fps, reference.words)


# ---------------------------------------------------------------------------------------------
# Pairing files by name


def list_media(folder, suffixes=VIDEO_SUFFIXES) -> dict[str, Path]:
    """{name: path} of the files under `folder` (recursively); name = relative path, no suffix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpeechAnimError(f"{folder} is not a folder: pass the folder that holds the videos")
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            files[path.relative_to(folder).with_suffix("").as_posix()] = path
    return files


def _match(name: str, files: dict[str, Path]) -> Path | None:
    """`files[name]`, else the one file with the same stem (e.g. `video/bbaf2n` for `bbaf2n`)."""
    if name in files:
        return files[name]
    stem = name.rsplit("/", 1)[-1]
    same = [path for key, path in files.items() if key.rsplit("/", 1)[-1] == stem]
    return same[0] if len(same) == 1 else None


def pair_files(generated_dir, reference_dir, ids=None) -> list[tuple[str, Path | None, Path]]:
    """(name, generated path or None, reference path) for every clip to evaluate, sorted by name.

    Without `generated_dir` every reference is a clip (the baseline); `ids` keeps only those names.
    """
    references = list_media(reference_dir)
    if not references:
        raise SpeechAnimError(f"no videos in {reference_dir}: pass the folder of the real videos")
    if generated_dir is None:
        names = sorted(references)
        if ids is not None:
            names = [n for n in names if n in ids or n.rsplit("/", 1)[-1] in ids]
        pairs = [(n, None, references[n]) for n in names]
    else:
        generated = list_media(generated_dir)
        if not generated:
            raise SpeechAnimError(f"no videos in {generated_dir}: pass the folder of the generated videos")
        if ids is not None:
            generated = {n: p for n, p in generated.items() if n in ids or n.rsplit("/", 1)[-1] in ids}
        pairs, unpaired = [], []
        for name, path in sorted(generated.items()):
            reference = _match(name, references)
            (pairs.append((name, path, reference)) if reference else unpaired.append(name))
        if unpaired:
            raise SpeechAnimError(
                f"{len(unpaired)} generated videos have no reference of the same name in {reference_dir} "
                f"(e.g. {unpaired[0]}): name each generated video like its real one"
            )
    if not pairs:
        raise SpeechAnimError("no clips to evaluate: check --ids against the file names")
    return pairs


def read_ids(path) -> set[str]:
    """Names from a list file (one per line, e.g. a split file with `s1/bbaf2n`): full and stems."""
    lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines:
        raise SpeechAnimError(f"{path} lists no clips: one name per line")
    return set(lines) | {line.rsplit("/", 1)[-1] for line in lines}


# ---------------------------------------------------------------------------------------------
# Scoring


def score_clip(generated: Clip, reference: Clip, still: np.ndarray, metrics) -> dict:
    """{metric: value} of one generated clip against its reference and still."""
    frames = min(len(generated.crops), len(reference.crops))
    fake, real = generated.crops[:frames], reference.crops[:frames]
    audio = generated.audio if generated.audio is not None else reference.audio
    context = {"audio": audio, "fps": generated.fps, "words": reference.words}
    row = {}
    for name in metrics:
        metric = get_metric(name)
        if name in ("av_offset", "av_confidence") and audio is None:
            raise MetricError(f"{generated.name}: neither the generated nor the real video has sound; the AV sync metrics need it")
        row[name] = metric(fake, real if metric.needs_reference else None, still if metric.needs_still else None, **context)
    return row


def summarize(rows: list[dict], metrics) -> dict:
    """Mean over clips of each metric (nan values, e.g. no blinks, left out), plus for the sync
    offset its median and the share of clips within one frame of sync."""
    summary = {}
    for name in metrics:
        values = np.array([row[name] for row in rows], dtype=np.float64)
        finite_or_inf = values[~np.isnan(values)]
        summary[name] = float(finite_or_inf.mean()) if len(finite_or_inf) else float("nan")
    if "av_offset" in metrics:
        offsets = np.array([row["av_offset"] for row in rows])
        summary["av_offset_median"] = float(np.median(offsets))
        summary["av_in_sync"] = float(np.mean(np.abs(offsets) <= 1))
    return summary


def evaluate(reference_dir, generated_dir=None, still_dir=None, baseline: str | None = None, metrics=DEFAULT_METRICS,
             ids=None, align_dir=None, limit: int | None = None, progress: bool = True) -> dict:  # fmt: skip
    """Score generated videos (or the `baseline="static"` one) against the references.

    Returns {"summary": {metric: mean}, "clips": [{"name": ..., metric: value}], ...}.
    """
    from tqdm.auto import tqdm

    if (generated_dir is None) == (baseline is None):
        raise SpeechAnimError("pass either generated videos (--generated DIR) or a baseline (--baseline static)")
    if baseline not in (None, "static"):
        raise SpeechAnimError(f"unknown baseline '{baseline}': the only baseline is 'static'")
    metrics = list(metrics)
    for name in metrics:
        get_metric(name)  # unknown names fail before any video is read
    pairs = pair_files(generated_dir, reference_dir, ids)[:limit]
    stills = list_media(still_dir, IMAGE_SUFFIXES) if still_dir is not None else None
    align_dir = Path(align_dir) if align_dir else None

    rows = []
    bar = tqdm(pairs, desc="evaluating", unit="clip", disable=not progress)
    for name, generated_path, reference_path in bar:
        bar.set_postfix_str(name, refresh=False)
        reference = load_clip(reference_path, name, align_dir)
        still = None
        if stills is not None:
            still_path = _match(name, stills)
            if still_path is None:
                raise SpeechAnimError(f"no still image named like {name} in {still_dir}: name each still like its video")
            still = load_still(still_path)
        if baseline == "static":
            generated = static_clip(reference, still)
        elif generated_path == reference_path:
            generated = reference  # ground truth against itself: align once
        else:
            generated = load_clip(generated_path, name, align_dir)
        still = reference.crops[0] if still is None else still
        rows.append({"name": name, **score_clip(generated, reference, still, metrics)})
    bar.close()

    return {
        "summary": summarize(rows, metrics),
        "clips": rows,
        "metrics": metrics,
        "generated": str(generated_dir) if generated_dir else f"baseline:{baseline}",
        "reference": str(reference_dir),
        "still": str(still_dir) if still_dir else "first reference frame",
    }


# ---------------------------------------------------------------------------------------------
# Output


def _json_value(value):
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _json_ready(obj):
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_ready(v) for v in obj]
    return _json_value(obj)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def format_table(summary: dict, metrics, label: str = "") -> str:
    """The summary as a two-line text table, Table 6's columns first."""
    titles = dict(TABLE_COLUMNS)
    names = [n for n, _ in TABLE_COLUMNS if n in metrics] + [n for n in metrics if n not in titles]
    header = [""] + [titles.get(n, n) for n in names]
    values = [label] + [_cell(summary.get(n)) for n in names]
    widths = [max(len(h), len(v)) for h, v in zip(header, values)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return line(header) + "\n" + line(values)


def write_csv(path, rows: list[dict], metrics) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["name", *metrics])
        for row in rows:
            writer.writerow([row["name"], *("" if _json_value(row[m]) is None else _json_value(row[m]) for m in metrics)])


# ---------------------------------------------------------------------------------------------
# Command line


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score generated videos against real ones (the paper's Table 6 metrics)",
        description="Pairs generated and real videos by name and prints the mean of each metric; "
        "per-clip values go to --out (JSON) and --csv.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--generated", type=Path, help="folder of generated videos")
    source.add_argument("--baseline", choices=["static"], help="score a baseline built from the references instead")
    p.add_argument("--reference", type=Path, required=True, help="folder of real videos (any size) or preprocessed .npz clips")
    p.add_argument("--still", type=Path, help="folder of the still images the videos were made from (default: first real frame)")
    p.add_argument("--out", type=Path, required=True, help="report (.json)")
    p.add_argument("--csv", type=Path, help="per-clip values (.csv)")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                   help=f"default: {' '.join(DEFAULT_METRICS)}")  # fmt: skip
    p.add_argument("--ids", type=Path, help="only the clips named in this list file (e.g. a split file)")
    p.add_argument("--align", type=Path, help="folder of GRID .align files (word timings for the lip-reading metric)")
    p.add_argument("--limit", type=int, help="only the first N clips (in name order)")
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:
    if args.out.suffix.lower() != ".json":
        raise SpeechAnimError(f"--out {args.out} must end in .json")
    unknown = [m for m in args.metrics if m.lower() not in METRICS]
    if unknown:
        raise MetricError(f"unknown metric '{unknown[0]}': choose from {', '.join(sorted(METRICS))}")
    ids = read_ids(args.ids) if args.ids else None
    report = evaluate(args.reference, args.generated, args.still, args.baseline, [m.lower() for m in args.metrics],
                      ids, args.align, args.limit)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_json_ready(report), indent=1) + "\n")
    if args.csv:
        write_csv(args.csv, report["clips"], report["metrics"])
    label = "static" if args.baseline else "generated"
    print(format_table(report["summary"], report["metrics"], label))
    print(f"{len(report['clips'])} clips; per-clip values in {args.out}" + (f" and {args.csv}" if args.csv else ""))
    return 0
