"""Audio loading in every supported format, stereo handling, and the per-frame windows of Eq. 1."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import scipy.signal
import soundfile

from speech_anim.audio import SAMPLE_RATE, WINDOW_SAMPLES, frame_audio, load_audio, num_frames, quiet_room, warped_windows
from speech_anim.errors import AudioError, SpeechAnimError

SR = SAMPLE_RATE


def ffmpeg(*args):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True)


def chirp(seconds=1.5, rate=SR):
    # A sweep: unlike a pure tone, a shifted copy of it does not correlate with itself.
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.5 * scipy.signal.chirp(t, 100, seconds, 3000)).astype(np.float32)


def lag_and_correlation(loaded, reference):
    """Shift of `loaded` against `reference` in samples, and their correlation at that shift."""
    lag = int(np.argmax(scipy.signal.correlate(loaded, reference, method="fft"))) - (len(reference) - 1)
    a, b = (loaded[lag:], reference) if lag >= 0 else (loaded, reference[-lag:])
    n = min(len(a), len(b))
    return lag, float(np.corrcoef(a[:n], b[:n])[0, 1])


@pytest.fixture(scope="module")
def chirp_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    soundfile.write(folder / "speech.wav", chirp(), SR, subtype="PCM_16")
    for suffix in ("flac", "mp3", "ogg", "m4a", "opus"):
        ffmpeg("-i", folder / "speech.wav", folder / f"speech.{suffix}")
    gray = ["-f", "lavfi", "-i", "color=c=gray:s=64x48:r=25", "-i", folder / "speech.wav", "-shortest"]
    for suffix, codecs in {
        "mp4": "-c:v libx264 -c:a aac",
        "mov": "-c:v libx264 -c:a aac",
        "mkv": "-c:v libx264 -c:a aac",
        "webm": "-c:v libvpx-vp9 -c:a libopus",
        "avi": "-c:v mpeg4 -c:a libmp3lame",
        "flv": "-c:v libx264 -c:a aac",
        "mpg": "-c:v mpeg1video -c:a mp2",
    }.items():
        ffmpeg(*gray, *codecs.split(), folder / f"speech.{suffix}")
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x48:r=25", "-t", "1", "-c:v", "libx264", folder / "mute.mp4")
    return folder


@pytest.mark.parametrize("suffix", ["wav", "flac", "mp3", "ogg", "m4a", "opus", "mp4", "mov", "mkv", "webm"])
def test_formats_load_in_sync(chirp_files, suffix):
    signal = load_audio(chirp_files / f"speech.{suffix}")
    assert signal.dtype == np.float32 and signal.ndim == 1
    # Containers with gapless metadata give back the exact length, or a little encoder padding at the end.
    assert 24000 <= len(signal) <= 24000 + SR / 25
    lag, correlation = lag_and_correlation(signal, chirp())
    assert lag == 0
    assert correlation > 0.99


@pytest.mark.parametrize("suffix", ["wav", "mp3", "m4a", "mp4"])
def test_the_bytes_of_a_file_or_an_open_file_load_as_the_file_does(chirp_files, suffix):
    """For a web service's uploads: no path, no suffix; m4a and mp4 keep their index at the end."""
    path = chirp_files / f"speech.{suffix}"
    from_path = load_audio(path)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), from_path)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(load_audio(handle), from_path)


def test_bad_bytes_and_text_files_are_refused_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with open(tmp_path / "notes.txt") as text:
        for source, message in ((b"", "empty"), (b"garbage" * 100, "cannot decode the audio bytes"),
                                (text, "binary mode")):
            with pytest.raises(AudioError, match=message) as error:
                load_audio(source)
            assert "\n" not in str(error.value) and "speech_anim_" not in str(error.value)  # no temp path


@pytest.mark.parametrize("suffix", ["avi", "flv", "mpg"])
def test_containers_without_gapless_metadata_keep_the_encoder_delay(chirp_files, suffix):
    # These containers cannot say how many priming samples the encoder added, so the decoded track
    # starts a little late; ffmpeg plays the file the same way, so this is the file's own sync.
    signal = load_audio(chirp_files / f"speech.{suffix}")
    lag, correlation = lag_and_correlation(signal, chirp())
    assert 0 <= lag <= 1200  # measured: avi/mp3 1105, flv/aac 1024, mpg/mp2 481 samples
    assert correlation > 0.99
    assert abs(len(signal) - lag - 24000) <= SR / 25


def test_grid_clip_sound_track(s1_clip):
    signal = load_audio(s1_clip)
    # GRID's AAC tracks decode to 2.978 s beside their 3.0 s, 75-frame videos.
    assert len(signal) == 47648
    assert num_frames(len(signal)) == 75
    windows = frame_audio(signal)
    assert windows.shape == (75, WINDOW_SAMPLES)
    assert 0.05 < np.abs(signal).max() <= 1.0
    np.testing.assert_array_equal(windows[37, 1280:1920], signal[37 * 640 : 38 * 640])


