"""The Gradio app served on a loopback port and called with gradio_client, as an API user would.

A randomly initialised tiny generator stands in for the trained model: these tests check the
serving path (uploads, errors, video with audio, blink tables), not the quality of the faces.
The helpers at the top are shared with test_app_browser.py and test_app_load.py.
"""

import importlib.util
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speech_anim.audio import SAMPLE_RATE, load_audio

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PHOTO = EXAMPLES / "astronaut.png"
STILL = EXAMPLES / "grid_s1_still.png"
SPEECH = EXAMPLES / "grid_s1_bbaf2n.wav"
STAGES = {"reading the photo and the speech", "loading the model", "aligning the face", "generating frames",
          "encoding the video", "measuring blinks", "done"}


def load_app_module():
    """app.py is a script at the repo root, not part of the package: import it by path."""
    spec = importlib.util.spec_from_file_location("speech_anim_app", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_checkpoint(folder: Path) -> str:
    from speech_anim.models.generator import Generator, GeneratorConfig

    Generator(GeneratorConfig(width=0.125)).save_pretrained(folder)
    return str(folder)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(checkpoint: str, **build_options):
    """Build the page for `checkpoint` and launch it on a free loopback port: (demo, url)."""
    app = load_app_module()
    demo = app.build_demo(checkpoint=checkpoint, **build_options)
    port = free_port()
    app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def write_speech(path: Path, seconds: float, offset: float = 0.5) -> Path:
    """A cut of the real GRID sentence, `seconds` long, starting `offset` s in."""
    signal = load_audio(SPEECH)
    start = int(offset * SAMPLE_RATE)
    soundfile.write(path, signal[start : start + int(round(seconds * SAMPLE_RATE))], SAMPLE_RATE)
    return path


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    demo, url = serve(tiny_checkpoint(tmp_path_factory.mktemp("tiny_generator")))
    yield Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    demo.close()


def submit(client, photo, speech, seed=0, paste_back=True, model="", face=None):
    from gradio_client import handle_file

    return client.submit(
        photo=handle_file(str(photo)) if photo else None, speech=handle_file(str(speech)) if speech else None,
        seed=seed, paste_back=paste_back, model=model, face=face, api_name="/animate",
    )


def animate(client, photo, speech, **options):
    return submit(client, photo, speech, **options).result(timeout=120)


def test_api_animates_a_real_photo_with_real_speech(client):
    from speech_anim.video import probe

    job = submit(client, PHOTO, SPEECH, seed=3)
    stages = set()
    while not job.done():  # the page's progress bar gets named stages
        stages |= {update.desc for update in job.status().progress_data or []}
        time.sleep(0.02)
    video, crop, summary, blinks, plot, status = job.result()
    # The client samples the progress stream, so a short stage may be missed: ask for several named
    # stages, all of them known ones (the full sequence is checked in-process below).
    assert len(stages & STAGES) >= 2 and stages <= STAGES, stages

    info = probe(video)
    seconds = len(load_audio(SPEECH)) / SAMPLE_RATE
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert abs(info["duration"] - seconds) <= 1 / 25, (info["duration"], seconds)  # within a frame
    assert (info["width"], info["height"]) == (512, 512)  # pasted back into the 512×512 photo
    from PIL import Image

    assert Image.open(crop).size == (96, 128)  # the aligned crop, width × height
    table = dict(summary["data"])
    assert list(table) == ["Blinks", "Blinks per second", "Mean blink duration (s)", "Median blink duration (s)",
                           "Video length (s)"]
    assert table["Blinks"] == len(blinks["data"]) and table["Video length (s)"] == pytest.approx(seconds, abs=0.04)
    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/png;base64,")
    assert "seed 3" in status and "75 frames" in status


def test_progress_reports_every_stage_in_order(tmp_path):
    from speech_anim import app_helpers

    seen = []
    result = app_helpers.animate(PHOTO, SPEECH, checkpoint=tiny_checkpoint(tmp_path / "model"),
                                 progress=lambda fraction, stage: seen.append((fraction, stage)))
    # The page gets the crop as a PNG file of this request's own (see app_helpers.animate).
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(result.crop_png).convert("RGB")), result.crop)
    assert result.crop_png.parent == result.video.parent and result.crop_png.stem.startswith(result.video.stem)
    stages = [stage for _, stage in seen]
    assert set(stages) <= STAGES and set(stages) >= STAGES - {"loading the model", "reading the photo and the speech"}, stages
    assert stages.index("aligning the face") < stages.index("generating frames") < stages.index("encoding the video")
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_api_returns_the_face_crop_without_paste_back(client, tmp_path):
    from speech_anim.video import probe

    video, *_ = animate(client, STILL, write_speech(tmp_path / "short.wav", 0.6), paste_back=False)
    info = probe(video)
    assert (info["width"], info["height"]) == (96, 128)
    assert info["audio_codec"] == "aac"
    assert abs(info["duration"] - 0.6) <= 1 / 25


@pytest.mark.parametrize(
    "make_input, expected",
    [
        (lambda d: (_cat_photo(d), SPEECH), "no face found"),
        (lambda d: (_write(d / "broken.png", b"\x89PNG not really"), SPEECH), "cannot read broken.png as an image"),
        (lambda d: (PHOTO, _write(d / "corrupt.wav", b"RIFF" + bytes(range(256)) * 8)), "corrupt.wav"),
        (lambda d: (PHOTO, write_speech(d / "blip.wav", 0.01)), "shorter than one video frame"),
        (lambda d: (None, SPEECH), "add a photo"),
        (lambda d: (PHOTO, None), "add speech"),
    ],
    ids=["no-face", "unreadable-image", "corrupt-audio", "too-short-audio", "no-photo", "no-speech"],
)
def test_bad_inputs_give_a_one_line_message(client, tmp_path, make_input, expected):
    from gradio_client.exceptions import AppError

    photo, speech = make_input(tmp_path)
    with pytest.raises(AppError) as raised:
        animate(client, photo, speech)
    message = raised.value.message
    assert expected in message and "\n" not in message and "Traceback" not in message
    assert "/tmp/gradio" not in message  # server paths are replaced by the user's file names


