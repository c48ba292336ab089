"""Exceptions a person can cause and read: bad files, bad input, broken models."""


class UserFacingError(Exception):
    """An error whose message is written for the user, not the developer.

    Controllers show the message as is; the command line prints ``path: message`` and exits 1.
    """


class UnreadableFileError(UserFacingError):
    """A file that cannot be read as what it claims to be (corrupt, truncated, wrong type)."""


class UnsafeArchiveError(UnreadableFileError):
    """An archive refused for safety: path traversal, zip bomb, too many members."""


class ModelError(UserFacingError):
    """A shipped model is missing, tampered with, or cannot run."""
