"""Job folders, resume and locking (the atomic writes they use are :mod:`restorer.fs`'s).

A job is the work of one output. Its folder sits beside the output, hidden
(``.NAME.restorer-job/``), and holds:

- ``manifest.json`` — the fingerprint of the input and of every setting that changes
  the result. A rerun with the same fingerprint resumes; a different one starts over.
- ``lock`` — held with ``flock`` while a run is alive. The kernel releases it when the
  process dies (SIGKILL included), so a lock left by a killed run is simply taken over.
- units of work (segments of a film, photos of a folder), each written under a
  temporary name and renamed when complete, then recorded in a small JSON sidecar
  written the same way. A unit whose sidecar exists is finished.

The output itself is written to a temporary name in its destination folder and
renamed when complete (:func:`restorer.fs.partial_name`): nothing ever appears under the
final name half-written. Taking the lock removes the temporary files a killed run left.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from restorer.errors import InputError, JobLockedError, OutputError
from restorer.fs import refuse_existing, stale_partials, write_json_atomic

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


def input_fingerprint(path: Path) -> dict[str, Any]:
    """Size, mtime and a hash of the first and last MiB: cheap, and catches a replaced file."""
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": h.hexdigest()}


def tree_fingerprint(path: Path | None) -> Any:
    """What a file or folder the result depends on (weights, masks) looks like now, cheaply.

    A file: :func:`input_fingerprint`. A folder: a hash of every file's relative path, size and
    mtime (weights can be gigabytes; a replaced or retrained file changes size or mtime). None
    for no path, "missing" for a path that does not exist.

    Only for paths the user chose (``--weights``, ``--sam2``, environment variables): it walks
    whatever folder it is given. Paths named inside a file (a shots file's masks) go through
    :func:`notes_fingerprint`, which checks them first and never walks a folder.
    """
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return input_fingerprint(path)
    if not path.is_dir():
        return "missing"
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(path).as_posix()} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def notes_fingerprint(path: Path | None) -> dict[str, Any] | None:
    """A shots.yaml's text and the mask PNGs it names (relative to it), so editing either counts.

    The file is untrusted (a sidecar from someone else's drop folder): a mask is hashed only when its
    path passes :func:`restorer.shots.paths.contained_path`, a regular file inside the shots file's folder.
    Any other ``mask:`` is recorded as ``"refused"`` (or ``"missing"``) without reading or walking
    anything; the shots loader then refuses the file with its line. Never a folder, never
    :func:`tree_fingerprint`.
    """
    if path is None or not Path(path).is_file():
        return None
    import yaml

    from restorer.shots.paths import UnsafePath, contained_path

    text = Path(path).read_text(encoding="utf-8", errors="replace")
    masks: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "mask" and isinstance(value, str):
                    masks.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    try:
        walk(yaml.safe_load(text))
    except yaml.YAMLError:
        pass  # the shots loader reports it, with its line
    base = Path(path).parent

    def mask_print(name: str) -> Any:
        try:
            return input_fingerprint(contained_path(base, name, what="the shots file's folder"))
        except UnsafePath as exc:
            return "missing" if exc.missing else "refused"
        except OSError:  # unreadable: the shots loader says so
            return "unreadable"

    return {"text": text, "masks": {m: mask_print(m) for m in sorted(masks)}}


def settings_fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_output(output: Path, inputs: list[Path], *, overwrite: bool, is_dir: bool = False) -> None:
    """Refuse outputs that would destroy the user's files or cannot be written.

    Raises:
        OutputError: the output is an input, exists without ``overwrite``, or its
            folder cannot be written.
    """
    resolved = output.resolve()
    for src in inputs:
        src_r = src.resolve()
        if resolved == src_r or (src.is_dir() and resolved.is_relative_to(src_r) and not is_dir):
            raise OutputError("the output would overwrite an input", path=output,
                              hint="choose an output path outside the inputs")
        if is_dir and src.is_dir() and (resolved == src_r or resolved.is_relative_to(src_r)):
            raise OutputError("the output folder is inside the input folder", path=output,
                              hint="choose an output folder outside the inputs")
    if not is_dir:
        refuse_existing(output, overwrite=overwrite)
    folder = output if is_dir else output.parent
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not _can_create_in(existing):
        raise OutputError(f"output folder {existing} is not writable", path=output,
                          hint="choose a folder you can write to, or fix its permissions")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, found by creating (and removing) one.

    ``os.access`` alone is not enough: it says yes to root for any mode bits, and knows
    nothing of read-only mounts or pseudo file systems such as /proc and /sys.
    """
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        fd, name = tempfile.mkstemp(prefix=".restorer-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


class Job:
    """The job folder of one output; use as a context manager to hold its lock."""

    def __init__(self, output: Path, fingerprint: dict[str, Any]):
        self.output = output
        self.folder = output.parent / f".{output.name}.restorer-job"
        self.fingerprint = fingerprint
        self._lock_fd: int | None = None
        self.resumed = False

    def __enter__(self) -> "Job":
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock()
        self._remove_stale_partials()
        manifest = self.folder / "manifest.json"
        previous = self._read_manifest(manifest)
        if previous is not None and previous.get("fingerprint") == self.fingerprint:
            self.resumed = True
        else:
            if previous is not None:
                log.warning("%s: settings or input changed since the interrupted run; starting over",
                            self.output)
            self._clear()
            write_json_atomic(manifest, {"version": MANIFEST_VERSION, "fingerprint": self.fingerprint})
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _lock(self) -> None:
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JobLockedError("another restorer run is working on this output", path=self.output,
                                 hint="wait for it to finish, or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _remove_stale_partials(self) -> None:
        """Temporary outputs of a killed run (we hold the lock, so no live run owns them)."""
        for stale in stale_partials(self.output):
            if stale.is_file():
                log.debug("removing %s, left by an interrupted run", stale)
                stale.unlink(missing_ok=True)

    @staticmethod
    def _read_manifest(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _clear(self) -> None:
        for child in self.folder.iterdir():
            if child.name == "lock":
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()

    def path(self, name: str) -> Path:
        p = self.folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def unit_done(self, name: str) -> dict[str, Any] | None:
        """The record of a finished unit of work, or None if it must be (re)done."""
        return self._read_manifest(self.folder / f"{name}.done.json")

    def finish_unit(self, name: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.path(f"{name}.done.json"), record)

    def remove(self) -> None:
        """Delete the job folder after the output is complete."""
        shutil.rmtree(self.folder, ignore_errors=True)


def require_file(path: Path, what: str = "input") -> None:
    if not path.exists():
        raise InputError(f"{what} not found", path=path, hint="check the path")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} is not readable", path=path, hint="fix its permissions")
