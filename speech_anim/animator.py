"""The pipeline: a photo and speech in, a talking-head video out.

`Animator` is a thin object over the generator and the pre/post-processing (face alignment, audio
framing, paste-back, video writing), in the manner of a diffusers pipeline. Long audio is generated
in chunks that carry the generator's recurrent state, so memory stays bounded and the frames are
the same as one pass would give (to float rounding).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .audio import SAMPLE_RATE, WINDOW_SAMPLES, load_audio, num_frames
from .errors import AudioError, CheckpointError, DeviceError, ImageError, SeedError
from .face import AlignedFace, FaceAligner, PasteBack, crop_landmarks, load_image
from .models.generator import FRAME_HEIGHT, FRAME_WIDTH, Generator
from .phones import PhoneStream
from .video import write_video

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "pretrained" / "grid-s1"

# Frames generated per forward pass: bounds memory for long audio without changing the result.
CHUNK_FRAMES = 75
EYE_SEED_OFFSET = 7919  # any fixed offset: seed s draws its noise from s and its eyes from s + 7919

Progress = Callable[[float, str], None]


@dataclass
class AnimationResult:
    """Generated frames and what is needed to play or save them.

    With paste-back the full-photo frames are made from the crops when first asked for (`frames`) and
    kept; `save` pastes and encodes them one at a time instead, so saving a long video of a large
    photo needs memory for the crops only (75 frames of a 4000×4000 photo are 3.6 GB).
    """

    crops: np.ndarray  # T×128×96×3 uint8: the generated faces, on the canonical crop
    fps: float
    audio: np.ndarray  # 16 kHz mono float32
    face_box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the face in the photo
    seed: int
    crop: np.ndarray = field(repr=False, default=None)  # the aligned still the model was given
    sample_rate: int = SAMPLE_RATE
    paster: PasteBack | None = field(repr=False, default=None)  # puts a crop back into the photo
    _pasted: np.ndarray | None = field(init=False, repr=False, default=None)

    @property
    def frames(self) -> np.ndarray:
        """T×H×W×3 uint8: the crops, or the full photo around each when pasted back."""
        if self.paster is None:
            return self.crops
        if self._pasted is None:
            self._pasted = np.stack([self.paster(crop) for crop in self.crops])
        return self._pasted

    @property
    def num_frames(self) -> int:
        return len(self.crops)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def iter_frames(self) -> Iterator[np.ndarray]:
        """The frames of `frames`, one H×W×3 array at a time, pasted as they are asked for."""
        if self.paster is None or self._pasted is not None:
            yield from self.frames
        else:
            for crop in self.crops:
                yield self.paster(crop)

    def save(self, path, progress: Progress | None = None) -> Path:
        """Write the video with the speech muxed in (H.264 + AAC; VP9 + Opus for a .webm `path`);
        `progress(fraction, stage)` as it goes."""
        report = progress or (lambda fraction, stage: None)
        every = max(1, self.num_frames // 100)  # a hundred reports at most: each may be a message to a page

        def reported():
            for index, frame in enumerate(self.iter_frames()):
                if index % every == 0:
                    report(index / self.num_frames, "encoding the video")
                yield frame
            report(1.0, "encoding the video")

        return write_video(path, reported(), self.fps, audio=self.audio, sample_rate=self.sample_rate,
                           count=self.num_frames)


class Animator:
    """`Animator.from_pretrained()(photo, speech).save("out.mp4")`."""

    def __init__(self, generator: Generator, aligner: FaceAligner | None = None, device=None):
        self.device = _device(device)
        self.generator = generator.to(self.device).eval()
        self.aligner = aligner or FaceAligner()

    @classmethod
    def from_pretrained(cls, checkpoint=None, device=None, backend: str = "dlib", *, revision: str | None = None,
                        token: str | bool | None = None, cache_dir=None, local_files_only: bool = False,
                        **aligner_kwargs) -> "Animator":
        """Load a generator from a directory or Hub repo id; None means the model shipped with the package.

        `revision` (a branch, tag or commit), `token`, `cache_dir` and `local_files_only` are the Hub
        download's, as in `Generator.from_pretrained`; the rest (`insightface_model`) go to the FaceAligner.
        """
        if checkpoint is None:
            if not (DEFAULT_CHECKPOINT / "model.safetensors").is_file():
                raise CheckpointError(
                    "no trained default model ships with this installation yet: pass a generator "
                    "saved with save_pretrained (--checkpoint DIR or a Hub repo id)"
                )
            checkpoint = DEFAULT_CHECKPOINT
        generator = Generator.from_pretrained(str(checkpoint), revision=revision, token=token, cache_dir=cache_dir,
                                              local_files_only=local_files_only)
        return cls(generator, FaceAligner(backend=backend, **aligner_kwargs), device=device)

    @property
    def fps(self) -> float:
        """The frame rate the model was trained at, and the default output rate."""
        return float(self.generator.config.fps)

    def _output_fps(self, fps) -> float:
        if fps is None:
            return self.fps
        if isinstance(fps, bool) or not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
            raise AudioError(f"fps must be a positive number of frames per second, got {fps!r}")
        return float(fps)

    def align(self, image, face: int | None = None) -> AlignedFace:
        """Find the face in `image` (the largest, or number `face` from the left, counting from 0) and warp
        it onto the canonical 128×96 crop."""
        return self.aligner.align(load_image(image), face)

    def __call__(
        self,
        image,
        audio,
        seed: int = 0,
        fps: float | None = None,
        paste_back: bool = False,
        progress: Progress | None = None,
        face: int | None = None,
    ) -> AnimationResult:
        """Animate `image` (path, PIL image, H×W×3 uint8, or a file's bytes or open binary file) with `audio`
        (path, (array, sr), or a file's bytes or open binary file).

        `fps` is the output video's rate (default: the model's own, 25). The model always runs at the rate
        it was trained at, so that blinks and lip movements keep their real durations; other rates show
        the frame on screen at each output frame's middle (frames repeated or dropped, never blended).
        `face` picks a face in a photo of several, counted from 0 from the left (default: the largest).
        """
        fps, seed = self._output_fps(fps), _check_seed(seed)
        report = progress or (lambda fraction, stage: None)
        report(0.0, "aligning the face")
        photo = load_image(image)
        aligned = self.aligner.align(photo, face)
        signal = load_audio(audio)
        total = num_frames(len(signal), fps)
        if total < 1:
            raise AudioError("the audio is shorter than one video frame: give at least 0.04 s of speech")

        frames, made = [], 0
        for chunk in self._generate(aligned.crop, _single_chunk(signal), seed, fps):
            frames.append(chunk)
            made += len(chunk)
            report(0.1 + 0.9 * made / total, "generating frames")
        report(1.0, "done")
        return AnimationResult(
            crops=np.concatenate(frames),
            fps=fps,
            audio=signal,
            face_box=tuple(int(v) for v in aligned.box),
            seed=seed,
            crop=aligned.crop,
            paster=PasteBack(photo, aligned) if paste_back else None,
        )

    def animate_crop(self, crop: np.ndarray, audio, seed: int = 0, fps: float | None = None) -> np.ndarray:
        """Frames (T×128×96×3 uint8) for a face already aligned to the canonical crop, e.g. the first
        frame of a preprocessed clip: no detection, so evaluation sets see exactly the training crops."""
        if not (isinstance(crop, np.ndarray) and crop.shape == (FRAME_HEIGHT, FRAME_WIDTH, 3) and crop.dtype == np.uint8):
            shape = getattr(crop, "shape", type(crop).__name__)
            raise ImageError(f"crop must be a {FRAME_HEIGHT}×{FRAME_WIDTH}×3 uint8 aligned face, got {shape}; use __call__ for photos")
        fps, seed = self._output_fps(fps), _check_seed(seed)
        signal = load_audio(audio)
        if num_frames(len(signal), fps) < 1:
            raise AudioError("the audio is shorter than one video frame: give at least 0.04 s of speech")
        return np.concatenate(list(self._generate(crop, _single_chunk(signal), seed, fps)))

    def stream(
        self, image, audio_chunks: Iterable[np.ndarray], seed: int = 0, fps: float | None = None, paste_back=False,
        face: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield frames (t×H×W×3 uint8) as audio chunks (16 kHz mono float arrays) arrive.

        A frame is produced as soon as its whole 0.2 s window has arrived, so the output lags the
        input by 0.1 s plus half a frame (plus a model frame at an `fps` other than the model's); the
        frames are those of `__call__` on the whole audio with the same seed and fps, to float rounding
        (computed in other chunks, a pixel value can round the other way by 1). Memory is bounded by the chunk size, not the stream length.
        """
        fps, seed = self._output_fps(fps), _check_seed(seed)
        photo = load_image(image)
        aligned = self.aligner.align(photo, face)
        paster = PasteBack(photo, aligned) if paste_back else None
        for frames in self._generate(aligned.crop, audio_chunks, seed, fps):
            yield _paste(paster, frames)

    def _generate(self, crop: np.ndarray, audio_chunks: Iterable[np.ndarray], seed: int, fps: float):
        """Frames at `fps` for a stream of audio: the model's frames (`_generate_at_model_rate`), retimed."""
        if fps == self.fps:
            yield from self._generate_at_model_rate(crop, audio_chunks, seed)
            return
        received = [0]

        def counted():
            for chunk in audio_chunks:
                received[0] += np.size(chunk)  # a chunk that is not 1-D is refused by _stream_windows
                yield chunk

        model_frames = self._generate_at_model_rate(crop, counted(), seed)
        yield from _retime(model_frames, self.fps, fps, lambda: received[0])

    @torch.inference_mode()
    def _generate_at_model_rate(self, crop: np.ndarray, audio_chunks: Iterable[np.ndarray], seed: int):
        fps = self.fps
        still = _to_tensor(crop).to(self.device)
        landmarks = None
        if self.generator.config.mouth_motion:
            # Found on the crop itself (dlib at the canonical face box), for a photo and for an evaluation
            # still alike, the way the evaluation's LMD reads the frames.
            landmarks = torch.from_numpy(crop_landmarks(crop)).float()[None].to(self.device)
        noise_rng = torch.Generator().manual_seed(int(seed))
        # The eye process (eye_input generators) draws from a stream of its own, so that chunks of any
        # size give the frames of one pass.
        eye_rng = torch.Generator().manual_seed(int(seed) + EYE_SEED_OFFSET)
        state = None
        listener = self.generator.mouth_motion if self.generator.config.mouth_phones else None
        for windows, phones in _windows_and_phones(audio_chunks, fps, listener):
            for start in range(0, len(windows), CHUNK_FRAMES):
                part = torch.from_numpy(windows[start : start + CHUNK_FRAMES])[None].to(self.device)
                labels = None if phones is None else torch.from_numpy(phones[start : start + CHUNK_FRAMES])[None].to(self.device)
                noise = self.generator.sample_noise(1, part.shape[1], generator=noise_rng).to(self.device)
                video, state = self.generator(still, part, noise=noise, state=state, return_state=True,
                                              generator=eye_rng, still_landmarks=landmarks, phones=labels)
                yield _to_uint8(video[0])


def _retime(model_frames: Iterable[np.ndarray], model_fps: float, fps: float, received: Callable[[], int]) -> Iterator[np.ndarray]:
    """Frames at the model's rate -> frames at `fps`, as they arrive.

    Output frame k spans [k / fps, (k + 1) / fps) and shows the model frame on screen at its middle,
    j = floor((k + 0.5) * model_fps / fps), as a player showing the model's video would. `received()` is
    the number of audio samples heard so far: there are num_frames(received(), fps) output frames, which
    the last model frame completes when the stream ends.
    """

    def source(k: int) -> int:
        return math.floor((2 * k + 1) * model_fps / (2 * fps))

    kept, first, k = np.zeros((0, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8), 0, 0  # kept[0] is model frame `first`
    for frames in model_frames:
        kept = np.concatenate([kept, frames])
        available = first + len(kept)
        ready, heard = k, num_frames(received(), fps)
        # A frame is given once the model frame it shows exists and the audio reaches it (at low rates
        # a model frame can exist before the audio holds the output frame showing it).
        while ready < heard and source(ready) < available:
            ready += 1
        if ready > k:
            yield kept[[source(i) - first for i in range(k, ready)]]
            k = ready
        drop = min(source(k), available - 1) - first
        kept, first = kept[drop:], first + drop
    if not len(kept):
        return
    total = num_frames(received(), fps)
    if total > k:
        yield kept[[min(source(i) - first, len(kept) - 1) for i in range(k, total)]]


def _paste(paster: PasteBack | None, frames: np.ndarray) -> np.ndarray:
    return np.stack([paster(frame) for frame in frames]) if paster else frames


def _check_seed(seed) -> int:
    """A whole-number seed that torch's generators take, with EYE_SEED_OFFSET added too."""
    whole = isinstance(seed, numbers.Integral) or (isinstance(seed, numbers.Real) and float(seed).is_integer())
    if isinstance(seed, bool) or not whole or not -(2**63) <= seed < 2**63:
        raise SeedError(f"the seed must be a whole number from -2^63 to 2^63 - 1, got {seed!r}")
    return int(seed)


def _device(device) -> torch.device:
    """torch.device of `device` (default: cuda when available), refused in one line where it cannot run."""
    try:
        resolved = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {device!r} asked for, but this PyTorch sees no CUDA GPU: use --device cpu "
                              "(or install a CUDA build of PyTorch)")
        if resolved.index is not None and resolved.index >= count:
            raise DeviceError(f"device {device!r} asked for, but this machine has {count} CUDA GPU(s): use cuda:0 to cuda:{count - 1}")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r} asked for, but MPS is not available here: use --device cpu")
    return resolved


