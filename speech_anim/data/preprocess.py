"""Preprocess a talking-face corpus into aligned training clips (`speech-anim preprocess`).

Per clip: read the video and its speech; detect the face on the first frame and then track it (the
previous frame's landmarks place the landmark predictor's box; the detector runs again only when
tracking is lost); smooth the landmarks over time so the crop does not jitter; warp every frame
to the canonical 128×96 face; write one file.

Storage: `OUT/clips/<clip id>.npz`, one uncompressed npz per clip (its members are compressed
already) holding

    frames         uint8 (N,)        the T aligned crops as JPEGs, concatenated
    frame_offsets  int64 (T + 1,)    frame t is frames[frame_offsets[t]:frame_offsets[t + 1]]
    audio          int16 (S,)        16 kHz mono speech, as long as the source's sound track
    landmarks      float32 (T, 68, 2) per-frame landmarks in crop pixels (x, y)
    matrices       float32 (T, 2, 3) per-frame image -> crop similarity (source video pixels)
    interpolated   bool (T,)         frames whose face was lost and whose landmarks are interpolated
    meta           str (JSON)        id, dataset, speaker, transcript, words (seconds and frames),
                                     fps, frames, samples, source paths, attributes, ...

JPEG frames (quality 95, 40 dB PSNR) let a loader decode only the frames a training sample uses (a
16-frame window of a 75-frame clip decodes 16 small JPEGs) and keep a GRID clip at ~0.5 MB, 0.4 MB
of it frames, against 1.8 MB as PNG or 2.4 MB as a deflated array (benchmarks/preprocess.py). Each file is written under a temporary name
and renamed when complete, so a killed run never leaves a half-written clip under a final name, and
a rerun skips every clip whose file exists. Clips that cannot be used get `<clip id>.skip.json`
with the reason (rerun with --retry-skipped to try them again). `OUT/index.json` lists every
finished clip of every shard; it is rebuilt from the clip files at the end of each run.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import CheckpointError, SpeechAnimError
from .readers import READERS, ClipRecord, DatasetError, in_shard, parse_shard, read_clips

FORMAT_VERSION = 1
JPEG_QUALITY = 95
SAMPLE_RATE = 16000
# A face missing on more consecutive frames than this (0.2 s at 25 fps) makes the clip unusable;
# shorter gaps (a damaged frame, a hand passing) get interpolated landmarks.
MAX_LOST_FRAMES = 5
# Audio may differ from the video by this many frames (GRID's sound tracks end up to 0.6 frame
# early); more means the two do not belong together.
MAX_LENGTH_MISMATCH = 1
# Savitzky-Golay smoothing of the landmarks that place the crop: a quadratic over 9 frames (0.36 s)
# follows real head motion but removes the predictor's frame-to-frame jitter: on GRID the crop's
# acceleration drops from 0.21 to 0.05 px/frame^2 while the stable points stray 0.19 px on average
# from where per-frame alignment puts them (benchmarks/preprocess.py).
SMOOTH_WINDOW, SMOOTH_ORDER = 9, 2
# Tracking is lost when the tracked face no longer looks like the face at the last detection
# (normalised cross-correlation of a grey eyes-and-nose patch; measured on GRID: tracked faces
# >= 0.69, black/noise frames and boxes off the face <= 0.28) or jumps by more than this many
# inter-ocular distances between frames (GRID: <= 0.04).
MIN_PATCH_CORRELATION = 0.45
MAX_JUMP = 0.5

_STABLE = [33, 36, 39, 42, 45]
_PATCH_SIZE, _PATCH_EYE_DISTANCE = 40, 20.0
SKIP_REASONS = ("unreadable video", "no audio", "length mismatch", "no face", "face lost", "error")


class ClipSkipped(Exception):
    """A clip that cannot become a training sample; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class ClipResult:
    id: str
    status: str  # "done", "exists" (finished by an earlier run) or "skipped"
    reason: str | None = None
    detail: str | None = None
    frames: int = 0
    seconds: float = 0.0  # audio duration


