"""`speech-anim evaluate` on real GRID clips: ground truth against itself and the static baseline."""

import csv
import json
import math

import numpy as np
import pytest

from speech_anim.cli import main
from speech_anim.errors import SpeechAnimError
from speech_anim.metrics import MetricError
from speech_anim.metrics.evaluate import Clip, evaluate, format_table, pair_files, static_clip
from speech_anim.metrics.lipreading import word_windows

CLIPS = ("bbaf4p", "bbaz4n")  # held-out test-split clips
# The per-clip columns the tests need (ACD and CPBD are tested with their own modules, and slow).
METRICS = ["psnr", "ssim", "lmd", "lipreading", "av_offset", "av_confidence", "blinks_per_second", "blink_duration"]


@pytest.fixture(scope="module")
def reference_dir(grid_root, tmp_path_factory):
    """Two raw 360×288 GRID videos with their .align files, as a user would pass them."""
    folder = tmp_path_factory.mktemp("reference")
    for name in CLIPS:
        (folder / f"{name}.mp4").symlink_to(grid_root / "s1" / "video" / f"{name}.mp4")
        (folder / f"{name}.align").symlink_to(grid_root / "s1" / "align" / f"{name}.align")
    return folder


@pytest.fixture(scope="module")
def cli_runs(reference_dir, tmp_path_factory):
    """Output folder and argv of two CLI runs: ground truth vs itself, and the static baseline."""
    out = tmp_path_factory.mktemp("reports")
    runs = {}
    for kind, source in (("real", ["--generated", str(reference_dir)]), ("static", ["--baseline", "static"])):
        runs[kind] = ["evaluate", *source, "--reference", str(reference_dir), "--out", str(out / f"{kind}.json"),
                      "--csv", str(out / f"{kind}.csv"), "--metrics", *METRICS]  # fmt: skip
    return out, runs


def _run(capsys, argv):
    assert main(argv) == 0
    return capsys.readouterr().out


def test_ground_truth_against_itself_and_static_baseline(cli_runs, capsys):
    out, runs = cli_runs
    printed = _run(capsys, runs["real"])
    real = json.loads((out / "real.json").read_text())
    # PSNR is infinite and written as such; SSIM 1; LMD 0; the lip reader agrees with itself.
    assert real["summary"]["psnr"] == "inf"
    assert real["summary"]["ssim"] == pytest.approx(1.0)
    assert real["summary"]["lmd"] == 0.0
    assert real["summary"]["lipreading"] == pytest.approx(1.0)
    assert [c["name"] for c in real["clips"]] == list(CLIPS)
    assert all(abs(c["av_offset"]) <= 1 for c in real["clips"])

    # The printed table: the paper's column titles in order, then one row of values.
    header, values = printed.strip().splitlines()[:2]
    titles = ["PSNR", "SSIM", "LMD", "Lip-read", "AV offset", "AV conf", "Blinks/s", "Blink dur (s)"]
    assert [header.index(t) for t in titles] == sorted(header.index(t) for t in titles)
    assert values.split()[:2] == ["generated", "inf"]
    rows = list(csv.DictReader(open(out / "real.csv")))
    assert [r["name"] for r in rows] == list(CLIPS) and rows[0]["psnr"] == "inf" and set(METRICS) <= set(rows[0])

    printed = _run(capsys, runs["static"])
    static = json.loads((out / "static.json").read_text())
    assert static["generated"] == "baseline:static"
    assert printed.splitlines()[1].split()[0] == "static"
    for mine, theirs in zip(static["clips"], real["clips"]):
        assert mine["av_confidence"] < 1e-4 < 0.2 < theirs["av_confidence"]
        assert mine["lmd"] > 0.5  # a closed mouth is pixels away from a speaking one
        assert mine["lipreading"] < 0.6
        assert mine["blinks_per_second"] == 0 and mine["blink_duration"] is None
    assert math.isfinite(float(static["summary"]["psnr"]))


def test_unpaired_videos_fail_with_one_line(reference_dir, tmp_path):
    generated = tmp_path / "generated"
    generated.mkdir()
    (generated / "nothere.mp4").write_bytes(b"x")
    with pytest.raises(SpeechAnimError, match="no reference of the same name") as error:
        pair_files(generated, reference_dir)
    assert "\n" not in str(error.value)
    with pytest.raises(SpeechAnimError, match="either generated videos"):
        evaluate(reference_dir)
    with pytest.raises(MetricError, match="unknown metric"):
        evaluate(reference_dir, baseline="static", metrics=["nope"])


def test_cli_rejects_a_bad_metric_name(reference_dir, tmp_path, capsys):
    code = main(["evaluate", "--baseline", "static", "--reference", str(reference_dir),
                 "--out", str(tmp_path / "r.json"), "--metrics", "psnr", "sharpness"])  # fmt: skip
    assert code == 2
    assert "unknown metric 'sharpness'" in capsys.readouterr().err


def test_word_windows_centre_29_frames_on_each_word():
    words = [("bin", 0.5, 0.74), ("blue", 0.74, 1.0)]  # seconds
    assert word_windows(75, words, 25.0) == [("bin", 16 - 14), ("blue", 22 - 14)]
    # no word timings: 29-frame windows every 15 frames
    assert [start for _, start in word_windows(75)] == [0, 15, 30, 45]


def test_table_formats_missing_and_infinite_values():
    text = format_table({"psnr": float("inf"), "blink_duration": float("nan"), "ssim": 0.5}, ["psnr", "ssim", "blink_duration"])
    header, values = text.splitlines()
    assert header.split()[:2] == ["PSNR", "SSIM"] and values.split() == ["inf", "0.500", "n/a"]


def test_static_clip_repeats_the_first_frame():
    crops = np.random.default_rng(0).integers(0, 255, (5, 128, 96, 3), dtype=np.uint8)
    clip = static_clip(Clip("x", crops, np.zeros(3200, np.float32), 25.0))
    assert clip.crops.shape == crops.shape and (clip.crops == crops[0]).all()
