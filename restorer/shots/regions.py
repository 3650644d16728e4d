"""The one rasteriser of a shots.yaml region: a prompt (mask, box, points) as an (H, W) bool mask.

Photos (:func:`restorer.pipelines.tracking.photo_masks`) and films (the trackers of
:mod:`restorer.models.tracking`) both draw prompts here, so the same box gives the same pixels
in either. A prompt is anything with ``mask``, ``box``, ``points`` and ``negative``
(:class:`restorer.shots.resolve.ResolvedPrompt`, :class:`restorer.models.tracking.Prompt`).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def point_radius(size: tuple[int, int]) -> int:
    """Radius of the disc a lone point stands for when a backend needs a region (flow, static)."""
    return max(2, round(0.04 * min(size)))


def prompt_region(prompt: Any, size: tuple[int, int], box_region: np.ndarray | None = None) -> np.ndarray:
    """The (H, W) bool region a prompt stands for, ``size`` being (H, W).

    A mask is taken as is. A box ``(x0, y0, x1, y1)`` (``x1``/``y1`` excluded) covers every pixel
    it touches (floor of the start, ceiling of the end, clipped to the picture), or is ``box_region``
    when given (the object inside the box, :func:`restorer.models.tracking.refine.refine_box`).
    Positive points become discs (radius :func:`point_radius`) joined by their convex hull when there
    are three or more; a box and points together give their union. Negative points carve discs out.
    """
    import cv2

    h, w = size
    if prompt.mask is not None:
        return np.asarray(prompt.mask, dtype=bool).copy()
    region = np.zeros((h, w), np.uint8)
    if prompt.box is not None and box_region is not None:
        region[np.asarray(box_region, dtype=bool)] = 1
    elif prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        xa, ya = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        xb, yb = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
        region[ya:yb, xa:xb] = 1
    r = point_radius(size)
    pts = np.round(np.asarray(prompt.points or (), np.float32)).astype(np.int32).reshape(-1, 2)
    for x, y in pts:
        cv2.circle(region, (int(x), int(y)), r, 1, -1)
    if len(pts) >= 3:
        cv2.fillConvexPoly(region, cv2.convexHull(pts), 1)
    for x, y in np.round(np.asarray(prompt.negative or (), np.float32)).astype(np.int32).reshape(-1, 2):
        cv2.circle(region, (int(x), int(y)), r, 0, -1)
    return region.astype(bool)
