"""The metrics interface and registry, and PSNR, SSIM, LMD, CPBD and ACD on real GRID crops."""

import importlib
import importlib.util
import sys

import cv2
import numpy as np
import pytest

from speech_anim.face import FaceAligner
from speech_anim.metrics import METRICS, Metric, MetricError, get_metric
from speech_anim.metrics.cpbd import cpbd
from speech_anim.metrics.identity import face_descriptors
from speech_anim.video import read_video

FRAMES = slice(30, 60, 3)  # 10 frames with the mouth moving: cheap, and not all alike


def aligned(path, frames=FRAMES) -> np.ndarray:
    aligner = FaceAligner()
    return np.stack([aligner.align(frame).crop for frame in read_video(path)[0][frames]])


@pytest.fixture(scope="module")
def s1_crops(s1_clip):
    return aligned(s1_clip)


@pytest.fixture(scope="module")
def other_crops(grid_root):
    """Crops of another s1 sentence and of two other speakers (a woman, s4, and a man, s31)."""
    return {
        "s1": aligned(grid_root / "s1" / "video" / "lgaz8p.mp4", slice(0, 75, 25)),
        "s4": aligned(sorted((grid_root / "s4" / "video").glob("*.mp4"))[0], slice(0, 75, 25)),
        "s31": aligned(sorted((grid_root / "s31" / "video").glob("*.mp4"))[0], slice(0, 75, 25)),
    }


# ---------------------------------------------------------------------------------------------- interface


def test_registry_holds_the_paper_metrics():
    assert {"psnr", "ssim", "lmd", "cpbd", "acd", "blinks_per_second", "blink_duration"} <= set(METRICS)
    for name, metric in METRICS.items():
        assert isinstance(metric, Metric) and metric.name == name
        assert get_metric(name.upper()) is metric
    assert get_metric("psnr").needs_reference and not get_metric("cpbd").needs_reference
    assert get_metric("acd").needs_still and not get_metric("acd").higher_is_better
    assert not get_metric("lmd").higher_is_better and get_metric("ssim").higher_is_better


def test_input_errors_are_one_line():
    video = np.zeros((2, 128, 96, 3), np.uint8)
    cases = [
        lambda: get_metric("fid"),
        lambda: get_metric("psnr")(video),  # no reference
        lambda: get_metric("psnr")(video, video[:1]),  # different lengths
        lambda: get_metric("ssim")(video.astype(np.float32), video),
        lambda: get_metric("cpbd")(np.zeros((2, 128, 96), np.uint8)),
        lambda: get_metric("acd")(video),  # no still
    ]
    for case in cases:
        with pytest.raises(MetricError) as error:
            case()
        assert "\n" not in str(error.value)
    with pytest.raises(MetricError, match="psnr"):
        get_metric("fid")


# ---------------------------------------------------------------------------------------------- full reference


def test_ground_truth_against_itself(s1_crops):
    assert get_metric("psnr")(s1_crops, s1_crops) == float("inf")
    assert get_metric("ssim")(s1_crops, s1_crops) == pytest.approx(1.0)
    assert get_metric("lmd")(s1_crops, s1_crops) == 0.0


def test_psnr_and_ssim_values(s1_crops):
    rng = np.random.default_rng(0)
    noise = rng.choice([-4, 4], size=s1_crops.shape)
    noisy = np.clip(s1_crops.astype(int) + noise, 0, 255).astype(np.uint8)
    mse = np.mean((noisy.astype(float) - s1_crops) ** 2)
    assert get_metric("psnr")(noisy, s1_crops) == pytest.approx(10 * np.log10(255**2 / mse))
    assert 36 < get_metric("psnr")(noisy, s1_crops) < 37  # ±4 noise: MSE ≈ 16, 36.1 dB
    ssim_noisy = get_metric("ssim")(noisy, s1_crops)
    very_noisy = np.clip(s1_crops.astype(int) + 8 * noise, 0, 255).astype(np.uint8)
    assert 0 < get_metric("ssim")(very_noisy, s1_crops) < ssim_noisy < 1


def test_lmd_measures_mouth_motion(s1_crops):
    # Moving the picture 2 px right moves every landmark 2 px: the predictor's box stays put.
    shifted = np.concatenate([np.repeat(s1_crops[:, :, :1], 2, axis=2), s1_crops[:, :, :-2]], axis=2)
    assert get_metric("lmd")(shifted, s1_crops) == pytest.approx(2.0, abs=0.6)
    # The still repeated (a static video) against the speaking frames: the mouth moved.
    static = np.repeat(s1_crops[:1], len(s1_crops), axis=0)
    assert get_metric("lmd")(static, s1_crops) > 0.5


