"""The SyncNet-style expert and the AV offset / confidence metric."""

import numpy as np
import pytest
import torch

from speech_anim.errors import CheckpointError, VideoError
from speech_anim.metrics import get_metric
from speech_anim.metrics.sync import av_sync, distance_curve, shift_audio
from speech_anim.models.syncnet import (
    EXPERT_WEIGHTS,
    SyncNet,
    SyncNetConfig,
    load_expert,
    mouth_frames,
    mouth_windows,
)

# Held-out clips (grid_test split): the expert never saw them.
TEST_CLIPS = ("bbaf4p", "bbaz4n")


@pytest.fixture(scope="module")
def real_clips(grid_root):
    from speech_anim.metrics.evaluate import load_clip

    return [load_clip(grid_root / "s1" / "video" / f"{name}.mp4") for name in TEST_CLIPS]


def test_distance_curve_finds_a_known_shift():
    # audio embedding of frame t + 4 equals the video embedding of frame t: the sound is 4 frames late
    rng = np.random.default_rng(0)
    video = rng.normal(size=(60, 8))
    audio = np.roll(video, 4, axis=0) + 0.01 * rng.normal(size=(60, 8))
    shifts, distances = distance_curve(video, audio, max_shift=15)
    assert shifts[np.argmin(distances)] == 4
    assert len(shifts) == 31 and shifts[0] == -15


def test_a_still_video_has_a_flat_curve():
    # the same video embedding at every frame: every shift pairs it with the same audio frames
    audio = np.random.default_rng(1).normal(size=(75, 8))
    _, distances = distance_curve(np.ones((75, 8)), audio)
    assert np.ptp(distances) < 1e-9


def test_distance_curve_refuses_short_clips():
    with pytest.raises(VideoError, match="frames"):
        distance_curve(np.zeros((8, 4)), np.zeros((8, 4)))


def test_shift_audio_delays_and_advances():
    audio = np.arange(1, 3201, dtype=np.float32)
    late = shift_audio(audio, 1)  # one frame = 640 samples at 25 fps
    assert late[:640].sum() == 0 and late[640] == 1 and len(late) == len(audio)
    early = shift_audio(audio, -1)
    assert early[0] == 641 and early[-640:].sum() == 0


def test_mouth_windows_repeat_the_edges():
    mouths = torch.arange(4.0)[:, None, None].expand(4, 2, 2)
    windows = mouth_windows(mouths, 5)
    assert windows.shape == (4, 5, 2, 2)
    assert windows[0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]
    assert windows[3, :, 0, 0].tolist() == [1, 2, 3, 3, 3]


def test_mouth_frames_checks_the_crop():
    with pytest.raises(VideoError, match="128×96"):
        mouth_frames(np.zeros((3, 100, 100, 3), np.uint8))
    config = SyncNetConfig()
    assert mouth_frames(np.zeros((3, 128, 96, 3), np.uint8)).shape == (3, *config.mouth_shape)


def test_checkpoint_round_trip(tmp_path):
    model = SyncNet(SyncNetConfig(width=4, embed_dim=8)).eval()
    model.save_pretrained(tmp_path)
    loaded = SyncNet.from_pretrained(tmp_path)
    assert loaded.config.embed_dim == 8 and loaded.config.mouth_box == model.config.mouth_box
    audio, mouths = torch.randn(2, 3200) * 0.1, torch.rand(2, 5, *model.config.mouth_shape)
    assert torch.allclose(model(audio, mouths), loaded(audio, mouths), atol=1e-6)
    with pytest.raises(CheckpointError):
        SyncNet.from_pretrained(tmp_path / "missing")


def test_shipped_expert_is_small_and_frozen():
    model = load_expert()
    assert EXPERT_WEIGHTS.stat().st_size < 5 * 2**20
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_real_clips_are_in_sync_and_shifts_are_found(real_clips):
    for clip in real_clips:
        result = av_sync(clip.crops, clip.audio, clip.fps)
        assert abs(result.offset) <= 1, f"{clip.name}: offset {result.offset}"
        for shift in (-5, 5):
            shifted = av_sync(clip.crops, shift_audio(clip.audio, shift), clip.fps)
            assert shifted.offset == shift, f"{clip.name}: audio shifted by {shift} found at {shifted.offset}"


def test_a_still_face_has_low_confidence(real_clips):
    for clip in real_clips:
        real = av_sync(clip.crops, clip.audio, clip.fps)
        still = av_sync(np.repeat(clip.crops[:1], len(clip.crops), 0), clip.audio, clip.fps)
        assert still.confidence < 1e-4 < 0.2 < real.confidence, (still.confidence, real.confidence)


def test_registered_metrics_share_one_run(real_clips):
    clip = real_clips[0]
    offset = get_metric("av_offset")(clip.crops, audio=clip.audio, fps=clip.fps)
    confidence = get_metric("av_confidence")(clip.crops, audio=clip.audio, fps=clip.fps)
    result = av_sync(clip.crops, clip.audio, clip.fps)
    assert offset == result.offset and confidence == pytest.approx(result.confidence, abs=1e-6)


def test_sync_metrics_need_the_audio():
    from speech_anim.metrics import MetricError

    with pytest.raises(MetricError, match="audio="):
        get_metric("av_offset")(np.zeros((20, 128, 96, 3), np.uint8))
