"""Faces in photos: detection, 68 landmarks, alignment to the canonical 128×96 crop, and paste-back.

Every crop the models see is a similarity warp (rotation, uniform scale, translation) of a photo or
video frame that puts five stable points (nose and eye corners, `STABLE_POINTS`) where the shipped
canonical face has them (`canonical_landmarks()`, made by `scripts/make_canonical_face.py`). The
canonical face keeps the eyes in the upper half of the crop and the whole mouth in the lower half,
which is the half the generator's L1 loss looks at.

Boxes follow dlib's convention everywhere: `(x0, y0, x1, y1)` of the square its HOG frontal detector
returns and its 68-point shape predictor was trained on. The insightface backend derives that box
from SCRFD's five keypoints, so `FaceAligner.landmarks` works the same for both backends.
"""

from __future__ import annotations

import importlib.util
import io
import os
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .audio import VIDEO_EXTENSIONS
from .errors import CheckpointError, FaceError, ImageError

CROP_HEIGHT, CROP_WIDTH = 128, 96
# iBUG 68-point indices of the nose base centre and the four eye corners: they barely move while
# speaking or blinking, so aligning on them keeps the head still and lets the mouth and eyes move.
STABLE_POINTS = [33, 36, 39, 42, 45]
MIN_FACE_SIZE = 64  # px in the photo; smaller faces have too little detail to animate
DETECT_MAX_SIDE = 640  # the HOG detector first runs on a copy no larger than this, for speed
# dlib's HOG window is 80 px: a face of MIN_FACE_SIZE is found once the photo is scaled by 80 / 64.
HOG_WINDOW = 80
# How far (mean crop px) the crop's own nose and eye corners, found again on the crop, may lie from
# the canonical ones: upright faces, tilted up to 35°, measured 0.4-1.1 (70 GRID frames of four
# speakers, the astronaut); where the predictor misplaced a head tilted 40°, 8.8. Above SUSPECT the
# face is fitted again turned upright; above FAILED no fit is trusted.
ALIGN_SUSPECT, ALIGN_FAILED = 2.0, 4.0
# Turns (degrees, as cv2 counts them) of a photo in which no upright face was found, tried in turn.
PHOTO_TURNS = (45, -45, 90, -90, 180)
WEAK_DETECTION = 0.25  # faces scored below this fraction of the best face's score are ignored
DEFAULT_FEATHER = 6.0  # crop pixels of soft edge for paste-back
DEFAULT_INSIGHTFACE_MODEL = Path("~/.insightface/models/buffalo_s/det_500m.onnx")

_CANONICAL_PATH = Path(__file__).parent / "assets" / "canonical_face.npy"
_PREDICTOR_FILE = "models/shape_predictor_68_face_landmarks.dat"
# Where dlib's HOG box falls in an aligned crop, as (left, top, right, bottom) offsets from the
# canonical landmarks' bounding box in fractions of its width/height: the median over ~1000 GRID
# frames' boxes carried into their crops, printed by scripts/make_canonical_face.py (re-measure when
# the canonical face changes). It places the predictor's box on crops and around SCRFD keypoints,
# where no HOG detection runs.
_HOG_BOX_FROM_LANDMARKS = (-0.0536, -0.1062, 0.0480, -0.0569)
# iBUG 68-point indices matching SCRFD's five keypoints: eye centres are means of the eye contours.
_LEFT_EYE, _RIGHT_EYE = list(range(36, 42)), list(range(42, 48))
_SCRFD_NOSE, _MOUTH_LEFT, _MOUTH_RIGHT = 30, 48, 54

_lock = threading.Lock()  # guards model loading and dlib calls (dlib objects are not documented thread-safe)
_models: dict = {}


# ----------------------------------------------------------------------------------------------
# Images


def load_image(source) -> np.ndarray:
    """A photo as H×W×3 uint8 RGB from a path, a PIL image or an array (H×W, H×W×1/3/4; uint8,
    uint16, bool or float in [0, 1]). EXIF orientation is applied; CMYK, palette, grayscale, alpha
    (composited on white) and 16-bit images are converted."""
    from PIL import Image, ImageOps

    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ImageError(f"image file not found: {path}")
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            raise ImageError(f"{path.name} is a video, and the face comes from one photo: take a frame of it, e.g. "
                             f"ffmpeg -i {path.name} -frames:v 1 still.png, and pass that")
        return _open_image(path, lambda reason: f"cannot read {path.name} as an image ({reason}): pass a JPEG or PNG photo")
    if isinstance(source, Image.Image):
        return _pil_to_rgb(ImageOps.exif_transpose(source))
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if hasattr(source, "read"):  # an open binary file, e.g. a web framework's upload
        source = source.read()
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = len(source)
        return _open_image(io.BytesIO(source), lambda reason: f"cannot read the {size} image bytes as a picture: "
                           "pass the bytes of a JPEG or PNG photo (opened in binary mode)")
    raise ImageError(f"cannot use a {type(source).__name__} as an image: pass a file path, a PIL image, "
                     "an H×W×3 array or the bytes of an image file")


