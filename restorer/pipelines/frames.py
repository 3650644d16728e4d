"""An engine's chroma brought to the frame's size: luma-guided upsampling, kept apart by the instance masks.

Shared by the photo path (:func:`restorer.pipelines.photo.colorize_frame`) and the video pipeline; the
recombination with the source's own luma is :mod:`restorer.io.color`'s.
"""

from __future__ import annotations

import numpy as np

from restorer.io.color import upsample_chroma
from restorer.models.engine import background_of


def full_chroma(ab: np.ndarray, luma: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """Engine chroma at its working size -> (H, W, 2) at the luma's size, edges following the luma.

    With the frame's instance masks (R, H, W), each instance (later ones on top) and the rest
    are upsampled apart, so colours stop at the masks' full-resolution edges; the rest from the
    engine's background layer when it gave one (:func:`restorer.models.engine.with_background`)."""
    if ab.shape[:2] == luma.shape:
        return ab
    return upsample_chroma(ab, luma, regions=region_ids(masks), background=background_of(ab))


def region_ids(masks: np.ndarray | None) -> np.ndarray | None:
    """(R, H, W) instance masks -> (H, W) uint8/uint16 ids, 0 where no mask, k + 1 for instance k on top."""
    if masks is None or len(masks) == 0:
        return None
    ids = np.zeros(masks.shape[1:], np.uint8 if len(masks) < 255 else np.uint16)
    for k, m in enumerate(masks):
        ids[np.asarray(m) > 0.5] = k + 1
    return ids