def _single_chunk(signal: np.ndarray) -> list[np.ndarray]:
    return [signal]


def _windows_and_phones(audio_chunks: Iterable[np.ndarray], fps: float, listener) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The windows of `_stream_windows`, each with the phone labels under its columns for a mouth motion
    that reads phones (`listener`; else None). The phones of a stream are decoded as its audio arrives
    (`phones.PhoneStream`, the same labels as one pass over the whole audio), in blocks of 4 s: windows
    wait for the block under them, so such a model's stream lags its audio by up to 4.5 s."""
    if listener is None:
        for windows in _stream_windows(audio_chunks, fps):
            yield windows, None
        return
    stream, heard, ended = PhoneStream(), [], []  # heard: labels decoded since the track was last grown

    def listened():
        for chunk in audio_chunks:
            yield chunk  # _stream_windows checks it before the recogniser hears it
            if len(labels := stream.feed(chunk)):  # labels come a 4 s block at a time
                heard.append(labels)
        heard.append(stream.finish())
        ended.append(True)

    track = np.zeros(0, np.int8)
    pending, first = np.zeros((0, WINDOW_SAMPLES), np.float32), 0  # pending[0] is frame `first`
    for windows in _stream_windows(listened(), fps):
        pending = np.concatenate([pending, windows])
        if heard:
            track = np.concatenate([track, *heard])
            heard.clear()
        needed = listener.labels_needed(np.arange(first, first + len(pending)))
        ready = len(pending) if ended else int(np.searchsorted(needed, len(track), side="right"))
        if ready:
            yield pending[:ready], listener.window_phones(track, np.arange(first, first + ready))
            pending, first = pending[ready:], first + ready
    if len(pending):
        track = np.concatenate([track, *heard])
        yield pending, listener.window_phones(track, np.arange(first, first + len(pending)))


