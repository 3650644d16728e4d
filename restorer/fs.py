"""File safety: write a file or a folder so that it appears whole or not at all, and refuse an existing output.

Everything restorer writes goes to a temporary sibling named by :func:`partial_name`,
``.STEM.partial-PID-TOKEN.SUFFIX`` (the suffix kept, so writers that read the format from it still
do), and is renamed over the final name only when complete; a file is fsync'ed first. That is the
one scheme: :func:`stale_partials` finds what a killed writer left, and a job removes those of its
output when it takes the output's lock.

- :func:`atomic_path` yields the temporary path for a writer that wants a path;
- :func:`open_atomic` yields an open file; :func:`write_text_atomic`, :func:`write_json_atomic`;
- :func:`atomic_folder` yields a temporary folder that replaces the final one when complete
  (checkpoints, exported models);
- :func:`refuse_existing` raises the one "output exists" error, naming ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

from restorer.errors import OutputError


def partial_name(final: Path) -> Path:
    """A fresh temporary sibling of ``final``; keeps the suffix so writers infer the format.

    Unique per call (the process id and a random token), also across machines sharing a folder.
    """
    final = Path(final)
    return final.with_name(f".{final.stem}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}{final.suffix}")


def stale_partials(final: Path) -> list[Path]:
    """The temporary siblings of ``final`` that :func:`partial_name` names, files or folders.

    Only the caller knows whether their writers are gone (a job holds its output's lock).
    """
    final = Path(final)
    ours = re.compile(rf"\.{re.escape(final.stem)}\.partial-\d+-[0-9a-f]+{re.escape(final.suffix)}")
    if not final.parent.is_dir():
        return []
    return sorted(p for p in final.parent.iterdir() if ours.fullmatch(p.name))


def fsync_file(path: Path) -> None:
    """Flush a written file to the disk (nothing for a path that is not a file)."""
    if Path(path).is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def replace_synced(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` to the disk and rename it over ``final``."""
    fsync_file(tmp)
    os.replace(tmp, final)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place only on success."""
    final = Path(final)
    tmp = partial_name(final)
    try:
        yield tmp
        replace_synced(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def open_atomic(final: Path, mode: str = "wb", *, sync: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``final`` for writing; it becomes ``final`` only when complete.

    ``sync=False`` skips the fsync (files that can be made again, such as mask PNGs).

    Raises:
        OutputError: the folder cannot be written.
    """
    final = Path(final)
    tmp = partial_name(final)
    try:
        f = open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    except OSError as exc:
        raise OutputError(f"cannot write here: {exc.strerror or exc}", path=final,
                          hint="check that the folder exists and is writable") from None
    try:
        with f:
            yield f
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, *, sync: bool = True) -> None:
    with open_atomic(path, "w", sync=sync) as f:
        f.write(text)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``final``; when the block succeeds it replaces ``final``.

    One writer per folder: the temporary folders a killed writer of ``final`` left are removed first.
    On an exception the temporary folder is removed and ``final`` is left as it was.
    """
    final = Path(final)
    for stale in stale_partials(final):
        _remove(stale)
    tmp = partial_name(final)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = None
        if final.exists():
            old = partial_name(final)
            os.rename(final, old)  # set aside, so that final is missing only between two renames
        os.rename(tmp, final)
        if old is not None:
            _remove(old)
    finally:
        if tmp.exists():
            _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def refuse_existing(path: Path, *, overwrite: bool = False, instead: str | None = None) -> None:
    """The one refusal of an existing output: raise when ``path`` exists and ``overwrite`` is False.

    ``instead`` is the other way out, added to the hint ("choose another output folder").

    Raises:
        OutputError: "PATH: output exists — pass --overwrite to replace it[, or INSTEAD]".
    """
    if overwrite or not Path(path).exists():
        return
    hint = "pass --overwrite to replace it" + (f", or {instead}" if instead else "")
    raise OutputError("output exists", path=path, hint=hint)
