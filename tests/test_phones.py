"""The phone front end (speech_anim/phones.py) and the mouth motion that reads it."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speech_anim import Animator, phones
from speech_anim.audio import frame_audio, load_audio, quiet_room
from speech_anim.models.generator import Generator, GeneratorConfig
from speech_anim.errors import AudioError
from speech_anim.models.mouth_motion import MouthMotion, MouthMotionConfig

pytest.importorskip("pocketsphinx", reason="the phone front end needs pocketsphinx: pip install -e '.[phones]'")

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "examples" / "grid_s1_bbaf2n.wav"  # "bin blue at f two now"
PHOTO = REPO / "examples" / "astronaut.png"
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(SPEECH)


def test_silence_is_silence_and_speech_has_its_sounds(speech):
    for quiet in (np.zeros(48000, np.float32), quiet_room(48000, rms=1e-3, rng=np.random.default_rng(0))):
        track = phones.phone_track(quiet)
        assert len(track) == 300 and (track == phones.SILENCE).all()
    track = phones.phone_track(speech)
    assert len(track) == -(-len(speech) // 160)
    heard = [phones.PHONES[k] for k in track]
    assert heard[:20] == ["SIL"] * 20  # GRID clips open in silence
    spoken = {p for p in heard if p != "SIL"}
    assert len(spoken & VOWELS) >= 3 and len(spoken - VOWELS) >= 3, spoken
    assert "F" in spoken  # "f": lower lip to upper teeth


def test_without_pocketsphinx_a_phone_model_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import pocketsphinx now raises ImportError
    with pytest.raises(AudioError, match="pip install pocketsphinx"):
        phones.phone_track(np.zeros(16000, np.float32))


def test_a_stream_hears_the_phones_one_pass_hears(speech):
    long = np.concatenate([speech, speech[::-1], speech, 0.5 * speech])  # 12 s: three blocks
    whole = phones.phone_track(long)
    stream = phones.PhoneStream()
    rng = np.random.default_rng(0)
    parts, at = [], 0
    while at < len(long):
        size = int(rng.integers(50, 9000))
        parts.append(stream.feed(long[at : at + size]))
        at += size
    parts.append(stream.finish())
    assert sum(len(p) for p in parts[:-1]) > len(whole) // 2  # final labels come out before the end
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_column_labels_follow_the_windows():
    track = np.arange(300) % 42
    labels = phones.column_phones(track, np.arange(75))
    assert labels.shape == (75, 21)
    # The middle column of frame t is the window's centre, (t + 0.5) / 25 s: label ((t + 0.5) * 640 - 200) / 160.
    np.testing.assert_array_equal(labels[:, 10], track[np.round(((np.arange(75) + 0.5) * 640 - 200) / 160).astype(int)])
    assert (labels[0, :6] == phones.SILENCE).all()  # before the recording
    faster = phones.column_phones(track, np.arange(75), rate=1.2)
    np.testing.assert_array_equal(faster[:, 10], labels[:, 10])  # warped about the middle
    assert (np.abs(faster[:, 20].astype(int) - labels[:, 20]) > 0).any()
    shifted = phones.column_phones(track, np.arange(75), offset=6400)  # the speech starts 0.4 s in
    assert (shifted[:10, :8] == phones.SILENCE).all()
    np.testing.assert_array_equal(shifted[20:30], labels[10:20])


def test_a_mouth_motion_reading_phones_recognises_them_itself_or_takes_them(speech):
    torch.manual_seed(0)
    motion = MouthMotion(MouthMotionConfig(cepstra=13, phones=8)).eval()
    torch.nn.init.normal_(motion.head.weight, 0, 0.1)  # as if trained: it moves
    windows = torch.from_numpy(frame_audio(speech))[None]
    given = torch.from_numpy(motion.window_phones(phones.phone_track(speech), np.arange(windows.shape[1])))[None]
    with torch.no_grad():
        recognised, _ = motion(windows)
        taken, _ = motion(windows, phones=given)
        other, _ = motion(windows, phones=torch.zeros_like(given))
    # Recognised in the windows put back together (their zero padding at the end is heard too).
    torch.testing.assert_close(recognised[:, :-8], taken[:, :-8])
    assert (other - taken).abs().max() > 1e-3  # the phones are read
    with pytest.raises(ValueError, match="phones must be"):
        motion(windows, phones=given[:, :, :5])
    with pytest.raises(ValueError, match="reads no phones"):
        MouthMotion()(windows, phones=given)
    with pytest.raises(ValueError, match="embedding size"):
        MouthMotionConfig(phones=-1)


def test_a_phone_reading_generator_streams_like_one_pass(speech, frames_match):
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(width=0.0625, output="blend", mouth_motion=True, mouth_cepstra=13, mouth_phones=8))
    torch.nn.init.normal_(generator.mouth_motion.head.weight, 0, 0.2)
    animator = Animator(generator, device="cpu")
    long = np.concatenate([speech, speech])  # 6 s: two blocks
    whole = animator(PHOTO, (long, 16000), seed=2).frames
    chunks = [long[i : i + 1111] for i in range(0, len(long), 1111)]
    streamed = list(animator.stream(PHOTO, chunks, seed=2))
    assert len(streamed) > 1
    frames_match(np.concatenate(streamed), whole)
    with pytest.raises(ValueError, match="mouth_phones"):
        GeneratorConfig(mouth_phones=8)
    with pytest.raises(ValueError, match="reads no phones"):
        Generator(GeneratorConfig(width=0.0625))(torch.zeros(1, 3, 128, 96), torch.zeros(1, 2, 3200),
                                                 phones=torch.zeros(1, 2, 21, dtype=torch.long))  # fmt: skip


def test_fit_mouth_motion_with_phones(tmp_path, clips):
    """train/fit_mouth_motion.py --phones on real clips: the tracks are cached beside them, the quiet room
    around a clip is silence, and the saved model reads phones."""
    sys.path.insert(0, str(REPO / "train"))
    import fit_mouth_motion  # noqa: PLC0415

    out = tmp_path / "motion"
    assert fit_mouth_motion.main(["--data", str(clips), "--train-split", "all", "--val-split", "all", "--out", str(out),
                                  "--steps", "20", "--batch", "2", "--cepstra", "13", "--phones", "8"]) == 0  # fmt: skip
    assert (clips / "phone_tracks.npz").is_file()
    model = MouthMotion.from_pretrained(str(out))
    assert model.config.phones == 8
    real = fit_mouth_motion.load_clips(clips, "all", phones=True)
    audio, target, labels = fit_mouth_motion.batch_of(real[:2], np.random.default_rng(0), 74, length=150, model=model)
    assert labels.shape == (2, 150, 21) and audio.shape == (2, 150, 3200)
    for row, moved in zip(labels, target.abs().sum(dim=(2, 3)) > 0):
        spoken = torch.nonzero(moved)[:, 0]
        lo, hi = max(0, int(spoken.min()) - 5), int(spoken.max()) + 5  # the clip, its frame 0 and a window's reach
        assert (row[:lo] == phones.SILENCE).all() and (row[hi:] == phones.SILENCE).all()  # the quiet room
        assert (row[lo:hi] != phones.SILENCE).any()
