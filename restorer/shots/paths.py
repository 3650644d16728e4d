"""Paths a shots file names: the sidecar beside a photo or film, and the rule that keeps a ``mask:`` (or a preset's,
or a dataset record's path) inside its own file's folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from restorer.shots.schema import ShotsFile


def find_sidecar(image_path: str | Path) -> Path | None:
    """The shots file beside a photo or film: ``x.shots.yaml`` (or ``.yml``) for ``x.jpg``, if present."""
    image_path = Path(image_path)
    for suffix in (".shots.yaml", ".shots.yml"):
        candidate = image_path.with_name(image_path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


class UnsafePath(ValueError):
    """A path named inside a file that does not stay inside that file's folder (or is not there).

    ``problem`` reads after the quoted name: "mask '../x.png' <problem>". ``missing`` is True when the
    path is fine but nothing is there yet.
    """

    def __init__(self, problem: str, *, missing: bool = False):
        super().__init__(problem)
        self.problem = problem
        self.missing = missing


def contained_path(folder: str | Path, name: Any, *, kind: Literal["file", "dir"] = "file",
                   what: str = "the file's folder", must_exist: bool = True) -> Path:
    """``name`` (from an untrusted file) as a real path inside ``folder``, or :class:`UnsafePath`.

    The rule for every path a shots file, a preset YAML or a dataset record holds: a non-empty
    relative path that resolves, every symlink followed, to something inside ``folder`` (itself
    resolved); a regular file for ``kind="file"`` (never a folder, device or FIFO), a folder for
    ``kind="dir"``. Nothing is opened or read, only ``stat``-ed. With ``must_exist=False`` a path
    with nothing behind it passes (the caller reports it later, when it needs the file); a dangling
    symlink is judged by where it points.

    Returns:
        The resolved path, with no symlinks left in it: read that one, not ``folder / name``.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnsafePath("is not a path (write a file name)")
    if "\x00" in name:
        raise UnsafePath("holds a NUL character")
    if Path(name).is_absolute():
        raise UnsafePath(f"is an absolute path; it must be relative to {what}")
    root = Path(folder).resolve()
    try:
        target = (root / name).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise UnsafePath("cannot be resolved (a symlink loop?)") from None
    if target != root and not target.is_relative_to(root):
        named_outside = not Path(os.path.normpath(root / name)).is_relative_to(root)  # or only a symlink leads out
        raise UnsafePath(f"is outside {what}" if named_outside else f"is a symlink that leads outside {what}")
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        if must_exist:
            raise UnsafePath(f"not found in {what} (looked for {target})", missing=True) from None
        return target
    except OSError as exc:
        raise UnsafePath(f"cannot be checked: {exc.strerror or exc}") from None
    if kind == "file" and stat.S_ISDIR(mode):
        raise UnsafePath("is a folder, not a file")
    if kind == "file" and not stat.S_ISREG(mode):
        raise UnsafePath("is not a regular file")
    if kind == "dir" and not stat.S_ISDIR(mode):
        raise UnsafePath("is not a folder")
    return target


def shots_folder(shots: ShotsFile | None) -> Path:
    """The folder a shots file's ``mask:`` paths are relative to (the current one for no file)."""
    return shots.source.parent if shots is not None and shots.source is not None else Path.cwd()


MASK_FIX = "copy the mask beside the shots file and name it relatively (e.g. mask: masks/car.png)"
