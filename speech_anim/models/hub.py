"""Safe save/load for every model: config.json + model.safetensors + a model card, never pickle.

`SafeHubMixin` is `huggingface_hub.PyTorchModelHubMixin` with the loading side made strict:

- checkpoints are resolved (local directory or Hub repo id) before anything is built, and a missing
  `config.json` / `model.safetensors` raises `CheckpointError` naming the file;
- a checkpoint that only holds pickle files (`pytorch_model.bin`, `*.pt`, ...) is refused and never
  unpickled: `torch.load` can run arbitrary code;
- weights whose keys or shapes do not fit the model built from `config.json` raise `CheckpointError`
  instead of a multi-page `load_state_dict` traceback;
- weights may be stored in fp16 (`save_pretrained(dir, dtype=torch.float16)` halves the file) and are
  cast to the model's dtype on load.

Usage: `class Generator(nn.Module, SafeHubMixin): def __init__(self, config: GeneratorConfig = ...)`.
"""

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download, list_repo_files
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, SpeechAnimError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
PAPER_URL = "https://arxiv.org/abs/1906.06337"

MODEL_CARD = """---
{{ card_data }}
---

# speech_anim {{ model_class }}

`{{ model_class }}` of `speech_anim`, a re-implementation of
"Realistic Speech-Driven Facial Animation with GANs" (Vougioukas, Petridis & Pantic, IJCV 2019,
[paper]({{ paper_url }})): one still face photo + speech -> a talking-head video.

```python
from speech_anim.models import {{ model_class }}
model = {{ model_class }}.from_pretrained("<this directory or repo id>")
```

Weights are stored as safetensors ({{ weights_dtype }}); pickle checkpoints are refused.

Config:

```json
{{ config_json }}
```
"""


class SafeHubMixin(
    PyTorchModelHubMixin,
    library_name="speech_anim",
    paper_url=PAPER_URL,
    license="mit",
    tags=["talking-head", "speech-driven-facial-animation", "gan"],
    model_card_template=MODEL_CARD,
):
    """Hub mixin for all speech_anim models: safetensors only, one-line errors, optional fp16 files."""

    _save_dtype: torch.dtype | None = None

    def save_pretrained(self, save_directory, *, dtype: torch.dtype | None = None, **kwargs):
        """Write config.json, model.safetensors (floats cast to `dtype` when given) and README.md."""
        outer = self._save_dtype  # push_to_hub(...) calls save_pretrained again: keep the dtype
        self._save_dtype = dtype if dtype is not None else outer
        try:
            return super().save_pretrained(save_directory, **kwargs)
        finally:
            self._save_dtype = outer

    def _save_pretrained(self, save_directory: Path) -> None:
        dtype = self._save_dtype
        state = {}
        for name, tensor in self.state_dict().items():
            tensor = tensor.detach()
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            state[name] = tensor.cpu().contiguous()
        save_file(state, str(Path(save_directory) / WEIGHTS_NAME), metadata={"format": "pt"})

    def generate_model_card(self, *args, **kwargs):
        config = self._hub_mixin_config
        config = asdict(config) if is_dataclass(config) else (config or {})
        kwargs.setdefault("model_class", type(self).__name__)
        kwargs.setdefault("config_json", json.dumps(config, indent=2, sort_keys=True))
        kwargs.setdefault("weights_dtype", str(self._save_dtype or "float32").replace("torch.", ""))
        return super().generate_model_card(*args, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        strict: bool = True,
        map_location: str | torch.device = "cpu",
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        token: str | bool | None = None,
        local_files_only: bool = False,
        **model_kwargs,
    ):
        """Build the model from a checkpoint directory or Hub repo id (config.json + model.safetensors).

        `strict=True` requires the file to hold exactly the model's tensors; shapes must always match.
        """
        download = dict(revision=revision, cache_dir=cache_dir, force_download=force_download,
                        token=token, local_files_only=local_files_only)
        directory = _resolve_checkpoint(str(pretrained_model_name_or_path), download)
        # Everything below is local: the parent reads config.json, then calls `_from_pretrained`.
        try:
            return super().from_pretrained(directory, strict=strict, map_location=map_location, **model_kwargs)
        except SpeechAnimError:
            raise
        except (TypeError, ValueError) as error:  # bad JSON, unknown or invalid config values
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(
                f"{os.path.join(directory, CONFIG_NAME)} does not describe a valid {cls.__name__} ({message}); "
                f"re-save the checkpoint with this version of speech_anim"
            ) from None

    @classmethod
    def _from_pretrained(cls, *, model_id: str, strict: bool = True, map_location="cpu",
                         revision=None, cache_dir=None, force_download=False, local_files_only=False,
                         token=None, **model_kwargs):
        model = cls(**model_kwargs)
        load_weights(model, os.path.join(model_id, WEIGHTS_NAME), strict=strict)
        return model.to(map_location).eval()


