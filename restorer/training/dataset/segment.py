"""Instance masks of a photo: a Felzenszwalb over-segmentation merged greedily, or SAM2's automatic masks with
the uncovered pixels from the over-segmentation (:mod:`.build`'s docstring, step 2). The regions are a
partition: their masks cover the image once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SAM2_POINTS = 16  # SAM2's automatic masks: prompt grid points per side


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