def test_a_face_of_a_group_photo_is_picked_by_its_number(client, tmp_path):
    from gradio_client.exceptions import AppError
    from PIL import Image

    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    pair = tmp_path / "pair.png"
    Image.fromarray(np.concatenate([photo, photo[:, ::-1]], 1)).save(pair)
    short = write_speech(tmp_path / "short.wav", 0.4)
    crops = [np.asarray(Image.open(animate(client, pair, short, face=face, paste_back=False)[1]).convert("RGB"))
             for face in (0, 1.0)]  # a number field may send 1.0
    # The right face is the left one mirrored: its crop is the left one's crop mirrored.
    assert np.abs(crops[1][:, ::-1].astype(int) - crops[0]).mean() < 10
    assert np.abs(crops[1].astype(int) - crops[0]).mean() > 2 * np.abs(crops[1][:, ::-1].astype(int) - crops[0]).mean()
    for wrong, expected in ((2, "use face=0 to 1"), (0.5, "whole number from 0")):
        with pytest.raises(AppError, match=expected) as raised:
            animate(client, pair, short, face=wrong)
        assert "\n" not in raised.value.message and "/tmp/gradio" not in raised.value.message


def test_speech_over_the_cap_is_refused_with_the_cap(client, monkeypatch):
    from gradio_client.exceptions import AppError

    monkeypatch.setenv("SPEECH_ANIM_MAX_AUDIO_SECONDS", "2")
    with pytest.raises(AppError, match=r"the speech is 3\.0 s long but this app takes at most 2 s"):
        animate(client, PHOTO, SPEECH)


def test_a_missing_checkpoint_is_reported(client, tmp_path):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as raised:
        animate(client, PHOTO, SPEECH, model=str(tmp_path / "no_such_model"))
    assert "\n" not in raised.value.message and "no_such_model" in raised.value.message


def test_page_says_when_no_default_model_is_installed(monkeypatch):
    from speech_anim import app_helpers
    from speech_anim.errors import CheckpointError

    monkeypatch.delenv("SPEECH_ANIM_CHECKPOINT", raising=False)
    monkeypatch.setattr(app_helpers, "DEFAULT_CHECKPOINT", Path("/nonexistent/grid-s1"))
    assert app_helpers.default_checkpoint() is None
    demo = load_app_module().build_demo()
    banners = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "model-missing"]
    assert len(banners) == 1 and "No trained default model is installed" in banners[0].value
    with pytest.raises(CheckpointError, match="no trained default model is installed"):
        app_helpers.load_animator(None)


def test_page_states_the_packaged_models_limits(monkeypatch, tmp_path):
    from speech_anim import app_helpers

    monkeypatch.delenv("SPEECH_ANIM_CHECKPOINT", raising=False)
    packaged = tiny_checkpoint(tmp_path / "grid-s1")
    monkeypatch.setattr(app_helpers, "DEFAULT_CHECKPOINT", Path(packaged))
    notes = [b for b in load_app_module().build_demo().blocks.values() if getattr(b, "elem_id", None) == "model-note"]
    assert len(notes) == 1 and "less than it should" in notes[0].value and "model_card.md" in notes[0].value
    other = load_app_module().build_demo(checkpoint=tiny_checkpoint(tmp_path / "mine"))
    assert not [b for b in other.blocks.values() if getattr(b, "elem_id", None) == "model-note"]


def test_model_is_loaded_once_per_checkpoint(tmp_path):
    from speech_anim.app_helpers import load_animator

    checkpoint = tiny_checkpoint(tmp_path / "model")
    assert load_animator(checkpoint) is load_animator(checkpoint)


def test_blink_tables_and_plot_show_each_blink():
    from speech_anim.app_helpers import blink_rows, ear_figure, summary_rows
    from speech_anim.blinks import detect_blinks

    ear = np.full(100, 0.3, np.float32)
    ear[20:27] = [0.28, 0.2, 0.1, 0.05, 0.1, 0.2, 0.28]  # a blink around frame 23
    ear[70:75] = [0.25, 0.12, 0.06, 0.12, 0.25]  # and one around frame 72
    stats = detect_blinks(ear, fps=25.0)
    assert len(stats.blinks) == 2
    rows = blink_rows(stats)
    assert [row[0] for row in rows] == [1, 2]
    for row, blink in zip(rows, stats.blinks):
        assert row[1] == pytest.approx(blink.start / 25) and row[2] == pytest.approx(blink.end / 25)
        assert row[3] == pytest.approx((blink.end - blink.start) / 25)
    summary = dict(summary_rows(stats))
    assert summary["Blinks"] == 2 and summary["Blinks per second"] == pytest.approx(2 / 4.0)
    assert summary["Mean blink duration (s)"] == pytest.approx(np.mean([row[3] for row in rows]), abs=1e-3)
    assert summary["Video length (s)"] == 4.0
    axes = ear_figure(stats).axes[0]
    assert len(axes.patches) == 2  # one shaded span per blink
    assert "2 blinks" in axes.get_title(loc="right")


def _cat_photo(folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    path = folder / "cat.png"
    Image.fromarray(data.chelsea()).save(path)
    return path


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path
