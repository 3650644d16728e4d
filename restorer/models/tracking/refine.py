"""A box is not an object: refine a box prompt to the object inside it, without weights.

``refine_box`` runs OpenCV's GrabCut seeded by the box (``GC_INIT_WITH_RECT``) on a crop
around it: everything outside the box is background, the object is what inside it differs
from that. The picture is gray, so GrabCut sees three channels made from the luma: the luma
lightly smoothed, its local mean, and its local contrast (a texture measure), so an object
the same brightness as its surroundings but of another texture is still found. The crop is
downscaled to at most ``work_side`` pixels for speed and the result brought back to full size
along the luma's edges. A degenerate answer (under ``min_fill`` or over ``max_fill`` of the
box) is tried again with the pieces of a Felzenszwalb segmentation that lie inside the box (kept
when they fill at least half of it); a box with no background around it, or a second degenerate
answer, falls back to the rectangle.

``refine_prompts`` applies it to every box prompt of a shot for the weight-free trackers
(flow, static): each such prompt gets the refined region as its mask, so the first mask of a
track and every re-anchoring follow the object. SAM2 segments from boxes itself.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from restorer.shots.regions import prompt_region

from .prompts import FrameSource, InstancePrompts, Prompt, ShotPrompts, to_uint8

log = logging.getLogger(__name__)

MODES = ("grabcut", "off")


def check_mode(mode: str) -> str:
    """``mode`` if it is a known refinement, else ValueError."""
    if mode not in MODES:
        raise ValueError(f"unknown box refinement {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def _clip_box(box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = size
    x0, y0, x1, y1 = box
    return (max(0, int(np.floor(x0))), max(0, int(np.floor(y0))),
            min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1))))


def _local_std(gray: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    mean = cv2.GaussianBlur(gray, (0, 0), sigma)
    var = cv2.GaussianBlur(gray * gray, (0, 0), sigma) - mean * mean
    return np.sqrt(np.maximum(var, 0.0))


def _unit(x: np.ndarray) -> np.ndarray:
    return np.clip(x / (float(np.percentile(x, 99)) + 1e-6), 0.0, 1.0)


def _features(gray: np.ndarray, scale: float) -> np.ndarray:
    """(h, w, 3) uint8 at ``scale`` of a float crop: the luma, its fine texture (local
    contrast at 1.5 px of the full picture) and its coarse texture (at 2 px of the work size)."""
    import cv2

    fine = _local_std(gray, 1.5)
    if scale < 1.0:
        ch, cw = gray.shape
        size = (max(8, round(cw * scale)), max(8, round(ch * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        fine = cv2.resize(fine, size, interpolation=cv2.INTER_AREA)
    coarse = _local_std(gray, 2.0)
    feats = np.stack([gray, _unit(cv2.GaussianBlur(fine, (0, 0), 1.0)), _unit(coarse)], axis=-1)
    return np.clip(feats * 255.0 + 0.5, 0, 255).astype(np.uint8)


def refine_box(luma: np.ndarray, box, *, iterations: int = 4, work_side: int = 192,
               margin: float = 0.25, min_fill: float = 0.10, max_fill: float = 0.95,
               seed: int = 0) -> np.ndarray:
    """The (H, W) bool mask of the object inside ``box`` (x0, y0, x1, y1; x1/y1 exclusive).

    ``luma`` is (H, W), float in [0, 1] (uint8/uint16 also taken). The mask lies inside the
    box. Falls back to the filled box when GrabCut cannot say (see the module docstring).
    """
    import cv2

    luma = np.asarray(luma)
    h, w = luma.shape[:2]
    x0, y0, x1, y1 = _clip_box(box, (h, w))
    rect = np.zeros((h, w), bool)
    if x1 <= x0 or y1 <= y0:
        return rect
    rect[y0:y1, x0:x1] = True
    bw, bh = x1 - x0, y1 - y0
    if min(bw, bh) < 8:
        return rect
    # the crop: the box and a margin of background around it
    mx, my = max(4, round(margin * bw)), max(4, round(margin * bh))
    cx0, cy0, cx1, cy1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    outside = (cx1 - cx0) * (cy1 - cy0) - bw * bh
    if outside < 0.05 * bw * bh:  # the box is (nearly) the whole picture: no background to learn
        return rect
    gray = to_uint8(luma[cy0:cy1, cx0:cx1]).astype(np.float32) / 255.0
    scale = min(1.0, work_side / max(cx1 - cx0, cy1 - cy0))
    feats = _features(gray, scale)
    ch, cw = gray.shape
    sh, sw = feats.shape[:2]
    fx, fy = sw / cw, sh / ch
    r = (int(np.floor((x0 - cx0) * fx)), int(np.floor((y0 - cy0) * fy)))
    r = (*r, max(1, int(np.ceil((x1 - cx0) * fx)) - r[0]), max(1, int(np.ceil((y1 - cy0) * fy)) - r[1]))
    gc = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)  # GrabCut's k-means start: the same box gives the same mask
    try:
        cv2.grabCut(feats, gc, r, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error as exc:  # e.g. a crop too uniform for the colour models
        log.debug("grabcut failed on box %s: %s", box, exc)
        return rect
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    fg = _tidy(fg)
    if scale < 1.0:
        soft = cv2.resize(fg.astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR)
        fg = (soft >= 0.5).astype(np.uint8)
    out = np.zeros((h, w), bool)
    out[cy0:cy1, cx0:cx1] = fg.astype(bool)
    out &= rect
    fill = out.sum() / rect.sum()
    if not min_fill <= fill <= max_fill:
        log.debug("grabcut on box %s kept %.0f %% of it: trying the segments inside it", box, 100 * fill)
        return _segments_inside(gray, (cx0, cy0, cx1, cy1), (x0, y0, x1, y1), rect, max_fill)
    return out


SEGMENT_MIN_FILL = 0.5  # segments inside a box must fill half of it to stand for its object


def _segments_inside(gray: np.ndarray, crop: tuple[int, int, int, int], box: tuple[int, int, int, int],
                     rect: np.ndarray, max_fill: float) -> np.ndarray:
    """When GrabCut finds nothing (gray pictures often give it too little): the pieces of a
    Felzenszwalb segmentation of the crop that lie at least 80 % inside the box, if together they
    fill between half of the box and ``max_fill`` of it; else the rectangle."""
    from skimage.segmentation import felzenszwalb

    cx0, cy0, cx1, cy1 = crop
    x0, y0, x1, y1 = box
    labels = felzenszwalb(gray, scale=60, sigma=0.8, min_size=15)
    inside = np.zeros(gray.shape, bool)
    inside[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0] = True
    counts = np.bincount(labels.ravel())
    within = np.bincount(labels.ravel(), weights=inside.ravel().astype(np.float64), minlength=len(counts))
    keep = (within >= 0.8 * counts)[labels]
    fill = keep.sum() / inside.sum()
    if not SEGMENT_MIN_FILL <= fill <= max_fill:
        log.debug("the segments inside box %s fill %.0f %% of it: the box is kept", box, 100 * fill)
        return rect
    out = np.zeros_like(rect)
    out[cy0:cy1, cx0:cx1] = keep
    return out & rect


def _tidy(fg: np.ndarray) -> np.ndarray:
    """Keep the pieces that matter (the largest and any at least a fifth its size), holes filled."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return fg
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, bool)
    keep[1:] = areas >= 0.2 * areas.max()
    fg = keep[labels].astype(np.uint8)
    # fill holes: background pieces that do not touch the crop's border
    n, labels, stats, _ = cv2.connectedComponentsWithStats(1 - fg, connectivity=4)
    h, w = fg.shape
    for i in range(1, n):
        x, y, bw, bh, _ = stats[i]
        if x > 0 and y > 0 and x + bw < w and y + bh < h:
            fg[labels == i] = 1
    return fg


def refine_prompt(prompt: Prompt, luma: np.ndarray, size: tuple[int, int]) -> Prompt:
    """``prompt`` with its region as its mask, the box part refined by :func:`refine_box`."""
    if prompt.mask is not None or prompt.box is None:
        return prompt
    region = prompt_region(prompt, size, box_region=refine_box(luma, prompt.box))
    return replace(prompt, mask=region)


def refine_prompts(shot: ShotPrompts, read: FrameSource, mode: str = "grabcut") -> ShotPrompts:
    """The shot with each box prompt (without a mask) refined to the object in its frame.

    Reads each prompted frame once; ``mode="off"`` returns the shot unchanged."""
    if check_mode(mode) == "off":
        return shot
    frames = sorted({p.frame for inst in shot.instances for p in inst.prompts
                     if p.mask is None and p.box is not None})
    if not frames:
        return shot
    lumas = {}
    for f in frames:
        for t, luma in read(f, f):
            if t == f:
                lumas[f] = luma
    instances = tuple(
        InstancePrompts(inst.name, tuple(refine_prompt(p, lumas[p.frame], shot.size) if p.frame in lumas else p
                                         for p in inst.prompts))
        for inst in shot.instances)
    return replace(shot, instances=instances)
