"""Make speech_anim/assets/canonical_face.npy: our own mean 68-point face in 128×96 crop pixels.

dlib landmarks of a few frames from GRID clips (s1, s4, s26; s31 is kept unseen) are averaged with
generalised Procrustes analysis (similarity alignment), made left-right symmetric so that mirrored
crops stay aligned, and placed in the 128 (H) × 96 (W) crop: horizontally centred, scaled so the jaw
line spans `--jaw-width` pixels, and shifted so the chin sits at `--chin-y`. The script then reports
where the face lands over all frames once aligned the way `speech_anim.face` aligns them (mouth in
the lower half, eyes in the upper half), the HOG-box-to-landmarks offsets that face.py's
`_HOG_BOX_FROM_LANDMARKS` holds, and, given `--scrfd`, how well SCRFD's keypoints match the
canonical face's matching points.

    python scripts/make_canonical_face.py --grid ../shared/data/grid
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from speech_anim import face

# iBUG 68-point index of each point's mirror image (left <-> right).
MIRROR = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)


def read_frames(path: Path, indices) -> list:
    """RGB frames at the given indices (decoding sequentially: exact, and short clips are cheap)."""
    capture = cv2.VideoCapture(str(path))
    frames, wanted, index = [], set(indices), 0
    while index <= max(indices):
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            frames.append(np.ascontiguousarray(frame[:, :, ::-1]))
        index += 1
    capture.release()
    return frames


def normalise(shape: np.ndarray) -> np.ndarray:
    centred = shape - shape.mean(0)
    return centred / np.sqrt((centred ** 2).sum())


def procrustes_mean(shapes: np.ndarray, weights: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Weighted generalised Procrustes mean of (N, 68, 2) shapes under similarity transforms."""
    mean = normalise(shapes[0])
    for _ in range(iterations):
        aligned = np.stack([face.transform_points(face.similarity_transform(s, mean), s) for s in shapes])
        new = normalise((aligned * weights[:, None, None]).sum(0) / weights.sum())
        # Keep the mean's orientation anchored to the reference so the iteration cannot drift.
        new = face.transform_points(face.similarity_transform(new, mean), new)
        new = normalise(new)
        change = np.abs(new - mean).max()
        mean = new
        if change < 1e-7:
            break
    return mean


def symmetrise(shape: np.ndarray) -> np.ndarray:
    """Level the eyes, then average with the mirror image (exactly symmetric about a vertical line)."""
    left, right = shape[36:42].mean(0), shape[42:48].mean(0)
    angle = np.arctan2(right[1] - left[1], right[0] - left[0])
    c, s = np.cos(-angle), np.sin(-angle)
    shape = shape @ np.array([[c, -s], [s, c]]).T
    mirrored = shape[MIRROR] * [-1.0, 1.0]
    mirrored[:, 0] += 2 * shape[:, 0].mean()
    return 0.5 * (shape + mirrored)


def place(shape: np.ndarray, jaw_width: float, chin_y: float) -> np.ndarray:
    shape = shape * (jaw_width / (shape[16, 0] - shape[0, 0]))
    shape[:, 0] += face.CROP_WIDTH / 2 - 0.5 - shape[:, 0].mean()  # centre on the crop's middle column
    shape[:, 1] += chin_y - shape[8, 1]
    return shape.astype(np.float32)


