"""Preprocessing cost per stage, the storage format's alternatives, and the temporal smoothing.

    python benchmarks/preprocess.py                       # 10 s1 clips + 2 s4 clips
    python benchmarks/preprocess.py --clips 30 --grid ../shared/data/grid

1. Stages: milliseconds per clip of decoding, audio, the first-frame detection, tracking (68
   landmarks per frame), smoothing, the warps and the JPEG encoding, as wall and process CPU time
   (on a busy machine wall time grows, CPU time stays; the CPU time of reading excludes the ffmpeg
   process that decodes). One process, one thread for OpenCV.
2. Storage of a clip's 75 aligned crops: bytes, encode time, decode time of all frames and of a
   16-frame window, and PSNR against the uncompressed crops, for JPEG at a few qualities, PNG and
   the whole uint8 array deflated (np.savez_compressed).
3. Smoothing: how much the crop moves from frame to frame (mean |second difference| of where a
   fixed face point lands in the crop, px/frame^2) and how far the smoothed alignment strays from
   the per-frame one (mean px of the stable points), for Savitzky-Golay windows.
"""

import argparse
import io
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from speech_anim.audio import load_audio
from speech_anim.data.preprocess import decode_frames, encode_frames, smooth_landmarks, track_landmarks
from speech_anim.face import (
    STABLE_POINTS, FaceAligner, align_with_landmarks, canonical_landmarks, similarity_transform, transform_points,
)  # fmt: skip
from speech_anim.video import read_video

GRID = Path(__file__).resolve().parents[2] / "shared" / "data" / "grid"


class Clock:
    """Accumulates wall and CPU seconds per stage."""

    def __init__(self):
        self.wall, self.cpu = {}, {}

    def time(self, stage, function, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function(*args, **kwargs)
        self.wall.setdefault(stage, []).append(time.perf_counter() - wall)
        self.cpu.setdefault(stage, []).append(time.process_time() - cpu)
        return result


def stages(paths, aligner):
    clock = Clock()
    tracks, crops_of = [], []
    for path in paths:
        frames, fps = clock.time("read video", read_video, path)
        clock.time("load audio", load_audio, path)
        clock.time("detect (frame 0)", aligner.detect, frames[0])
        landmarks, _, _ = clock.time("track 68 landmarks", track_landmarks, frames, aligner)
        placement = clock.time("smooth", smooth_landmarks, landmarks)
        crops = clock.time("align (warp)", lambda: np.stack([align_with_landmarks(f, p).crop for f, p in zip(frames, placement)]))
        clock.time("encode JPEG q95", encode_frames, crops)
        tracks.append(landmarks)
        crops_of.append(crops)
    print(f"\n1. stages, ms per clip (mean of {len(paths)} clips; 'track' includes one detection)")
    print(f"{'stage':22s} {'wall':>8s} {'CPU':>8s}")
    for stage in clock.wall:
        print(f"{stage:22s} {1e3 * statistics.mean(clock.wall[stage]):8.1f} {1e3 * statistics.mean(clock.cpu[stage]):8.1f}")
    total_wall = sum(statistics.mean(v) for k, v in clock.wall.items() if k != "detect (frame 0)")
    total_cpu = sum(statistics.mean(v) for k, v in clock.cpu.items() if k != "detect (frame 0)")
    print(f"{'total':22s} {1e3 * total_wall:8.1f} {1e3 * total_cpu:8.1f}   "
          f"-> 1000 clips on 2 idle cores: ~{1000 * total_cpu / 2 / 60:.1f} min + ffmpeg's decoding")  # fmt: skip
    return tracks, crops_of


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def storage(crops_of):
    def jpeg(q):
        return (lambda c: encode_frames(c, q), lambda e, idx: decode_frames(*e, idx), lambda e: e[0].nbytes + e[1].nbytes)

    def png():
        encode = lambda c: [cv2.imencode(".png", f)[1] for f in c]  # noqa: E731
        decode = lambda e, idx: np.stack([cv2.imdecode(e[i], cv2.IMREAD_COLOR) for i in idx])  # noqa: E731
        return encode, decode, lambda e: sum(x.nbytes for x in e)

    def deflate():
        def encode(c):
            buffer = io.BytesIO()
            np.savez_compressed(buffer, frames=c)
            return buffer.getvalue()

        def decode(e, idx):
            return np.load(io.BytesIO(e))["frames"][list(idx)]  # the whole array inflates either way

        return encode, decode, len

    formats = {"JPEG q90": jpeg(90), "JPEG q95 (used)": jpeg(95), "JPEG q98": jpeg(98), "PNG": png(), "deflated array": deflate()}
    print(f"\n2. storage of one clip's crops (mean over {len(crops_of)} clips)")
    print(f"{'format':16s} {'KB/clip':>8s} {'encode ms':>10s} {'decode all ms':>14s} {'decode 16 ms':>13s} {'PSNR dB':>8s}")
    for name, (encode, decode, size) in formats.items():
        rows = []
        for crops in crops_of:
            t0 = time.perf_counter()
            encoded = encode(crops)
            t1 = time.perf_counter()
            decoded = decode(encoded, range(len(crops)))
            t2 = time.perf_counter()
            decode(encoded, range(20, 36))
            t3 = time.perf_counter()
            timings = (1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2))
            rows.append((size(encoded) / 1024, *timings, _psnr(decoded, crops)))
        kb, enc, dec, dec16, psnr = (statistics.mean(c) for c in zip(*rows))
        print(f"{name:16s} {kb:8.0f} {enc:10.1f} {dec:14.1f} {dec16:13.1f} {psnr:8.1f}")


