"""Video files: read frames, write talking-head videos (H.264 + AAC, or VP9 + Opus for .webm), and probe
what a file holds."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import VideoError

# Container -> (video codec, audio codec, ffmpeg options). H.264 + AAC plays everywhere; WebM is
# for pages that want an open format (every browser plays VP9 + Opus). x264's CRF 18 and VP9's 30
# (with -b:v 0, VP9's constant-quality mode) come out alike: on the astronaut's 3 s, 37.5 against
# 37.1 dB PSNR pasted back at 512², 121 against 93 kB. "+faststart" moves the index to the front so
# a browser starts playing before the whole file has arrived.
_X264 = ["-crf", "18"]
_FASTSTART = ["-movflags", "+faststart"]
_VP9 = ["-crf", "30", "-b:v", "0", "-row-mt", "1", "-deadline", "good", "-cpu-used", "4"]
WRITE_FORMATS = {
    ".mp4": ("libx264", "aac", _X264 + _FASTSTART),
    ".m4v": ("libx264", "aac", _X264 + _FASTSTART),
    ".mov": ("libx264", "aac", _X264 + _FASTSTART),
    # Matroska has no field for how many of AAC's last samples are padding (an mp4 has an edit list),
    # so AAC made a 3 s .mkv 3.064 s long; Opus packets carry their own trim: 3.008 s.
    ".mkv": ("libx264", "libopus", _X264),
    ".webm": ("libvpx-vp9", "libopus", _VP9),
}
WRITE_EXTENSIONS = tuple(WRITE_FORMATS)
# Audio may be this much longer or shorter than the frames (in frames) before write_video warns
# that the caller probably paired the wrong audio and frames.
_AUDIO_SLACK_FRAMES = 1.0


def read_video(path) -> tuple[np.ndarray, float]:
    """All frames of a video as T×H×W×3 uint8 RGB, and its frame rate."""
    import imageio_ffmpeg

    path = _existing(path)
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(buffer, np.uint8).reshape(height, width, 3) for buffer in reader]
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        frames = None
    if frames is None and _has_only_audio(path):
        raise VideoError(f"{path} has no video stream, only sound: pass a video file")
    if frames is None:
        raise VideoError(f"cannot read video {path} ({reason}): the file is corrupt or not a video")
    if not frames:
        raise VideoError(f"{path} has no video frames: pass a video file, not an audio-only one")
    fps = float(meta.get("fps") or 0)
    if not fps > 0:
        raise VideoError(f"{path} does not state its frame rate: re-encode it, e.g. ffmpeg -i IN -r 25 OUT.mp4")
    return np.stack(frames), fps


def write_video(path, frames, fps: float, audio=None, sample_rate: int = 16000, count: int | None = None) -> Path:
    """Write frames (T×H×W×3 uint8 RGB) and optional mono audio as H.264 (yuv420p) + AAC, or for a
    `.webm` path as VP9 (yuv420p) + Opus (the suffix picks: see `WRITE_FORMATS`).

    `frames` may also be an iterable of frames (H×W×3) or of chunks of them (t×H×W×3) that gives
    `count` frames in all: each is encoded as it comes, so a long video of a large photo never has
    to fit in memory (the CLI pastes a 12-megapixel photo's frames back this way).

    The video lasts exactly T / fps (an Opus sound track, up to 8 ms more). Audio is cut or zero padded to that length, so the container
    is never stretched by a longer sound track; pairing frames with the right amount of audio
    (see `audio.num_frames`) is the caller's job. Odd frame sizes are padded by one edge pixel to
    the even size yuv420p needs. moviepy states the frame rate to ffmpeg with two decimals
    (30000/1001 is written as 29.97). The file appears under `path` only once complete.
    """
    from moviepy import VideoClip

    path = check_output_path(path)
    video_codec, audio_codec, codec_options = WRITE_FORMATS[path.suffix.lower()]
    if count is None:
        frames = _check_frames(frames)
        count = len(frames)
    else:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise VideoError(f"count must be the number of frames the iterable gives (at least 1), got {count!r}")
        frames = _FramesInOrder(frames, count)
    if not (np.isfinite(fps) and fps > 0):
        raise VideoError(f"fps must be a positive number, got {fps}")
    if audio is not None:
        audio = _fit_audio(audio, count / fps, sample_rate, fps)

    # A VideoClip indexing the frames directly, not ImageSequenceClip: that one searches all T
    # start times for every frame it writes, and sums float durations that can skip a frame.
    # moviepy asks for them in order (and for frame 0 once more, to learn the size).
    def frame_at(time):
        frame = frames[min(int(round(time * fps)), count - 1)]
        # yuv420p stores colour at half resolution, so both sides must be even.
        pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
        return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_h or pad_w else frame

    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (so the final rename is atomic), same suffix (ffmpeg picks the container from it).
    partial = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    clip = None
    try:
        # moviepy writes int(duration * fps) frames; half a frame of margin keeps float error from
        # dropping the last one without adding another.
        clip = VideoClip(frame_at, duration=(count + 0.5) / fps)
        with tempfile.TemporaryDirectory(prefix="speech_anim_") as scratch:
            audio_file = False
            if audio is not None:
                import soundfile

                # Handing moviepy a WAV file instead of an AudioArrayClip: moviepy 2.1's
                # AudioArrayClip turns a mono array into two interleaved channels that ffmpeg
                # then reads as mono, doubling the sound track's length (measured: 3 s -> 6 s).
                audio_file = os.path.join(scratch, "audio.wav")
                soundfile.write(audio_file, audio, sample_rate, subtype="FLOAT")
            clip.write_videofile(
                str(partial),
                fps=fps,
                codec=video_codec,
                audio=audio_file,
                audio_codec=audio_codec,
                temp_audiofile_path=scratch,
                # moviepy 2.1 appends its own "-pix_fmt yuva420p" for even sizes; libx264 cannot
                # store alpha and ffmpeg falls back to yuv420p (the tests probe the result).
                ffmpeg_params=["-pix_fmt", "yuv420p", *codec_options],
                logger=None,
            )
        if isinstance(frames, _FramesInOrder):
            frames.check_exhausted()
        os.replace(partial, path)
    except VideoError:
        raise
    except (OSError, RuntimeError, ValueError) as error:
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        raise VideoError(
            f"could not write {path} ({reason}): check the folder is writable and the disk has space"
        ) from None
    finally:
        partial.unlink(missing_ok=True)
        if clip is not None:
            clip.close()
    return path


def check_output_path(path) -> Path:
    """`path` as a Path if write_video can write it (a known suffix, not a folder), else a VideoError
    that says what to name it; for checking a user's output name before minutes of work."""
    path = Path(path)
    if path.suffix.lower() not in WRITE_FORMATS:
        others = ", ".join(WRITE_EXTENSIONS[1:])
        raise VideoError(f"cannot write '{path.suffix or path.name}' videos: name the output *.mp4 (or {others})")
    if path.is_dir():
        raise VideoError(f"{path} is a folder: name the video file to write, e.g. {path / 'talking.mp4'}")
    return path


class _FramesInOrder:
    """Frame i of an iterable of frames or chunks of frames, for indices that never go back."""

    def __init__(self, source, count: int):
        self._source, self.count = iter(source), count
        self._chunk, self._start = None, 0  # self._chunk[0] is frame self._start
        self._given = 0  # frames taken from the source so far

    def __getitem__(self, index: int) -> np.ndarray:
        while self._chunk is None or index >= self._start + len(self._chunk):
            chunk = next(self._source, None)
            if chunk is None:
                raise VideoError(f"the frames ran out after {self._given} of the {self.count} promised: "
                                 "pass count= the number of frames the iterable gives")
            chunk = np.asarray(chunk)
            if chunk.ndim == 4 and len(chunk) == 0:
                continue  # a stream may have nothing new to give at some step
            chunk = _check_frames(chunk[None] if chunk.ndim == 3 else chunk)
            if self._chunk is not None and chunk.shape[1:] != self._chunk.shape[1:]:
                raise VideoError(f"frame {self._given} is {chunk.shape[2]}×{chunk.shape[1]}, the ones before it "
                                 f"{self._chunk.shape[2]}×{self._chunk.shape[1]}: give frames of one size")
            self._start, self._chunk = self._given, chunk
            self._given += len(chunk)
        if index < self._start:
            raise RuntimeError(f"frame {index} was asked for after frame {self._start}: frames are read once, in order")
        return self._chunk[index - self._start]

    def check_exhausted(self) -> None:
        extra = sum(len(np.asarray(chunk).reshape(-1, *self._chunk.shape[1:])) for chunk in self._source)
        if self._given + extra > self.count:
            raise VideoError(f"the iterable gave {self._given + extra} frames but count={self.count}: "
                             "pass the number it gives")


def probe(path) -> dict:
    """What a media file holds: duration (s), width, height, fps, pixel_format, video_codec,
    audio_codec (None for a stream the file lacks). Uses ffprobe when on PATH, else `ffmpeg -i`."""
    path = _existing(path)
    ffprobe = shutil.which("ffprobe")
    info = _probe_ffprobe(ffprobe, path) if ffprobe else _probe_ffmpeg(path)
    if info["duration"] is None and info["video_codec"] is None and info["audio_codec"] is None:
        raise VideoError(f"{path} holds no audio or video streams: pass a media file")
    return info


def _existing(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video file not found: {path}; check the path")
    if path.is_dir():
        raise VideoError(f"{path} is a folder, not a video file; pass the file itself")
    if path.stat().st_size == 0:
        raise VideoError(f"video file {path} is empty (0 bytes): write or download it again")
    return path


def _has_only_audio(path: Path) -> bool:
    try:
        info = probe(path)
    except VideoError:
        return False
    return info["video_codec"] is None and info["audio_codec"] is not None


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoError(
            f"frames must be a T×H×W×3 uint8 RGB array, got {frames.dtype} of shape {frames.shape}: "
            "convert float frames in [0, 1] with (frames * 255).round().astype(np.uint8)"
        )
    if 0 in frames.shape:
        raise VideoError(f"cannot write a video without frames (shape {frames.shape}): generate at least one frame")
    return frames


def _fit_audio(audio, duration: float, sample_rate: int, fps: float) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise VideoError(f"audio must be a 1-D mono array, got shape {audio.shape}: average the channels first")
    if not np.all(np.isfinite(audio)):
        raise VideoError("the audio contains NaN or infinite samples: fix the signal before writing the video")
    target = int(round(duration * sample_rate))
    if abs(len(audio) - target) > _AUDIO_SLACK_FRAMES * sample_rate / fps:
        warnings.warn(
            f"audio is {len(audio) / sample_rate:.3f} s but the {duration * fps:.0f} frames last {duration:.3f} s: "
            "the audio is cut or padded to the frames",
            stacklevel=3,
        )
    return np.pad(audio[:target], (0, max(0, target - len(audio))))


def _probe_ffprobe(ffprobe: str, path: Path) -> dict:
    command = [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit code {result.returncode}"
        raise VideoError(f"cannot probe {path} ({reason}): the file is corrupt or not a video")
    data = json.loads(result.stdout or "{}")
    streams = data.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = data.get("format", {}).get("duration")
    info = dict(
        duration=float(duration) if duration not in (None, "N/A") else None,
        width=None, height=None, fps=None, pixel_format=None, video_codec=None,
        audio_codec=audio.get("codec_name") if audio else None,
    )  # fmt: skip
    if video:
        rate = video.get("avg_frame_rate", "0/0")
        if rate in ("0/0", "0/1"):
            rate = video.get("r_frame_rate", "0/0")
        info.update(
            width=video.get("width"),
            height=video.get("height"),
            fps=float(Fraction(rate)) if not rate.endswith("/0") else None,
            pixel_format=video.get("pix_fmt"),
            video_codec=video.get("codec_name"),
        )
    return info


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+.*?: Video: (\w+)[^,]*, (\w+)[^,]*?(?:\(.*?\))?, (\d+)x(\d+)")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)")
_AUDIO = re.compile(r"Stream #\S+.*?: Audio: (\w+)")


def _probe_ffmpeg(path: Path) -> dict:
    """Parse the stream summary `ffmpeg -i` prints (it exits 1 for lack of an output; expected)."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    text = subprocess.run(command, capture_output=True, text=True, errors="replace").stderr
    if "Invalid data found" in text or "Duration:" not in text:
        reason = text.strip().splitlines()[-1] if text.strip() else "no output"
        raise VideoError(f"cannot probe {path} ({reason}): the file is corrupt or not a video")
    info = dict(duration=None, width=None, height=None, fps=None, pixel_format=None, video_codec=None, audio_codec=None)
    if match := _DURATION.search(text):
        hours, minutes, seconds = match.groups()
        info["duration"] = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    for line in text.splitlines():
        if info["video_codec"] is None and (match := _VIDEO.search(line)):
            codec, pixel_format, width, height = match.groups()
            info.update(video_codec=codec, pixel_format=pixel_format, width=int(width), height=int(height))
            if rate := _FPS.search(line):
                info["fps"] = float(rate.group(1)) * (1000 if rate.group(2) else 1)
        if info["audio_codec"] is None and (match := _AUDIO.search(line)):
            info["audio_codec"] = match.group(1)
    return info
