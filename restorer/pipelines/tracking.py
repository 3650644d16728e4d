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
        anchors = tuple(getattr(shot, "anchors", ()))
        if not shot.instances and not anchors:
            return NoInstances(size)
        n = len(shot.instances)
        shot = with_anchor_instances(shot)
        prompts = ShotPrompts.from_resolved(shot, size)
        read = _frame_source(film, info)
        if tracker.name != "sam2":  # SAM2 segments from boxes itself
            prompts = refine_prompts(prompts, read, opts.box_refine)
        store = track_shot(tracker, prompts, read, job.path(f"masks/{shot.start:08d}"))
        if opts.save_masks is not None:
            store.export_png(Path(opts.save_masks) / f"shot{shot.index + 1:04d}")
        return AnchorTracks(store, n, anchors) if anchors else store

    return make


def _frame_source(film: Path, info):
    from restorer.io.decode import LumaReader, luma_to_unit

    def read(start: int, end: int):
        for f in LumaReader(film, info, start=start, end=end):
            yield f.index, luma_to_unit(f.luma, info)

    return read


def with_anchor_instances(shot):
    """The shot with one more instance per user anchor (anchors preset): a point prompt on the anchor's frame,
    so the tracker carries the point through the shot as it carries instance prompts."""
    anchors = tuple(getattr(shot, "anchors", ()))
    if not anchors:
        return shot
    from dataclasses import replace

    from restorer.config import ResolvedInstance, ResolvedPrompt

    extra = [ResolvedInstance(f"anchor {k + 1}", a.color, [ResolvedPrompt(frame=a.frame, points=[(a.x, a.y)])])
             for k, a in enumerate(anchors)]
    return replace(shot, instances=list(shot.instances) + extra)


class AnchorTracks:
    """A shot's instance masks (``get``) and its user anchors' points on every frame (``anchors_at``).

    An anchor's point moves with its tracked region: on frame f it is the user's point plus how far the region's
    centre moved from the anchor's own frame. Where the tracker lost the region the anchor is left out."""

    def __init__(self, store, instances: int, anchors: tuple):
        self.store, self.n, self.anchors = store, int(instances), tuple(anchors)
        self._origin: dict[int, tuple[float, float] | None] = {}

    def get(self, index: int) -> np.ndarray:
        return self.store.get(index)[:self.n]

    def anchors_at(self, index: int) -> tuple:
        from restorer.models.anchors.engine import AnchorEdit

        masks = self.store.get(index)[self.n:]
        out = []
        for k, (mask, anchor) in enumerate(zip(masks, self.anchors, strict=True)):
            origin = self._centre_on(k, anchor.frame)
            here = _centre(mask)
            if origin is None or here is None:
                continue
            h, w = mask.shape
            x = min(w - 1.0, max(0.0, anchor.x + here[0] - origin[0]))
            y = min(h - 1.0, max(0.0, anchor.y + here[1] - origin[1]))
            out.append(AnchorEdit(x, y, anchor.ab))
        return tuple(out)

    def _centre_on(self, k: int, frame: int) -> tuple[float, float] | None:
        if k not in self._origin:
            self._origin[k] = _centre(self.store.get(frame)[self.n + k])
        return self._origin[k]


def _centre(mask: np.ndarray) -> tuple[float, float] | None:
    ys, xs = np.nonzero(mask)
    return (float(xs.mean()), float(ys.mean())) if len(xs) else None
