"""``restorer dataset build``: the offline counterpart of the paper's GPT-Color pipeline (Sec. III-D).

For each colour photo (sorted by name, so the output does not depend on the file system):

1. the photo is scaled so its long side is ``size`` pixels (256) and stored as PNG;
2. instance masks: a Felzenszwalb over-segmentation of the colour image at 128 px, merged
   greedily (smallest region into its most similar neighbour in CIELab, and neighbours closer
   than ``merge_delta``) until there are ``min_regions``-``max_regions`` regions each at least
   ``min_area`` of the image. With ``sam2`` (``--sam2 DIR``, a local SAM2 checkpoint) the
   regions start from SAM2's automatic masks of the photo's luma instead (a grid of point
   prompts, :meth:`Sam2Tracker.generate_masks`): painted largest first, so a smaller mask
   stays on top of a larger one; the pixels no mask covers keep the Felzenszwalb regions;
   then the same greedy merge. Either way the regions are a partition: their masks cover the
   image once. Written as one label PNG per photo (value k = instance k);
3. an instance text per region in the paper's "object + colour" form, "a green tree": the
   colour named from the region's mean CIELab through a basic palette of the lexicon
   (:data:`restorer.models.colornames.TRAINED_COLOURS`, nearest in Lab with L* at half weight), the object word from
   EfficientNet-Lite0's ImageNet label on the region's box when its probability is at least
   ``min_confidence``, otherwise the generic noun "area";
4. a global text starting with the overall tone and listing the largest regions with colours:
   "a warm, colourful photo of a blue sky, a green tree and a gray area".

Resumable: each photo's record is written (atomically) to ``records/NAME.json`` and skipped
when present; ``dataset.jsonl`` and ``manifest.json`` (with the SHA-256 of the sorted inputs'
names and contents) are rewritten at the end from the records, so a second run gives
byte-identical output. SAM2 builds note their mask source (the SAM2 folder's fingerprint and
the prompt grid) as ``mask_source`` in every record and in the manifest; colour-segmentation
builds carry no such key. Resuming a folder whose records came from another mask source is
refused before anything is written.

The splits: :mod:`.splits`; segmentation: :mod:`.segment`; texts: :mod:`.texts`; reading a dataset:
:mod:`.records`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageOps

from restorer.fs import write_text_atomic
from restorer.io.images import IMAGE_SUFFIXES as PHOTO_SUFFIXES
from restorer.models.colornames import COUNTER_COLORS, TRAINED_COLOURS, palette_lab
from restorer.training.dataset.segment import BuildOptions, Sam2Masks, sam2_labels, segment
from restorer.training.dataset.splits import (
    NEAR_DUPLICATE_BITS,
    assign_splits,
    declared_series,
    perceptual_hash,
    split_candidate,
)
from restorer.training.dataset.texts import describe, object_namer

log = logging.getLogger(__name__)

SEGMENTATION = "felzenszwalb"  # the mask source of a record without ``mask_source``
IMAGE_SUFFIXES = PHOTO_SUFFIXES | {".bmp"}  # training images may also be BMP; outputs never are


def list_images(images: Path | Iterable[Path]) -> list[Path]:
    """Image files of a folder, of several folders, or the given paths, sorted by name.

    Records are named by the file's stem, so two files with one stem (from two folders) are refused.

    Raises:
        InputError: two images share a stem.
    """
    from restorer.errors import InputError

    items = [Path(images)] if isinstance(images, (str, Path)) else [Path(p) for p in images]
    files: list[Path] = []
    for item in items:
        if item.is_dir():
            files += [p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        else:
            files.append(item)
    files.sort(key=lambda p: p.name)
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise InputError(f"{seen[f.stem]} and {f} have the same name {f.stem!r}", path=f,
                             hint="rename one of them: dataset records are named by the file's name")
        seen[f.stem] = f
    return files


def load_rgb(path: Path, size: int) -> np.ndarray:
    """sRGB (H, W, 3) float32 in [0, 1], long side ``size`` (never enlarged), EXIF orientation applied."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        scale = min(1.0, size / max(im.size))
        if scale < 1:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build_one(path: Path, out: Path, opts: BuildOptions, namer, palette,
               sam2: Sam2Masks | None = None) -> dict[str, Any]:
    rgb = load_rgb(path, opts.size)
    labels = segment(rgb, opts) if sam2 is None else sam2_labels(rgb, sam2(rgb), opts)
    stem = path.stem
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(out / "images" / f"{stem}.png")
    Image.fromarray(labels).save(out / "masks" / f"{stem}.png")
    rec = {"name": stem, "source": path.name, "folder": path.parent.name, "sha256": _file_hash(path),
           "split": split_candidate(path.name, opts.val_fraction, opts.test_fraction),
           "image": f"images/{stem}.png", "masks": f"masks/{stem}.png",
           "size": [int(rgb.shape[0]), int(rgb.shape[1])], **describe(rgb, labels, namer, palette)}
    if sam2 is not None:
        rec["mask_source"] = sam2.source
    return rec


