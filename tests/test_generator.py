import pytest
import torch

from speech_anim.errors import AudioError, ImageError
from speech_anim.models.generator import Generator, GeneratorConfig, eye_region

TINY = GeneratorConfig(width=0.125)


def _inputs(batch=2, frames=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    still = torch.rand(batch, 3, 128, 96, generator=g) * 2 - 1
    audio = torch.randn(batch, frames, 3200, generator=g) * 0.1
    return still, audio


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Generator(TINY).eval()


def _num_params(config):
    with torch.device("meta"):  # count without allocating 56 M floats
        return sum(p.numel() for p in Generator(config).parameters())


def test_output_shape_and_range(model):
    still, audio = _inputs(batch=2, frames=5)
    with torch.no_grad():
        video = model(still, audio)
    assert video.shape == (2, 5, 3, 128, 96)
    assert torch.isfinite(video).all()
    assert video.abs().max() <= 1


def test_returns_state_and_accepts_given_noise(model):
    still, audio = _inputs(batch=1, frames=4)
    noise = model.sample_noise(1, 4, torch.Generator().manual_seed(3))
    with torch.no_grad():
        video, state = model(still, audio, noise=noise, return_state=True)
        again = model(still, audio, noise=noise)
    assert torch.equal(video, again)
    assert state.content.shape == (TINY.audio_gru_layers, 1, TINY.content_dim)
    assert state.noise.shape == (1, 1, TINY.noise_dim)


@pytest.mark.parametrize("layers", [1, 2])
def test_paper_size_parameter_count(layers):
    # The authors' released generator has ~55 M parameters (2-layer audio GRU); the paper uses 1 layer.
    two = _num_params(GeneratorConfig(width=1.0, audio_gru_layers=2))
    assert 53e6 <= two <= 57e6
    one_gru_layer = 3 * (256 * 256 * 2 + 2 * 256)
    assert _num_params(GeneratorConfig(width=1.0, audio_gru_layers=layers)) == two - (2 - layers) * one_gru_layer


@pytest.mark.parametrize("width", [0.125, 0.25, 0.01])
def test_small_widths_run(width):
    model = Generator(GeneratorConfig(width=width)).eval()
    still, audio = _inputs(batch=1, frames=2)
    with torch.no_grad():
        assert model(still, audio).shape == (1, 2, 3, 128, 96)


def test_sample_noise_is_chunk_invariant_with_paper_variance(model):
    whole = model.sample_noise(3, 37, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    chunks = torch.cat([model.sample_noise(3, 7, g), model.sample_noise(3, 30, g)], dim=1)
    assert torch.equal(whole, chunks)
    big = model.sample_noise(4, 2000, torch.Generator().manual_seed(0))
    assert big.shape == (4, 2000, 10)
    assert abs(big.var().item() - 0.6) < 0.03
    assert abs(big.mean().item()) < 0.02


def test_streaming_in_chunks_equals_one_pass(model):
    still, audio = _inputs(batch=2, frames=45, seed=1)
    with torch.no_grad():
        whole = model(still, audio, generator=torch.Generator().manual_seed(5))
        g = torch.Generator().manual_seed(5)
        parts, state = [], None
        for start, stop in [(0, 7), (7, 37), (37, 45)]:
            # After the first chunk the still is cached in the state and not needed.
            video, state = model(still if state is None else None, audio[:, start:stop], state=state,
                                 return_state=True, generator=g)
            parts.append(video)
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=0)


def test_seed_determinism_and_different_seeds_differ(model):
    still, audio = _inputs(batch=1, frames=6)
    with torch.no_grad():
        a = model(still, audio, generator=torch.Generator().manual_seed(1))
        b = model(still, audio, generator=torch.Generator().manual_seed(1))
        c = model(still, audio, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_every_part_gets_gradients():
    model = Generator(TINY).train()
    still, audio = _inputs(batch=2, frames=3)
    model(still, audio).square().mean().backward()
    for name in ("identity_encoder", "content_encoder", "noise_generator", "decoder"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name


def test_bad_inputs_raise_one_line_errors(model):
    still, audio = _inputs(batch=1, frames=2)
    with pytest.raises(ImageError, match="B×3×128×96"):
        model(still[:, :, :64], audio)
    with pytest.raises(AudioError, match="3200"):
        model(still, audio[..., :1600])
    with pytest.raises(AudioError, match="T >= 1"):
        model(still, audio[:, :0])
    with pytest.raises(AudioError, match="batch"):
        model(still, torch.cat([audio, audio]))
    with pytest.raises(ImageError):
        model(None, audio)
    with pytest.raises(ValueError, match="noise"):
        model(still, audio, noise=torch.zeros(1, 3, 10))
    with pytest.raises(ValueError, match="width"):
        GeneratorConfig(width=0)


def test_blend_output_starts_near_the_still_and_streams_like_one_pass():
    torch.manual_seed(0)
    blend = Generator(GeneratorConfig(width=0.125, output="blend")).eval()
    still, audio = _inputs(batch=2, frames=30, seed=2)
    with torch.no_grad():
        whole = blend(still, audio, generator=torch.Generator().manual_seed(1))
        g = torch.Generator().manual_seed(1)
        first, state = blend(still, audio[:, :11], return_state=True, generator=g)
        rest = blend(None, audio[:, 11:], state=state, generator=g)  # the state carries the still
        paper = Generator(TINY).eval()(still, audio, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, atol=1e-5, rtol=0)
    assert whole.abs().max() <= 1
    # At initialisation the mask lets ~88% of the still through; the paper's decoder starts from grey.
    blend_error = (whole - still[:, None]).abs().mean()
    assert blend_error < 0.5 * (paper - still[:, None]).abs().mean(), blend_error


def test_blend_layers_are_returned_on_request_and_make_the_frames(model):
    torch.manual_seed(0)
    blend = Generator(GeneratorConfig(width=0.125, output="blend")).eval()
    still, audio = _inputs(batch=2, frames=6, seed=3)
    with torch.no_grad():
        video, alpha, decoded = blend(still, audio, generator=torch.Generator().manual_seed(1), return_layers=True)
        again, alpha_again, _, state = blend(still, audio, generator=torch.Generator().manual_seed(1),
                                             return_layers=True, return_state=True)
        plain = blend(still, audio, generator=torch.Generator().manual_seed(1))
    assert alpha.shape == (2, 6, 1, 128, 96) and ((alpha > 0) & (alpha < 1)).all()
    torch.testing.assert_close(video, plain)
    torch.testing.assert_close(again, plain)
    torch.testing.assert_close(alpha_again, alpha)
    assert state.noise is not None
    assert decoded.shape == video.shape and decoded.abs().max() <= 1
    torch.testing.assert_close(video, alpha * decoded + (1 - alpha) * still[:, None])
    with pytest.raises(ValueError, match="output='blend'"):
        model(still, audio, return_layers=True)


def test_unknown_output_mode_is_rejected():
    with pytest.raises(ValueError, match="output"):
        GeneratorConfig(output="residual")


def test_eye_input_reads_the_openness_and_draws_it_chunk_invariantly_when_not_given():
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(width=0.125, eye_input=True)).eval()
    latents = []
    model.decoder.register_forward_pre_hook(lambda module, args: latents.append(args[0]))
    still, audio = _inputs(batch=2, frames=30, seed=2)
    noise = model.sample_noise(2, 30, generator=torch.Generator().manual_seed(0))
    openness = torch.linspace(0.3, 1.2, 30).repeat(2, 1)
    with torch.no_grad():
        given = model(still, audio, noise=noise, openness=openness)
        open_eyes = model(still, audio, noise=noise, openness=torch.ones(2, 30))
        whole = model(still, audio, noise=noise, generator=torch.Generator().manual_seed(4))
        draw, parts, state = torch.Generator().manual_seed(4), [], None
        for start, stop in [(0, 9), (9, 30)]:
            video, state = model(still, audio[:, start:stop], noise=noise[:, start:stop], state=state,
                                 return_state=True, generator=draw)
            parts.append(video)
    # The decoder's last latent entry is the closure 1 - o_t, for the frames' eyes and then for open eyes
    # (o = 1: closure 0, which adds nothing).
    torch.testing.assert_close(latents[0][:2, :, -1], 1 - openness)
    assert torch.all(latents[0][2:, :, -1] == 0) and torch.all(latents[1][..., -1] == 0)
    drawn = 1 - latents[2][:2, :, -1]
    assert drawn.min() >= 0 and drawn.max() <= model.eye_process.config.max_openness
    # The eyes change the eye region only: everywhere else the frame is the open-eyed one.
    outside = eye_region() == 0
    assert not torch.equal(given, open_eyes)
    assert torch.equal(given[..., outside], open_eyes[..., outside])
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="openness must be 2×30"):
        model(still, audio, openness=torch.ones(2, 29))
    with pytest.raises(ValueError, match="no eye input"):
        Generator(TINY)(still, audio, openness=torch.ones(2, 30))


def test_eye_gain_widens_the_drawn_openness_about_open_eyes_and_leaves_given_openness_alone():
    torch.manual_seed(0)
    plain = Generator(GeneratorConfig(width=0.0625, eye_input=True)).eval()
    widened = Generator(GeneratorConfig(width=0.0625, eye_input=True, eye_gain=1.5)).eval()
    widened.load_state_dict(plain.state_dict())
    closures = {}
    for name, model in (("plain", plain), ("widened", widened)):
        seen = []
        model.decoder.register_forward_pre_hook(lambda module, args, seen=seen: seen.append(args[0][..., -1]))
        still, audio = _inputs(batch=1, frames=40, seed=3)
        noise = model.sample_noise(1, 40, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            model(still, audio, noise=noise, generator=torch.Generator().manual_seed(5))  # drawn
            model(still, audio, noise=noise, openness=torch.full((1, 40), 0.5))  # given
        closures[name] = [c[:1] for c in seen]  # the frames' own eyes (the second half is open eyes)
    drawn = 1 - closures["plain"][0]
    torch.testing.assert_close(1 - closures["widened"][0], (1 + 1.5 * (drawn - 1)).clamp(min=0))
    assert not torch.equal(closures["plain"][0], closures["widened"][0])
    torch.testing.assert_close(closures["widened"][1], closures["plain"][1])  # given: 0.5 both times
    with pytest.raises(ValueError, match="eye_gain"):
        GeneratorConfig(eye_gain=0)


def test_a_set_eye_gain_is_used_and_saved_and_a_bad_one_refused(tmp_path):
    generator = Generator(GeneratorConfig(width=0.0625, eye_input=True))
    generator.set_eye_gain(1.25)
    assert generator.config.eye_gain == 1.25
    generator.save_pretrained(tmp_path / "gain")
    assert Generator.from_pretrained(str(tmp_path / "gain")).config.eye_gain == 1.25
    with pytest.raises(ValueError, match="eye_gain must be > 0"):
        generator.set_eye_gain(0)
    assert generator.config.eye_gain == 1.25  # left as it was
    with pytest.raises(ValueError, match="no eye input"):
        Generator(GeneratorConfig(width=0.0625)).set_eye_gain(1.25)


def test_an_eye_curve_maps_drawn_openness_through_its_knots_and_replaces_the_gain(tmp_path):
    generator = Generator(GeneratorConfig(width=0.0625, eye_input=True, eye_gain=1.25))
    generator.set_eye_curve([0.0, 0.1, 0.6, 1.0])  # knots at drawn openness 0, 1/3, 2/3, 1
    assert generator.config.eye_gain == 1.0 and generator.config.eye_curve == (0.0, 0.1, 0.6, 1.0)
    drawn = torch.tensor([0.0, 1 / 6, 1 / 3, 0.5, 2 / 3, 5 / 6, 1.0, 1.2, -0.1])
    expected = torch.tensor([0.0, 0.05, 0.1, 0.35, 0.6, 0.8, 1.0, 1.2, 0.0])
    torch.testing.assert_close(generator.decode_openness(drawn), expected)
    generator.save_pretrained(tmp_path / "curve")  # a list in config.json, a tuple again when loaded
    loaded = Generator.from_pretrained(str(tmp_path / "curve"))
    assert loaded.config.eye_curve == (0.0, 0.1, 0.6, 1.0)
    torch.testing.assert_close(loaded.decode_openness(drawn), expected)
    generator.set_eye_gain(1.5)  # and a gain replaces the curve
    assert generator.config.eye_curve == () and generator.config.eye_gain == 1.5
    for bad in ([0.5], [0.0, 0.7, 0.6, 1.0], [-0.1, 1.0]):
        with pytest.raises(ValueError, match="eye_curve must be"):
            generator.set_eye_curve(bad)
    with pytest.raises(ValueError, match="replaces eye_gain"):
        GeneratorConfig(eye_input=True, eye_gain=1.25, eye_curve=(0.0, 1.0))
    with pytest.raises(ValueError, match="no eye input"):
        Generator(GeneratorConfig(width=0.0625)).set_eye_curve([0.0, 1.0])


def test_eye_input_generator_saves_its_eye_process_with_it(tmp_path):
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(width=0.0625, eye_input=True))
    model.save_pretrained(tmp_path / "g")
    loaded = Generator.from_pretrained(str(tmp_path / "g"))
    assert loaded.config.eye_input and loaded.eye_process is not None
    assert torch.equal(loaded.eye_process.head.weight, model.eye_process.head.weight)


def test_eye_region_covers_the_canonical_eyes_and_brows_and_fades_out():
    from speech_anim.face import canonical_landmarks

    region = eye_region()
    points = canonical_landmarks()[17:48].round().astype(int)  # brows, nose bridge, eyes
    eyes = [(y, x) for x, y in points if y < 55]
    assert all(region[y, x] == 1 for y, x in eyes)
    assert region[100, 48] == 0 and region[5, 48] == 0 and region[48, 2] == 0  # mouth, hair, cheek edge
    assert 0 < region[31, 48] < 1  # the feather