# ---------------------------------------------------------------------------------------------- CPBD


def test_cpbd_falls_with_blur(s1_crops):
    sharp = get_metric("cpbd")(s1_crops)
    blurred = get_metric("cpbd")(np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in s1_crops]))
    assert 0.15 < sharp < 0.6  # real GRID crops: 0.32 on average over s1 (docs/metrics.md)
    assert blurred < sharp - 0.1
    assert np.isnan(cpbd(np.full((128, 96, 3), 128, np.uint8)))  # no edges at all


@pytest.fixture(scope="module")
def cpbd_package(monkeypatch_module):
    """The `cpbd` PyPI package (reference implementation the paper's evaluation code ran).

    It imports `scipy.ndimage.imread`, removed from SciPy long ago: it is shimmed with imageio
    for this test only, and the modules are unloaded again afterwards.
    """
    import scipy.ndimage

    if importlib.util.find_spec("cpbd") is None:
        pytest.skip("the cpbd package is not installed (pip install cpbd): cannot compare with the reference implementation")
    import imageio.v2

    monkeypatch_module.setattr(scipy.ndimage, "imread", imageio.v2.imread, raising=False)
    module = importlib.import_module("cpbd.compute")
    yield module
    for name in [n for n in sys.modules if n == "cpbd" or n.startswith("cpbd.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def test_cpbd_matches_reference_package(cpbd_package, s1_clip, grid_root):
    from speech_anim.metrics.cpbd import to_gray

    s31_clip = sorted((grid_root / "s31" / "video").glob("*.mp4"))[0]
    frames = [read_video(s1_clip)[0][10], read_video(s31_clip)[0][40]]
    frames += [cv2.GaussianBlur(frames[0], (0, 0), 1.0), FaceAligner().align(frames[0]).crop]
    for frame in frames:
        # Same 8-bit gray image into both; measured differences on GRID frames are below 0.017.
        ours, theirs = cpbd(frame), cpbd_package.compute(to_gray(frame))
        assert ours == pytest.approx(theirs, abs=0.03), (ours, theirs)


# ---------------------------------------------------------------------------------------------- ACD


def test_acd_separates_identities(s1_crops, other_crops):
    acd = get_metric("acd")
    still = s1_crops[0]
    same_clip = acd(s1_crops[1:], still=still)
    same_person = acd(other_crops["s1"], still=still)
    others = [acd(other_crops[s], still=still) for s in ("s4", "s31")]
    # Measured on GRID crops (docs/metrics.md): same speaker <= 0.50, other speakers >= 0.64;
    # dlib's own same-person threshold is 0.6.
    assert same_clip < 0.4 and same_person < 0.5
    assert min(others) > 0.6
    assert acd(s1_crops[:1], still=still) == pytest.approx(0.0, abs=1e-6)


def test_repeated_frames_share_one_descriptor(s1_crops, monkeypatch):
    frames = np.concatenate([s1_crops[:2], s1_crops[:2], s1_crops[:1]])
    expected = face_descriptors(s1_crops[:2])
    import speech_anim.metrics.identity as identity

    calls = []
    real_model = identity._descriptor_model()
    counting = type("Counting", (), {"compute_face_descriptor": lambda self, *a: calls.append(1) or real_model.compute_face_descriptor(*a)})()
    monkeypatch.setattr(identity, "_descriptor_model", lambda: counting)
    got = face_descriptors(frames)
    assert len(calls) == 2  # a static video costs one descriptor, not one per frame
    np.testing.assert_allclose(got, expected[[0, 1, 0, 1, 0]], atol=1e-6)


def test_face_descriptors_of_full_frames(s1_clip):
    frame = read_video(s1_clip)[0][30]
    full, crop = face_descriptors(frame)[0], face_descriptors(FaceAligner().align(frame).crop)[0]
    assert full.shape == (128,) and np.linalg.norm(full - crop) < 0.4


# ---------------------------------------------------------------------------------------------- expression


def test_blink_metrics_real_and_static(s1_clip):
    crops = aligned(s1_clip, slice(None))  # bbaf2n: a double blink at frames 42-55
    assert get_metric("blinks_per_second")(crops) == pytest.approx(2 / 3.0)
    assert 0.1 < get_metric("blink_duration")(crops) < 0.6
    static = np.repeat(crops[:1], len(crops), axis=0)
    assert get_metric("blinks_per_second")(static) == 0.0
    assert np.isnan(get_metric("blink_duration")(static))
    assert get_metric("blinks_per_second").higher_is_better is None
