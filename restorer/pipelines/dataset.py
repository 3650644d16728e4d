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
   (:data:`PALETTE`, nearest in Lab with L* at half weight), the object word from
   EfficientNet-Lite0's ImageNet label on the region's box when its probability is at least
   ``min_confidence``, otherwise the generic noun "area";
4. a global text starting with the overall tone and listing the largest regions with colours:
   "a warm, colourful photo of a blue sky, a green tree and a gray area".

Splits: ``train``; ``val``, the *development* split (settings are chosen on it, so it is not a test
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

Resumable: each photo's record is written (atomically) to ``records/NAME.json`` and skipped
when present; ``dataset.jsonl`` and ``manifest.json`` (with the SHA-256 of the sorted inputs'
names and contents) are rewritten at the end from the records, so a second run gives
byte-identical output. SAM2 builds note their mask source (the SAM2 folder's fingerprint and
the prompt grid) as ``mask_source`` in every record and in the manifest; colour-segmentation
builds carry no such key. Resuming a folder whose records came from another mask source is
refused before anything is written.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageOps

from restorer.fs import write_text_atomic
from restorer.io.images import IMAGE_SUFFIXES as PHOTO_SUFFIXES
from restorer.models.colornames import TRAINED_COLOURS

log = logging.getLogger(__name__)

PALETTE = TRAINED_COLOURS  # the colour words of the training texts (one list for the data and the model)
# Vivid colours a counter-colour instance (training augmentation, eval binding) may be asked to take.
COUNTER_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "teal")
GENERIC = "area"
SEGMENTATION = "felzenszwalb"  # the mask source of a record without ``mask_source``
SAM2_POINTS = 16  # SAM2's automatic masks: prompt grid points per side
IMAGE_SUFFIXES = PHOTO_SUFFIXES | {".bmp"}  # training images may also be BMP; outputs never are


@dataclass(frozen=True)
class BuildOptions:
    size: int = 256
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    min_regions: int = 3
    max_regions: int = 12
    min_area: float = 0.02
    merge_delta: float = 12.0
    min_confidence: float = 0.35


def palette_lab() -> dict[str, np.ndarray]:
    from restorer.models.colornames import parse_color

    return {n: np.array(parse_color(n).lab, dtype=np.float64) for n in PALETTE}


def name_color(lab: np.ndarray, palette: dict[str, np.ndarray] | None = None) -> str:
    """The palette name nearest to a CIELab colour (L* at half weight: luma comes from the source)."""
    palette = palette or palette_lab()
    w = np.array([0.5, 1.0, 1.0])
    return min(palette, key=lambda n: float((((palette[n] - lab) * w) ** 2).sum()))


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


# --- segmentation -------------------------------------------------------------------------------

def segment(rgb: np.ndarray, opts: BuildOptions = BuildOptions()) -> np.ndarray:
    """(H, W, 3) sRGB in [0, 1] -> (H, W) uint8 labels 0..n-1, n in [min_regions, max_regions] when possible."""
    from skimage.segmentation import felzenszwalb

    from restorer.io.color import srgb_to_lab

    h, w = rgb.shape[:2]
    scale = 128 / max(h, w)
    small = np.asarray(Image.fromarray((rgb * 255).round().astype(np.uint8)).resize(
        (max(8, round(w * scale)), max(8, round(h * scale))), Image.BILINEAR), dtype=np.float32) / 255
    labels = felzenszwalb(small, scale=100, sigma=0.8, min_size=20)
    labels = _merge(labels, srgb_to_lab(small).reshape(-1, 3), opts)
    out = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((w, h), Image.NEAREST))
    present = np.unique(out)
    if len(present) != int(out.max()) + 1:  # a photo under 128 px: a region can vanish in the resize back
        lut = np.zeros(256, np.uint8)
        lut[present] = np.arange(len(present))
        out = lut[out]
    return out


