"""Instance masks for every frame of a shot: the pipelines' side of :mod:`restorer.models.tracking`.

The tracker is opened once per run; each shot with instances is tracked into a
compressed mask store inside the job folder, so a resumed job does not re-track
finished shots and ``--save-masks`` can export what was used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from restorer.pipelines.options import ColorizeOptions


class NoInstances:
    """A shot without instances: every frame has zero masks, nothing is decoded."""

    def __init__(self, size: tuple[int, int]):
        self.size = size

    def get(self, index: int) -> np.ndarray:
        return np.zeros((0, *self.size), dtype=bool)


def tracker_factory(opts: ColorizeOptions, device: str = "cpu"):
    """A callable (film, info, shot, job) -> object with ``get(index) -> (N, H, W) bool``."""
    from restorer.models.tracking import ShotPrompts, open_tracker, track_shot
    from restorer.models.tracking.refine import check_mode, refine_prompts

    check_mode(opts.box_refine)
    tracker = open_tracker(opts.tracker, opts.sam2, device=device)

    def make(film: Path, info, shot, job):
        size = (info.height, info.width)
        if not shot.instances:
            return NoInstances(size)
        prompts = ShotPrompts.from_resolved(shot, size)
        read = _frame_source(film, info)
        if tracker.name != "sam2":  # SAM2 segments from boxes itself
            prompts = refine_prompts(prompts, read, opts.box_refine)
        store = track_shot(tracker, prompts, read, job.path(f"masks/{shot.start:08d}"))
        if opts.save_masks is not None:
            store.export_png(Path(opts.save_masks) / f"shot{shot.index + 1:04d}")
        return store

    return make


def _frame_source(film: Path, info):
    from restorer.io.video import LumaReader, luma_to_unit

    def read(start: int, end: int):
        for f in LumaReader(film, info, start=start, end=end):
            yield f.index, luma_to_unit(f.luma, info)

    return read
