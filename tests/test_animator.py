"""The pipeline and the `speech-anim animate` command, end to end on real photos and speech."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from speech_anim import Animator
from speech_anim.animator import DEFAULT_CHECKPOINT
from speech_anim.audio import load_audio, num_frames
from speech_anim.cli import main
from speech_anim.errors import AudioError, CheckpointError, DeviceError, FaceError, ImageError, SeedError
from speech_anim.models.generator import Generator, GeneratorConfig
from speech_anim.video import probe

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTO = EXAMPLES / "astronaut.png"
SPEECH = EXAMPLES / "grid_s1_bbaf2n.wav"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised small generator saved like any trained one."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    Generator(GeneratorConfig(width=0.125)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def animator(checkpoint) -> Animator:
    return Animator.from_pretrained(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(SPEECH)


def test_animates_a_photo_and_writes_a_playable_mp4(animator, tmp_path, speech):
    result = animator(PHOTO, SPEECH, seed=3)
    assert result.frames.shape == (75, 128, 96, 3) and result.frames.dtype == np.uint8
    assert result.fps == 25.0 and result.seed == 3
    x0, y0, x1, y1 = result.face_box
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    assert result.crop.shape == (128, 96, 3)
    np.testing.assert_array_equal(result.audio, speech)

    info = probe(result.save(tmp_path / "out.mp4"))
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert abs(info["duration"] - len(speech) / 16000) <= 1 / 25 + 1e-3


def test_seed_controls_the_noise(animator, speech, frames_match):
    a = animator(PHOTO, (speech, 16000), seed=0).frames
    b = animator(PHOTO, (speech, 16000), seed=0).frames
    c = animator(PHOTO, (speech, 16000), seed=1).frames
    frames_match(a, b)
    assert np.count_nonzero(a != c) > 100  # an untrained model's noise moves pixels by 1, but many (545)


def test_paste_back_gives_full_resolution_frames(animator, speech):
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    result = animator(photo, (speech[:8000], 16000), paste_back=True)
    assert result.frames.shape == (13, *photo.shape)
    # Far from the face the photo is untouched.
    np.testing.assert_array_equal(result.frames[:, -40:, -40:], np.broadcast_to(photo[-40:, -40:], (13, 40, 40, 3)))
    assert result.crops.shape == (13, 128, 96, 3) and result.num_frames == 13


def test_saving_a_pasted_result_pastes_one_frame_at_a_time(animator, speech, tmp_path, monkeypatch):
    """save() never stacks the full-photo frames: memory stays that of the crops for any photo size."""
    from speech_anim.video import read_video

    result = animator(PHOTO, (speech[:8000], 16000), paste_back=True, seed=2)
    pasted = []
    paste = result.paster.__call__
    monkeypatch.setattr(type(result.paster), "__call__", lambda self, crop, out=None: pasted.append(1) or paste(crop, out))
    stages = []
    result.save(tmp_path / "a.mp4", progress=lambda fraction, stage: stages.append((fraction, stage)))
    assert len(pasted) == 13 and result._pasted is None  # pasted while encoding, never all kept
    assert stages[-1] == (1.0, "encoding the video") and [f for f, _ in stages] == sorted(f for f, _ in stages)
    back, fps = read_video(tmp_path / "a.mp4")
    assert fps == 25 and back.shape == result.frames.shape  # .frames makes (and keeps) them all
    assert np.abs(back.astype(int) - result.frames).mean() < 3


def test_streaming_equals_one_pass(animator, speech, frames_match):
    whole = animator(PHOTO, (speech, 16000), seed=5).frames
    chunks = [speech[i : i + 1111] for i in range(0, len(speech), 1111)]
    streamed = list(animator.stream(PHOTO, chunks, seed=5))
    assert len(streamed) > 10  # frames come out as audio arrives, not all at the end
    frames_match(np.concatenate(streamed), whole)


def test_long_audio_is_generated_in_chunks_like_one_pass(animator, speech, frames_match):
    """Past CHUNK_FRAMES the generator runs in pieces; the carried state makes that invisible."""
    long = np.concatenate([speech, speech])  # 149 frames: two chunks
    result = animator(PHOTO, (long, 16000), seed=2)
    assert len(result.frames) == num_frames(len(long)) == 149
    first = animator(PHOTO, (long[:47648], 16000), seed=2).frames
    # The first 70 frames' windows lie wholly inside the first copy, so they are identical.
    frames_match(result.frames[:70], first[:70])


@pytest.mark.parametrize("fps", [30.0, 12.5])
def test_other_frame_rates_show_the_model_frames_at_their_own_times(animator, speech, tmp_path, fps, frames_match):
    """The model runs at 25 fps whatever the output rate, so a blink or a word keeps its duration:
    output frame k shows the 25 fps frame on screen at its middle, (k + 0.5) / fps."""
    native = animator(PHOTO, (speech, 16000), seed=6).frames
    result = animator(PHOTO, (speech, 16000), seed=6, fps=fps)
    count = num_frames(len(speech), fps)
    shown = [min(int((k + 0.5) * 25.0 / fps), len(native) - 1) for k in range(count)]
    assert result.fps == fps and len(result.frames) == count
    frames_match(result.frames, native[shown])
    chunks = [speech[i : i + 999] for i in range(0, len(speech), 999)]
    streamed = list(animator.stream(PHOTO, chunks, seed=6, fps=fps))
    assert len(streamed) > 5
    frames_match(np.concatenate(streamed), result.frames)
    info = probe(result.save(tmp_path / "out.mp4"))
    assert abs(info["duration"] - len(speech) / 16000) <= 1 / fps + 1e-3


def test_frame_rate_seed_and_device_are_checked(checkpoint, animator, speech):
    for fps in (0, -25, float("nan")):
        with pytest.raises(AudioError, match="fps must be a positive"):
            animator(PHOTO, (speech, 16000), fps=fps)
    for seed in (2**64, -(2**63) - 1, 0.5, True, "3"):  # 2^64 overflowed inside torch with a traceback
        with pytest.raises(SeedError, match="whole number from -2"):
            animator(PHOTO, (speech[:3200], 16000), seed=seed)
    assert animator(PHOTO, (speech[:3200], 16000), seed=2**63 - 1).seed == 2**63 - 1
    with pytest.raises(DeviceError, match="use cpu, cuda"):
        Animator.from_pretrained(checkpoint, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU: use --device cpu"):
            Animator.from_pretrained(checkpoint, device="cuda")


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_other_image_modes_are_converted(animator, tmp_path, mode, speech):
    path = tmp_path / f"face_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    Image.open(PHOTO).convert(mode).save(path)
    assert animator(path, (speech[:3200], 16000)).frames.shape == (5, 128, 96, 3)


def test_bad_inputs_raise_one_line_errors(animator, tmp_path, speech):
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    faceless = tmp_path / "flat.png"
    Image.new("RGB", (300, 300), (120, 120, 120)).save(faceless)
    tiny = tmp_path / "tiny.png"
    Image.open(PHOTO).resize((60, 60)).save(tiny)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage" * 10)
    unsupported = tmp_path / "speech.xyz"
    unsupported.write_bytes(b"\0" * 100)
    cases = [
        (ImageError, dict(image=not_image, audio=SPEECH)),
        (FaceError, dict(image=faceless, audio=SPEECH)),
        (FaceError, dict(image=tiny, audio=SPEECH)),
        (AudioError, dict(image=PHOTO, audio=empty)),
        (AudioError, dict(image=PHOTO, audio=corrupt)),
        (AudioError, dict(image=PHOTO, audio=unsupported)),
        (AudioError, dict(image=PHOTO, audio=(speech[:100], 16000))),  # shorter than one frame
    ]
    for error, kwargs in cases:
        with pytest.raises(error) as info:
            animator(**kwargs)
        message = str(info.value)
        assert message and "\n" not in message, message


def test_animate_crop_takes_an_aligned_face_without_detection(animator, speech, frames_match):
    crop = animator.align(PHOTO).crop
    frames = animator.animate_crop(crop, (speech, 16000), seed=3)
    frames_match(frames, animator(PHOTO, SPEECH, seed=3).frames)
    with pytest.raises(ImageError, match="128×96×3"):
        animator.animate_crop(crop[:64], (speech, 16000))


def test_missing_default_model_is_reported_not_faked(monkeypatch, tmp_path):
    monkeypatch.setattr("speech_anim.animator.DEFAULT_CHECKPOINT", tmp_path / "nothing-here")
    with pytest.raises(CheckpointError, match="--checkpoint"):
        Animator.from_pretrained()


def test_default_model_loads_when_shipped():
    if not (DEFAULT_CHECKPOINT / "model.safetensors").is_file():
        pytest.skip("no default model is shipped in speech_anim/pretrained/grid-s1 yet")
    animator = Animator.from_pretrained(device="cpu")
    assert animator(PHOTO, SPEECH).frames.shape == (75, 128, 96, 3)


@pytest.mark.parametrize("suffix, codecs", [(".mp4", ("h264", "aac")), (".webm", ("vp9", "opus"))])
def test_cli_animate_writes_video(checkpoint, tmp_path, capsys, suffix, codecs):
    out = tmp_path / f"talking{suffix}"
    code = main(["animate", "--image", str(PHOTO), "--audio", str(SPEECH), "--out", str(out),
                 "--checkpoint", str(checkpoint), "--seed", "4", "--paste-back"])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"wrote {out} (75 frames") and printed[1].startswith("blinks: ")
    info = probe(out)
    assert (info["width"], info["height"]) == (512, 512) and (info["video_codec"], info["audio_codec"]) == codecs


def test_cli_refuses_an_output_it_cannot_write_before_any_work(tmp_path):
    # No --checkpoint that exists: the name is checked before the model loads, as a single line.
    proc = subprocess.run(
        [sys.executable, "-m", "speech_anim.cli", "animate", "--image", str(PHOTO), "--audio", str(SPEECH),
         "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "talking.gif")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("speech-anim animate: error: cannot write '.gif' videos: "
                                   "name the output *.mp4 (or .m4v, .mov, .mkv, .webm)")
    assert not any(tmp_path.iterdir())


def test_cli_revision_needs_a_repo_id(tmp_path, capsys):
    assert main(["animate", "--image", str(PHOTO), "--audio", str(SPEECH), "--out", str(tmp_path / "x.mp4"),
                 "--revision", "v2"]) == 2
    assert capsys.readouterr().err.strip() == ("speech-anim animate: error: --revision picks a version of a Hub "
                                               "model: give its repo id with --checkpoint too")


def test_cli_animate_reports_the_run_and_its_blinks_as_json(checkpoint, tmp_path, capsys):
    import json

    from speech_anim.blinks import video_blinks

    out = tmp_path / "talking.mp4"
    assert main(["animate", "--image", str(PHOTO), "--audio", str(SPEECH), "--out", str(out),
                 "--checkpoint", str(checkpoint), "--fps", "30", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["video"] == str(out) and record["frames"] == 90 and record["fps"] == 30.0 and record["seed"] == 0
    x0, y0, x1, y1 = record["face_box"]
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    # The blinks are those of the crops the model made (the file's frames went through H.264).
    crops = Animator.from_pretrained(checkpoint, device="cpu")(PHOTO, SPEECH, fps=30).crops
    expected = video_blinks(crops, fps=30).to_dict(ear=False)
    spans = lambda stats: [(blink["start"], blink["end"]) for blink in stats["blinks"]]  # noqa: E731
    assert spans(record["blinks"]) == spans(expected) and record["blinks"]["num_frames"] == 90


def test_cli_errors_are_one_line_without_traceback(checkpoint, tmp_path):
    faceless = tmp_path / "flat.png"
    Image.new("RGB", (300, 300), (120, 120, 120)).save(faceless)
    runs = [
        ["--image", str(faceless), "--audio", str(SPEECH), "--checkpoint", str(checkpoint)],
        ["--image", str(PHOTO), "--audio", str(SPEECH), "--checkpoint", str(tmp_path / "missing")],
        ["--image", str(PHOTO), "--audio", str(SPEECH), "--checkpoint", str(checkpoint), "--device", "gpu"],
    ]
    for args in runs:
        proc = subprocess.run(
            [sys.executable, "-m", "speech_anim.cli", "animate", *args, "--out", str(tmp_path / "x.mp4")],
            capture_output=True, text=True,
        )
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("speech-anim animate: error:"), proc.stderr
        assert not (tmp_path / "x.mp4").exists()


def test_cli_picks_a_face_and_warns_in_one_line(checkpoint, tmp_path):
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    pair = tmp_path / "pair.png"
    Image.fromarray(np.concatenate([photo, photo[:, ::-1]], 1)).save(pair)
    base = [sys.executable, "-m", "speech_anim.cli", "animate", "--image", str(pair), "--audio", str(SPEECH),
            "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.mp4"), "--json"]
    largest = subprocess.run(base, capture_output=True, text=True)
    assert largest.returncode == 0, largest.stderr
    warned = [line for line in largest.stderr.splitlines() if line.strip()]
    assert len(warned) == 1 and warned[0].startswith("speech-anim animate: warning: 2 faces found"), largest.stderr
    right = subprocess.run([*base, "--face", "1"], capture_output=True, text=True)
    assert right.returncode == 0 and not right.stderr.strip(), right.stderr
    import json

    assert json.loads(right.stdout)["face_box"][0] > 512 > json.loads(largest.stdout)["face_box"][2]


def test_an_eye_input_generator_streams_like_one_pass_and_its_seed_draws_the_eyes(tmp_path, speech, frames_match):
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(width=0.125, output="blend", eye_input=True))
    with torch.no_grad():  # as if trained: the closure changes the eye region
        for eye_map in generator.decoder.eye_maps:
            eye_map.normal_(0, 0.05)
    animator = Animator(generator, device="cpu")
    whole = animator(PHOTO, (speech, 16000), seed=5).frames
    chunks = [speech[i : i + 1111] for i in range(0, len(speech), 1111)]
    frames_match(np.concatenate(list(animator.stream(PHOTO, chunks, seed=5))), whole)
    other = animator(PHOTO, (speech, 16000), seed=6).frames
    assert np.abs(other.astype(int) - whole).max() > 1
