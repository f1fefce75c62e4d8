"""Training settings: one flat dataclass, read from a YAML file and overridden by `key=value` arguments.

    python train/train.py --config train/configs/tiny.yaml batch_size=4 lr_g=2e-4 ablations=[no-seq]

Values of overrides are parsed as YAML (`4` -> int, `2e-4` -> float, `null` -> None, `[a, b]` -> list)
and checked against the field's type, so a typo fails before anything is built.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from speech_anim.data.datasets import AUGMENTATION_LIMITS, augmentation_problem
from speech_anim.errors import SpeechAnimError
from speech_anim.losses import ABLATIONS
from speech_anim.models.generator import OUTPUTS as G_OUTPUTS


class ConfigError(SpeechAnimError, ValueError):
    """A training config file or override is missing, malformed or holds an invalid value."""


@dataclass
class TrainConfig:
    # ---- run
    name: str = "tiny"  # the run folder is runs/<name> unless run_dir is given
    run_dir: str | None = None
    seed: int = 0
    mixed_precision: str = "no"  # "no" (fp32) or "bf16"
    tracker: str = "tensorboard"  # Accelerate tracker beside metrics.csv; "none" for the CSV only
    threads: int = 0  # torch CPU threads per process (0: torch's default); 1 on a busy shared machine

    # ---- data (the output of `speech-anim preprocess`)
    data: str = "../data_cache/grid"
    train_split: str | list[str] = "train"  # a split name, a .txt list, "all", or a list of clip ids
    val_split: str | list[str] = "val"
    frames: int | None = 16  # random sub-sequences of this many frames; None = whole clips
    mirror: bool = False
    colour_jitter: float = 0.0  # not in the paper: one random colour map per clip and its still (datasets.jitter_colours)
    geometry_jitter: float = 0.0  # not in the paper: one random scale and shift per clip and its still (datasets.jitter_geometry)
    mouth_jitter: float = 0.0  # not in the paper: the lower face moved by up to this many pixels against the eyes (datasets.shift_mouth)
    voice_warp: float = 0.0  # not in the paper: each clip's audio windows played at a random rate in [1/(1+v), 1+v] (audio.warped_windows)
    # Not in the paper: draw clip c with weight n_speaker(c)^-speaker_balance, so that 0 draws clips
    # uniformly and 1 every speaker equally often. Ours has 789 s1 clips beside 49 of s4 and 10 of s26.
    speaker_balance: float = 0.0
    batch_size: int = 2  # per process
    num_workers: int = 0
    val_clips: int = 0  # validate on the first N clips of val_split (0 = all of them)
    sample_clips: int = 3  # fixed validation clips shown in the generated-vs-real strips
    val_metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim"])  # from speech_anim.metrics
    early_stop_metric: str = "val/sync_rank_fake"  # higher is better; without D_sync: -val/l1_lower

    # ---- models: `width` scales every conv channel count (1.0 = paper)
    g_width: float = 1.0
    d_width: float = 1.0
    audio_gru_layers: int = 1
    g_output: str = "frame"  # "frame" (paper) or "blend": decoded frame blended over the still by a learnt mask
    eye_input: bool = False  # not in the paper: the decoder reads the eye openness (models/eye_process.py)
    eye_process: str | None = None  # a fitted EyeProcess (train/fit_eye_process.py), copied into the generator
    init_generator: str | None = None  # start G from this save_pretrained folder (new inputs at zero weight)
    # Not in the paper: a fitted MouthMotion (train/fit_mouth_motion.py --out, or a generator that has one),
    # copied into G and frozen, so that the decoder learns over the still whose mouth it moves
    # (GeneratorConfig.mouth_motion).
    mouth_motion: str | None = None
    rest_still: bool = False  # stills from each clip's opening silence (datasets.REST_FRAMES); mouth_motion needs it
    # Not in the paper: where the real clips' eye openness (what an eye_input decoder is given) is read:
    # "landmarks", the tracked ones preprocessing stored, or "frames", off the crops as the evaluation
    # reads blinks (datasets.frame_openness; about 0.5 s a clip once, then cached beside the clips).
    openness: str = "landmarks"
    # Not in the paper: validate, sample and export an exponential moving average of G's weights,
    # updated after every step with this decay (0.999: about the last 1000 steps). 0 = off. GAN
    # generators swing from one checkpoint to the next (ours: blinks 6-46 of 50 within 300 steps);
    # the average is what stylegan2-ada-pytorch and most GANs since ship.
    g_ema: float = 0.0
    eyes_only: bool = False  # train only G's eye maps (eye_input); the other weights stay (BatchNorm statistics still update)

    # ---- objective (Eq. 7) and Table 5's ablations
    lambda_img: float = 1.0
    lambda_sync: float = 0.8
    lambda_seq: float = 0.2
    lambda_rec: float = 600.0
    lambda_div: float = 0.0  # not in the paper: losses.upper_half_noise_diversity (0 = off)
    div_eps: float = 0.05  # its softening: the gradient is at most 1/div_eps^2
    lambda_silent: float = 0.0  # not in the paper: losses.silent_mouth_l1 on a quiet-room pass (0 = off)
    lambda_eye: float = 0.0  # not in the paper: the eye discriminator D_eye, losses.g_eye_loss (0 = off)
    lambda_blend: float = 0.0  # not in the paper: losses.blend_mask_l1, for g_output=blend (0 = off)
    blend_free_features: bool = False  # lambda_blend spares the eyes, brows, mouth and chin (losses.outside_features_weight)
    lambda_eye_audio: float = 0.0  # not in the paper: losses.eye_audio_invariance_l1 (0 = off)
    lambda_texture: float = 0.0  # not in the paper: losses.upper_half_texture_excess (0 = off)
    lambda_decoded: float = 0.0  # not in the paper: losses.decoded_frame_l1, for g_output=blend (0 = off)
    lambda_eye_rec: float = 0.0  # not in the paper: losses.eye_band_l1, for eye_input (0 = off)
    eye_rec_closure: float = 0.0  # its frames weigh 1 + eye_rec_closure * (1 - real openness): blinks count more
    ablations: list[str] = field(default_factory=list)  # any of no-adv, no-l1, no-img, no-sync, no-seq

    # ---- optimisation (paper §3.3)
    lr_g: float = 1e-4
    lr_img: float = 1e-4
    lr_seq: float = 1e-5
    lr_sync: float = 1e-5
    lr_eye: float = 1e-4  # ours, no paper value
    # The paper gives no Adam betas. beta1 = 0.5 (DCGAN's choice for GANs) instead of 0.9: with less
    # momentum each player follows the other's latest update rather than a stale average, which damps
    # the oscillations of alternating updates; beta2 keeps Adam's default.
    beta1: float = 0.5
    beta2: float = 0.999
    decay_every: int = 10  # epochs
    g_decay: float = 0.02  # the generator's learning rate shrinks by 2 % every `decay_every` epochs
    d_decay: float = 0.10  # the discriminators' by 10 %
    grad_accum: int = 1
    epochs: int = 1000
    max_steps: int | None = None  # stop after this many optimisation steps (None: epochs / early stopping)
    patience: int = 5  # epochs without a better validation score before stopping

    # ---- bookkeeping (in steps)
    log_every: int = 10
    sample_every: int = 500
    save_every: int = 500
    keep_last: int = 3

    def __post_init__(self):
        unknown = [a for a in self.ablations if a not in ABLATIONS or a == "full"]
        if unknown:
            raise ConfigError(f"unknown ablation {unknown[0]!r}: use any of no-adv, no-l1, no-img, no-sync, no-seq")
        if self.mixed_precision not in ("no", "bf16"):
            raise ConfigError(f"mixed_precision must be no (fp32) or bf16, got {self.mixed_precision!r}")
        if self.frames is not None and self.frames < 5:
            raise ConfigError(f"frames={self.frames} is shorter than a sync snippet: use at least 5 (or null for whole clips)")
        if not 0 <= self.g_ema < 1:
            raise ConfigError(f"g_ema is the moving average's decay per step: between 0 (off) and 1 (e.g. 0.999), got {self.g_ema}")
        if not 0 <= self.speaker_balance <= 1:
            raise ConfigError(f"speaker_balance must be between 0 (clips drawn uniformly) and 1 (speakers equally often), got {self.speaker_balance}")
        problem = augmentation_problem(**{name: getattr(self, name) for name in AUGMENTATION_LIMITS})
        if problem:
            raise ConfigError(problem)
        if self.g_output not in G_OUTPUTS:
            raise ConfigError(f"g_output must be one of {', '.join(G_OUTPUTS)} (frame is the paper's), got {self.g_output!r}")
        if self.lambda_blend > 0 and self.g_output != "blend":
            raise ConfigError(f"lambda_blend penalises the blend mask, which g_output={self.g_output!r} has not: use g_output=blend or lambda_blend=0")
        if self.openness not in ("landmarks", "frames"):
            raise ConfigError(f"openness must be landmarks or frames (where the real eyes' openness is read), got {self.openness!r}")
        if self.mouth_motion and not self.rest_still:
            raise ConfigError("mouth_motion moves the still's mouth from rest: set rest_still=true so that stills "
                              "come from the clips' opening silence")
        if self.mouth_motion and self.g_output != "blend":
            raise ConfigError(f"mouth_motion moves the still that the blend lets through, and g_output={self.g_output!r} "
                              "has none: use g_output=blend or mouth_motion=null")
        if self.lambda_decoded > 0 and self.g_output != "blend":
            raise ConfigError(f"lambda_decoded ties the blend's decoded frame to the real one, and g_output={self.g_output!r} "
                              "has none: use g_output=blend or lambda_decoded=0")
        if self.eye_rec_closure < 0:
            raise ConfigError(f"eye_rec_closure weighs the closing frames of eye_band_l1: use 0 (off) or more, got {self.eye_rec_closure}")
        if self.lambda_eye_rec > 0 and not self.eye_input:
            raise ConfigError("lambda_eye_rec compares eyes drawn from the real openness, which needs eye_input=true")
        if self.eyes_only and not self.eye_input:
            raise ConfigError("eyes_only trains the generator's eye maps, which need eye_input=true")
        if self.eye_input and not (self.eye_process or self.init_generator):
            raise ConfigError("eye_input needs a fitted eye process: run train/fit_eye_process.py and pass "
                              "eye_process=<its --out folder> (or init_generator=<a generator that has one>)")
        if self.blend_free_features and not self.lambda_blend > 0:
            raise ConfigError("blend_free_features shapes the lambda_blend penalty, which is off: set lambda_blend > 0 or drop blend_free_features")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = torch's default), got {self.threads}")
        for name in ("batch_size", "grad_accum", "epochs", "decay_every", "log_every", "sample_every",
                     "save_every", "keep_last", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("g_width", "d_width", "lr_g", "lr_img", "lr_seq", "lr_sync", "lr_eye", "div_eps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not (0 <= self.g_decay < 1 and 0 <= self.d_decay < 1):
            raise ConfigError(f"g_decay and d_decay are fractions in [0, 1), got {self.g_decay} and {self.d_decay}")

    @property
    def path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


def load_config(path: str | None, overrides: list[str] = (), ablations: list[str] = ()) -> TrainConfig:
    """The config in YAML file `path` (None: the defaults), with `key=value` overrides and ablation
    switches (e.g. "no-seq") added on top."""
    values = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found: pass one of train/configs/*.yaml") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML ({str(error).splitlines()[0]}): fix the file") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold a mapping of settings (key: value lines)")
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. batch_size=4)")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            values[key.strip()] = text
    types_ = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for key, value in values.items():
        if key not in types_:
            raise ConfigError(f"unknown setting {key!r}: see the fields of TrainConfig in train/config.py")
        values[key] = _coerce(key, value, types_[key])
    values["ablations"] = sorted(set(values.get("ablations", [])) | set(ablations))
    return TrainConfig(**values)


def _coerce(key: str, value, annotation):
    """`value` as the field's type: ints and numeric strings are accepted for floats, a lone string for
    a list of strings."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for option in options:
        if option is type(None) and value is None:
            return None
        origin = typing.get_origin(option)
        if origin is list and isinstance(value, (list, str)):
            return [str(v) for v in value] if isinstance(value, list) else [value]
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if option in (int, str, bool) and type(value) is option:
            return value
    expected = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    raise ConfigError(f"{key}={value!r} has the wrong type: expected {expected}")
