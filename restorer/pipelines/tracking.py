"""Instance masks for every frame of a shot: the pipelines' side of :mod:`restorer.models.tracking`.

The tracker is opened once per run; each shot with instances is tracked into a
compressed mask store inside the job folder, so a resumed job does not re-track
finished shots and ``--save-masks`` can export what was used. A photo's one frame
(:func:`photo_masks`) is drawn from the same prompts the same way: refined boxes, then
:func:`restorer.shots.regions.prompt_region`.
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
            prompts = one_region_per_frame(refine_prompts(prompts, read, opts.box_refine))
        store = track_shot(tracker, prompts, read, job.path(f"masks/{shot.start:08d}"))
        if opts.save_masks is not None:
            store.export_png(Path(opts.save_masks) / f"shot{shot.index + 1:04d}")
        return AnchorTracks(store, n, anchors) if anchors else store

    return make


def one_region_per_frame(shot):
    """The shot with each instance's prompts on one frame drawn into one mask prompt, their union, as a photo
    draws them (:func:`photo_masks`): the weight-free trackers keep one region per prompted frame."""
    from dataclasses import replace

    from restorer.models.tracking import InstancePrompts, Prompt
    from restorer.shots.regions import prompt_region

    instances = []
    for inst in shot.instances:
        by_frame: dict[int, list] = {}
        for p in inst.prompts:
            by_frame.setdefault(p.frame, []).append(p)
        instances.append(inst if len(by_frame) == len(inst.prompts) else InstancePrompts(inst.name, tuple(
            ps[0] if len(ps) == 1 else Prompt(f, mask=np.logical_or.reduce([prompt_region(p, shot.size) for p in ps]))
            for f, ps in by_frame.items())))
    return replace(shot, instances=tuple(instances))


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

    from restorer.shots.resolve import ResolvedInstance, ResolvedPrompt

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


def prompt_mask(prompt, size: tuple[int, int], luma: np.ndarray | None = None,
                box_refine: str = "grabcut") -> np.ndarray:
    """The region a prompt draws without a segmenter, as a film's tracker draws it on the prompt's frame.

    Given the picture's ``luma``, a box is refined to the object inside it
    (:func:`restorer.models.tracking.refine.refine_prompt`) unless ``box_refine`` is ``"off"``; then
    :func:`restorer.shots.regions.prompt_region` draws it (a mask as is, a box with its points)."""
    from restorer.models.tracking.refine import check_mode, refine_prompt
    from restorer.shots.regions import prompt_region

    if luma is not None and check_mode(box_refine) != "off":
        prompt = refine_prompt(prompt, luma, size)
    return prompt_region(prompt, size)


def photo_masks(shot, luma: np.ndarray, opts: ColorizeOptions, sam2=None) -> np.ndarray:
    """(N, H, W) bool, one per instance of a photo's shot: the union of all its prompts' regions.

    A mask prompt is as drawn. SAM2 (``sam2()`` opens it, once per run) segments a box with ``--sam2``
    (unless ``box_refine`` is off) and points alone where :func:`restorer.shots.resolve.has_segmenter`
    says a segmenter runs; every other prompt, and one SAM2 finds nothing for, is :func:`prompt_mask`.
    """
    size = luma.shape
    if not shot.instances:
        return np.zeros((0, *size), dtype=bool)
    found = _segmented(shot, luma, opts, sam2) if sam2 is not None else {}
    out = np.zeros((len(shot.instances), *size), dtype=bool)
    for k, inst in enumerate(shot.instances):
        for j, p in enumerate(inst.prompts):
            region = found.get((k, j))
            out[k] |= region if region is not None else prompt_mask(p, size, luma, opts.box_refine)
    return out


def _segmented(shot, luma: np.ndarray, opts: ColorizeOptions, sam2) -> dict[tuple[int, int], np.ndarray]:
    """SAM2's region of each prompt it should draw, by (instance, prompt); none where it found nothing."""
    import tempfile
    from dataclasses import replace

    from restorer.models.tracking import ShotPrompts, track_shot
    from restorer.shots.resolve import ResolvedInstance, has_segmenter

    points = has_segmenter(opts.tracker, opts.sam2)
    boxes = opts.sam2 is not None and opts.box_refine != "off"
    wanted = [(k, j) for k, inst in enumerate(shot.instances) for j, p in enumerate(inst.prompts)
              if p.mask is None and (boxes if p.box is not None else points)]
    if not wanted:
        return {}
    each = [ResolvedInstance(f"{shot.instances[k].name} {j + 1}", shot.instances[k].text,
                             [replace(shot.instances[k].prompts[j], frame=0)]) for k, j in wanted]
    one = ShotPrompts.from_resolved(replace(shot, start=0, end=0, instances=each), luma.shape)
    with tempfile.TemporaryDirectory(prefix="restorer-sam2-") as scratch:
        masks = track_shot(sam2(), one, lambda a, b: iter([(0, luma)]), scratch).get(0)
    return {kj: masks[n] for n, kj in enumerate(wanted) if masks[n].any()}