def _merge(labels: np.ndarray, lab: np.ndarray, opts: BuildOptions) -> np.ndarray:
    """Greedy merging of adjacent regions; returns labels renumbered 0..n-1 by first appearance."""
    flat = labels.ravel().copy()
    n_px = flat.size
    while True:
        ids, area = np.unique(flat, return_counts=True)
        means = {i: lab[flat == i].mean(0) for i in ids}
        pairs = _adjacent(flat.reshape(labels.shape))
        if len(ids) <= opts.min_regions or not pairs:
            break
        dist = {p: float(np.linalg.norm(means[p[0]] - means[p[1]])) for p in pairs}
        small = ids[np.argmin(area)]
        if len(ids) > opts.max_regions or area.min() < opts.min_area * n_px:
            cand = [p for p in pairs if small in p]
            a, b = min(cand, key=lambda p: (dist[p], p))
        else:
            (a, b) = min(pairs, key=lambda p: (dist[p], p))
            if dist[(a, b)] >= opts.merge_delta:
                break
        keep, drop = (a, b) if (flat == a).sum() >= (flat == b).sum() else (b, a)
        flat[flat == drop] = keep
    _, first = np.unique(flat, return_index=True)
    order = {old: new for new, old in enumerate(flat[np.sort(first)])}
    return np.vectorize(order.get)(flat).reshape(labels.shape)


def sam2_labels(rgb: np.ndarray, masks: list[np.ndarray], opts: BuildOptions = BuildOptions()) -> np.ndarray:
    """(H, W) uint8 labels 0..n-1 from SAM2's masks, the uncovered pixels from :func:`segment`, merged alike.

    Masks are painted largest first, so where they overlap the smaller one wins.
    """
    labels = np.full(rgb.shape[:2], -1, np.int32)
    for k, m in enumerate(sorted(masks, key=lambda m: -int(m.sum()))):
        labels[m] = k
    rest = labels < 0
    if rest.any():
        labels[rest] = len(masks) + segment(rgb, opts)[rest].astype(np.int32)
    return _merge_full(labels, rgb, opts).astype(np.uint8)


