"""Writing H.264 + AAC (and VP9 + Opus) videos, reading them back, and probing them."""

import numpy as np
import pytest
import scipy.signal

from speech_anim import video
from speech_anim.audio import load_audio, num_frames
from speech_anim.errors import SpeechAnimError, VideoError
from speech_anim.video import probe, read_video, write_video

SR = 16000


def smooth_frames(count, height=48, width=64):
    # Gradients that move frame to frame: compress well, so the round trip error stays small.
    y, x = np.mgrid[0:height, 0:width]
    channels = [[(x * 3 + 2 * t) % 256, (y * 4 + t) % 256, np.full_like(x, (t * 37) % 256)] for t in range(count)]
    return np.stack([np.stack(c, -1) for c in channels]).astype(np.uint8)


def sweep(seconds):
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.5 * scipy.signal.chirp(t, 100, seconds, 3000)).astype(np.float32)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """75 frames at 25 fps with 3.0 s of sound, written once for several tests."""
    path = tmp_path_factory.mktemp("video") / "talk.mp4"
    frames, audio = smooth_frames(75), sweep(3.0)
    assert write_video(path, frames, 25, audio) == path
    return path, frames, audio


def test_round_trip(written):
    path, frames, audio = written
    info = probe(path)
    assert (info["video_codec"], info["audio_codec"], info["pixel_format"]) == ("h264", "aac", "yuv420p")
    assert (info["width"], info["height"], info["fps"]) == (64, 48, 25.0)
    assert abs(info["duration"] - len(audio) / SR) <= 1 / 25
    back, fps = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8 and fps == 25.0
    assert np.abs(back.astype(int) - frames).mean() < 6  # measured 2.3 at CRF 18
    sound = load_audio(path)
    assert abs(len(sound) - len(audio)) <= SR / 25
    lag = int(np.argmax(scipy.signal.correlate(sound, audio, method="fft"))) - (len(audio) - 1)
    assert lag == 0  # sound still in sync with the frames
    assert np.corrcoef(sound[: len(audio)], audio[: len(sound)])[0, 1] > 0.99


@pytest.mark.parametrize("suffix, codecs", [(".webm", ("vp9", "opus")), (".mkv", ("h264", "opus")), (".MOV", ("h264", "aac"))])
def test_other_containers_round_trip(tmp_path, suffix, codecs):
    frames, audio = smooth_frames(75), sweep(3.0)
    path = write_video(tmp_path / f"talk{suffix}", frames, 25, audio)
    info = probe(path)
    assert (info["video_codec"], info["audio_codec"], info["pixel_format"]) == (*codecs, "yuv420p")
    assert abs(info["duration"] - 3.0) <= 1 / 25  # webm, mkv: 3.008 (Opus)
    back, fps = read_video(path)
    assert back.shape == frames.shape and fps == 25.0
    assert np.abs(back.astype(int) - frames).mean() < 6
    sound = load_audio(path)
    lag = int(np.argmax(scipy.signal.correlate(sound, audio, method="fft"))) - (len(audio) - 1)
    assert lag == 0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left beside it


@pytest.mark.parametrize("fps", [30.0, 29.97])
def test_other_frame_rates_keep_every_frame(tmp_path, fps):
    frames = smooth_frames(61)
    audio = sweep(61 / fps)
    assert num_frames(len(audio), fps) == 61
    write_video(tmp_path / "clip.mp4", frames, fps, audio)
    info = probe(tmp_path / "clip.mp4")
    assert info["fps"] == pytest.approx(fps, rel=1e-4)
    assert abs(info["duration"] - 61 / fps) <= 1 / fps
    back, read_fps = read_video(tmp_path / "clip.mp4")
    assert len(back) == 61 and read_fps == pytest.approx(fps, rel=1e-4)
    # Frame t comes back as frame t (no frame dropped or repeated by timing round-off).
    distance = np.abs(back[:, None].astype(np.int16) - frames[None]).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(distance.argmin(axis=1), np.arange(61))


def test_longer_audio_does_not_stretch_the_video(tmp_path):
    with pytest.warns(UserWarning, match="cut or padded"):
        write_video(tmp_path / "long.mp4", smooth_frames(50), 25, sweep(6.0))
    assert abs(probe(tmp_path / "long.mp4")["duration"] - 2.0) <= 1 / 25
    # GRID-like: a sound track a little shorter than the frames is padded without complaint.
    write_video(tmp_path / "short.mp4", smooth_frames(75), 25, sweep(2.978))
    assert abs(probe(tmp_path / "short.mp4")["duration"] - 3.0) <= 1 / 25


def test_odd_sizes_are_padded_to_even(tmp_path):
    frames = smooth_frames(10, height=47, width=63)
    write_video(tmp_path / "odd.mp4", frames, 25)
    info = probe(tmp_path / "odd.mp4")
    assert (info["width"], info["height"], info["pixel_format"]) == (64, 48, "yuv420p")
    assert info["audio_codec"] is None
    back, _ = read_video(tmp_path / "odd.mp4")
    assert back.shape == (10, 48, 64, 3)
    assert np.abs(back[:, :47, :63].astype(int) - frames).mean() < 6