def test_stereo_file_averages_channels_at_full_speed(tmp_path):
    seconds = 2.0
    t = np.arange(int(seconds * SR)) / SR
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 1000 * t)
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), SR, subtype="FLOAT")
    signal = load_audio(tmp_path / "stereo.wav")
    # Interleaved samples read as mono would be 2 * seconds long (the reference code's bug).
    assert len(signal) == seconds * SR
    np.testing.assert_allclose(signal, (left + right) / 2, atol=1e-6)


def test_stereo_44k_m4a_is_resampled_and_averaged(tmp_path):
    seconds, rate = 2.0, 44100
    t = np.arange(int(seconds * rate)) / rate
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 1000 * t)
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), rate, subtype="FLOAT")
    ffmpeg("-i", tmp_path / "stereo.wav", "-c:a", "aac", "-b:a", "192k", tmp_path / "stereo.m4a")
    signal = load_audio(tmp_path / "stereo.m4a")
    assert len(signal) == seconds * SR
    spectrum = np.abs(np.fft.rfft(signal[4000:-4000]))  # whole seconds of both tones, edges cut
    freqs = np.fft.rfftfreq(len(signal) - 8000, 1 / SR)
    peak = {f: spectrum[np.argmin(np.abs(freqs - f))] for f in (440, 1000)}
    # Averaging halves each channel: 0.25 and 0.125 amplitudes, a 2:1 ratio.
    assert peak[440] / peak[1000] == pytest.approx(2.0, rel=0.05)
    assert 2 * peak[440] / (len(signal) - 8000) == pytest.approx(0.25, rel=0.05)


def test_array_layouts_and_integer_pcm():
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, size=(8000, 2)).astype(np.float32)
    expected = stereo.mean(axis=1)
    np.testing.assert_allclose(load_audio((stereo, SR)), expected, atol=1e-7)
    np.testing.assert_allclose(load_audio((stereo.T, SR)), expected, atol=1e-7)
    np.testing.assert_allclose(load_audio((expected, SR)), expected)
    pcm = (expected * 32768).round().astype(np.int16)
    np.testing.assert_allclose(load_audio((pcm, SR)), expected, atol=1 / 32768)
    assert len(load_audio((expected, 8000))) == 16000  # 1 s at 8 kHz -> 1 s at 16 kHz


@pytest.mark.parametrize(
    "samples, fps, expected",
    [
        (48000, 25, 75),  # 3.0 s
        (47999, 25, 75),  # one sample short still covers the last frame
        (48006, 25, 75),  # < 1% of a frame past the boundary is round-off
        (48320, 25, 76),  # half a frame more starts a new one
        (47648, 25, 75),  # GRID's 2.978 s tracks
        (48000, 30, 90),
        (48000, 29.97, 90),  # 89.91 frames
        (0, 25, 0),
    ],
)
def test_num_frames(samples, fps, expected):
    assert num_frames(samples, fps) == expected


@pytest.mark.parametrize("fps", [25.0, 30.0, 29.97])
def test_windows_are_centred_on_frames_without_drift(fps):
    seconds = 60.0
    hop = SR / fps
    ramp = np.arange(1, int(seconds * SR) + 1, dtype=np.float32)  # sample n holds n + 1: exact in float32
    windows = frame_audio(ramp, fps)
    count = num_frames(len(ramp), fps)
    assert windows.shape == (count, WINDOW_SAMPLES) and windows.dtype == np.float32
    assert count == {25.0: 1500, 30.0: 1800, 29.97: 1799}[fps]
    # Every window is a contiguous run of the signal (zeros outside it) whose centre sample is the
    # middle of its frame, (t + 0.5) / fps, to within rounding: no accumulated drift after a minute.
    for t in range(count):
        inside = np.flatnonzero(windows[t])
        first = int(windows[t, inside[0]]) - 1 - inside[0]  # absolute index of the window's sample 0
        np.testing.assert_array_equal(windows[t, inside], ramp[first + inside])
        assert abs(first + WINDOW_SAMPLES / 2 - (t + 0.5) * hop) <= 0.5
    # Padding: the first window starts before the signal, the last ends after it.
    assert windows[0, 0] == 0 and np.all(windows[0, int(WINDOW_SAMPLES / 2 - hop / 2) + 1 :] > 0)
    assert windows[-1, -1] == 0


@pytest.mark.parametrize("fps", [25.0, 30.0, 29.97])
@pytest.mark.parametrize("seconds", [0.517, 1.234, 2.871])  # none on a frame boundary
def test_click_lands_in_the_centre_of_its_frames_window(fps, seconds):
    signal = np.zeros(3 * SR, dtype=np.float32)
    click = int(seconds * SR)
    signal[click] = 1.0
    windows = frame_audio(signal, fps)
    frame = int(seconds * fps)  # the frame being shown at that time
    holders = np.flatnonzero(windows.max(axis=1))
    offsets = np.array([np.argmax(windows[t]) for t in holders])
    # The frame whose window holds the click nearest its centre is the frame on screen at that time.
    assert holders[np.argmin(np.abs(offsets - WINDOW_SAMPLES / 2))] == frame
    # and 0.2 s windows with a 1/fps hop put every sample in about 0.2 * fps windows.
    assert abs(len(holders) - 0.2 * fps) <= 1


