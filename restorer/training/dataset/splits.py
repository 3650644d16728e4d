"""Splits: ``train``; ``val``, the *development* split (settings are chosen on it, so it is not a test
set); and ``test`` (scored once per shipped model, never used to choose anything). A photo is a
``val`` candidate when the first 8 hex digits of the SHA-256 of its *file name* fall below
``val_fraction`` of the range, a ``test`` candidate in the next ``test_fraction``. Photos are then
grouped: a series (the same file-name stem before
its trailing number, ``fish1``, ``fish12``) and near-duplicates (a 64-bit DCT perceptual hash of
the stored image within :data:`NEAR_DUPLICATE_BITS` bits, e.g. a resized copy under another name)
form one group, and a group is in ``val`` (``test``) only if every member is a ``val`` (``test``)
candidate; otherwise all of it is in ``train``. So no photo has a sibling or a copy on another side,
and a photo can only ever move from ``val`` or ``test`` to ``train`` (when a sibling or copy of it is
added), never the other way: a model trained on an older ``train`` never finds its training photos
in a newer ``val`` or ``test`` built with the same fractions. The manifest lists the photos moved and
why.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterable

import numpy as np


def _name_position(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def in_validation(name: str, fraction: float) -> bool:
    """Whether a file name is a development candidate (see the module docstring; groups decide)."""
    return _name_position(name) < fraction * 0x100000000


def split_candidate(name: str, val_fraction: float, test_fraction: float = 0.0) -> str:
    """The split a file name asks for by its hash: ``val`` below ``val_fraction`` of the range, ``test``
    in the next ``test_fraction``, else ``train`` (its group decides in the end: :func:`assign_splits`)."""
    pos = _name_position(name)
    if pos < val_fraction * 0x100000000:
        return "val"
    if pos < (val_fraction + test_fraction) * 0x100000000:
        return "test"
    return "train"


NEAR_DUPLICATE_BITS = 10  # of 64: resized or recompressed copies differ by a few bits, other photos by ~32


def series_key(name: str) -> str:
    """A file's series: its stem without a trailing number (``fishes-fish12.jpg`` -> ``fishes-fish``)."""
    stem = Path(name).stem
    return re.sub(r"[\s_.\-]*\d+$", "", stem) or stem


def perceptual_hash(rgb: np.ndarray) -> int:
    """64-bit DCT hash (pHash): the 8x8 lowest frequencies of the 32x32 gray image against their median."""
    import cv2

    gray = rgb.mean(axis=2).astype(np.float32) if rgb.ndim == 3 else rgb.astype(np.float32)
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def declared_series(paths: Iterable[Path]) -> dict[str, str]:
    """File name -> series, from the ``MANIFEST.csv`` beside the photos where it has ``file`` and ``series``
    columns (data/extra's does: the kphotoalbum photos show the same people under different names).
    Photos a manifest does not name keep :func:`series_key`."""
    import csv

    out: dict[str, str] = {}
    for folder in sorted({Path(p).parent for p in paths}):
        manifest = folder / "MANIFEST.csv"
        if not manifest.is_file():
            continue
        with manifest.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("file") and row.get("series"):
                    out[row["file"]] = f"declared:{row['series']}"
    return out


def assign_splits(names: list[str], hashes: list[int], fraction: float, test_fraction: float = 0.0,
                  max_bits: int = NEAR_DUPLICATE_BITS,
                  series: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Each name's split and, for ``val``/``test`` candidates moved to ``train``, why (module docstring).

    A group (a series and its near-duplicates) is ``val`` or ``test`` only if every member asks for that
    split; any other group is ``train``. ``series``: names whose series a manifest declares
    (:func:`declared_series`); the others are grouped by :func:`series_key`."""
    series = series or {}

    def key_of(name: str) -> str:
        return series.get(name) or series_key(name)

    parent = list(range(len(names)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    first_of: dict[str, int] = {}
    for i, name in enumerate(names):
        key = key_of(name)
        if key in first_of:
            join(i, first_of[key])
        else:
            first_of[key] = i
    near: dict[int, list[int]] = {}
    for i in range(len(names)):
        for j in range(i):
            if bin(hashes[i] ^ hashes[j]).count("1") <= max_bits:
                join(i, j)
                near.setdefault(i, []).append(j)
                near.setdefault(j, []).append(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(names)):
        groups.setdefault(find(i), []).append(i)
    split, moved = {}, {}
    for members in groups.values():
        wanted = [split_candidate(names[i], fraction, test_fraction) for i in members]
        side = wanted[0] if len(set(wanted)) == 1 else "train"
        for i, want in zip(members, wanted, strict=True):
            split[names[i]] = side
            if want != "train" and side == "train":
                copies = [names[j] for j in near.get(i, [])]
                siblings = [names[j] for j in members if j != i and key_of(names[j]) == key_of(names[i])]
                moved[names[i]] = (f"near-duplicate of {copies[0]}" if copies else
                                   f"series {key_of(names[i])!r} with {siblings[0]}" if siblings else
                                   "grouped with a training photo")
    return split, moved
