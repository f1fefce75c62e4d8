"""The shipped default model (speech_anim/pretrained/grid-s1) on real inputs: what a user gets.

Skipped, with the reason, when the package carries no default model."""

from pathlib import Path

import numpy as np
import pytest

from speech_anim import Animator
from speech_anim.animator import DEFAULT_CHECKPOINT
from speech_anim import audio
from speech_anim.audio import load_audio
from speech_anim.blinks import pooled_rate, video_blinks
from speech_anim.face import crop_landmarks, inner_lip_gap
from speech_anim.metrics.sync import av_sync

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STILL = EXAMPLES / "grid_s1_still.png"  # an s1 frame outside the training split's clips
SPEECH = EXAMPLES / "grid_s1_bbaf2n.wav"

pytestmark = pytest.mark.skipif(
    not (DEFAULT_CHECKPOINT / "model.safetensors").is_file(),
    reason="no default model is shipped in speech_anim/pretrained/grid-s1",
)


@pytest.fixture(scope="module")
def animator() -> Animator:
    return Animator.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def crop(animator) -> np.ndarray:
    return animator.align(STILL).crop


def mouth_opening(frames: np.ndarray) -> np.ndarray:
    """Per frame: mean vertical gap between the inner lips (crop pixels)."""
    return inner_lip_gap(crop_landmarks(frames))


def quiet_room(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """Silence plus faint pink noise (-60 dBFS RMS): what a microphone hears when nobody speaks."""
    return audio.quiet_room(int(seconds * rate), 1e-3, np.random.default_rng(seed))


def test_speech_moves_the_mouth_in_sync(animator, crop):
    speech = load_audio(SPEECH)
    frames = animator.animate_crop(crop, (speech, 16000), seed=0)
    opening = mouth_opening(frames)
    assert opening.max() - np.median(opening[:10]) > 1.5, opening  # the mouth opens for the words
    sync = av_sync(frames, speech, 25.0)
    assert abs(sync.offset) <= 1 and sync.confidence > 0.1, sync


@pytest.fixture(scope="module")
def silent_frames(animator, crop) -> np.ndarray:
    return animator.animate_crop(crop, (quiet_room(8.0), 16000), seed=0)


def test_silent_audio_keeps_the_mouth_closed(animator, crop, silent_frames):
    speaking = mouth_opening(animator.animate_crop(crop, SPEECH, seed=0))
    still = mouth_opening(crop[None])[0]
    silent = mouth_opening(silent_frames)
    # Closed: within a pixel of the still's mouth, and far from the speaking mouth's widest.
    assert np.percentile(silent, 95) - still < 1.0, silent
    assert speaking.max() - np.percentile(silent, 95) > 1.5


def test_eyes_blink_during_silence(silent_frames):
    # Paper Fig. 17: with nobody speaking the mouth stays shut (above) and the eyes go on blinking.
    assert len(video_blinks(silent_frames, fps=25.0).blinks) >= 1


def test_blinks_come_at_a_real_rate_and_at_other_times_for_other_seeds(animator, crop):
    quiet = (quiet_room(8.0, seed=1), 16000)
    stats = [video_blinks(animator.animate_crop(crop, quiet, seed=seed), fps=25.0) for seed in range(4)]
    rate, median, count = pooled_rate(stats)
    # Real GRID s1 blinks 0.82 times a second for 0.41 s (model_card.md); 32 s of silence is few
    # enough blinks that only a rate far from it fails.
    assert 0.4 <= rate <= 1.3 and 0.16 <= median <= 0.8, (rate, median, count)
    bottoms = [tuple(b.bottom for b in s.blinks) for s in stats]
    assert len(set(bottoms)) == len(bottoms), bottoms  # the seed decides when the eyes close


def test_seeds_give_different_upper_faces(animator, crop):
    speech = (load_audio(SPEECH), 16000)
    first, second = (animator.animate_crop(crop, speech, seed=seed).astype(np.float32) for seed in (0, 1))
    upper = slice(0, first.shape[1] // 2)
    # The eye process draws each seed's blinks: other seeds, other upper-face motion.
    assert np.abs(first[:, upper] - second[:, upper]).mean() > 1.0


def test_photo_of_another_face_keeps_its_identity(animator):
    from speech_anim.metrics import get_metric

    result = animator(EXAMPLES / "astronaut.png", SPEECH, seed=0)
    # ACD against the astronaut's own aligned still: well inside dlib's same-person distance (0.6).
    acd = get_metric("acd")(result.frames, still=result.crop)
    assert acd < 0.35, acd


def test_the_mouth_of_a_face_it_never_saw_moves_with_the_words_and_rests_in_silence(animator):
    # The astronaut photo (smiling, not a training face): before the mouth motion model the default
    # model's inner-lip gap varied 0.17 px over this sentence; with it 0.79 px, and with the decoder
    # trained over it (stage 8) 1.00 px (model_card.md).
    crop = animator.align(EXAMPLES / "astronaut.png").crop
    speaking = mouth_opening(animator.animate_crop(crop, SPEECH, seed=0))
    silent = mouth_opening(animator.animate_crop(crop, (quiet_room(4.0), 16000), seed=0))
    assert speaking.std() > 0.4, speaking
    assert silent.std() < 0.2 and np.abs(silent - mouth_opening(crop[None])[0]).max() < 0.6, silent


def test_the_closed_lids_of_a_face_it_never_saw_keep_its_colour(animator):
    # The decoder learnt its closed lids on s1: on the astronaut it drew them red (the 99th percentile
    # of redness, R minus the mean of G and B, in the eye region of her shut-eye frames: 73.0 against
    # 57.8 in her photo). eye_colour="still" takes the colour of her own lids, shut by the warp: 58.0.
    from speech_anim.models.generator import EYE_REGION

    assert animator.generator.config.eye_colour == "still"
    result = animator(EXAMPLES / "astronaut.png", SPEECH, seed=0)
    shut = [frame for blink in video_blinks(result.crops, fps=result.fps).blinks for frame in range(blink.start, blink.end + 1)]
    assert shut
    (top, bottom), (left, right) = EYE_REGION

    def redness(image):
        region = image[..., top:bottom, left:right, :].astype(np.float64)
        return float(np.percentile(region[..., 0] - region[..., 1:].mean(-1), 99))

    assert abs(redness(result.crops[shut]) - redness(result.crop)) < 5.0
