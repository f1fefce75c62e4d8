"""ACD: average content distance, how well a video keeps the identity of its still image.

The paper measured ACD with OpenFace embeddings (Amos et al. 2016). OpenFace's model is not
installable here, so this uses dlib's 128-d face descriptor (dlib_face_recognition_resnet_model_v1,
from the face_recognition_models package), trained with a metric loss like OpenFace's: the values
are Euclidean distances in a different embedding space and are not comparable with the paper's
numbers. dlib states that two descriptors closer than 0.6 are usually the same person; measured
on real GRID crops in docs/metrics.md.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from . import Metric, register

_DESCRIPTOR_FILE = "models/dlib_face_recognition_resnet_model_v1.dat"
_lock = threading.Lock()
_model = []


def _descriptor_model():
    with _lock:
        if not _model:
            import dlib

            # Located without importing face_recognition_models: its __init__ needs pkg_resources.
            spec = importlib.util.find_spec("face_recognition_models")
            path = Path(spec.submodule_search_locations[0]) / _DESCRIPTOR_FILE if spec else None
            if path is None or not path.is_file():
                raise CheckpointError("dlib's face descriptor model is missing: pip install face_recognition_models")
            _model.append(dlib.face_recognition_model_v1(str(path)))
        return _model[0]


def face_descriptors(frames) -> np.ndarray:
    """(T, 128) dlib face descriptors of T×H×W×3 uint8 frames.

    Aligned 128×96 crops use `face.crop_landmarks` (no detection, so generated frames work); other
    images are detected with `face.FaceAligner`. The descriptor is computed on dlib's own 150×150
    face chip, cut using the 68 landmarks.
    """
    import dlib

    from ..face import CROP_HEIGHT, CROP_WIDTH, FaceAligner, crop_landmarks

    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    # Identical frames (a static video, a frozen stretch) get one descriptor: dlib's network is
    # ~85 ms a frame on one core and dominates an evaluation.
    unique, inverse = np.unique(frames.reshape(len(frames), -1), axis=0, return_inverse=True)
    if len(unique) < len(frames):
        return face_descriptors(unique.reshape(-1, *frames.shape[1:]))[inverse.reshape(-1)]
    if frames.shape[1:3] == (CROP_HEIGHT, CROP_WIDTH):
        landmarks = crop_landmarks(frames)
    else:
        aligner = FaceAligner()
        landmarks = np.stack([aligner.landmarks(frame, aligner.detect(frame)) for frame in frames])
    model = _descriptor_model()
    out = np.empty((len(frames), 128), np.float32)
    for i, (frame, points) in enumerate(zip(frames, landmarks)):
        (x0, y0), (x1, y1) = points.min(0), points.max(0)
        shape = dlib.full_object_detection(
            dlib.rectangle(int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))),
            [dlib.point(int(round(x)), int(round(y))) for x, y in points],
        )
        with _lock:
            out[i] = np.asarray(model.compute_face_descriptor(np.ascontiguousarray(frame), shape))
    return out


@register
class ACD(Metric):
    """Mean Euclidean distance between the face descriptor of the still and of each generated frame."""

    name = "acd"
    needs_still = True
    higher_is_better = False

    def compute(self, generated, reference=None, still=None, **context) -> float:
        still_descriptor = face_descriptors(still[None])[0]
        return float(np.linalg.norm(face_descriptors(generated) - still_descriptor, axis=1).mean())
