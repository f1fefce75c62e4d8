"""Errors a user can act on.

Every failure caused by input (a photo without a face, an unreadable audio file, a checkpoint with
missing files) raises a subclass of `SpeechAnimError` whose message is one line that names the
problem and says what to do. The CLI and the app print that line instead of a traceback.
"""


class SpeechAnimError(Exception):
    """Base class for errors caused by user input or setup, never by a bug."""


class AudioError(SpeechAnimError, ValueError):
    """Audio missing, unreadable, empty or too short."""


class ImageError(SpeechAnimError, ValueError):
    """The file is not a readable image."""


class FaceError(SpeechAnimError, ValueError):
    """No usable face in the image."""


class CheckpointError(SpeechAnimError, ValueError):
    """A checkpoint is missing files, unsafe to load, or does not match its config."""


class VideoError(SpeechAnimError, ValueError):
    """A video file is missing, unreadable or has no frames."""


class DeviceError(SpeechAnimError, ValueError):
    """The device asked for does not exist or this PyTorch cannot use it."""


class SeedError(SpeechAnimError, ValueError):
    """The seed is not a whole number in the range the random generators take."""
