"""Speech input: load any audio (or a video's sound track) as 16 kHz mono, and cut it into the
overlapping 0.2 s windows that drive the generator, one per video frame (paper, Eq. 1).

Timing convention, used by every function here: video frame `t` is shown during
`[t / fps, (t + 1) / fps)` seconds and its audio window is centred on the middle of that span,
`(t + 0.5) / fps`. This is what the authors' reference code does (it pads `(window - hop) / 2`
samples on each side and then steps by the hop), so the windows of `T` frames cover the audio
`[0, T / fps)` symmetrically, with the same zero padding at the start and at the end.
"""

import io
import math
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .errors import AudioError

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 3200  # 0.2 s at 16 kHz

# Raw ADTS .aac is left out on purpose: without a container edit list its decoded audio starts with
# the encoder's priming samples (64 ms at 16 kHz), which would put lips and speech out of sync.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg")
# libsndfile reads these itself; everything else (and any file it refuses) goes through ffmpeg.
_SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")

# Audio that reaches less than this fraction of a frame into the next frame does not start a new
# frame: a few samples of resampling round-off must not add a nearly silent frame.
_FRAME_TOLERANCE = 0.01
_MAX_CHANNELS = 16


def load_audio(source, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Load speech as mono float32 at `sample_rate`.

    `source` is a path to an audio file or to a video whose (first) audio track is read, or an
    `(array, sr)` tuple with a 1-D array or a 2-D array of shape (n, channels) or (channels, n).
    Channels are averaged. Raises `AudioError` for anything that is not usable speech.
    """
    if isinstance(source, tuple):
        signal, source_rate = _from_array(source)
        name = "the audio array"
    elif isinstance(source, (str, os.PathLike)):
        signal, source_rate = _from_file(Path(source))
        name = str(source)
    elif hasattr(source, "read") or isinstance(source, (bytes, bytearray, memoryview)):
        # The bytes of a file (or an open binary file, e.g. a web framework's upload), in any format
        # ffmpeg reads.
        data = source.read() if hasattr(source, "read") else source
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AudioError(f"an audio file object must be opened in binary mode ('rb'); it gave a {type(data).__name__}")
        signal, source_rate = _from_bytes(bytes(data))
        name = "the audio bytes"
    else:
        raise AudioError(
            f"cannot read audio from a {type(source).__name__}: pass a file path, an (array, sample_rate) "
            "tuple or the bytes of an audio file"
        )

    if signal.size == 0:
        raise AudioError(f"{name} contains no audio samples: give a recording with speech in it")
    if not np.all(np.isfinite(signal)):
        raise AudioError(f"{name} contains NaN or infinite samples: re-export it from the recording software")

    if source_rate != sample_rate:
        import librosa  # heavy import, only when resampling is needed

        signal = librosa.resample(signal, orig_sr=source_rate, target_sr=sample_rate)
    return np.ascontiguousarray(signal, dtype=np.float32)


def num_frames(num_samples: int, fps: float = 25.0, sample_rate: int = SAMPLE_RATE) -> int:
    """Number of video frames the audio reaches into.

    Rounds up: a frame that the audio only partly covers still gets a frame (its window is zero
    padded), so no speech is cut from the video. Audio reaching less than 1% of a frame past a
    frame boundary (0.4 ms at 25 fps) is round-off and does not add a frame. 3.0 s at 25 fps ->
    75; GRID's 2.978 s sound tracks -> 75, the length of their videos.
    """
    _check_rates(fps, sample_rate)
    frames = num_samples * fps / sample_rate
    return max(0, math.ceil(frames - _FRAME_TOLERANCE))


def warped_windows(
    signal: np.ndarray,
    frame_indices,
    rate: float,
    fps: float = 25.0,
    sample_rate: int = SAMPLE_RATE,
    window: int = WINDOW_SAMPLES,
) -> np.ndarray:
    """The windows `frame_audio` gives frames `frame_indices` (any integers, even outside the
    clip), each read `rate` times faster about its own middle: (len(frame_indices), window) float32.

    Played faster, a window's pitch and formants move up by `rate` (down for rate < 1), as from a
    shorter or longer vocal tract, while every window stays centred on its frame: lips and sound
    keep their timing, which resampling the whole recording would not. rate = 1 reproduces
    frame_audio exactly. Training uses it to make a few voices sound like many (`voice_warp`).
    """
    _check_rates(fps, sample_rate)
    if not rate > 0:
        raise AudioError(f"rate must be positive, got {rate}")
    signal = np.asarray(signal, np.float32)
    centres = (np.asarray(frame_indices, np.float64) + 0.5) * (sample_rate / fps)
    starts = np.floor(centres - window / 2 + 0.5)
    middle = (window - 1) / 2
    positions = starts[:, None] + middle + (np.arange(window) - middle)[None, :] * rate
    samples = np.interp(positions.ravel(), np.arange(len(signal)), signal, left=0.0, right=0.0)
    return samples.reshape(len(centres), window).astype(np.float32)


def frame_audio(
    signal: np.ndarray,
    fps: float = 25.0,
    sample_rate: int = SAMPLE_RATE,
    window: int = WINDOW_SAMPLES,
    frames: int | None = None,
) -> np.ndarray:
    """Cut `signal` into one `window`-sample window per video frame, shape (T, window) float32.

    Window `t` is centred on `(t + 0.5) / fps` s (see the module docstring); the hop is
    `sample_rate / fps` samples and need not be whole (29.97 fps): every start is rounded on its
    own, so the windows never drift. Outside the signal the windows are zero. `T` is
    `num_frames(len(signal))` unless `frames` is given (e.g. the frame count of a video whose
    sound track is slightly shorter or longer).
    """
    _check_rates(fps, sample_rate)
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise AudioError(f"expected a 1-D mono signal, got shape {signal.shape}: load it with load_audio() first")
    if not np.all(np.isfinite(signal)):
        raise AudioError("the audio contains NaN or infinite samples: re-export it from the recording software")
    frame_samples = sample_rate / fps
    if len(signal) < frame_samples:
        raise AudioError(
            f"the audio is {len(signal) / sample_rate:.3f} s long, shorter than one video frame "
            f"({1 / fps:.3f} s at {fps:g} fps): give at least {1 / fps:.3f} s of speech"
        )
    if frames is None:
        frames = num_frames(len(signal), fps, sample_rate)
    elif frames < 1:
        raise AudioError(f"frames must be at least 1, got {frames}")

    centres = (np.arange(frames) + 0.5) * frame_samples
    # floor(x + 0.5), not np.round: half-sample starts always round the same way.
    starts = np.floor(centres - window / 2 + 0.5).astype(np.int64)
    pad_left = max(0, -int(starts[0]))
    pad_right = max(0, int(starts[-1]) + window - len(signal))
    padded = np.pad(signal.astype(np.float32, copy=False), (pad_left, pad_right))

    # A loop of slice copies instead of one fancy-index gather: the (T, window) index array of a
    # long recording would be several times larger than the output itself.
    out = np.empty((frames, window), dtype=np.float32)
    for t, start in enumerate(starts + pad_left):
        out[t] = padded[start : start + window]
    return out


def quiet_room(num_samples: int, rms: float = 1e-3, rng: np.random.Generator | None = None) -> np.ndarray:
    """Faint pink (1/f) noise of the given RMS (1e-3 is -60 dBFS), float32: what a microphone hears
    when nobody speaks. The training's silent pass and the silence tests feed it to the generator,
    because exact zeros are a case that real recordings never have."""
    if num_samples < 1:
        raise AudioError(f"num_samples must be at least 1, got {num_samples}")
    if not rms >= 0:
        raise AudioError(f"rms must be >= 0, got {rms}")
    rng = np.random.default_rng() if rng is None else rng
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))  # power falls as 1/f
    noise = np.fft.irfft(spectrum, n=num_samples)
    return (noise / max(np.sqrt(np.mean(noise**2)), 1e-12) * rms).astype(np.float32)


def _check_rates(fps: float, sample_rate: int) -> None:
    if not (np.isfinite(fps) and fps > 0):
        raise AudioError(f"fps must be a positive number, got {fps}")
    if not (np.isfinite(sample_rate) and sample_rate > 0):
        raise AudioError(f"sample_rate must be a positive number, got {sample_rate}")


def _from_array(source: tuple) -> tuple[np.ndarray, int]:
    if len(source) != 2:
        raise AudioError("an audio tuple must be (array, sample_rate)")
    array, rate = source
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or not rate > 0:
        raise AudioError(f"the sample rate must be a positive number of samples per second, got {rate!r}")
    if rate != int(rate):
        raise AudioError(f"the sample rate must be a whole number of samples per second, got {rate}")
    array = np.asarray(array)
    if array.dtype.kind in "iu":
        # Integer PCM: full scale of the type maps to [-1, 1].
        info = np.iinfo(array.dtype)
        array = (array.astype(np.float64) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    elif array.dtype.kind != "f":
        raise AudioError(f"audio samples must be numbers, got dtype {array.dtype}")

    if array.ndim == 2:
        # The channel axis is the short one: (n, ch) from soundfile, (ch, n) from librosa/torchaudio.
        channel_axis = int(np.argmin(array.shape))
        if array.shape[channel_axis] > _MAX_CHANNELS:
            raise AudioError(
                f"cannot tell samples from channels in an audio array of shape {array.shape}: "
                "pass 1-D mono, (n, channels) or (channels, n)"
            )
        array = array.mean(axis=channel_axis)
    elif array.ndim != 1:
        raise AudioError(f"audio arrays must be 1-D or 2-D (samples and channels), got shape {array.shape}")
    return array.astype(np.float32), int(rate)


def _from_file(path: Path) -> tuple[np.ndarray, int]:
    suffix = path.suffix.lower()
    if not path.exists():
        raise AudioError(f"audio file not found: {path}; check the path")
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file; pass the file itself")
    if suffix not in AUDIO_EXTENSIONS + VIDEO_EXTENSIONS:
        supported = ", ".join(e[1:] for e in AUDIO_EXTENSIONS + VIDEO_EXTENSIONS)
        raise AudioError(f"unsupported audio format '{suffix or path.name}': use one of {supported}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes): export the recording again")

    if suffix in _SOUNDFILE_EXTENSIONS:
        # None: e.g. an unusual codec inside the container, which ffmpeg may still read.
        if (decoded := _read_with_soundfile(str(path))) is not None:
            return decoded
    return _decode_with_ffmpeg(path)


def _read_with_soundfile(file) -> tuple[np.ndarray, int] | None:
    """Mono samples and rate of a path or binary file libsndfile reads, else None."""
    import soundfile

    try:
        samples, rate = soundfile.read(file, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError):
        return None
    return samples.mean(axis=1), int(rate)


def _from_bytes(data: bytes) -> tuple[np.ndarray, int]:
    if not data:
        raise AudioError("the audio bytes are empty (0 bytes): pass the whole recording")
    # None: not a format libsndfile knows (m4a, a video; mp3 in old versions): ffmpeg's turn.
    if (decoded := _read_with_soundfile(io.BytesIO(data))) is not None:
        return decoded
    # A file, not a pipe: MP4 and M4A keep their index at the end, which ffmpeg must seek to.
    with tempfile.TemporaryDirectory(prefix="speech_anim_") as folder:
        path = Path(folder) / "audio"
        path.write_bytes(data)
        try:
            return _decode_with_ffmpeg(path)
        except AudioError as error:
            raise AudioError(str(error).replace(str(path), "the audio bytes")) from None


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio track at its own rate and channel count to a float WAV on a pipe."""
    import imageio_ffmpeg
    import soundfile

    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
        "-i", str(path), "-map", "0:a:0", "-vn", "-c:a", "pcm_f32le", "-f", "wav", "-",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace")
        if "matches no streams" in message or "does not contain any stream" in message:
            raise AudioError(f"{path} has no audio track: use a video with sound or a separate audio file")
        last = message.strip().splitlines()[-1] if message.strip() else f"ffmpeg exit code {result.returncode}"
        raise AudioError(f"cannot decode {path} ({last}): the file is corrupt or not audio; re-export it as WAV")
    if len(result.stdout) <= 44:  # a WAV header and nothing else
        return np.zeros(0, np.float32), SAMPLE_RATE
    # ffmpeg cannot seek back into a pipe to fill in the WAV length; libsndfile reads to the end.
    samples, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(rate)
