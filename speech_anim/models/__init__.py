"""The networks: generator (§3.1), discriminators (§3.2), the SyncNet-style evaluation expert.

All of them save/load through `SafeHubMixin` (config.json + model.safetensors, never pickle).
"""

from .generator import (
    ContentEncoder,
    FrameDecoder,
    Generator,
    GeneratorConfig,
    GeneratorState,
    IdentityEncoder,
    NoiseGenerator,
)
from .hub import SafeHubMixin

# Resolved on first use, so that importing the generator does not import every other network.
_LAZY = {
    "EyeDiscriminator": "discriminators",
    "EyeDiscriminatorConfig": "discriminators",
    "FrameDiscriminator": "discriminators",
    "FrameDiscriminatorConfig": "discriminators",
    "SequenceDiscriminator": "discriminators",
    "SequenceDiscriminatorConfig": "discriminators",
    "SyncDiscriminator": "discriminators",
    "SyncDiscriminatorConfig": "discriminators",
    "SyncNet": "syncnet",
    "SyncNetConfig": "syncnet",
}

__all__ = [
    "SafeHubMixin",
    "Generator",
    "GeneratorConfig",
    "GeneratorState",
    "IdentityEncoder",
    "ContentEncoder",
    "NoiseGenerator",
    "FrameDecoder",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