def smoothing(tracks):
    canonical = canonical_landmarks()[STABLE_POINTS]
    print(f"\n3. smoothing of the landmarks that place the crop ({len(tracks)} clips)")
    print(f"{'window':>8s} {'crop accel px/f^2':>18s} {'stray from per-frame px':>24s}")
    per_frame = [np.stack([similarity_transform(p[STABLE_POINTS], canonical) for p in track]) for track in tracks]
    for window in (1, 5, 7, 9, 11, 15):
        accel, stray = [], []
        for track, raw in zip(tracks, per_frame):
            placed = track if window == 1 else smooth_landmarks(track, window)
            matrices = np.stack([similarity_transform(p[STABLE_POINTS], canonical) for p in placed])
            anchor = track[0, STABLE_POINTS].mean(0)[None]
            path = np.stack([transform_points(m, anchor)[0] for m in matrices])
            accel.append(np.abs(np.diff(path, 2, axis=0)).mean())
            here = np.stack([transform_points(m, p[STABLE_POINTS]) for m, p in zip(matrices, track)])
            there = np.stack([transform_points(m, p[STABLE_POINTS]) for m, p in zip(raw, track)])
            stray.append(np.linalg.norm(here - there, axis=-1).mean())
        print(f"{window:8d} {statistics.mean(accel):18.3f} {statistics.mean(stray):24.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default=str(GRID))
    parser.add_argument("--clips", type=int, default=10, help="s1 clips (plus 2 of s4 at 720x576)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    grid = Path(args.grid)
    paths = sorted((grid / "s1" / "video").glob("*.mp4"))[:: max(1, 1000 // args.clips)][: args.clips]
    paths += sorted((grid / "s4" / "video").glob("*.mp4"))[1:3]
    aligner = FaceAligner()
    aligner.landmarks(np.zeros((64, 64, 3), np.uint8), (0, 0, 63, 63))  # load the models outside the timings
    aligner.detect(read_video(paths[0])[0][0])
    smooth_landmarks(np.zeros((20, 68, 2), np.float32))  # imports scipy.signal
    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().split()[:3]} on {len(__import__('os').sched_getaffinity(0))} cores")
    tracks, crops_of = stages(paths, aligner)
    storage(crops_of)
    smoothing(tracks)


if __name__ == "__main__":
    main()
