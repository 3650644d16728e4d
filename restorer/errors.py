"""The exceptions users see.

Every error a user can cause is a :class:`RestorerError` whose message is one line
naming the file, the problem and the fix. The CLI prints it and exits with its
``exit_code``; ``RESTORER_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

from pathlib import Path


class RestorerError(Exception):
    """Base class. ``exit_code`` 2 is bad usage or bad input, 1 a failure while running."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        self.path = None if path is None else str(path)
        self.problem = message
        self.hint = hint
        parts = [f"{self.path}: {message}" if self.path else message]
        if hint:
            parts.append(hint)
        super().__init__(" — ".join(parts))


class InputError(RestorerError):
    """Unreadable, missing or malformed input."""

    exit_code = 2


class ShotsError(InputError):
    """A shots.yaml that does not parse or does not fit its film. ``line`` points into the file."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 hint: str | None = None):
        self.line = line
        shown = None if path is None else (f"{path}:{line}" if line else str(path))
        super().__init__(message, path=shown, hint=hint)


class OutputError(RestorerError):
    """An output that may not be written: exists, is the input, folder not writable."""

    exit_code = 2


class DamagedInputError(InputError):
    """Raised under ``--strict`` when the input decodes only in part."""


class WeightsError(RestorerError):
    """Model weights missing or mismatched; says where it looked and how to supply them."""

    exit_code = 2


class JobLockedError(RestorerError):
    """Another live run holds the job's lock."""

    exit_code = 2


class BackendError(RestorerError):
    """The Ray backend cannot run: Ray is not installed, the cluster cannot be reached, or a unit of work
    failed on its workers twice (the finished units stay recorded: the same command resumes)."""

    exit_code = 2