def _stream_windows(audio_chunks: Iterable[np.ndarray], fps: float) -> Iterator[np.ndarray]:
    """Turn a stream of audio chunks into per-frame 0.2 s windows (audio.frame_audio's framing).

    Window t spans samples [start_t, start_t + 3200) with start_t = floor((t + 0.5) * hop - 1600 + 0.5);
    it is emitted once those samples have arrived; the last ones are zero padded when the stream ends.
    Only the samples that later windows still need are kept.
    """
    hop = SAMPLE_RATE / fps
    half = WINDOW_SAMPLES / 2

    def start_of(t: int) -> int:
        return math.floor((t + 0.5) * hop - half + 0.5)

    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # global index of buffer[0]
    received = 0
    t = 0

    def cut(t0: int, t1: int) -> np.ndarray:
        out = np.zeros((t1 - t0, WINDOW_SAMPLES), dtype=np.float32)
        for i, frame in enumerate(range(t0, t1)):
            lo, hi = start_of(frame), start_of(frame) + WINDOW_SAMPLES
            src_lo, src_hi = max(lo, offset), min(hi, offset + len(buffer))
            if src_hi > src_lo:
                out[i, src_lo - lo : src_hi - lo] = buffer[src_lo - offset : src_hi - offset]
        return out

    for chunk in audio_chunks:
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 1:
            raise AudioError(f"audio chunks must be 1-D 16 kHz mono arrays, got shape {chunk.shape}")
        if not np.all(np.isfinite(chunk)):
            raise AudioError("the audio contains NaN or infinite samples: re-export it from the recording software")
        buffer = np.concatenate([buffer, chunk])
        received += len(chunk)
        ready = t
        while start_of(ready) + WINDOW_SAMPLES <= received:
            ready += 1
        if ready > t:
            yield cut(t, ready)
            t = ready
            keep_from = max(offset, start_of(t))
            buffer = buffer[keep_from - offset :]
            offset = keep_from

    if received < hop:
        raise AudioError(
            f"the audio is {received / SAMPLE_RATE:.3f} s long, shorter than one video frame "
            f"({1 / fps:.3f} s at {fps:g} fps): give at least {1 / fps:.3f} s of speech"
        )
    total = num_frames(received, fps)
    if total > t:
        yield cut(t, total)


def _to_tensor(crop: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 -> 1×3×H×W float in [-1, 1]."""
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """T×3×H×W in [-1, 1] -> T×H×W×3 uint8."""
    return video.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