# ------------------------------------------------------------------------------------------ tracking
def track_landmarks(frames: np.ndarray, aligner, max_lost: int = MAX_LOST_FRAMES):
    """68 landmarks on every frame: detect once, then track; re-detect when tracking is lost.

    Returns `(landmarks (T, 68, 2) float32, lost (T,) bool, detections int)`; lost frames get
    landmarks interpolated from their neighbours. Raises `ClipSkipped` when no face is ever found
    or one is lost for more than `max_lost` consecutive frames.
    """
    from ..face import FaceError

    count = len(frames)
    landmarks = np.zeros((count, 68, 2), np.float32)
    lost = np.ones(count, bool)
    reference = None  # (box, landmarks, patch matrix, patch) of the last detection
    detections = 0
    previous = None
    for t, frame in enumerate(frames):
        points = None
        if reference is not None and previous is not None:
            points = aligner.landmarks(frame, _carried_box(reference, previous))
            if not _same_face(frame, points, previous, reference):
                points = None
        if points is None:
            try:
                box = aligner.detect(frame)
            except FaceError:
                box = None
            if box is not None:
                detections += 1
                points = aligner.landmarks(frame, box)
                matrix = _patch_matrix(points)
                reference = (np.asarray(box, np.float64), points, matrix, _patch(frame, matrix))
        if points is not None:
            landmarks[t], lost[t], previous = points, False, points
        # A face gone for good: stop early instead of running the detector on every later frame.
        if reference is None and t + 1 > max_lost:
            raise ClipSkipped("no face", f"no face detected in the first {t + 1} frames")
        if t >= max_lost and lost[t - max_lost : t + 1].all():
            raise ClipSkipped("face lost", f"face lost for more than {max_lost} frames from frame {t - max_lost}")
    if lost.all():
        raise ClipSkipped("no face", f"no face detected in any of the {count} frames")
    if lost.any():
        landmarks = _interpolate(landmarks, lost)
    return landmarks, lost, detections


def _carried_box(reference, previous: np.ndarray) -> tuple:
    """The detection box moved with the face: the similarity taking the detection frame's stable
    points to the previous frame's, applied to the box (so the predictor sees boxes like the
    detector's, whatever their convention)."""
    from ..face import similarity_transform, transform_points

    box, points = reference[0], reference[1]
    motion = similarity_transform(points[_STABLE], previous[_STABLE])
    scale = float(np.sqrt(abs(np.linalg.det(motion[:, :2]))))
    centre = transform_points(motion, ((box[:2] + box[2:]) / 2)[None])[0]
    half = (box[2:] - box[:2]) / 2 * scale
    return (*(centre - half), *(centre + half))


def _eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


def _patch_matrix(points: np.ndarray) -> np.ndarray:
    """Image -> a small patch with the eyes level across its upper half and the nose below."""
    scale = _PATCH_EYE_DISTANCE / max(_eye_distance(points), 1e-3)
    centre = points[_STABLE].mean(0)
    offset = np.array([_PATCH_SIZE / 2, _PATCH_SIZE * 0.4]) - scale * centre
    return np.array([[scale, 0, offset[0]], [0, scale, offset[1]]], np.float32)