def load_weights(model: torch.nn.Module, path: str, strict: bool = True) -> None:
    """Load a safetensors file into `model`, casting floats (e.g. fp16 files) to the model's dtypes."""
    try:
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error}); re-download or re-save it") from None
    expected = model.state_dict()
    wrong_shape = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    problems = []
    if wrong_shape:
        k = sorted(wrong_shape)[0]
        problems.append(f"{len(wrong_shape)} tensors differ in shape, e.g. {k} {tuple(state[k].shape)} "
                        f"in the file vs {tuple(expected[k].shape)} in the model")
    if strict and missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    if problems:
        raise CheckpointError(
            f"{path}: weights do not match config.json ({'; '.join(problems)}): the checkpoint was saved "
            f"from a different model size; keep the config.json that was saved with these weights"
        )
    state = {k: v.to(expected[k].dtype) if k in expected and v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=strict)


def _is_pickle(filename: str) -> bool:
    return filename.lower().endswith(PICKLE_SUFFIXES)


def _pickle_error(where: str) -> CheckpointError:
    return CheckpointError(
        f"{where} is a pickle checkpoint; convert it to safetensors (load it once in a trusted session and "
        f"call save_pretrained) - pickle files are never loaded because they can run arbitrary code"
    )


def _resolve_checkpoint(model_id: str, download: dict) -> str:
    """Local directory holding config.json and model.safetensors of `model_id`, or CheckpointError."""
    if os.path.isfile(model_id):
        if _is_pickle(model_id):
            raise _pickle_error(model_id)
        raise CheckpointError(f"{model_id} is a file; pass the directory holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    if os.path.isdir(model_id):
        files = os.listdir(model_id)
        if WEIGHTS_NAME not in files and any(_is_pickle(f) for f in files):
            raise _pickle_error(model_id)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if name not in files:
                raise CheckpointError(f"{model_id} has no {name}; a checkpoint needs {CONFIG_NAME} and {WEIGHTS_NAME} (save it with save_pretrained)")
        return model_id

    weights = _download(model_id, WEIGHTS_NAME, download)
    if weights is None:
        try:
            if any(_is_pickle(f) for f in list_repo_files(model_id, revision=download["revision"], token=download["token"])):
                raise _pickle_error(f"Hub repo {model_id}")
        except (HfHubHTTPError, OfflineModeIsEnabled, OSError):
            pass  # only used to choose the better message
        raise CheckpointError(f"Hub repo {model_id} has no {WEIGHTS_NAME}; a checkpoint needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    if _download(model_id, CONFIG_NAME, download) is None:
        raise CheckpointError(f"Hub repo {model_id} has no {CONFIG_NAME}; a checkpoint needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    # Both files of one revision live in the same snapshot folder.
    return os.path.dirname(weights)


def _download(repo_id: str, filename: str, download: dict) -> str | None:
    """Cached path of `filename` from a Hub repo; None when the repo has no such file."""
    try:
        return hf_hub_download(repo_id=repo_id, filename=filename, **download)
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{repo_id}: {filename} is not in the local Hugging Face cache and the Hub cannot be reached "
            f"(offline?); connect to the internet once or pass a local checkpoint directory"
        ) from None
    except EntryNotFoundError:
        return None
    except HFValidationError:
        raise CheckpointError(f"{repo_id} is neither an existing directory nor a valid Hub repo id; check the path") from None
    except (HfHubHTTPError, OfflineModeIsEnabled) as error:
        raise CheckpointError(
            f"cannot download {filename} from Hub repo {repo_id} ({type(error).__name__}); "
            f"check the repo id, your token and network, or pass a local checkpoint directory"
        ) from None
