"""Eye aspect ratio, blink detection on synthetic EAR curves, and on hand-annotated GRID clips."""

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from speech_anim import blinks
from speech_anim.blinks import BlinkError, detect_blinks, eye_aspect_ratio, eye_openness, match_blinks, video_blinks
from speech_anim.face import FaceAligner
from speech_anim.video import read_video

ANNOTATIONS = Path(__file__).parent / "data" / "blink_annotations.json"
OPEN = 0.30  # a typical open-eye EAR


def eye(width=6.0, height=2.0, x=0.0):
    """Six eye points p1..p6 (Eq. 8) of an eye `width` wide with both lid distances `height`."""
    return np.array([[x, 0], [x + width / 3, -height / 2], [x + 2 * width / 3, -height / 2], [x + width, 0],
                     [x + 2 * width / 3, height / 2], [x + width / 3, height / 2]], np.float32)


def face(left_height=2.0, right_height=2.0):
    points = np.zeros((68, 2), np.float32)
    points[36:42], points[42:48] = eye(height=left_height), eye(height=right_height, x=20)
    return points


def curve(length, events=(), noise=0.004, seed=0):
    """An open-eye EAR with noise and V-shaped blinks: events are (bottom, half_width, depth)."""
    ear = OPEN + np.random.default_rng(seed).normal(0, noise, length)
    for bottom, half, depth in events:
        t = np.arange(bottom - half, bottom + half + 1)
        inside = (t >= 0) & (t < length)
        ear[t[inside]] -= depth * (1 - np.abs(t[inside] - bottom) / half)
    return ear


# ---------------------------------------------------------------------------------------------- EAR


def test_eye_aspect_ratio_of_known_eyes():
    # Eq. 8: (|p2-p6| + |p3-p5|) / (2 |p1-p4|) = (2 + 2) / 12 for both eyes.
    assert eye_aspect_ratio(face()) == pytest.approx(1 / 3)
    assert eye_aspect_ratio(face(0.0, 0.0)) == pytest.approx(0.0)
    # Both eyes are averaged: a winking right eye halves nothing but its own share.
    assert eye_aspect_ratio(face(2.0, 1.0)) == pytest.approx((1 / 3 + 1 / 6) / 2)
    video = np.stack([face(h, h) for h in (2.0, 1.0, 0.5)])
    assert eye_aspect_ratio(video) == pytest.approx([1 / 3, 1 / 6, 1 / 12])
    # Scale and position do not matter.
    assert eye_aspect_ratio(face() * 7 + 100) == pytest.approx(1 / 3)
    with pytest.raises(BlinkError):
        eye_aspect_ratio(np.zeros((5, 2)))


def test_eye_openness_is_the_ear_over_the_clips_open_eyes():
    heights = [2.0] * 6 + [1.0, 0.5, 1.0] + [2.0] * 3
    video = np.stack([face(h, h) for h in heights])
    video[4] = np.nan  # a frame without landmarks counts as open
    openness = eye_openness(video)
    assert openness.dtype == np.float32 and openness.shape == (12,)
    assert openness[[0, 4, 11]] == pytest.approx([1.0, 1.0, 1.0])
    assert openness[6:9] == pytest.approx([0.5, 0.25, 0.5])
    assert np.all(eye_openness(np.full((3, 68, 2), np.nan)) == 1.0)


# ---------------------------------------------------------------------------------------------- detection


def test_detects_known_blinks():
    events = [(20, 3, 0.15), (50, 4, 0.20), (90, 6, 0.18)]  # 7, 9 and 13 frames peak to peak
    stats = detect_blinks(curve(125, events), fps=25)
    assert [b.bottom for b in stats.blinks] == [20, 50, 90]
    for blink, (bottom, half, _) in zip(stats.blinks, events):
        assert abs(blink.start - (bottom - half)) <= 1 and abs(blink.end - (bottom + half)) <= 1
        assert blink.frames == blink.end - blink.start + 1
        assert blink.min_ear == pytest.approx(stats.ear[bottom], abs=1e-4)
    durations = [(b.end - b.start) / 25 for b in stats.blinks]
    assert stats.blinks_per_second == pytest.approx(3 / 5.0)
    assert stats.mean_duration == pytest.approx(np.mean(durations))
    assert stats.median_duration == pytest.approx(np.median(durations))
    assert stats.num_frames == 125 and stats.fps == 25


def test_ignores_what_is_not_a_blink():
    # A dip of 10% is landmark jitter, not a blink.
    assert not detect_blinks(curve(75, [(30, 4, 0.03)]), 25).blinks
    # Eyes narrowing slowly (looking down over 1.6 s) and staying so: no sharp drop.
    ear = curve(100)
    ear[20:60] -= np.linspace(0, 0.12, 40)
    ear[60:] -= 0.12
    assert not detect_blinks(ear, 25).blinks
    # A flat curve, a too-short curve, all frames without a face.
    assert not detect_blinks(np.full(75, OPEN), 25).blinks
    assert not detect_blinks([0.3, 0.1], 25).blinks
    empty = detect_blinks(np.full(75, np.nan), 25)
    assert not empty.blinks and np.isnan(empty.mean_duration) and empty.blinks_per_second == 0


