"""Per-frame instance masks of one shot, kept compressed on disk in the job folder.

Layout of a store folder::

    meta.json            names, size, frame range and the key of the request
    00000123.mask        one file per frame: zlib(np.packbits((N, H, W) bool))
    complete.json        written last, atomically: the store may be reused as is

A resumed job opens the same folder with the same key; when ``complete`` is true it
reads the masks back instead of tracking again. Any other state (no marker, another
key, another size) starts the store afresh.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from restorer.fs import fsync_file, open_atomic

log = logging.getLogger(__name__)

_MARKER = "complete.json"
_META = "meta.json"


def instance_file_name(index: int, name: str) -> str:
    """``NN_name`` for instance ``index``: the name a saved mask (a film's folder, a photo's PNG) carries."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "instance"
    return f"{index:02d}_{safe}"


def _write_atomic(path: Path, data: bytes, sync: bool = True) -> None:
    # frames need not be synced one by one: a store without its marker is redone
    with open_atomic(path, "wb", sync=sync) as f:
        f.write(data)


class MaskStore:
    """Masks of frames ``start..end`` (inclusive), ``len(names)`` instances of ``size`` (H, W).

    Args:
        folder: where the masks live (created); the caller gives a folder in the job.
        names: instance names, in shots.yaml order (mask ``i`` is instance ``i``).
        size: (height, width) of the frames.
        start, end: the shot's film frame range, end inclusive.
        key: what produced the masks (tracker and prompts); a complete store with another
            key is not reused.
    """

    def __init__(self, folder: str | Path, names: Sequence[str], size: tuple[int, int],
                 start: int, end: int, key: str = ""):
        self.folder = Path(folder)
        self.names = list(names)
        self.size = (int(size[0]), int(size[1]))
        self.start, self.end, self.key = int(start), int(end), str(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.complete = self._matches_complete()
        if not self.complete:
            self._reset()

    # -- state -------------------------------------------------------------------------

    def _meta(self) -> dict:
        return {"version": 1, "names": self.names, "size": list(self.size),
                "start": self.start, "end": self.end, "key": self.key}

    def _matches_complete(self) -> bool:
        try:
            marker = json.loads((self.folder / _MARKER).read_text())
        except (OSError, ValueError):
            return False
        return marker == self._meta()

    def _reset(self) -> None:
        (self.folder / _MARKER).unlink(missing_ok=True)
        for p in self.folder.glob("*.mask"):
            p.unlink()
        _write_atomic(self.folder / _META, json.dumps(self._meta()).encode())

    def finish(self) -> None:
        """Mark the store complete (every frame present); the marker is written last."""
        missing = [i for i in range(self.start, self.end + 1) if not self._path(i).exists()]
        if missing:
            raise RuntimeError(f"mask store {self.folder}: {len(missing)} frames never written, "
                               f"first {missing[0]}")
        for i in range(self.start, self.end + 1):  # the frames reach the disk before the marker vouching for them
            fsync_file(self._path(i))
        _write_atomic(self.folder / _MARKER, json.dumps(self._meta()).encode())
        self.complete = True

    # -- frames ------------------------------------------------------------------------

    def _path(self, index: int) -> Path:
        if not self.start <= index <= self.end:
            raise IndexError(f"frame {index} outside the store's range {self.start}..{self.end}")
        return self.folder / f"{index:08d}.mask"

    def put(self, index: int, masks: np.ndarray) -> None:
        """Store frame ``index``'s (N, H, W) bool masks (replacing what was there)."""
        masks = np.asarray(masks, dtype=bool)
        expect = (len(self.names), *self.size)
        if masks.shape != expect:
            raise ValueError(f"masks of shape {masks.shape} for a store of {expect}")
        data = zlib.compress(np.packbits(masks, axis=None).tobytes(), 6)
        _write_atomic(self._path(index), data, sync=False)

    def has(self, index: int) -> bool:
        return self._path(index).exists()

    def get(self, index: int) -> np.ndarray:
        """Frame ``index``'s (N, H, W) bool masks."""
        n, (h, w) = len(self.names), self.size
        bits = np.frombuffer(zlib.decompress(self._path(index).read_bytes()), np.uint8)
        return np.unpackbits(bits, count=n * h * w).reshape(n, h, w).astype(bool)

    def __iter__(self):
        for i in range(self.start, self.end + 1):
            yield i, self.get(i)

    def export_png(self, folder: str | Path) -> Path:
        """Write one 0/255 PNG per instance and frame: ``folder/NN_name/00000123.png``."""
        import cv2

        folder = Path(folder)
        dirs = []
        for i, name in enumerate(self.names):
            d = folder / instance_file_name(i, name)
            d.mkdir(parents=True, exist_ok=True)
            dirs.append(d)
        for index, masks in self:
            for d, m in zip(dirs, masks, strict=True):
                ok, buf = cv2.imencode(".png", m.astype(np.uint8) * 255)
                _write_atomic(d / f"{index:08d}.png", buf.tobytes(), sync=False)
        return folder
