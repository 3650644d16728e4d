"""Reading a dataset folder: its records (untrusted: every path they name must stay inside the folder), a
record's image and labels, and a contact sheet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

RECORD_PATHS = ("image", "masks")  # the fields of a record that name files, relative to the dataset folder


def read_dataset(root: Path, split: str | None = None) -> list[dict[str, Any]]:
    """The records of ``root/dataset.jsonl`` (one split, or all).

    A dataset may come from someone else, so its records are untrusted: each ``image`` and ``masks``
    must be a relative path that resolves (symlinks followed) inside ``root``
    (:func:`restorer.shots.paths.contained_path`). A record that breaks the rule is refused here, naming
    ``dataset.jsonl:LINE``, before anything opens it; a file not there yet is :func:`load_record`'s
    to report.

    Raises:
        InputError: no ``dataset.jsonl``, a line that is not a JSON record, or a path outside ``root``.
    """
    from restorer.errors import InputError

    index = Path(root) / "dataset.jsonl"
    if not index.exists():
        raise InputError("not a dataset folder (no dataset.jsonl)", path=root,
                         hint="build one with 'restorer dataset build IMAGES -o DATASET'")
    recs = []
    for number, line in enumerate(index.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise InputError(f"not a JSON record: {exc}", path=f"{index}:{number}",
                             hint="rebuild the dataset with 'restorer dataset build'") from None
        if not isinstance(rec, dict):
            raise InputError("not a JSON record (an object)", path=f"{index}:{number}",
                             hint="rebuild the dataset with 'restorer dataset build'")
        _record_paths(root, rec, where=f"{index}:{number}", must_exist=False)
        recs.append(rec)
    return [r for r in recs if split is None or r.get("split") == split]


def _record_paths(root: Path, rec: dict[str, Any], *, where: str, must_exist: bool = True) -> dict[str, Path]:
    """The record's files as real paths inside ``root``; :class:`InputError` for any that is not."""
    from restorer.errors import InputError
    from restorer.shots.paths import UnsafePath, contained_path

    paths = {}
    for key in RECORD_PATHS:
        value = rec.get(key)
        try:
            paths[key] = contained_path(root, value, what="the dataset folder", must_exist=must_exist)
        except UnsafePath as exc:
            shown = "missing" if key not in rec else f"{value!r} {exc.problem}"
            raise InputError(f"record {rec.get('name', '?')!r}: {key} {shown}", path=where,
                             hint="records name files inside the dataset folder, relative to it; "
                                  "rebuild with 'restorer dataset build'") from None
    return paths


def load_record(root: Path, rec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (H, W, 3) float32 in [0, 1], labels (H, W) uint8) of a record.

    Its ``image`` and ``masks`` are checked (:func:`read_dataset`'s rule, and they must exist) before
    either is opened, also for a record that did not come through :func:`read_dataset`.

    Raises:
        InputError: a path outside ``root``, or a file that is not there.
    """
    paths = _record_paths(root, rec, where=str(Path(root) / "dataset.jsonl"))
    rgb = np.asarray(Image.open(paths["image"]).convert("RGB"), dtype=np.float32) / 255
    return rgb, np.asarray(Image.open(paths["masks"]))


def dataset_contact_sheet(root: Path, png: Path, *, limit: int = 12, split: str | None = None,
                          cell: int = 160) -> None:
    """Rows of photo | its masks (one colour per instance) | its texts, for a look at the dataset."""
    from PIL import ImageDraw

    records = read_dataset(root, split)[:limit]
    width, row_h = 2 * cell + 420, cell + 8
    sheet = Image.new("RGB", (width, row_h * max(1, len(records))), "white")
    draw = ImageDraw.Draw(sheet)
    rng = np.random.default_rng(0)
    colours = (rng.random((256, 3)) * 200 + 40).astype(np.uint8)
    for i, rec in enumerate(records):
        rgb, labels = load_record(root, rec)
        y = i * row_h + 4
        sheet.paste(_fit(Image.fromarray((rgb * 255).round().astype(np.uint8)), cell), (4, y))
        sheet.paste(_fit(Image.fromarray(colours[labels]), cell), (cell + 8, y))
        lines = [f"{rec['name'][:48]} [{rec['split']}]", rec["global"][:64]]
        lines += [f"{k}: {inst['text']}" for k, inst in enumerate(rec["instances"])]
        for j, line in enumerate(lines[:cell // 12]):
            draw.text((2 * cell + 16, y + 12 * j), line, fill=tuple(int(c) for c in colours[j - 2]) if j >= 2
                      else "black")
    sheet.save(png)


def _fit(im: Image.Image, cell: int) -> Image.Image:
    im = im.copy()
    im.thumbnail((cell, cell), Image.LANCZOS)
    return im
