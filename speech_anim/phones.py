"""Phones heard in the speech, by a recogniser trained on many voices: what the mouth motion reads
besides the spectrum, so that a voice it never heard still says its sounds.

Not in the paper. Fitted on three GRID speakers' spectra, the mouth motion predicted s1's mouth for
any voice: for the unseen s31 its lip landmarks were hardly closer to hers than a mouth at rest
(model_card.md). The sounds a voice makes (an /aa/ opens the mouth, an /m/ shuts it) are the same for
every voice, and CMU Sphinx's English acoustic model (the `pocketsphinx` package, which carries it)
was trained on hundreds of speakers. Its phone loop gives one label per 10 ms; on GRID those labels
track the lips of every speaker: the inner-lip gap is widest under open vowels and near shut under
/p b m/ for s1 and for s31 alike.

The track is decoded in fixed blocks of the signal (BLOCK_FRAMES, each heard with MARGIN_FRAMES of
the audio on both sides), so that a stream decoded as its audio arrives (`PhoneStream`) labels every
frame as one pass over the whole recording does (`phone_track`).
"""

from __future__ import annotations

import math
import os

import numpy as np

from .audio import quiet_room
from .errors import AudioError

# SIL first: it is what a label outside the speech, or in a quiet room, is. The last two are Sphinx's
# fillers (noise, unintelligible speech).
PHONES = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
          "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW",
          "V", "W", "Y", "Z", "ZH", "+NSN+", "+SPN+")  # fmt: skip
SILENCE = 0
SAMPLE_RATE = 16000
LABEL_SAMPLES = 160  # Sphinx's 10 ms frame step; its analysis window is 25.6 ms (410 samples)
LABEL_CENTRE = 200  # label k describes the audio around sample k * 160 + 200
BLOCK_FRAMES = 400  # 4 s decoded at a time: a GRID sentence is one block
MARGIN_FRAMES = 50  # 0.5 s of context heard on each side of a block, its labels dropped
# A quiet room (audio.quiet_room, pink noise) at -80 dBFS added to every block before decoding, the same
# on every run: in digital silence (zeros) the recogniser hears a hiss ("S", "V") for seconds, in white
# noise of that level too; in the faintest room noise it hears silence.
DITHER_RMS = 1e-4

_INDEX = {phone: i for i, phone in enumerate(PHONES)}


def phone_track(signal: np.ndarray) -> np.ndarray:
    """Phone labels (int8 indices into PHONES) of 16 kHz mono float audio, one per 10 ms:
    label k covers the audio around sample k * 160 + 200; len = ceil(len(signal) / 160)."""
    signal = np.asarray(signal, np.float32)
    if signal.ndim != 1:
        raise AudioError(f"phone_track needs 1-D 16 kHz mono audio, got shape {signal.shape}")
    count = math.ceil(len(signal) / LABEL_SAMPLES)
    labels = [_decode_block(signal, 0, block) for block in range(math.ceil(count / BLOCK_FRAMES))]
    return np.concatenate(labels)[:count] if labels else np.zeros(0, np.int8)


class PhoneStream:
    """The same labels as `phone_track`, as the audio arrives in chunks: `feed` returns the labels that
    have become final (their block and its right margin heard), `finish` the rest, once the audio ends.
    A block is decoded once; only its left margin's audio is kept for the next."""

    def __init__(self):
        self._signal = np.zeros(0, np.float32)
        self._start = 0  # the sample of the whole recording that _signal[0] is
        self._received = 0
        self._block = 0

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, np.float32)
        self._signal = np.concatenate([self._signal, chunk])
        self._received += len(chunk)
        ready = []
        while _block_span(self._block)[1] <= self._received:
            ready.append(_decode_block(self._signal, self._start, self._block))
            self._block += 1
        keep = max(0, _block_span(self._block)[0])
        if keep > self._start:
            self._signal = self._signal[keep - self._start :]
            self._start = keep
        return np.concatenate(ready) if ready else np.zeros(0, np.int8)

    def finish(self) -> np.ndarray:
        count = math.ceil(self._received / LABEL_SAMPLES) - self._block * BLOCK_FRAMES
        ready = []
        while count > 0:
            ready.append(_decode_block(self._signal, self._start, self._block)[:count])
            count -= BLOCK_FRAMES
            self._block += 1
        return np.concatenate(ready) if ready else np.zeros(0, np.int8)


def label_indices(frame_indices, rate: float = 1.0, offset: int = 0, fps: float = 25.0, window: int = 3200,
                  hop_length: int = 160, columns: int = 21) -> np.ndarray:
    """Which label of a phone track lies under each spectrogram column of the windows `audio.warped_windows`
    gives frames `frame_indices` (read `rate` times faster about their middles), for speech whose track
    starts `offset` samples into the signal: (len(frame_indices), columns) int64, possibly outside the
    track. Column j of a window is centred on its sample j * hop_length (a centred STFT)."""
    centres = (np.asarray(frame_indices, np.float64) + 0.5) * (SAMPLE_RATE / fps)
    starts = np.floor(centres - window / 2 + 0.5)
    middle = (window - 1) / 2
    positions = starts[:, None] + middle + (np.arange(columns) * hop_length - middle)[None, :] * rate - offset
    return np.round((positions - LABEL_CENTRE) / LABEL_SAMPLES).astype(np.int64)