def _open_image(file, message) -> np.ndarray:
    """A path or binary file decoded by PIL, upright (EXIF orientation) and RGB; `message(reason)` is the
    ImageError's text when PIL cannot read it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            image.load()
            return _pil_to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ImageError(message(reason)) from None


def _pil_to_rgb(image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(image))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _array_to_rgb(np.asarray(image.convert("RGBA")))
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise ImageError(f"an image array must be H×W, H×W×3 or H×W×4, got shape {array.shape}: pass an RGB photo")
    if array.dtype == np.uint8:
        pixels = array.astype(np.float32) if array.ndim == 3 and array.shape[2] == 4 else array
    elif array.dtype == bool:
        pixels = array.astype(np.float32) * 255
    elif np.issubdtype(array.dtype, np.integer):
        # 16-bit (or wider) images: scale the type's range onto 0..255.
        top = 65535.0 if array.max() > 255 or array.dtype == np.uint16 else 255.0
        pixels = array.astype(np.float32) * (255.0 / top)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError("the image array holds NaN or infinite values: pass finite pixel values")
        pixels = array.astype(np.float32) * (255.0 if array.max() <= 1.0 else 1.0)
    else:
        raise ImageError(f"cannot use an image array of dtype {array.dtype}: pass uint8 RGB")
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        # Transparent areas become white rather than whatever colour hides under the alpha.
        alpha = pixels[:, :, 3:4].astype(np.float32) / 255.0
        pixels = pixels[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels)


def _image_and_name(source) -> tuple[np.ndarray, str]:
    name = Path(source).name if isinstance(source, (str, os.PathLike)) else "the image"
    if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 3 and source.shape[2] == 3:
        return np.ascontiguousarray(source), name
    return load_image(source), name


# ----------------------------------------------------------------------------------------------
# Canonical face and similarity transforms


@lru_cache(maxsize=1)
def _canonical() -> np.ndarray:
    if not _CANONICAL_PATH.is_file():
        raise CheckpointError(f"{_CANONICAL_PATH} is missing: reinstall speech_anim or run scripts/make_canonical_face.py")
    points = np.load(_CANONICAL_PATH).astype(np.float32)
    points.setflags(write=False)
    return points


def canonical_landmarks() -> np.ndarray:
    """The shipped mean face: (68, 2) float32 (x, y) in 128×96 crop pixels."""
    return _canonical().copy()


def canonical_five_points() -> np.ndarray:
    """The canonical face's points matching SCRFD's keypoints: eye centres, nose, mouth corners."""
    return _five_points(_canonical())


def _five_points(landmarks: np.ndarray) -> np.ndarray:
    return np.stack([
        landmarks[_LEFT_EYE].mean(0), landmarks[_RIGHT_EYE].mean(0), landmarks[_SCRFD_NOSE],
        landmarks[_MOUTH_LEFT], landmarks[_MOUTH_RIGHT],
    ]).astype(np.float32)


def similarity_transform(src_pts, dst_pts) -> np.ndarray:
    """The (2, 3) rotation + uniform scale + translation that maps src_pts onto dst_pts with least
    squared error (Umeyama 1991; no reflection)."""
    src = np.asarray(src_pts, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst_pts, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(dst) or len(src) < 2:
        raise FaceError(f"a similarity transform needs two equal sets of at least 2 points, got {len(src)} and {len(dst)}")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c ** 2).sum() / len(src)
    if not np.isfinite(src_var) or src_var < 1e-12:
        raise FaceError("the face landmarks are degenerate (all points coincide): detect the face again")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = (u * d) @ vt
    scale = (s * d).sum() / src_var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix.astype(np.float32)


def invert_transform(matrix) -> np.ndarray:
    """The inverse of a (2, 3) affine transform."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64)).astype(np.float32)


def transform_points(matrix, points) -> np.ndarray:
    """Apply a (2, 3) affine transform to (..., 2) points."""
    matrix = np.asarray(matrix, dtype=np.float32)
    points = np.asarray(points, dtype=np.float32)
    return points @ matrix[:, :2].T + matrix[:, 2]


# ----------------------------------------------------------------------------------------------
# Aligned crops


@dataclass
class AlignedFace:
    """A face warped to the canonical 128×96 crop, with what is needed to undo the warp."""

    crop: np.ndarray  # 128×96×3 uint8 RGB
    matrix: np.ndarray  # (2, 3) image -> crop
    inverse: np.ndarray  # (2, 3) crop -> image
    box: tuple  # (x0, y0, x1, y1) face box in the image, dlib's convention
    landmarks: np.ndarray | None  # (68, 2) in image coordinates, or None
    image_shape: tuple  # (H, W) of the image the crop came from


