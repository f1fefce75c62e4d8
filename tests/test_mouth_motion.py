"""MouthMotion (audio -> lip and jaw displacement), the thin-plate warp, and a generator that uses them."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speech_anim.face import canonical_landmarks, crop_landmarks, inner_lip_gap
from speech_anim.models.generator import Generator, GeneratorConfig
from speech_anim.models.mouth_motion import LIP_POINTS, MOVING_POINTS, MouthMotion, MouthMotionConfig
from speech_anim.models.warp import source_coordinates, warp_still

REPO = Path(__file__).resolve().parents[1]
LOWER_LIP = MOVING_POINTS.index(57)  # the bottom of the outer lower lip


def _landmarks(batch=1):
    return torch.from_numpy(canonical_landmarks()).float()[None].repeat(batch, 1, 1)


def test_thin_plate_spline_takes_every_control_point_where_it_is_told():
    g = torch.Generator().manual_seed(0)
    source = 10 + torch.rand(3, 12, 2, generator=g, dtype=torch.float64) * torch.tensor([76.0, 108.0], dtype=torch.float64)
    # Targets on pixel centres, so the map is read there exactly.
    target = (source + 3 * torch.randn(3, 12, 2, generator=g, dtype=torch.float64)).floor() + 0.5
    coords = source_coordinates(target, source, 128, 96)
    column, row = target[..., 0].long(), target[..., 1].long()
    at_targets = torch.stack([coords[f, row[f], column[f]] for f in range(3)])
    torch.testing.assert_close(at_targets.double(), source, atol=0.1, rtol=0)


def test_no_displacement_leaves_the_still_as_it_is():
    still = torch.rand(2, 3, 128, 96) * 2 - 1
    warped = warp_still(still, _landmarks(2), torch.zeros(2, 4, len(MOVING_POINTS), 2))
    assert warped.shape == (2, 4, 3, 128, 96)
    torch.testing.assert_close(warped, still[:, None].expand_as(warped), atol=1e-4, rtol=0)


def _first_frame(clips) -> np.ndarray:
    from speech_anim.data.preprocess import decode_frames

    with np.load(sorted(clips.glob("clips/s1/*.npz"))[0]) as clip:
        return decode_frames(clip["frames"], clip["frame_offsets"], [0])[0]


def test_dlib_finds_the_warped_mouth_where_it_was_moved(clips):
    """The point of the warp: the evaluation's landmark reader sees the moved lips."""
    crop = _first_frame(clips)
    before = crop_landmarks(crop)
    still = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1
    displacement = torch.zeros(1, 1, len(MOVING_POINTS), 2)
    lower = [MOVING_POINTS.index(p) for p in (*range(5, 12), *range(55, 60), *range(65, 68))]  # chin, lower lip
    displacement[0, 0, lower, 1] = 3.0  # the jaw drops 3 px
    frame = warp_still(still, torch.from_numpy(before)[None], displacement)[0, 0]
    after = crop_landmarks(((frame.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
    assert inner_lip_gap(after[None])[0] - inner_lip_gap(before[None])[0] > 1.5
    upper = [p for p in range(48, 55)]
    assert np.abs(after[upper] - before[upper]).mean() < 0.6  # the upper lip stays
    assert np.abs(after[17:48] - before[17:48]).mean() < 0.3  # so do the eyes, brows and nose


def test_the_warp_shuts_the_eyelids_by_the_closure_and_leaves_the_mouth_to_the_displacement(clips):
    """GeneratorConfig.eyelids="warp": dlib, the blink detector's landmark reader, sees the lids shut."""
    from speech_anim.blinks import eye_aspect_ratio

    crop = _first_frame(clips)
    landmarks = torch.from_numpy(crop_landmarks(crop))[None].float()
    still = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1
    displacement = torch.zeros(1, 3, len(MOVING_POINTS), 2)
    frames = warp_still(still, landmarks, displacement, torch.tensor([[0.0, 0.5, 1.0]]))
    torch.testing.assert_close(frames[:, 0], warp_still(still, landmarks, displacement[:, :1])[:, 0], atol=1e-4, rtol=0)
    found = crop_landmarks(((frames[0].permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
    ear = eye_aspect_ratio(found)
    assert ear[0] > 0.2 and ear[2] < ear[1] < 0.9 * ear[0] and ear[2] < 0.5 * ear[0], ear  # measured: 0.35, 0.27, 0.16
    assert np.abs(found[2, 48:68] - found[0, 48:68]).mean() < 0.5  # the mouth stays where the displacement put it
    with pytest.raises(ValueError, match="eye closure must be 1×3"):
        warp_still(still, landmarks, displacement, torch.zeros(3))


def test_mouth_motion_shapes_streams_and_starts_still():
    torch.manual_seed(0)
    model = MouthMotion(MouthMotionConfig(channels=8, hidden=16)).eval()
    audio = torch.randn(2, 9, 3200) * 0.1
    with torch.no_grad():
        whole, _ = model(audio)
        assert whole.shape == (2, 9, len(MOVING_POINTS), 2)
        assert whole.abs().max() == 0  # untrained: moves nothing, so a generator given it draws what it drew
        torch.nn.init.normal_(model.head.weight)
        whole, _ = model(audio)
        first, state = model(audio[:, :4])
        rest, _ = model(audio[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, rest], 1), whole, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="3200 samples"):
        model(torch.zeros(1, 2, 100))


def test_mouth_motion_generator_blends_over_the_moving_still_and_streams(tmp_path):
    torch.manual_seed(0)
    config = GeneratorConfig(width=0.0625, output="blend", eye_input=True, mouth_motion=True)
    generator = Generator(config).eval()
    torch.nn.init.normal_(generator.mouth_motion.head.weight, std=0.05)
    still = torch.rand(1, 3, 128, 96) * 2 - 1
    audio = torch.randn(1, 12, 3200) * 0.1
    landmarks = _landmarks()
    noise = generator.sample_noise(1, 12, torch.Generator().manual_seed(1))
    openness = torch.ones(1, 12)
    with torch.no_grad():
        video, alpha, decoded = generator(still, audio, noise=noise, openness=openness, still_landmarks=landmarks, return_layers=True)
        displacement, _ = generator.mouth_motion(audio)
        moving = warp_still(still, landmarks, displacement)
        torch.testing.assert_close(video, alpha * decoded + (1 - alpha) * moving, atol=1e-5, rtol=0)
        assert (moving - still[:, None]).abs().amax(dim=(0, 2, 3, 4)).max() > 0.05  # the still did move
        first, state = generator(still, audio[:, :5], noise=noise[:, :5], openness=openness[:, :5],
                                 still_landmarks=landmarks, return_state=True)
        rest = generator(None, audio[:, 5:], noise=noise[:, 5:], openness=openness[:, 5:], state=state)
    # The warp evaluates its spline in float32 (~1e-3 px, speech_anim/models/warp.py), and its batched
    # products round differently for 12 frames than for 5 and 7: on this random still that is up to
    # ~1e-4. A lost state (the rest started afresh) differs by ~0.08.
    torch.testing.assert_close(torch.cat([first, rest], 1), video, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="still_landmarks"):
        generator(still, audio)
    with pytest.raises(ValueError, match="output='blend'"):
        GeneratorConfig(output="frame", mouth_motion=True)
    generator.save_pretrained(tmp_path / "g")
    loaded = Generator.from_pretrained(str(tmp_path / "g"))
    assert loaded.config.mouth_motion
    assert torch.equal(loaded.mouth_motion.head.weight, generator.mouth_motion.head.weight)


def test_warped_eyelids_shut_the_moving_still_under_a_decoder_given_open_eyes():
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(width=0.0625, output="blend", eye_input=True, mouth_motion=True)).eval()
    torch.nn.init.normal_(generator.mouth_motion.head.weight, std=0.05)
    for maps in generator.decoder.eye_maps:
        torch.nn.init.normal_(maps, std=0.01)  # the decoder draws the closure too, so that it shows if it leaks
    still, audio, landmarks = torch.rand(1, 3, 128, 96) * 2 - 1, torch.randn(1, 6, 3200) * 0.1, _landmarks()
    noise = generator.sample_noise(1, 6, torch.Generator().manual_seed(1))
    openness = torch.tensor([[1.0, 0.7, 0.2, 0.0, 0.6, 1.0]])

    def run(eyelids, openness):
        generator.set_eyelids(eyelids)
        with torch.no_grad():
            return generator(still, audio, noise=noise, openness=openness, still_landmarks=landmarks, return_layers=True)

    opened = run("decoder", torch.ones(1, 6))
    video, alpha, decoded = run("warp", openness)
    torch.testing.assert_close(alpha, opened[1])  # the decoder saw open eyes
    torch.testing.assert_close(decoded, opened[2])
    displacement, _ = generator.mouth_motion(audio)
    with torch.no_grad():
        shut = warp_still(still, landmarks, displacement, 1 - openness)
    torch.testing.assert_close(video, alpha * decoded + (1 - alpha) * shut, atol=1e-5, rtol=0)
    assert (shut - opened[0]).abs().amax(dim=(0, 2, 3, 4))[3] > 0.1  # frame 3 shut its lids
    # Open eyes: every way of drawing them draws the same frames, within the float32 spline's precision
    # (the lids' control points change the solve; ~2e-4 here).
    for eyelids in ("warp", "both"):
        torch.testing.assert_close(run(eyelids, torch.ones(1, 6))[0], opened[0], atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="eyelids='decoder'"):
        GeneratorConfig(output="blend", eye_input=True, eyelids="warp")
    with pytest.raises(ValueError, match="must be one of"):
        GeneratorConfig(eyelids="painted")


def test_eye_colour_still_keeps_the_brightness_and_takes_the_shut_stills_colour_as_far_as_the_lids_close():
    from speech_anim.models.generator import EYE_COLOUR_BLUR, LUMA, gaussian_blur

    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(width=0.0625, output="blend", eye_input=True, mouth_motion=True,
                                          eyelids="both")).eval()
    torch.nn.init.normal_(generator.mouth_motion.head.weight, std=0.05)
    for maps in generator.decoder.eye_maps:
        torch.nn.init.normal_(maps, std=0.01)
    still, audio, landmarks = torch.rand(1, 3, 128, 96) * 2 - 1, torch.randn(1, 6, 3200) * 0.1, _landmarks()
    noise = generator.sample_noise(1, 6, torch.Generator().manual_seed(1))
    openness = torch.tensor([[1.0, 0.7, 0.2, 0.0, 0.6, 1.0]])

    def run(colour):
        generator.set_eye_colour(colour)
        with torch.no_grad():
            return generator(still, audio, noise=noise, openness=openness, still_landmarks=landmarks)

    decoded, recoloured = run("decoded"), run("still")
    luma = torch.tensor(LUMA).view(3, 1, 1)
    torch.testing.assert_close((recoloured * luma).sum(-3), (decoded * luma).sum(-3), atol=1e-5, rtol=0)
    region = generator.eye_region
    outside = region == 0
    assert torch.equal(recoloured[..., outside], decoded[..., outside])
    torch.testing.assert_close(recoloured[:, [0, 5]], decoded[:, [0, 5]])  # open eyes: no change
    # Shut (frame 3), inside the region: the colour (RGB minus luma) is the warped still's, blurred.
    displacement, _ = generator.mouth_motion(audio)
    with torch.no_grad():
        shut = warp_still(still, landmarks, displacement, 1 - openness)[:, 3]
    colour = gaussian_blur(shut - (shut * luma).sum(-3, keepdim=True), EYE_COLOUR_BLUR)
    inside = region == 1
    got = recoloured[:, 3] - (recoloured[:, 3] * luma).sum(-3, keepdim=True)
    torch.testing.assert_close(got[..., inside], colour[..., inside], atol=1e-4, rtol=0)
    assert (got[..., inside] - (decoded[:, 3] - (decoded[:, 3] * luma).sum(-3, keepdim=True))[..., inside]).abs().max() > 0.05
    with pytest.raises(ValueError, match="eyelids='both'"):
        GeneratorConfig(output="blend", eye_input=True, mouth_motion=True, eye_colour="still")
    with pytest.raises(ValueError, match="must be one of"):
        GeneratorConfig(eye_colour="sepia")


def test_gaussian_blur_keeps_a_constant_and_spreads_a_point():
    from speech_anim.models.generator import gaussian_blur

    flat = torch.full((1, 2, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 2.0), flat)
    point = torch.zeros(1, 1, 21, 21)
    point[0, 0, 10, 10] = 1.0
    spread = gaussian_blur(point, 2.0)[0, 0]
    assert abs(float(spread.sum()) - 1.0) < 1e-5 and spread[10, 10] < 0.05 and torch.equal(spread, spread.T)


def test_export_ships_the_eyelids_it_is_told_and_refuses_them_without_a_moving_still(tmp_path):
    import subprocess

    Generator(GeneratorConfig(width=0.0625, output="blend", eye_input=True, mouth_motion=True)).save_pretrained(tmp_path / "g")
    Generator(GeneratorConfig(width=0.0625, output="blend", eye_input=True)).save_pretrained(tmp_path / "still")
    script = [sys.executable, str(REPO / "scripts" / "export_default_model.py")]
    done = subprocess.run([*script, str(tmp_path / "g"), "--eyelids", "both", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Generator.from_pretrained(str(tmp_path / "out")).config.eyelids == "both"
    refused = subprocess.run([*script, str(tmp_path / "still"), "--eyelids", "warp", "--out", str(tmp_path / "no")],
                             capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert refused.returncode != 0 and "mouth_motion=True" in refused.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "no").exists()
    # --mouth-motion takes a generator's own as well as a fit's; a folder with neither is refused in one line.
    moved = subprocess.run([*script, str(tmp_path / "still"), "--mouth-motion", str(tmp_path / "out"), "--out", str(tmp_path / "moved")],
                           capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    donor, taker = Generator.from_pretrained(str(tmp_path / "out")), Generator.from_pretrained(str(tmp_path / "moved"))
    assert taker.config.mouth_motion and torch.equal(taker.mouth_motion.head.weight, donor.mouth_motion.head.weight)
    refused = subprocess.run([*script, str(tmp_path / "still"), "--mouth-motion", str(tmp_path / "still"), "--out", str(tmp_path / "no")],
                             capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert refused.returncode != 0 and "without mouth_motion" in refused.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "no").exists()


def test_export_attaches_a_fitted_mouth_motion_and_keeps_every_other_weight(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    from export_default_model import with_mouth_motion  # noqa: PLC0415

    torch.manual_seed(0)
    base = Generator(GeneratorConfig(width=0.0625, output="blend"))
    motion = MouthMotion()
    torch.nn.init.normal_(motion.head.weight)
    moved = with_mouth_motion(base, motion, "base")
    assert moved.config.mouth_motion
    for key, value in base.state_dict().items():
        assert torch.equal(moved.state_dict()[key], value), key
    assert torch.equal(moved.mouth_motion.head.weight, motion.head.weight)
    with pytest.raises(SystemExit, match="drop --mouth-motion"):
        with_mouth_motion(Generator(GeneratorConfig(width=0.0625)), motion, "paper")


def test_cepstral_front_end_keeps_the_envelope_and_loads_from_either_kind_of_folder(tmp_path):
    from speech_anim.models.generator import load_mouth_motion
    from speech_anim.models.mouth_motion import dct_matrix

    dct = dct_matrix(40, 40)
    torch.testing.assert_close(dct @ dct.T, torch.eye(40), atol=1e-5, rtol=0)  # orthonormal: nothing lost
    smooth = torch.linspace(0, 1, 40) ** 2  # an envelope without ripple lives in the first coefficients
    assert (dct[:6] @ smooth).norm() > 0.99 * smooth.norm()
    motion = MouthMotion(MouthMotionConfig(cepstra=13))
    assert motion.convs[0].in_channels == 13
    torch.nn.init.normal_(motion.head.weight, std=0.05)
    audio = torch.randn(1, 6, 3200) * 0.1
    motion.save_pretrained(tmp_path / "fit")
    generator = Generator(GeneratorConfig(width=0.0625, output="blend", mouth_motion=True))
    torch.nn.init.normal_(generator.mouth_motion.head.weight, std=0.05)
    generator.save_pretrained(tmp_path / "generator")
    with torch.no_grad():
        torch.testing.assert_close(load_mouth_motion(tmp_path / "fit")(audio)[0], motion(audio)[0])
        torch.testing.assert_close(load_mouth_motion(tmp_path / "generator")(audio)[0], generator.mouth_motion(audio)[0])
    sys.path.insert(0, str(REPO / "scripts"))
    from export_default_model import with_mouth_motion  # noqa: PLC0415

    cepstral = with_mouth_motion(generator, motion, "generator")  # its mel MouthMotion replaced by a cepstral one
    assert cepstral.config.mouth_cepstra == 13
    cepstral.save_pretrained(tmp_path / "cepstral")
    from speech_anim.models.generator import mouth_motion_front_end

    assert [mouth_motion_front_end(tmp_path / f) for f in ("fit", "generator", "cepstral")] == [(13, 0), (0, 0), (13, 0)]
    with torch.no_grad():
        torch.testing.assert_close(load_mouth_motion(tmp_path / "cepstral")(audio)[0], motion(audio)[0])
    Generator(GeneratorConfig(width=0.0625, output="blend")).save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="without mouth_motion"):
        load_mouth_motion(tmp_path / "plain")
    with pytest.raises(ValueError, match="cepstra"):
        MouthMotionConfig(cepstra=41)


def test_fit_mouth_motion_learns_on_real_clips(tmp_path, clips):
    """A few steps of train/fit_mouth_motion.py on the real preprocessed clips: it saves a model that
    loads, and its lip error on the training clips falls below a mouth left at rest."""
    sys.path.insert(0, str(REPO / "train"))
    import fit_mouth_motion  # noqa: PLC0415

    out = tmp_path / "motion"
    assert fit_mouth_motion.main(["--data", str(clips), "--train-split", "all", "--val-split", "all",
                                  "--out", str(out), "--steps", "60", "--batch", "4", "--lr", "3e-3"]) == 0  # fmt: skip
    model = MouthMotion.from_pretrained(str(out))
    real = [c for c in fit_mouth_motion.load_clips(clips, "all") if len(c["target"]) >= 74]
    error, rest = fit_mouth_motion.lip_errors(model, real, 74)
    assert error < rest, (error, rest)
    assert set(LIP_POINTS) <= set(MOVING_POINTS)
