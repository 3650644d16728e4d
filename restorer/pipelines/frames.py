"""From an engine's chroma to the pixels of the output: the one place that recombines.

Shared by the photo and the video pipelines: instance masks for a frame, the engine's
frames in, full-resolution chroma out (luma-guided upsampling), recombined with the
source's own luma by :mod:`restorer.io.color`.
"""

from __future__ import annotations

import numpy as np

from restorer.io.color import upsample_chroma
from restorer.models.engine import InstanceText, ShotContext


def box_mask(box, size: tuple[int, int]) -> np.ndarray:
    """A filled rectangle (x0, y0, x1, y1; x1/y1 exclusive) on an (H, W) grid."""
    h, w = size
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    m = np.zeros((h, w), dtype=bool)
    m[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
    return m


def prompt_mask(prompt, size: tuple[int, int], luma: np.ndarray | None = None,
                box_refine: str = "grabcut") -> np.ndarray:
    """The region a prompt draws without a segmenter: its mask, else its box.

    Given the picture's ``luma``, a box is refined to the object inside it
    (:func:`restorer.models.tracking.refine.refine_box`) unless ``box_refine`` is ``"off"``."""
    if getattr(prompt, "mask", None) is not None:
        return np.asarray(prompt.mask, dtype=bool)
    if getattr(prompt, "box", None) is not None:
        from restorer.models.tracking.refine import check_mode, refine_box

        if luma is not None and check_mode(box_refine) != "off":
            return refine_box(luma, prompt.box)
        return box_mask(prompt.box, size)
    return np.zeros(size, dtype=bool)


def full_chroma(ab: np.ndarray, luma: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """Engine chroma at its working size -> (H, W, 2) at the luma's size, edges following the luma.

    With the frame's instance masks (R, H, W), each instance (later ones on top) and the rest
    are upsampled apart, so colours stop at the masks' full-resolution edges."""
    if ab.shape[:2] == luma.shape:
        return ab
    return upsample_chroma(ab, luma, regions=region_ids(masks))


def region_ids(masks: np.ndarray | None) -> np.ndarray | None:
    """(R, H, W) instance masks -> (H, W) uint8/uint16 ids, 0 where no mask, k + 1 for instance k on top."""
    if masks is None or len(masks) == 0:
        return None
    ids = np.zeros(masks.shape[1:], np.uint8 if len(masks) < 255 else np.uint16)
    for k, m in enumerate(masks):
        ids[np.asarray(m) > 0.5] = k + 1
    return ids


def check_texts(engine, shots_file) -> None:
    """Let the engine check every instance text of a shots file, errors pointing at its line.

    The engine names ``ShotContext.source`` in its messages, so giving it "shots.yaml:LINE"
    makes an unknown colour word point at the line to fix rather than at the film.
    """
    validate = getattr(engine, "validate", None)
    if validate is None or shots_file is None:
        return
    source = shots_file.source
    for i, shot in enumerate(shots_file.shots):
        prompt = shot.prompt if shot.prompt is not None else shots_file.prompt
        start = shot.frames[0] if shot.frames is not None else 0
        for j, inst in enumerate(shot.instances):
            line = shots_file.line_of("shots", i, "instances", j, "text")
            where = f"{source}:{line}" if source is not None and line else str(source or "")
            validate(ShotContext(seed=0, prompt=prompt, instances=(InstanceText(inst.name, inst.text),),
                                 shot_start=start, shot_end=start, source=where))