def _patch(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    patch = cv2.warpAffine(grey, matrix, (_PATCH_SIZE, _PATCH_SIZE), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE).astype(np.float32)  # fmt: skip
    patch -= patch.mean()
    return patch / (np.linalg.norm(patch) + 1e-6)


def _same_face(frame, points, previous, reference) -> bool:
    from ..face import similarity_transform

    if np.linalg.norm(points[_STABLE].mean(0) - previous[_STABLE].mean(0)) > MAX_JUMP * _eye_distance(previous):
        return False
    # The reference patch's warp composed with this frame's motion back to the detection frame.
    to_reference = np.vstack([similarity_transform(points[_STABLE], reference[1][_STABLE]), [0, 0, 1]])
    matrix = (np.vstack([reference[2], [0, 0, 1]]) @ to_reference)[:2].astype(np.float32)
    return float((_patch(frame, matrix) * reference[3]).sum()) >= MIN_PATCH_CORRELATION


def _interpolate(landmarks: np.ndarray, lost: np.ndarray) -> np.ndarray:
    """Linear in time between the nearest found frames (held constant before the first/after the last)."""
    found = np.flatnonzero(~lost)
    flat = landmarks.reshape(len(landmarks), -1).copy()
    for column in range(flat.shape[1]):
        flat[lost, column] = np.interp(np.flatnonzero(lost), found, flat[found, column])
    return flat.reshape(landmarks.shape)


def smooth_landmarks(landmarks: np.ndarray, window: int = SMOOTH_WINDOW, order: int = SMOOTH_ORDER) -> np.ndarray:
    """Savitzky-Golay filter over time (T, 68, 2); clips shorter than the window get a shorter one."""
    from scipy.signal import savgol_filter

    window = min(window, len(landmarks) if len(landmarks) % 2 else len(landmarks) - 1)
    if window <= order:
        return landmarks.copy()
    return savgol_filter(landmarks, window, order, axis=0, mode="interp").astype(np.float32)


# ------------------------------------------------------------------------------------------ one clip
def process_clip(record: ClipRecord, aligner, dataset: str = "") -> dict:
    """Everything that goes into a clip's file (see the module docstring); raises `ClipSkipped`."""
    from ..audio import load_audio, num_frames
    from ..errors import AudioError, VideoError
    from ..face import align_with_landmarks, transform_points
    from ..video import read_video

    try:
        frames, fps = read_video(record.video)
    except VideoError as error:
        raise ClipSkipped("unreadable video", str(error)) from None
    try:
        audio = load_audio(record.audio or record.video, SAMPLE_RATE)
    except AudioError as error:
        raise ClipSkipped("no audio", str(error)) from None
    audio_frames = num_frames(len(audio), fps, SAMPLE_RATE)
    if abs(audio_frames - len(frames)) > MAX_LENGTH_MISMATCH:
        detail = f"{len(frames)} video frames but the audio lasts {audio_frames} frames ({len(audio) / SAMPLE_RATE:.2f} s)"
        raise ClipSkipped("length mismatch", detail)

    landmarks, lost, detections = track_landmarks(frames, aligner)
    placement = smooth_landmarks(landmarks)
    crops = np.empty((len(frames), 128, 96, 3), np.uint8)
    matrices = np.empty((len(frames), 2, 3), np.float32)
    crop_points = np.empty_like(landmarks)
    for t, frame in enumerate(frames):
        aligned = align_with_landmarks(frame, placement[t])
        crops[t], matrices[t] = aligned.crop, aligned.matrix
        crop_points[t] = transform_points(aligned.matrix, landmarks[t])
    data, offsets = encode_frames(crops)

    words = [
        {"word": w, "start": s, "end": e, "start_frame": round(s * fps, 3), "end_frame": round(e * fps, 3)}
        for w, s, e in record.words or []
    ]
    meta = {
        "version": FORMAT_VERSION, "id": record.id, "dataset": dataset, "speaker": record.speaker,
        "transcript": record.transcript, "words": words if record.words is not None else None,
        "fps": fps, "frames": len(frames), "sample_rate": SAMPLE_RATE, "samples": len(audio),
        "source_video": str(record.video), "source_audio": str(record.audio) if record.audio else None,
        "source_size": [int(frames.shape[1]), int(frames.shape[2])], "attributes": record.attributes,
        "detections": detections, "interpolated_frames": int(lost.sum()), "frame_codec": "jpeg",
        "jpeg_quality": JPEG_QUALITY,
    }  # fmt: skip
    return {
        "frames": data, "frame_offsets": offsets, "audio": _to_int16(audio), "landmarks": crop_points,
        "matrices": matrices, "interpolated": lost, "meta": meta,
    }  # fmt: skip


def encode_frames(crops: np.ndarray, quality: int = JPEG_QUALITY) -> tuple[np.ndarray, np.ndarray]:
    """T×H×W×3 RGB -> (concatenated JPEG bytes uint8, offsets int64 (T + 1,))."""
    chunks = []
    for crop in crops:
        ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG frame")
        chunks.append(buffer.reshape(-1))
    offsets = np.zeros(len(chunks) + 1, np.int64)
    offsets[1:] = np.cumsum([len(c) for c in chunks])
    return np.concatenate(chunks), offsets


def decode_frames(data: np.ndarray, offsets: np.ndarray, indices=None) -> np.ndarray:
    """The frames `indices` (default all) of `encode_frames` output as N×H×W×3 uint8 RGB."""
    indices = range(len(offsets) - 1) if indices is None else indices
    frames = [cv2.imdecode(data[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR) for i in indices]
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(audio * 32768.0), -32768, 32767).astype(np.int16)


# ------------------------------------------------------------------------------------------ storage
def clip_path(out: Path, clip_id: str) -> Path:
    return Path(out) / "clips" / f"{clip_id}.npz"


def skip_path(out: Path, clip_id: str) -> Path:
    return Path(out) / "clips" / f"{clip_id}.skip.json"


def _atomic_write(path: Path, write) -> None:
    """Write through `write(file)` to a temporary name in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_clip(path: Path, clip: dict) -> None:
    arrays = {k: v for k, v in clip.items() if k != "meta"}
    _atomic_write(Path(path), lambda f: np.savez(f, meta=np.array(json.dumps(clip["meta"])), **arrays))


def read_meta(path) -> dict:
    """A clip file's metadata, without reading its frames or audio."""
    with np.load(path, allow_pickle=False) as clip:
        return json.loads(str(clip["meta"]))


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files this machine's killed runs left behind (other hosts' may still be writing)."""
    host = socket.gethostname()
    for path in (Path(out) / "clips").rglob(f".*.{host}-*.tmp"):
        pid = path.name.rsplit("-", 1)[-1][: -len(".tmp")]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def scan_clips(out) -> list[dict]:
    """Index entries of every finished clip under `out/clips`, sorted by id."""
    clips = []
    for path in sorted((Path(out) / "clips").rglob("*.npz")):
        if path.name.startswith("."):
            continue
        meta = read_meta(path)
        clips.append({
            "id": meta["id"], "speaker": meta["speaker"], "frames": meta["frames"], "fps": meta["fps"],
            "seconds": round(meta["samples"] / meta["sample_rate"], 4), "transcript": meta["transcript"],
            "attributes": meta["attributes"],
        })  # fmt: skip
    return sorted(clips, key=lambda c: c["id"])


def build_index(out) -> dict:
    """Scan `out/clips` for finished clips (of all shards) and write `out/index.json`."""
    out = Path(out)
    skipped = [json.loads(p.read_text()) for p in sorted((out / "clips").rglob("*.skip.json"))]
    marker = out / "dataset.json"
    dataset = json.loads(marker.read_text()).get("dataset") if marker.is_file() else None
    index = {"version": FORMAT_VERSION, "dataset": dataset, "clips": scan_clips(out), "skipped": skipped}
    _atomic_write(out / "index.json", lambda f: f.write(json.dumps(index, indent=1).encode()))
    return index


# ------------------------------------------------------------------------------------------ the run
_worker: dict = {}


def _init_worker(backend: str) -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would only contend
    from ..face import FaceAligner

    _worker["aligner"] = FaceAligner(backend=backend)


def _run_one(task) -> ClipResult:
    record, out, dataset, retry_skipped = task
    final, skipped = clip_path(out, record.id), skip_path(out, record.id)
    if final.exists():
        return ClipResult(record.id, "exists")
    if skipped.exists() and not retry_skipped:
        previous = json.loads(skipped.read_text())
        return ClipResult(record.id, "skipped", previous.get("reason"), previous.get("detail"))
    try:
        try:
            clip = process_clip(record, _worker["aligner"], dataset)
        except CheckpointError:
            raise  # a missing model fails every clip: stop the run
        except SpeechAnimError as error:
            # Whatever else the input does wrong stays this clip's problem, not the whole run's.
            raise ClipSkipped("error", str(error)) from None
    except ClipSkipped as skip:
        note = {"id": record.id, "reason": skip.reason, "detail": skip.detail, "source": str(record.video)}
        _atomic_write(skipped, lambda f: f.write(json.dumps(note).encode()))
        return ClipResult(record.id, "skipped", skip.reason, skip.detail)
    write_clip(final, clip)
    skipped.unlink(missing_ok=True)
    meta = clip["meta"]
    return ClipResult(record.id, "done", frames=meta["frames"], seconds=meta["samples"] / SAMPLE_RATE)


@dataclass
class Summary:
    results: list
    wall_seconds: float
    index: dict

    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)

    def reasons(self) -> Counter:
        return Counter(r.reason for r in self.results if r.status == "skipped")

    def text(self) -> str:
        counts, done = self.counts(), [r for r in self.results if r.status == "done"]
        frames, hours = sum(r.frames for r in done), sum(r.seconds for r in done) / 3600
        total_hours = sum(c["seconds"] for c in self.index["clips"]) / 3600
        lines = [
            f"{len(self.results)} clips in {self.wall_seconds:.0f} s: {counts['done']} done, "
            f"{counts['exists']} already done, {counts['skipped']} skipped",
            f"this run: {frames} frames, {hours:.3f} h of audio; the dataset now holds "
            f"{len(self.index['clips'])} clips, {total_hours:.3f} h",
        ]
        for reason, count in self.reasons().most_common():
            examples = [r for r in self.results if r.reason == reason][:3]
            lines.append(f"skipped ({reason}): {count}, e.g. " + "; ".join(f"{r.id} ({r.detail})" for r in examples))
        return "\n".join(lines)


def preprocess_corpus(dataset: str, root, out, workers: int = 1, shard=None, limit: int | None = None,
               backend: str = "dlib", retry_skipped: bool = False, progress: bool = True) -> Summary:  # fmt: skip
    """Preprocess the corpus at `root` into `out` (see the module docstring) and return a summary.

    `shard` is (K, N) or "K/N": only the clips of the K-th of N disjoint parts; `limit` keeps the
    first `limit` clips (after sharding). `workers` > 1 runs a process pool.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    records = read_clips(dataset, root)
    if shard is not None:
        shard = parse_shard(shard) if isinstance(shard, str) else tuple(shard)
        records = [r for r in records if in_shard(r.id, shard)]
    if limit is not None:
        records = records[:limit]
    if workers < 1:
        raise DatasetError(f"--workers must be at least 1, got {workers}")

    (out / "clips").mkdir(parents=True, exist_ok=True)
    _check_dataset_marker(out, dataset)
    _remove_stale_temporaries(out)
    tasks = [(r, out, dataset, retry_skipped) for r in records]
    start = time.perf_counter()
    results = []
    bar = tqdm(total=len(tasks), desc=f"preprocess {dataset}", unit="clip", disable=not progress, smoothing=0.05)
    if workers == 1:
        _init_worker(backend)
        for task in tasks:
            results.append(_run_one(task))
            _advance(bar, results)
    else:
        import multiprocessing

        # spawn, not fork: OpenCV's and dlib's thread pools do not survive a fork reliably.
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker, initargs=(backend,)) as pool:
            for result in pool.imap_unordered(_run_one, tasks, chunksize=1):
                results.append(result)
                _advance(bar, results)
    bar.close()
    index = build_index(out)
    return Summary(sorted(results, key=lambda r: r.id), time.perf_counter() - start, index)


