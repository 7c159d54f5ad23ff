"""User-facing errors.

Every error a user can cause (bad file, bad config, bad argument, wrong checkpoint) is a `VidsegError`.
The CLI prints such an error as one line on stderr and exits with code 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class VidsegError(Exception):
    """Base class of errors caused by user input."""


class ConfigError(VidsegError):
    """A config file, preset or override is invalid (unknown key, wrong type, bad value)."""


class DataFormatError(VidsegError):
    """A data file is missing, empty, corrupt, unsupported or inconsistent.

    The message always names the file and, where known, the field.
    """

    def __init__(self, path: str | Path | None, message: str, field: str | None = None):
        self.path = None if path is None else str(path)
        self.field = field
        self.reason = message
        where = self.path or "<input>"
        if field:
            where = f"{where}: {field}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # DataLoader workers send errors between processes by pickling them
        return (type(self), (self.path, self.reason, self.field))


class CheckpointError(VidsegError):
    """A checkpoint cannot be loaded: wrong stage, wrong shapes, corrupt or unsafe file."""