def test_frame_audio_with_a_given_frame_count():
    signal = load_audio((chirp(2.978), SR))
    windows = frame_audio(signal, frames=80)
    assert windows.shape == (80, WINDOW_SAMPLES)
    assert not windows[79].any()  # 3.18 s: past the audio, silence
    np.testing.assert_array_equal(windows[:75], frame_audio(signal))


def write_bytes(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "absent.wav", "not found"),
        (lambda d: write_bytes(d / "notes.txt", b"hello"), "unsupported audio format '.txt': use one of wav, flac"),
        (lambda d: write_bytes(d / "broken.wav", b"RIFF" + bytes(range(256)) * 8), "corrupt"),
        (lambda d: write_bytes(d / "broken.m4a", bytes(range(256)) * 8), "corrupt"),
        (lambda d: write_bytes(d / "empty.mp3", b""), r"empty \(0 bytes\)"),
        (lambda d: d, "is a folder"),
    ],
)
def test_file_errors(tmp_path, make, message):
    with pytest.raises(AudioError, match=message) as error:
        load_audio(make(tmp_path))
    assert "\n" not in str(error.value)


def test_zero_length_and_non_finite_files(tmp_path):
    soundfile.write(tmp_path / "silent.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(tmp_path / "silent.wav")
    soundfile.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2] * 1000, np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(tmp_path / "nan.wav")


def test_video_without_sound(chirp_files):
    with pytest.raises(AudioError, match="no audio track"):
        load_audio(chirp_files / "mute.mp4")


@pytest.mark.parametrize(
    "source, message",
    [
        ((np.array([0.0, np.inf] * 2000), SR), "NaN or infinite"),
        ((np.zeros(0), SR), "no audio samples"),
        ((np.zeros((100, 100)), SR), "cannot tell samples from channels"),
        ((np.zeros((2, 3, 4)), SR), "1-D or 2-D"),
        ((np.zeros(4000), 0), "positive"),
        ((np.array(["a", "b"]), SR), "must be numbers"),
        (np.zeros(4000), r"pass a file path, an \(array, sample_rate\) tuple"),
    ],
)
def test_array_errors(source, message):
    with pytest.raises(AudioError, match=message):
        load_audio(source)


def test_warped_windows_move_the_pitch_and_keep_each_window_on_its_frame():
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    frames = frame_audio(tone, 25.0)
    # rate 1 is frame_audio, also for frames outside the clip (zeros beyond it).
    np.testing.assert_allclose(warped_windows(tone, np.arange(len(frames)), 1.0), frames, atol=1e-6)
    outside = warped_windows(tone, [-3, len(frames) + 2], 1.0)
    assert np.abs(outside).max() == 0
    # Played 1.2 times faster, a 200 Hz tone is at 240 Hz.
    warped = warped_windows(tone, [20], 1.2)[0]
    spectrum = np.abs(np.fft.rfft(warped * np.hanning(WINDOW_SAMPLES)))
    assert np.fft.rfftfreq(WINDOW_SAMPLES, 1 / SAMPLE_RATE)[np.argmax(spectrum)] == pytest.approx(240, abs=5)
    # A click stays in the middle of the window of the frame it falls in.
    click = np.zeros(SAMPLE_RATE, np.float32)
    middle = round((10 + 0.5) * SAMPLE_RATE / 25)
    click[middle] = 1.0
    for rate in (0.8, 1.25):
        window = warped_windows(click, [10], rate)[0]
        assert abs(int(np.argmax(np.abs(window))) - WINDOW_SAMPLES // 2) <= 1
    with pytest.raises(AudioError, match="rate"):
        warped_windows(tone, [0], 0.0)


def test_frame_audio_errors():
    with pytest.raises(AudioError, match=r"shorter than one video frame \(0.040 s at 25 fps\)"):
        frame_audio(np.zeros(639, np.float32))
    assert frame_audio(np.zeros(640, np.float32)).shape == (1, WINDOW_SAMPLES)
    with pytest.raises(AudioError, match="1-D mono"):
        frame_audio(np.zeros((2, 16000), np.float32))
    with pytest.raises(AudioError, match="NaN"):
        frame_audio(np.full(16000, np.nan, np.float32))
    with pytest.raises(AudioError, match="fps must be a positive"):
        frame_audio(np.zeros(16000, np.float32), fps=0)
    assert issubclass(AudioError, SpeechAnimError)


def test_quiet_room_is_faint_pink_noise():
    noise = quiet_room(SR * 4, rms=1e-3, rng=np.random.default_rng(0))
    assert noise.dtype == np.float32 and len(noise) == SR * 4
    assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1e-3, rel=1e-3)
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(len(noise), 1 / SR)
    low, high = power[(freqs > 100) & (freqs < 200)].mean(), power[(freqs > 1000) & (freqs < 2000)].mean()
    assert 5 < low / high < 20  # 1/f: ten times the frequency, a tenth of the power
    assert not np.any(quiet_room(100, rms=0.0))
    with pytest.raises(AudioError, match="num_samples"):
        quiet_room(0)