def test_double_blink_and_clip_edges():
    # Two closures with a partial reopening between them (as in GRID s1 bbaf2n) are two blinks.
    ear = curve(75, [(30, 3, 0.18), (39, 4, 0.18)])
    ear[33:36] = OPEN - 0.06
    assert len(detect_blinks(ear, 25).blinks) == 2
    # A blink already under way when the clip starts still counts (the left peak is unseen).
    stats = detect_blinks(curve(75, [(1, 4, 0.2)]), 25)
    assert len(stats.blinks) == 1 and stats.blinks[0].start == 0
    # Frames without a face split the curve: no blink is made up across them.
    ear = curve(75, [(40, 4, 0.2)])
    ear[38:43] = np.nan
    assert all(not (b.start <= 40 <= b.end) for b in detect_blinks(ear, 25).blinks)


def test_thresholds_are_parameters():
    ear = curve(75, [(30, 4, 0.06)])  # a 20% dip: the eye never gets below 80% open
    assert not detect_blinks(ear, 25).blinks
    assert not detect_blinks(ear, 25, max_closed=0.9, min_drop=0.25).blinks
    assert len(detect_blinks(ear, 25, max_closed=0.9, min_drop=0.1, min_rise=0.1).blinks) == 1
    with pytest.raises(BlinkError):
        detect_blinks(ear, fps=0)


def test_stats_to_json():
    stats = detect_blinks(curve(75, [(30, 4, 0.2)]), 25)
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["num_blinks"] == 1 and len(data["ear"]) == 75
    assert data["blinks"][0]["start"] == stats.blinks[0].start
    assert json.loads(json.dumps(detect_blinks(np.full(75, OPEN), 25).to_dict()))["mean_duration"] is None


def test_match_blinks():
    # (matched, detected, reference); one-to-one, spans widened by the tolerance.
    assert match_blinks([(10, 14), (40, 44)], [(12, 15), (60, 63)]) == (1, 2, 2)
    assert match_blinks([(10, 14)], [(17, 20)], tolerance=2) == (0, 1, 1)
    assert match_blinks([(10, 14)], [(17, 20)], tolerance=3) == (1, 1, 1)
    assert match_blinks([(10, 14), (15, 18)], [(12, 16)]) == (1, 2, 1)
    assert match_blinks([(30, 33)], [], ignore=[(31, 31)]) == (0, 0, 0)


# ---------------------------------------------------------------------------------------------- real video


@pytest.fixture(scope="module")
def annotations(grid_root):
    clips = json.loads(ANNOTATIONS.read_text())["clips"]
    return {clip: (item, grid_root / "s1" / "video" / f"{clip}.mp4") for clip, item in clips.items()}


@pytest.fixture(scope="module")
def detected(annotations):
    return {clip: video_blinks(path) for clip, (_, path) in annotations.items()}


def test_agrees_with_hand_annotations(annotations, detected):
    matched = found = truth = 0
    for clip, (item, _) in annotations.items():
        spans = [(b.start, b.end) for b in detected[clip].blinks]
        counts = match_blinks(spans, item["blinks"], ignore=item["uncertain"])
        matched, found, truth = matched + counts[0], found + counts[1], truth + counts[2]
    # 19 annotated blinks in 10 clips; measured 17 of 18 detections right, 17 of 19 blinks found
    # (docs/blinks.md). The bounds fail with 2 more misses or 3 more false detections than that.
    assert truth == 19
    assert matched / found >= 0.85, (matched, found)
    assert matched / truth >= 0.8, (matched, truth)


def test_aligned_crops_find_the_same_blinks(annotations, detected):
    # Generated videos are 128×96 crops: their landmarks come without detection (crop_landmarks).
    _, path = annotations["sbiazn"]
    frames, fps = read_video(path)
    aligner = FaceAligner()
    crops = np.stack([aligner.align(frame).crop for frame in frames])
    from_crops = video_blinks(crops, fps=fps)
    full = detected["sbiazn"]
    assert match_blinks([(b.start, b.end) for b in from_crops.blinks], [(b.start, b.end) for b in full.blinks]) == (
        len(full.blinks), len(from_crops.blinks), len(full.blinks))


def test_cli_prints_blinks(annotations, capsys):
    _, path = annotations["sbig6p"]
    assert blinks.run_cli(Namespace(video=str(path), json=True, fps=None)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["num_frames"] == 75 and data["fps"] == 25 and data["num_blinks"] >= 1
    assert blinks.run_cli(Namespace(video=str(path), json=False, fps=None)) == 0
    assert "blinks per second" in capsys.readouterr().out


def test_video_errors(tmp_path):
    with pytest.raises(BlinkError):
        video_blinks(np.zeros((3, 10, 10), np.uint8))
    with pytest.raises(BlinkError, match="no face"):
        video_blinks(np.full((3, 120, 160, 3), 90, np.uint8))


def test_pooled_rate_counts_every_blink_once_over_all_videos():
    one = detect_blinks(curve(75, [(30, 4, 0.15)]), 25.0)  # 3 s, one blink
    two = detect_blinks(curve(125, [(30, 4, 0.15), (90, 4, 0.15)], seed=1), 25.0)  # 5 s, two
    rate, median, count = blinks.pooled_rate([one, two])
    assert count == 3 and rate == pytest.approx(3 / 8)
    assert median == pytest.approx(np.median(np.concatenate([one.durations, two.durations])))
    assert blinks.pooled_rate([detect_blinks(curve(50), 25.0)])[2] == 0