def _merge_full(labels: np.ndarray, rgb: np.ndarray, opts: BuildOptions, side: int = 128) -> np.ndarray:
    """:func:`_merge` decided at most ``side`` px (like :func:`segment`), applied to full-resolution labels.

    Each label joins the region its downscaled pixels joined; a label too small to survive the
    downscaling takes the upscaled merged label pixel by pixel.
    """
    from restorer.io.color import srgb_to_lab

    h, w = labels.shape
    scale = min(1.0, side / max(h, w))
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    ys = np.minimum(((np.arange(sh) + 0.5) * h / sh).astype(int), h - 1)
    xs = np.minimum(((np.arange(sw) + 0.5) * w / sw).astype(int), w - 1)
    ids, compact = np.unique(labels, return_inverse=True)
    compact = compact.reshape(h, w)
    small_rgb = np.asarray(Image.fromarray((rgb * 255).round().astype(np.uint8)).resize((sw, sh), Image.BILINEAR),
                           dtype=np.float32) / 255
    small = compact[np.ix_(ys, xs)]
    merged = _merge(small, srgb_to_lab(small_rgb).reshape(-1, 3), opts)
    joins = np.full(len(ids), -1, np.int64)
    joins[small.ravel()] = merged.ravel()
    out = joins[compact]
    lost = out < 0
    if lost.any():
        up_y = np.minimum(np.arange(h) * sh // h, sh - 1)
        up_x = np.minimum(np.arange(w) * sw // w, sw - 1)
        out[lost] = merged[np.ix_(up_y, up_x)][lost]
    return out


class Sam2Masks:
    """SAM2's automatic masks of a photo, from the tracking backend's model in a local folder."""

    def __init__(self, folder: str | Path, device: str | None = None, points_per_side: int = SAM2_POINTS):
        from restorer.errors import WeightsError
        from restorer.models.tracking import open_tracker
        from restorer.models.tracking.sam2 import check_sam2_folder

        try:
            check_sam2_folder(folder)  # the error names the folder as given
            self.tracker = open_tracker("sam2", Path(folder).resolve(), device=device)
        except WeightsError as exc:
            raise WeightsError(exc.problem, path=exc.path,
                               hint="pass --sam2 DIR with a local transformers SAM2 checkpoint (e.g. a copy of "
                                    "facebook/sam2.1-hiera-tiny), or leave --sam2 out to segment by colour") from exc
        self.points_per_side = points_per_side

    @property
    def source(self) -> str:
        """What the masks depend on: the model (its fingerprint names the folder) and the prompt grid."""
        return f"sam2 {self.tracker.fingerprint()} points_per_side={self.points_per_side}"

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        from restorer.io.color import rgb_to_luma

        return self.tracker.generate_masks(rgb_to_luma(rgb), points_per_side=self.points_per_side)


def _adjacent(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        diff = a != b
        for x, y in np.unique(np.stack([a[diff], b[diff]], 1), axis=0):
            pairs.add((int(min(x, y)), int(max(x, y))))
    return pairs


# --- texts --------------------------------------------------------------------------------------

def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in the classifier's output order (package data)."""
    from importlib.resources import files

    text = files("restorer.models").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    return text.splitlines()


class ObjectNamer:
    """EfficientNet-Lite0's ImageNet top-1 label on a crop, or ``GENERIC`` below the confidence."""

    def __init__(self, min_confidence: float):
        import torch

        from restorer.models.mtcolor.features import _load_lite0

        torch.manual_seed(0)
        self.net, self.min_confidence = _load_lite0().eval(), min_confidence
        self.labels = imagenet_classes()

    def __call__(self, crop: np.ndarray) -> str:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        with torch.no_grad():
            p = self.net((x - mean) / std).softmax(-1)[0]
        conf, idx = float(p.max()), int(p.argmax())
        return self.labels[idx].lower() if conf >= self.min_confidence else GENERIC


@functools.lru_cache(maxsize=2)
def object_namer(min_confidence: float) -> ObjectNamer:
    """One classifier per process (it takes seconds to load)."""
    return ObjectNamer(min_confidence)


def instance_text(obj: str, color: str) -> str:
    return f"a {color} {obj}"


def tone_words(lab: np.ndarray) -> str:
    """Overall tone of an image from its pixels' CIELab: warm/cool/neutral and colourful/muted/gray."""
    chroma = float(np.hypot(lab[:, 1], lab[:, 2]).mean())
    b_mean = float(lab[:, 2].mean())
    vivid = "colourful" if chroma > 25 else "muted" if chroma > 8 else "nearly gray"
    warmth = "warm" if b_mean > 8 else "cool" if b_mean < -4 else "neutral"
    return f"a {warmth}, {vivid} photo"


def global_text(tone: str, instances: list[dict[str, Any]], most: int = 4) -> str:
    big = sorted(instances, key=lambda r: -r["area"])[:most]
    phrases = [r["text"] for r in big]
    listing = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{tone} of {listing}"


# --- one photo ----------------------------------------------------------------------------------

def load_rgb(path: Path, size: int) -> np.ndarray:
    """sRGB (H, W, 3) float32 in [0, 1], long side ``size`` (never enlarged), EXIF orientation applied."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        scale = min(1.0, size / max(im.size))
        if scale < 1:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255


def describe(rgb: np.ndarray, labels: np.ndarray, namer, palette: dict[str, np.ndarray]) -> dict[str, Any]:
    """Instance records and the global text of one segmented photo."""
    from restorer.io.color import srgb_to_lab

    lab = srgb_to_lab(rgb).reshape(-1, 3)
    instances = []
    for k in range(int(labels.max()) + 1):
        m = labels.ravel() == k
        mean = lab[m].mean(0)
        color = name_color(mean, palette)
        ys, xs = np.nonzero(labels == k)
        obj = namer(rgb[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        instances.append({"id": k, "object": obj, "color": color, "text": instance_text(obj, color),
                          "area": round(float(m.mean()), 6), "lab": [round(float(v), 3) for v in mean]})
    return {"instances": instances, "global": global_text(tone_words(lab), instances)}


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
                "options": opts.__dict__, "seed": seed, "palette": list(PALETTE),
                "counter_colors": list(COUNTER_COLORS),
                "moved_to_train": dict(sorted((moved or {}).items())),
                "near_duplicate_bits": NEAR_DUPLICATE_BITS}
    if source != SEGMENTATION:  # colour-segmentation manifests stay as they were before SAM2
        manifest["mask_source"] = source
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


RECORD_PATHS = ("image", "masks")  # the fields of a record that name files, relative to the dataset folder


def read_dataset(root: Path, split: str | None = None) -> list[dict[str, Any]]:
    """The records of ``root/dataset.jsonl`` (one split, or all).

    A dataset may come from someone else, so its records are untrusted: each ``image`` and ``masks``
    must be a relative path that resolves (symlinks followed) inside ``root``
    (:func:`restorer.config.contained_path`). A record that breaks the rule is refused here, naming
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
    from restorer.config import UnsafePath, contained_path
    from restorer.errors import InputError

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
