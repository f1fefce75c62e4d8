"""speech_anim: one still photo + speech -> a talking-head video.

A re-implementation of "Realistic Speech-Driven Facial Animation with GANs"
(Vougioukas, Petridis & Pantic, IJCV 2019).
"""

__version__ = "0.1.0"

__all__ = ["Animator", "AnimationResult", "__version__"]


def __getattr__(name):
    # Import lazily so that `import speech_anim` (e.g. for `speech_anim.audio`) stays light.
    if name in ("Animator", "AnimationResult"):
        from . import animator

        return getattr(animator, name)
    raise AttributeError(f"module 'speech_anim' has no attribute {name!r}")