def _advance(bar, results) -> None:
    bar.update(1)
    skipped = sum(r.status == "skipped" for r in results)
    if skipped:
        bar.set_postfix(skipped=skipped, refresh=False)


def _check_dataset_marker(out: Path, dataset: str) -> None:
    """One output folder holds one corpus: mixing two would make their clip ids collide."""
    marker = out / "dataset.json"
    if marker.is_file():
        previous = json.loads(marker.read_text()).get("dataset")
        if previous != dataset:
            raise DatasetError(f"{out} already holds the '{previous}' dataset: pick another --out for '{dataset}'")
    else:
        _atomic_write(marker, lambda f: f.write(json.dumps({"dataset": dataset, "version": FORMAT_VERSION}).encode()))


# ------------------------------------------------------------------------------------------ the CLI
def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "preprocess", help="align a talking-face corpus into training clips",
        description="Detect, track and align the face in every clip of a corpus and store 128x96 crops, "
                    "16 kHz audio, landmarks and metadata per clip. Resumable: rerun to continue.",
    )  # fmt: skip
    p.add_argument("--dataset", required=True, choices=list(READERS), help="corpus layout of --root")
    p.add_argument("--root", required=True, help="folder the corpus was unpacked to")
    p.add_argument("--out", required=True, help="output folder (clips/, index.json)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--shard", default=None, help="K/N: process only the K-th of N disjoint parts")
    p.add_argument("--limit", type=int, default=None, help="process at most this many clips")
    p.add_argument("--backend", default="dlib", choices=["dlib", "insightface"], help="face detector")
    p.add_argument("--retry-skipped", action="store_true", help="try clips an earlier run skipped again")
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:
    summary = preprocess_corpus(
        args.dataset, args.root, args.out, workers=args.workers, shard=args.shard, limit=args.limit,
        backend=args.backend, retry_skipped=args.retry_skipped,
    )  # fmt: skip
    print(summary.text())
    print(f"index: {Path(args.out) / 'index.json'}")
    return 0