def column_phones(track: np.ndarray, frame_indices, rate: float = 1.0, offset: int = 0, fps: float = 25.0,
                  window: int = 3200, hop_length: int = 160, columns: int = 21) -> np.ndarray:
    """The labels of `track` under each column (`label_indices`), SILENCE outside it: (T, columns) int64."""
    index = label_indices(frame_indices, rate, offset, fps, window, hop_length, columns)
    inside = (index >= 0) & (index < len(track))
    labels = np.full(index.shape, SILENCE, np.int64)
    labels[inside] = np.asarray(track)[index[inside]]
    return labels


def windows_signal(windows: np.ndarray, fps: float = 25.0) -> tuple[np.ndarray, int]:
    """The signal the consecutive `audio.frame_audio` windows (T×window) were cut from, and the sample
    at which it starts (negative: the first window's zero padding)."""
    hop = SAMPLE_RATE / fps
    window = windows.shape[1]
    starts = [math.floor((t + 0.5) * hop - window / 2 + 0.5) for t in range(len(windows))]
    signal = np.zeros(starts[-1] + window - starts[0], np.float32)
    for t in range(len(windows)):
        signal[starts[t] - starts[0] : starts[t] - starts[0] + window] = windows[t]
    return signal, starts[0]


def _block_span(block: int) -> tuple[int, int]:
    """The samples [lo, hi) decoded for block `block`: its labels and MARGIN_FRAMES of them either side."""
    lo = (block * BLOCK_FRAMES - MARGIN_FRAMES) * LABEL_SAMPLES
    hi = ((block + 1) * BLOCK_FRAMES + MARGIN_FRAMES) * LABEL_SAMPLES + 2 * LABEL_CENTRE
    return lo, hi


def _decode_block(signal: np.ndarray, signal_start: int, block: int) -> np.ndarray:
    """The BLOCK_FRAMES labels from label block * BLOCK_FRAMES on, decoded from `_block_span(block)` of
    the recording, of which `signal` holds the samples from `signal_start` to its end (the recording's
    end, or beyond the span). Nothing outside the recording is decoded: after a room's noise, the zeros
    of a padding made the recogniser hear the noise as speech."""
    lo, hi = _block_span(block)
    lo, hi = max(lo, 0, signal_start), min(hi, signal_start + len(signal))
    labels = np.full(BLOCK_FRAMES, SILENCE, np.int8)
    if hi - lo < 2 * LABEL_CENTRE:
        return labels
    audio = signal[lo - signal_start : hi - signal_start] + quiet_room(hi - lo, rms=DITHER_RMS, rng=np.random.default_rng(block))
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    heard = np.full((hi - lo) // LABEL_SAMPLES + 1, SILENCE, np.int8)  # decoded frame k is label lo // 160 + k
    # New ones for every block (0.1 s): both adapt to what they have heard, so that what was decoded
    # before in the process would change the labels.
    decoder, vad = _recogniser()
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    for segment in decoder.seg():
        heard[segment.start_frame : segment.end_frame + 1] = _INDEX.get(segment.word, SILENCE)
    # A phone is heard only where a voice activity detector (WebRTC's, strict) hears a voice: the
    # recogniser, which normalises each block by its own mean, can take a room's noise for speech.
    step = vad.frame_bytes // 2
    voiced = np.array([vad.is_speech(pcm[i : i + step].tobytes()) for i in range(0, len(pcm) - step + 1, step)] or [False])
    centres = np.arange(len(heard)) * LABEL_SAMPLES + LABEL_CENTRE
    heard[~voiced[np.minimum(centres // step, len(voiced) - 1)]] = SILENCE
    first = block * BLOCK_FRAMES - lo // LABEL_SAMPLES  # where the block's labels start in `heard`
    part = heard[first : first + BLOCK_FRAMES]
    labels[: len(part)] = part
    return labels


def _recogniser():
    """Sphinx's phone-loop decoder and a voice activity detector."""
    try:
        from pocketsphinx import Decoder, Vad, get_model_path
    except ImportError as error:
        raise AudioError("this model reads phones, which needs pocketsphinx: pip install pocketsphinx") from error
    model = os.path.join(get_model_path(), "en-us")
    # The phone loop with Sphinx's phone bigram; wide beams: 5 s of audio decode in 0.2 s. Cepstral means
    # from each block alone ("batch"), not carried over from the blocks before.
    decoder = Decoder(hmm=os.path.join(model, "en-us"), allphone=os.path.join(model, "en-us-phone.lm.bin"),
                      lw=2.0, beam=1e-20, pbeam=1e-20, cmn="batch", loglevel="FATAL")  # fmt: skip
    return decoder, Vad(Vad.STRICT, SAMPLE_RATE)