def draw_figure(path: Path, frame: np.ndarray, landmarks: np.ndarray, canonical: np.ndarray, zoom: int = 4):
    """The canonical points (green; stable points red) over an aligned crop, with the crop's middle
    row (the training loss looks below it) and the predictor's box on crops (blue)."""
    matrix = face.similarity_transform(landmarks[face.STABLE_POINTS], canonical[face.STABLE_POINTS])
    crop = cv2.resize(face.warp_to_crop(frame, matrix), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    picture = np.ascontiguousarray(crop[:, :, ::-1])
    at = lambda p: tuple(int(round((v + 0.5) * zoom - 0.5)) for v in p)  # noqa: E731
    cv2.line(picture, at((-0.5, face.CROP_HEIGHT / 2 - 0.5)), at((face.CROP_WIDTH, face.CROP_HEIGHT / 2 - 0.5)), (255, 255, 255), 1)
    box = face._predictor_box(canonical)
    cv2.rectangle(picture, at(box[:2]), at(box[2:]), (255, 128, 0), 1)
    for index, point in enumerate(canonical):
        cv2.circle(picture, at(point), 3, (0, 0, 255) if index in face.STABLE_POINTS else (0, 255, 0), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), picture)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "grid")
    parser.add_argument("--out", type=Path, default=Path(face.__file__).parent / "assets" / "canonical_face.npy")
    parser.add_argument("--s1-clips", type=int, default=200)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 30, 52, 70], help="frame indices per clip")
    parser.add_argument("--jaw-width", type=float, default=72.0, help="crop pixels between points 0 and 16")
    parser.add_argument("--chin-y", type=float, default=112.0, help="crop row of the chin (point 8)")
    parser.add_argument("--scrfd", type=Path, default=None, help="SCRFD .onnx to compare its keypoints")
    parser.add_argument("--figure", type=Path, default=None, help="also draw the canonical points on an aligned crop (PNG)")
    args = parser.parse_args()

    s1 = sorted((args.grid / "s1" / "video").glob("*.mp4"))
    clips = s1[:: max(1, len(s1) // args.s1_clips)][: args.s1_clips]
    for speaker in ("s4", "s26"):
        clips += sorted((args.grid / speaker / "video").glob("*.mp4"))
    aligner = face.FaceAligner()
    scrfd = face._scrfd(args.scrfd) if args.scrfd else None
    shapes, speakers, boxes, keypoints = [], [], [], []
    for number, clip in enumerate(clips):
        for frame in read_frames(clip, args.frames):
            try:
                box = aligner.detect(frame)
            except face.FaceError:
                continue
            if scrfd is not None:
                found, kps = scrfd(frame)
                if not len(found):
                    continue
                kps = kps[np.argmax((found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1]))]
            shapes.append(aligner.landmarks(frame, box))
            boxes.append(box)
            speakers.append(clip.parts[-3])
            if scrfd is not None:
                keypoints.append(kps)
        if number % 50 == 0:
            print(f"{number}/{len(clips)} clips, {len(shapes)} faces")
    shapes, boxes, speakers = np.stack(shapes).astype(np.float64), np.array(boxes), np.array(speakers)
    counts = {s: int((speakers == s).sum()) for s in np.unique(speakers)}
    print("faces per speaker:", counts)
    weights = np.array([1.0 / counts[s] for s in speakers])  # each speaker counts equally

    canonical = place(symmetrise(procrustes_mean(shapes, weights)), args.jaw_width, args.chin_y)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, canonical)
    print(f"wrote {args.out}")

    if args.figure:
        draw_figure(args.figure, read_frames(clips[0], [args.frames[0]])[0], shapes[0].astype(np.float32), canonical)

    # Every frame aligned as face.py aligns it (on STABLE_POINTS): where do its points land?
    matrices = [face.similarity_transform(s[face.STABLE_POINTS], canonical[face.STABLE_POINTS]) for s in shapes]
    warped = np.stack([face.transform_points(m, s) for m, s in zip(matrices, shapes)])
    mouth, eyes = warped[:, 48:68], warped[:, 36:48]
    pct = lambda v, q: float(np.percentile(v, q))  # noqa: E731
    print(f"canonical: brow top y={canonical[17:27, 1].min():.1f}, eyes y={canonical[36:48, 1].mean():.1f}, "
          f"nose 33 y={canonical[33, 1]:.1f}, mouth y={canonical[48:68, 1].min():.1f}..{canonical[48:68, 1].max():.1f}, "
          f"chin y={canonical[8, 1]:.1f}, jaw x={canonical[0, 0]:.1f}..{canonical[16, 0]:.1f}")
    print(f"frames: mouth top y min {mouth[..., 1].min(1).min():.1f} (1st pct {pct(mouth[..., 1].min(1), 1):.1f}), "
          f"eyes bottom y max {eyes[..., 1].max(1).max():.1f}, chin y 99th pct {pct(warped[:, 8, 1], 99):.1f} "
          f"max {warped[:, 8, 1].max():.1f}, points x {warped[..., 0].min():.1f}..{warped[..., 0].max():.1f}, "
          f"stable-point residual {np.linalg.norm(warped[:, face.STABLE_POINTS] - canonical[face.STABLE_POINTS], axis=2).mean():.2f} px")

    # HOG box in crop coordinates (each frame's box carried by its alignment), relative to the
    # canonical landmarks' bounding box: face.py places the predictor's box on crops with it.
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [2, 3]], boxes[:, [0, 3]]], 1)
    corners = np.stack([face.transform_points(m, c) for m, c in zip(matrices, corners)])
    crop_boxes = np.stack([corners[:, [0, 3], 0].mean(1), corners[:, [0, 1], 1].mean(1),
                           corners[:, [1, 2], 0].mean(1), corners[:, [2, 3], 1].mean(1)], 1)
    lo, hi = canonical.min(0), canonical.max(0)
    size = hi - lo
    offsets = (crop_boxes - np.concatenate([lo, hi])) / np.concatenate([size, size])
    print(f"HOG box in the crop: {np.round(np.median(crop_boxes, 0), 1).tolist()} (spread {np.round(crop_boxes.std(0), 1).tolist()} px)")
    print("_HOG_BOX_FROM_LANDMARKS =", "(" + ", ".join(f"{v:.4f}" for v in np.median(offsets, 0)) + ")")

    if keypoints:
        keypoints = np.stack(keypoints)
        five = np.stack([face.transform_points(m, k) for m, k in zip(matrices, keypoints)])
        eye_l, eye_r = warped[:, 36:42].mean(1), warped[:, 42:48].mean(1)
        for name, ref in [("left eye centre", eye_l), ("right eye centre", eye_r)]:
            i = 0 if name.startswith("left") else 1
            print(f"SCRFD {name} vs 68-pt mean: {np.linalg.norm(five[:, i] - ref, axis=1).mean():.2f} px")
        for index in (30, 31, 33):
            print(f"SCRFD nose vs point {index}: {np.linalg.norm(five[:, 2] - warped[:, index], axis=1).mean():.2f} px")
        for i, index in ((3, 48), (4, 54), (3, 60), (4, 64)):
            print(f"SCRFD mouth corner {i} vs point {index}: {np.linalg.norm(five[:, i] - warped[:, index], axis=1).mean():.2f} px")


if __name__ == "__main__":
    main()