def test_writing_is_quiet(tmp_path, capfd):
    capfd.readouterr()
    write_video(tmp_path / "quiet.mp4", smooth_frames(5), 25, sweep(0.2))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    from moviepy import VideoClip

    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous video")

    def half_write(self, filename, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"\x00" * 1000)
        raise OSError("[Errno 28] No space left on device")

    monkeypatch.setattr(VideoClip, "write_videofile", half_write)
    with pytest.raises(VideoError, match="No space left") as error:
        write_video(target, smooth_frames(5), 25, sweep(0.2))
    assert "\n" not in str(error.value)
    assert target.read_bytes() == b"previous video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_frames_can_come_one_chunk_at_a_time(tmp_path, written):
    """An iterable of frames and chunks gives the file an array gives, without holding them all."""
    path, frames, audio = written
    pieces = [frames[0], frames[1:30], frames[30:30], frames[30:74], frames[74]]
    taken = []

    def lazily():
        for piece in pieces:
            taken.append(len(taken))
            yield piece

    source = lazily()
    again = tmp_path / "chunks.mp4"
    write_video(again, source, 25, audio, count=75)
    assert len(taken) == len(pieces)
    back, _ = read_video(again)
    first, _ = read_video(path)
    np.testing.assert_array_equal(back, first)
    assert probe(again)["audio_codec"] == "aac"


@pytest.mark.parametrize(
    "pieces, count, message",
    [
        ([smooth_frames(4)], 5, "ran out after 4 of the 5"),
        ([smooth_frames(4), smooth_frames(2)], 5, "gave 6 frames but count=5"),
        ([smooth_frames(2), smooth_frames(2, 32, 32)], 4, "frames of one size"),
        ([smooth_frames(2).astype(np.float32)], 2, "uint8 RGB"),
        ([smooth_frames(2)], 0, "at least 1"),
    ],
)
def test_iterable_frame_errors_leave_no_file(tmp_path, pieces, count, message):
    target = tmp_path / "out.mp4"
    with pytest.raises(VideoError, match=message) as error:
        write_video(target, iter(pieces), 25, count=count)
    assert "\n" not in str(error.value)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "name, frames, audio, message",
    [
        ("out.gif", smooth_frames(2), None, "name the output"),
        ("out.mp4", smooth_frames(2).astype(np.float32) / 255, None, "uint8 RGB"),
        ("out.mp4", smooth_frames(2)[..., 0], None, "uint8 RGB"),
        ("out.mp4", np.zeros((0, 48, 64, 3), np.uint8), None, "without frames"),
        ("out.mp4", smooth_frames(2), np.full(1280, np.nan), "NaN"),
        ("out.mp4", smooth_frames(2), np.zeros((1280, 2)), "1-D mono"),
    ],
)
def test_write_errors(tmp_path, name, frames, audio, message):
    with pytest.raises(VideoError, match=message):
        write_video(tmp_path / name, frames, 25, audio)
    assert not any(tmp_path.iterdir())


def test_output_path_check_says_what_to_name_it(tmp_path):
    assert video.check_output_path(tmp_path / "a.WebM") == tmp_path / "a.WebM"
    for name, message in [("a.gif", "name the output [*].mp4 [(]or .m4v, .mov, .mkv, .webm[)]"),
                          ("noext", "cannot write 'noext' videos")]:
        with pytest.raises(VideoError, match=message):
            video.check_output_path(tmp_path / name)
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(VideoError, match="is a folder"):
        write_video(tmp_path / "folder.mp4", smooth_frames(2), 25)


def test_read_errors(tmp_path, written):
    with pytest.raises(VideoError, match="not found"):
        read_video(tmp_path / "absent.mp4")
    (tmp_path / "junk.mp4").write_bytes(bytes(range(256)) * 16)
    with pytest.raises(VideoError, match="corrupt or not a video"):
        read_video(tmp_path / "junk.mp4")
    with pytest.raises(VideoError, match="corrupt or not a video"):
        probe(tmp_path / "junk.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty \(0 bytes\)"):
        read_video(tmp_path / "empty.mp4")
    import soundfile

    soundfile.write(tmp_path / "speech.wav", sweep(0.5), SR)
    with pytest.raises(VideoError, match="no video stream"):
        read_video(tmp_path / "speech.wav")
    assert issubclass(VideoError, SpeechAnimError)


def test_grid_clip(s1_clip):
    frames, fps = read_video(s1_clip)
    assert frames.shape == (75, 288, 360, 3) and fps == 25.0
    info = probe(s1_clip)
    assert info == dict(
        duration=3.0, width=360, height=288, fps=25.0, pixel_format="yuv420p", video_codec="h264", audio_codec="aac"
    )


def test_probe_without_ffprobe_matches(written, monkeypatch):
    path = written[0]
    with_ffprobe = probe(path)
    monkeypatch.setattr(video.shutil, "which", lambda name: None)
    without = probe(path)
    # `ffmpeg -i` prints the duration to the hundredth of a second.
    assert without.pop("duration") == pytest.approx(with_ffprobe.pop("duration"), abs=0.01)
    assert without == with_ffprobe