def warp_to_crop(image: np.ndarray, matrix) -> np.ndarray:
    """Warp an H×W×3 uint8 image to the 128×96 crop with an image->crop (2, 3) transform."""
    matrix = np.asarray(matrix, dtype=np.float64)
    height, width = image.shape[:2]
    # Only the region the crop sees is resampled: cheap for large photos, and it lets large
    # reductions use area averaging (warpAffine has no INTER_AREA) without aliasing.
    corners = transform_points(invert_transform(matrix), _crop_corners())
    x0, y0 = np.floor(corners.min(0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:  # the crop lies outside the image: replicate the nearest edge
        x0, y0, x1, y1 = 0, 0, width, height
    roi = image[y0:y1, x0:x1]
    matrix = matrix.copy()
    matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        new_w, new_h = max(1, round(roi.shape[1] * scale)), max(1, round(roi.shape[0] * scale))
        factors = np.array([new_w / roi.shape[1], new_h / roi.shape[0]])
        roi = cv2.resize(roi, (new_w, new_h), interpolation=cv2.INTER_AREA)
        # A pixel centre q in the reduced image sits at (q + 0.5) / f - 0.5 in the original.
        offset = 0.5 / factors - 0.5
        matrix[:, 2] += matrix[:, :2] @ offset
        matrix[:, :2] = matrix[:, :2] / factors
    return cv2.warpAffine(roi, matrix, (CROP_WIDTH, CROP_HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _crop_corners() -> np.ndarray:
    return np.array([[0, 0], [CROP_WIDTH - 1, 0], [CROP_WIDTH - 1, CROP_HEIGHT - 1], [0, CROP_HEIGHT - 1]], np.float32)


def align_with_landmarks(image, landmarks68) -> AlignedFace:
    """Align with given 68 landmarks (e.g. temporally smoothed ones from a video): no detection."""
    image, _ = _image_and_name(image)
    landmarks = np.asarray(landmarks68, dtype=np.float32)
    if landmarks.shape != (68, 2):
        raise FaceError(f"expected (68, 2) landmarks, got shape {landmarks.shape}: pass iBUG 68-point (x, y) landmarks")
    matrix = similarity_transform(landmarks[STABLE_POINTS], _canonical()[STABLE_POINTS])
    inverse = invert_transform(matrix)
    return AlignedFace(
        crop=warp_to_crop(image, matrix), matrix=matrix, inverse=inverse,
        box=_image_box(inverse), landmarks=landmarks, image_shape=image.shape[:2],
    )


# ----------------------------------------------------------------------------------------------
# dlib models


def _dlib_detector():
    with _lock:
        if "detector" not in _models:
            import dlib

            _models["detector"] = dlib.get_frontal_face_detector()
        return _models["detector"]


def _shape_predictor():
    with _lock:
        if "predictor" not in _models:
            import dlib

            # Located without importing face_recognition_models: its __init__ needs pkg_resources,
            # which new setuptools no longer ships.
            spec = importlib.util.find_spec("face_recognition_models")
            path = Path(spec.submodule_search_locations[0]) / _PREDICTOR_FILE if spec else None
            if path is None or not path.is_file():
                raise CheckpointError("dlib's 68-point landmark model is missing: pip install face_recognition_models")
            _models["predictor"] = dlib.shape_predictor(str(path))
        return _models["predictor"]


def _predict(image: np.ndarray, box) -> np.ndarray:
    import dlib

    predictor = _shape_predictor()
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    with _lock:
        shape = predictor(image, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _predictor_box(landmarks: np.ndarray) -> np.ndarray:
    """dlib's HOG box (x0, y0, x1, y1) for a face shaped like the canonical one with these landmarks."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    size = hi - lo
    left, top, right, bottom = _HOG_BOX_FROM_LANDMARKS
    return np.array([lo[0] + left * size[0], lo[1] + top * size[1], hi[0] + right * size[0], hi[1] + bottom * size[1]])


# ----------------------------------------------------------------------------------------------
# Landmarks on aligned crops


_CROP_UPSCALE = 3  # the predictor is more accurate on faces of the size it was trained on


def crop_landmarks(crop) -> np.ndarray:
    """68 landmarks on an aligned 128×96 crop (or T×128×96×3 crops -> (T, 68, 2)), in crop pixels.

    No detection runs: the face box is the one the canonical face has, so generated frames work.
    """
    crops = np.asarray(crop)
    if crops.ndim == 3:
        return crop_landmarks(crops[None])[0]
    if crops.ndim != 4 or crops.shape[1:] != (CROP_HEIGHT, CROP_WIDTH, 3):
        raise FaceError(f"crop_landmarks expects aligned {CROP_HEIGHT}×{CROP_WIDTH}×3 crops, got shape {crops.shape}: align the face first")
    if crops.dtype != np.uint8:
        raise FaceError(f"crop_landmarks expects uint8 crops, got {crops.dtype}: convert frames with (x + 1) * 127.5")
    k = _CROP_UPSCALE
    box = (_predictor_box(_canonical()) + 0.5) * k - 0.5
    out = np.empty((len(crops), 68, 2), np.float32)
    for i, frame in enumerate(crops):
        big = cv2.resize(frame, (CROP_WIDTH * k, CROP_HEIGHT * k), interpolation=cv2.INTER_LINEAR)
        out[i] = (_predict(big, box) + 0.5) / k - 0.5
    return out


# iBUG 68-point inner lip contour: the three upper points above the three lower ones they face.
INNER_UPPER_LIP, INNER_LOWER_LIP = (61, 62, 63), (67, 66, 65)


def inner_lip_gap(landmarks) -> np.ndarray:
    """How open the mouth is: the mean vertical gap between the inner lips, from 68-point landmarks
    (..., 68, 2) -> (...), in the landmarks' pixels (about 0 for closed lips)."""
    points = np.asarray(landmarks, dtype=np.float32)
    if points.shape[-2:] != (68, 2):
        raise FaceError(f"inner_lip_gap expects 68-point landmarks (..., 68, 2), got shape {points.shape}")
    return (points[..., INNER_LOWER_LIP, 1] - points[..., INNER_UPPER_LIP, 1]).mean(axis=-1)


# ----------------------------------------------------------------------------------------------
# Detection and alignment of photos


class FaceAligner:
    """Find the largest face in a photo and warp it to the canonical 128×96 crop.

    backend="dlib" (default, offline): HOG detector + 68-point predictor; alignment on
    `STABLE_POINTS`. backend="insightface": SCRFD detector (an ONNX file, `insightface_model`),
    whose five keypoints say where the face is and how it is turned; dlib's predictor, seated on the
    face turned upright, then places the points both backends align on (SCRFD's own five are the
    fallback where the predictor cannot place them).
    """

    def __init__(self, backend: str = "dlib", insightface_model=None):
        if backend not in ("dlib", "insightface"):
            raise FaceError(f"unknown face backend '{backend}': use 'dlib' or 'insightface'")
        self.backend = backend
        self._scrfd = _scrfd(insightface_model) if backend == "insightface" else None

    def detect(self, image, face: int | None = None) -> tuple:
        """A face's box (x0, y0, x1, y1) in dlib's convention: the largest one (warning when there are
        several), or face number `face` counted from 0 from left to right."""
        image, name = _image_and_name(image)
        return self._detect(image, name, face)[0]  # upright faces only, as in video frames

    def landmarks(self, image, box) -> np.ndarray:
        """68 iBUG landmarks (68, 2) float32 inside a face box from `detect`."""
        image, _ = _image_and_name(image)
        return _predict(image, box)

    def align(self, image, face: int | None = None) -> AlignedFace:
        """Detect (the largest face, or number `face` from the left: see `detect`), find landmarks and
        warp to the canonical crop. A head tilted far to one side, or a photo taken sideways or
        upside down, is found and fitted turned upright (`PHOTO_TURNS`, `_fit_turned`)."""
        image, name = _image_and_name(image)
        box, keypoints, turn = self._detect(image, name, face, turns=PHOTO_TURNS)
        if keypoints is not None:
            # SCRFD finds the face and how it is turned; dlib's predictor, seated upright on it,
            # places the points the model's training crops were aligned on (SCRFD's own five,
            # mouth corners among them, put the astronaut's crop 4 px from the canonical face).
            # SCRFD can also take an upside-down face's mouth corners for its eyes (a photo turned
            # 180° without EXIF orientation), so the other turns are tried when its crop is not
            # seen as a face. Its own fit is kept where dlib's cannot be placed.
            own = similarity_transform(keypoints, canonical_five_points())
            made = float(np.degrees(np.arctan2(own[0, 1], own[0, 0])))  # the turn SCRFD's fit makes
            own_crop = warp_to_crop(image, own)
            fits = [_fit_turned(image, box, made + angle) for angle in ((0,) if _hog_sees_face(own_crop) else (0, 180, 90, -90))]
            matrix, landmarks, crop, error, seen = _best_fit(image, fits)
            if not (seen and error <= ALIGN_SUSPECT):
                matrix, landmarks, crop = own, _predict(image, box), own_crop
        else:
            fits = []  # (matrix, landmarks) candidates
            if turn == 0:
                landmarks = _predict(image, box)
                fits.append((similarity_transform(landmarks[STABLE_POINTS], _canonical()[STABLE_POINTS]), landmarks))
            matrix, landmarks, crop, error, seen = _best_fit(image, fits)
            if error > ALIGN_SUSPECT or not seen:
                # dlib's predictor, trained on upright faces, misplaces the points of a head tilted
                # past ~35° (a crop of cheek and hair): place them again with the face turned upright,
                # to either side of the turn the photo was found at.
                fits += [_fit_turned(image, box, angle) for angle in _turns_to_try(turn)]
                matrix, landmarks, crop, error, seen = _best_fit(image, fits)
            if error > ALIGN_FAILED:
                raise FaceError(f"could not find the eyes, nose and mouth of the face in {name}: use a photo of a "
                                "frontal face, not in profile or partly hidden")
        return AlignedFace(
            crop=crop, matrix=matrix, inverse=invert_transform(matrix),
            box=box, landmarks=landmarks, image_shape=image.shape[:2],
        )

    def _detect(self, image: np.ndarray, name: str, face: int | None = None, turns: tuple = ()):
        """(box, keypoints or None, turn) of the chosen face; turn is the angle the photo was turned
        by (cv2's, degrees) for its faces to be found upright: 0 unless none was, then the first of
        `turns` at which any was (their boxes upright, centred on each face, in the photo's pixels)."""
        boxes, scores, keypoints = self._find(image)
        turn = 0
        for angle in turns if not len(boxes) else ():
            boxes, scores, keypoints = _found_turned(image, angle, lambda turned: self._find(turned, quick=True))
            if len(boxes):
                turn = angle
                break
        if not len(boxes):
            raise FaceError(f"no face found in {name}: use a frontal photo with one clearly visible face, "
                            f"at least {MIN_FACE_SIZE} px wide")
        # A detection far less certain than the best one is most often no face (HOG found one in
        # the astronaut's suit, larger than her face, but only in video frames): leave those out.
        confident = scores >= WEAK_DETECTION * scores.max()
        boxes = boxes[confident]
        keypoints = keypoints[confident] if keypoints is not None else None
        # Numbered from left to right, the order in which a person reads a group photo.
        order = np.argsort((boxes[:, 0] + boxes[:, 2]) / 2, kind="stable")
        boxes = boxes[order]
        keypoints = keypoints[order] if keypoints is not None else None
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        if face is None:
            best = int(np.argmax(areas))
            if len(boxes) > 1:
                warnings.warn(f"{len(boxes)} faces found in {name}; animating the largest, number {best} from the "
                              f"left (counting from 0): pass face=N (--face N) for another", stacklevel=3)
        elif isinstance(face, bool) or not isinstance(face, (int, np.integer)) or not 0 <= face < len(boxes):
            found = f"1 face was found in {name}: use face=0" if len(boxes) == 1 else (
                f"{len(boxes)} faces were found in {name}: use face=0 to {len(boxes) - 1}, counted from the left")
            raise FaceError(f"there is no face number {face!r}; {found} (or leave it out for the largest)")
        else:
            best = int(face)
        if keypoints is not None:
            keypoints = self._scrfd.refine(image, boxes[best], keypoints[best])
            box = _image_box(invert_transform(similarity_transform(keypoints, canonical_five_points())))
        else:
            box = boxes[best]
        box = tuple(float(v) for v in box)
        width = box[2] - box[0]
        if width < MIN_FACE_SIZE:
            raise FaceError(f"face is only {width:.0f} px wide in {name}; use a photo where the face is at least {MIN_FACE_SIZE} px")
        return box, keypoints, turn

    def _find(self, image: np.ndarray, quick: bool = False):
        """All faces: boxes (N, 4), scores (N,), SCRFD keypoints (N, 5, 2) or None. `quick`: only
        the first, fast scales (for each turn of a photo in which no upright face was found)."""
        if self._scrfd is None:
            return *_detect_hog(image, quick), None
        return self._scrfd(image, quick)


def _image_box(inverse) -> tuple:
    """dlib's box for a face aligned with this crop->image transform: the canonical face's box
    carried back into the image (its bounding box, should the face be tilted)."""
    x0, y0, x1, y1 = _predictor_box(_canonical())
    corners = transform_points(inverse, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32))
    return tuple(float(v) for v in (*corners.min(0), *corners.max(0)))


def _alignment_error(crop: np.ndarray) -> float:
    """Mean distance (crop px) of the crop's nose and eye corners, found again on the crop, from the
    canonical ones: about 1 for a good fit, whatever the face (see ALIGN_SUSPECT)."""
    stable = _canonical()[STABLE_POINTS]
    return float(np.linalg.norm(crop_landmarks(crop)[STABLE_POINTS] - stable, axis=1).mean())


def _best_fit(image: np.ndarray, fits: list) -> tuple:
    """(matrix, landmarks, crop, error, seen) of the fit whose crop is nearest the canonical face
    (`_alignment_error`) among those whose crop the HOG detector sees a face in (`seen`), or, should
    it see none, among all (it misses some faces SCRFD finds). Seeing matters: the predictor run on
    an upside-down crop still places a plausible face there, and scores well."""
    if not fits:
        return None, None, None, np.inf, False
    scored = []
    for matrix, landmarks in fits:
        crop = warp_to_crop(image, matrix)
        scored.append((not _hog_sees_face(crop), _alignment_error(crop), matrix, landmarks, crop))
    unseen, error, matrix, landmarks, crop = min(scored, key=lambda fit: fit[:2])
    return matrix, landmarks, crop, error, not unseen


def _hog_sees_face(crop: np.ndarray) -> bool:
    """Whether dlib's HOG detector finds a face in the crop (at twice its size): in an upright crop it
    does; in one of a face upside down or sideways it does not."""
    big = cv2.resize(crop, (2 * CROP_WIDTH, 2 * CROP_HEIGHT), interpolation=cv2.INTER_LINEAR)
    return len(_run_hog(big)[0]) > 0


def _run_hog(image: np.ndarray, upsample: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """dlib's HOG face boxes (N, 4) in `image`'s pixels and their scores (N,), every one scored >= 0."""
    detector = _dlib_detector()  # outside the lock, which loading it takes
    with _lock:
        rects, scores, _ = detector.run(image, upsample, 0.0)
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64).reshape(-1, 4)
    return boxes, np.asarray(scores, np.float64)


def _turns_to_try(turn: float) -> tuple:
    """Angles to turn a face by before placing its landmarks: about the turn its photo was found at,
    or, for a face found upright, to either side (the detector finds heads tilted up to ~40°)."""
    if turn == 0:
        return (-20, 20, -40, 40, -60, 60)
    return (turn, turn - 20, turn + 20, turn - 40, turn + 40)


# The face's size (px) in the turned patch `_fit_turned` places landmarks in, and the patch's side.
_TURNED_FACE, _TURNED_PATCH = 150, 450


def _fit_turned(image: np.ndarray, box, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """(image -> crop matrix, 68 landmarks in the image) placed in a patch around the face turned by
    `angle` (cv2's degrees), where a face tilted by -angle stands upright as the predictor expects.
    The face is found again in the patch (a box from a fit that went wrong may be off the face)."""
    x0, y0, x1, y1 = box
    centre, size = np.array([(x0 + x1) / 2, (y0 + y1) / 2]), max(x1 - x0, y1 - y0)
    scale = _TURNED_FACE / size
    # Cut the patch's surroundings out first, and shrink them by area: a large face is not aliased.
    region, (left, top) = _window(image, centre, _TURNED_PATCH / scale / 2 * np.sqrt(2))
    right, bottom = left + region.shape[1], top + region.shape[0]
    shrink = min(1.0, scale)
    if shrink < 1.0:
        region = cv2.resize(region, (max(1, round(region.shape[1] * shrink)), max(1, round(region.shape[0] * shrink))),
                            interpolation=cv2.INTER_AREA)
    to_region = np.array([[region.shape[1] / (right - left), 0, 0], [0, region.shape[0] / (bottom - top), 0]])
    to_region[:, 2] = -np.array([left, top]) * np.diag(to_region[:, :2])
    turn = cv2.getRotationMatrix2D(tuple(float(v) for v in transform_points(to_region, centre)), float(angle),
                                   scale / shrink)
    turn[:, 2] += _TURNED_PATCH / 2 - transform_points(to_region, centre)  # the face's centre to the patch's
    patch = cv2.warpAffine(region, turn, (_TURNED_PATCH, _TURNED_PATCH), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    to_patch = np.vstack([turn, [0, 0, 1]]) @ np.vstack([to_region, [0, 0, 1]])
    middle = _TURNED_PATCH / 2
    boxes, _ = _run_hog(patch)
    distance = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - middle, axis=1)
    if len(boxes) and distance.min() < _TURNED_FACE / 2:
        found = boxes[int(np.argmin(distance))]
    else:  # where the box said the face was
        found = np.array([-1, -1, 1, 1]) * _TURNED_FACE / 2 + middle
    landmarks = transform_points(invert_transform(to_patch[:2]), _predict(patch, found))
    return similarity_transform(landmarks[STABLE_POINTS], _canonical()[STABLE_POINTS]), landmarks


def _window(image: np.ndarray, centre, reach: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of `image` within `reach` px of `centre` (cut at the image's edges), and its top-left corner."""
    height, width = image.shape[:2]
    left, top = int(max(0, np.floor(centre[0] - reach))), int(max(0, np.floor(centre[1] - reach)))
    right, bottom = int(min(width, np.ceil(centre[0] + reach))), int(min(height, np.ceil(centre[1] + reach)))
    return image[top:bottom, left:right], (left, top)


def _found_turned(image: np.ndarray, angle: float, find) -> tuple:
    """`find`'s faces in a copy of the photo (at most DETECT_MAX_SIDE px) turned by `angle`, carried
    back into the photo: boxes upright and centred on each face, keypoints moved with the turn."""
    height, width = image.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    small = image if scale == 1.0 else cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), float(angle), 1.0)
    corners = transform_points(turn, np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32))
    lo, hi = corners.min(0), corners.max(0)
    turn[:, 2] -= lo  # the whole turned photo in view
    size = np.ceil(hi - lo).astype(int)
    turned = cv2.warpAffine(small, turn, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    turn = turn @ np.diag([scale, scale, 1.0])  # from the photo's pixels, not the copy's
    boxes, scores, keypoints = find(turned)
    back = invert_transform(turn)
    centres = transform_points(back, ((boxes[:, :2] + boxes[:, 2:]) / 2).astype(np.float32))
    halves = (boxes[:, 2:] - boxes[:, :2]) / (2 * scale)
    boxes = np.concatenate([centres - halves, centres + halves], axis=1).astype(np.float64)
    if keypoints is not None and len(keypoints):
        keypoints = transform_points(back, keypoints.reshape(-1, 2)).reshape(keypoints.shape)
    return boxes, scores, keypoints


def _detect_hog(image: np.ndarray, quick: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All HOG face boxes (N, 4) in image pixels and their detection scores (N,), from the first
    scale of `_hog_scales` (`quick`: of its first two) at which any face is found."""
    height, width = image.shape[:2]
    copies = {}
    for scale, upsample in _hog_scales(max(height, width))[: 2 if quick else None]:
        if scale not in copies:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            copies[scale] = image if scale == 1.0 else cv2.resize(
                image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        boxes, scores = _run_hog(copies[scale], upsample)
        if len(boxes):
            break
    return boxes / scale, scores


def _hog_scales(side: int) -> list[tuple[float, int]]:
    """(scale of the photo, dlib upsampling) to try in turn on a photo whose longer side is `side`.

    First a copy of at most DETECT_MAX_SIDE px (fast; a portrait's face is found here), then dlib's
    own 2x upsampling of it, which finds faces down to ~40 px in a small photo, so that the user
    hears the face is too small rather than that there is none. In a large photo a face well above
    MIN_FACE_SIZE is below the HOG window in that copy (a 94 px face in a 4032 px phone photo was 15
    px there), so the scale then doubles until a MIN_FACE_SIZE face fills the window: 0.16, 0.32,
    0.63 and 1.25 of a 12-megapixel photo (about 2 s before "no face found" on 2 cores).
    """
    base = min(1.0, DETECT_MAX_SIDE / side)
    scales, scale = [(base, 0), (base, 1)], 2 * base
    enough = HOG_WINDOW / MIN_FACE_SIZE
    while scale < enough:
        scale = min(2 * scale, enough)
        scales.append((scale, 0))
    return scales


def _scrfd_input_sides(side: int) -> list[int]:
    """SCRFD's square input sizes to try in turn on a photo whose longer side is `side`: 640 (the
    size it was trained at), then doubled until the photo is shrunk by at most half, where a face
    of MIN_FACE_SIZE is 32 px, twice its smallest anchor (at 640 a 94 px face in a 4032 px photo
    was 15 px and not found; at 1280 it was)."""
    sides = [640]
    while sides[-1] < side / 2:
        sides.append(2 * sides[-1])
    return sides


def _scrfd(model_path):
    path = Path(model_path or DEFAULT_INSIGHTFACE_MODEL).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"insightface detector {path} not found: pip install insightface and run insightface's "
            "FaceAnalysis(name='buffalo_s') once online, or pass insightface_model=PATH"
        )
    key = ("scrfd", str(path.resolve()))
    with _lock:
        if key not in _models:
            try:
                from insightface.model_zoo import get_model
            except ImportError:
                raise CheckpointError("the insightface backend needs the insightface package: pip install insightface onnxruntime") from None
            model = get_model(str(path), providers=["CPUExecutionProvider"])
            if model is None or not hasattr(model, "detect"):
                raise CheckpointError(f"{path} is not an insightface SCRFD detector: pass det_500m.onnx / scrfd_*.onnx")
            model.prepare(ctx_id=-1, input_size=(640, 640))
            _models[key] = model
        model = _models[key]

    def run(image: np.ndarray, side: int):
        with _lock:
            boxes, keypoints = model.detect(np.ascontiguousarray(image[:, :, ::-1]), input_size=(side, side))
        if keypoints is None or not len(boxes):
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2), np.float32)
        return boxes[:, :4].astype(np.float64), boxes[:, 4].astype(np.float64), keypoints.astype(np.float32)

    def detect(image: np.ndarray, quick: bool = False):
        for side in _scrfd_input_sides(max(image.shape[:2]))[: 1 if quick else None]:
            boxes, scores, keypoints = run(image, side)
            if len(boxes):
                break
        return boxes, scores, keypoints

    def refine(image: np.ndarray, box, keypoints: np.ndarray) -> np.ndarray:
        """The face's five keypoints found again in a window three times its size, where it spans a
        third of the 640 px input: found in a whole photo, a face may have been a few input pixels
        across, and its keypoints that coarse (a 95 px face in a 4032 px photo: the crop's eyes and
        nose 9.8 photo px from where the face alone put them; 0.8 px with this)."""
        x0, y0, x1, y1 = box
        centre, reach = np.array([(x0 + x1) / 2, (y0 + y1) / 2]), 1.5 * max(x1 - x0, y1 - y0)
        region, (left, top) = _window(image, centre, reach)
        boxes, _, found = run(region, 640)
        if not len(boxes):
            return keypoints
        offset = np.array([left, top], np.float32)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2 + offset
        nearest = int(np.argmin(np.linalg.norm(centres - centre, axis=1)))
        if np.linalg.norm(centres[nearest] - centre) > reach / 3:  # another face in the window
            return keypoints
        return found[nearest] + offset

    detect.refine = refine
    return detect


# ----------------------------------------------------------------------------------------------
# Paste-back


class PasteBack:
    """Put generated 128×96 crops back into the photo they were aligned from.

    The feathered face mask and the photo region are prepared once, so each call is one small
    warp and a blend. Pixels outside the mask stay exactly as in the photo.
    """

    def __init__(self, image, aligned: AlignedFace, feather: float = DEFAULT_FEATHER):
        self.image, _ = _image_and_name(image)
        if tuple(self.image.shape[:2]) != tuple(aligned.image_shape):
            raise FaceError(f"paste_back got a {self.image.shape[1]}×{self.image.shape[0]} image but the face was aligned in a "
                            f"{aligned.image_shape[1]}×{aligned.image_shape[0]} one: pass the photo the face came from")
        height, width = self.image.shape[:2]
        inverse = np.asarray(aligned.inverse, dtype=np.float64)
        corners = transform_points(inverse, _crop_corners())
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, [width, height])
        self.region = (slice(y0, max(y1, y0)), slice(x0, max(x1, x0)))
        self.size = (int(max(x1 - x0, 0)), int(max(y1 - y0, 0)))
        # crop -> region-of-interest coordinates
        self.to_region = inverse.copy()
        self.to_region[:, 2] -= (x0, y0)
        mask = face_mask(feather)
        if self.size[0] and self.size[1]:
            self.mask = cv2.warpAffine(mask, self.to_region, self.size, flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)[:, :, None]
        else:
            self.mask = np.zeros((0, 0, 1), np.float32)

    def __call__(self, crop, out: np.ndarray | None = None) -> np.ndarray:
        """The photo with `crop` pasted in. `out`, a previous result of this helper, is reused
        (only the face region is rewritten), which saves copying a large photo every frame."""
        crop = np.asarray(crop)
        if crop.shape != (CROP_HEIGHT, CROP_WIDTH, 3) or crop.dtype != np.uint8:
            raise FaceError(f"paste_back expects a {CROP_HEIGHT}×{CROP_WIDTH}×3 uint8 crop, got {crop.shape} {crop.dtype}; convert frames with (x + 1) * 127.5")
        if out is None:
            out = self.image.copy()
        elif out.shape != self.image.shape or out.dtype != np.uint8:
            raise FaceError(f"PasteBack out= must be a {self.image.shape} uint8 array like its earlier results")
        if not self.mask.size:
            return out
        warped = cv2.warpAffine(crop, self.to_region, self.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        base = self.image[self.region].astype(np.float32)
        out[self.region] = np.rint(base + self.mask * (warped.astype(np.float32) - base)).astype(np.uint8)
        return out


def face_mask(feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """The paste-back weight (128×96 float32 in [0, 1]): an ellipse around the canonical face,
    from mid-forehead to below the chin (room for an open jaw), with a Gaussian edge `feather`
    crop pixels wide that reaches zero before the crop border."""
    points = _canonical()
    feather = float(max(feather, 0.0))
    brow_top, chin = points[17:27, 1].min(), points[8, 1]
    face_height = chin - brow_top
    top, bottom = brow_top - 0.25 * face_height, chin + 0.12 * face_height
    half_width = 0.5 * (points[16, 0] - points[0, 0]) * 1.06
    cx = points[:, 0].mean()
    # Keep the soft edge inside the crop, so no step shows at the crop's rectangle.
    inset = 1.0 + 1.5 * feather
    top, bottom = max(top, inset), min(bottom, CROP_HEIGHT - 1 - inset)
    half_width = min(half_width, cx - inset, CROP_WIDTH - 1 - inset - cx)
    ys, xs = np.mgrid[0:CROP_HEIGHT, 0:CROP_WIDTH].astype(np.float32)
    cy, half_height = 0.5 * (top + bottom), 0.5 * (bottom - top)
    mask = (((xs - cx) / half_width) ** 2 + ((ys - cy) / half_height) ** 2 <= 1.0).astype(np.float32)
    if feather > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=feather / 2, borderType=cv2.BORDER_CONSTANT)
    mask[[0, -1], :] = 0
    mask[:, [0, -1]] = 0
    return mask


def paste_back(image, crop, aligned: AlignedFace, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """Warp a (generated) 128×96 crop back into the photo with a feathered face mask; H×W×3 uint8.
    For many frames of one photo build a `PasteBack` once and call it per frame."""
    return PasteBack(image, aligned, feather)(crop)