def build_dataset(images: Path | Iterable[Path], out: Path, *, val_fraction: float = 0.1,
                  test_fraction: float = 0.1, size: int = 256,
                  seed: int = 0, limit: int | None = None, progress=None, namer=None,
                  sam2: str | Path | None = None, device: str | None = None) -> dict[str, Any]:
    """Build (or resume building) a dataset folder; returns the manifest.

    Args:
        images: a folder of colour photos, several folders, or a list of files (each record notes
            the folder its photo came from).
        out: the dataset folder (created; records already there are kept, i.e. resumed).
        val_fraction: share of photos (by name hash) held out as the development split (``val``).
        test_fraction: share held out as the test split (scored once per shipped model, never used
            to choose anything); 0 for none, as the shipped tiny was trained.
        size: long side of the stored images and masks.
        seed: recorded in the manifest; the builder itself draws no random numbers.
        limit: only the first ``limit`` photos (tests).
        progress: optional callable(done, total, name).
        namer: replaces the ImageNet classifier (tests): callable(crop RGB) -> object word.
        sam2: a local SAM2 folder: masks from its automatic mask generator (see the module docstring).
        device: where SAM2 runs (default: CUDA when available).

    Raises:
        InputError: no images found, or ``out`` holds records made from another mask source.
        WeightsError: ``sam2`` is not a usable SAM2 folder.
    """
    from restorer.errors import InputError

    paths = list_images(images)[:limit]
    if not paths:
        raise InputError("no images to build a dataset from", path=images if isinstance(images, Path) else None,
                         hint="give a folder of colour photos (jpg, png, ...)")
    masker = Sam2Masks(sam2, device) if sam2 is not None else None
    source = masker.source if masker else SEGMENTATION
    out = Path(out)
    _check_mask_source(out, paths, source)
    for sub in ("images", "masks", "records"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    opts = BuildOptions(size=size, val_fraction=val_fraction, test_fraction=test_fraction)
    palette = palette_lab()
    records = []
    for i, path in enumerate(paths):
        rec_path = out / "records" / f"{path.stem}.json"
        if rec_path.exists():
            records.append(json.loads(rec_path.read_text()))
        else:
            namer = namer or object_namer(opts.min_confidence)
            records.append(_build_one(path, out, opts, namer, palette, masker))
            write_text_atomic(rec_path, json.dumps(records[-1], sort_keys=True))
        if progress:
            progress(i + 1, len(paths), path.name)
    moved = _split_records(out, records, opts.val_fraction, opts.test_fraction, declared_series(paths))
    return _write_index(out, records, opts, seed, source, moved)


def _split_records(out: Path, records: list[dict[str, Any]], fraction: float,
                   test_fraction: float = 0.0, series: dict[str, str] | None = None) -> dict[str, str]:
    """Give every record its group's split (hashes of the stored images); rewrite records that change."""
    changed = set()
    for rec in records:
        if "phash" not in rec:
            with Image.open(out / rec["image"]) as im:
                rec["phash"] = f"{perceptual_hash(np.asarray(im.convert('RGB'), np.float32)):016x}"
            changed.add(rec["name"])
    split, moved = assign_splits([r["source"] for r in records], [int(r["phash"], 16) for r in records], fraction,
                                 test_fraction, series=series)
    for rec in records:
        if rec["split"] != split[rec["source"]]:
            rec["split"] = split[rec["source"]]
            changed.add(rec["name"])
        if rec["name"] in changed:
            write_text_atomic(out / "records" / f"{rec['name']}.json", json.dumps(rec, sort_keys=True))
    return moved


def _check_mask_source(out: Path, paths: list[Path], source: str) -> None:
    """Refuse to resume from records whose masks came from another source (before anything is written)."""
    from restorer.errors import InputError

    for path in paths:
        rec_path = out / "records" / f"{path.stem}.json"
        had = json.loads(rec_path.read_text()).get("mask_source", SEGMENTATION) if rec_path.exists() else source
        if had != source:
            raise InputError(f"its records' masks came from {had}, this run's would come from {source}", path=out,
                             hint="resume with the same --sam2 folder (or none), or build into a new -o folder")


def _write_index(out: Path, records: list[dict[str, Any]], opts: BuildOptions, seed: int,
                 source: str = SEGMENTATION, moved: dict[str, str] | None = None) -> dict[str, Any]:
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    write_text_atomic(out / "dataset.jsonl", lines)
    digest = hashlib.sha256("".join(f"{r['source']} {r['sha256']}\n" for r in records).encode()).hexdigest()
    manifest = {"version": 1, "inputs_sha256": digest, "count": len(records),
                "train": sum(r["split"] == "train" for r in records),
                "val": sum(r["split"] == "val" for r in records),
                "test": sum(r["split"] == "test" for r in records),
                "options": opts.__dict__, "seed": seed, "palette": list(TRAINED_COLOURS),
                "counter_colors": list(COUNTER_COLORS),
                "moved_to_train": dict(sorted((moved or {}).items())),
                "near_duplicate_bits": NEAR_DUPLICATE_BITS}
    if source != SEGMENTATION:  # colour-segmentation manifests stay as they were before SAM2
        manifest["mask_source"] = source
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest
