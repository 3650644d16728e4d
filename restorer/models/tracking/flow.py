"""The ``flow`` tracker: instance masks carried frame to frame by dense optical flow.

No weights. For each step from frame ``a`` to its neighbour ``b`` (either direction):

1. DIS optical flow both ways, ``b -> a`` and ``a -> b``, on the luma (downscaled so
   the longer side is at most ``work_side``).
2. Backward warp: a pixel of ``b`` takes the mask value at ``x + flow_ba(x)`` in ``a``
   (bilinear, then threshold at 0.5, so blur never accumulates).
3. Forward-backward consistency: where ``flow_ba(x) + flow_ab(x + flow_ba(x))`` is
   large, the pixel was hidden in ``a`` (disoccluded) or the flow is wrong there. Its
   value comes instead from the instance's prompt region carried rigidly: the similarity
   transforms fitted (RANSAC) to the flow inside the mask, composed since the prompt. So
   an object coming out from behind another gets its hidden part back, and background
   uncovered behind a moving object is not taken for it (first step: the neighbours'
   value, by normalised convolution).
4. Clean-up: morphological close and open, small holes filled, specks dropped.
5. Area guard: the step's similarity transform predicts how the area should change; a mask that
   grows much faster than that is clipped to the transformed previous mask, so it cannot bleed into the background.

Every prompted frame re-anchors the instance to its prompt's region (a box is its
filled rectangle; see :func:`restorer.shots.regions.prompt_region`). The shot is swept forwards from the
first prompted frame and backwards from the last one, re-reading earlier frames in
chunks through the frame source. A frame takes, per instance, the track coming from
the *nearest* of that instance's prompted frames (ties to the earlier): so between
two prompts each half follows the prompt it is closer to and no track runs further
than half the gap between prompts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from restorer.shots.regions import prompt_region

from .prompts import FrameSource, ShotPrompts, nearest_prompt, to_uint8
from .store import MaskStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowSettings:
    """Knobs of the flow tracker; the defaults suit 144p to 1080p film."""

    preset: str = "medium"  # DIS preset: ultrafast, fast, medium
    finest_scale: int | None = None  # DIS pyramid level of the result; None: the level
    # nearest 320 px on the longer side (0, full working size, for small film: sharp edges)
    smoothness: float = 0.5  # DIS variational refinement alpha; low keeps motion edges sharp
    work_side: int = 640  # flow is computed with the longer side at most this many pixels
    fb_tolerance: float = 0.15  # px (at full size) of forward-backward disagreement allowed
    hole_fraction: float = 0.05  # holes smaller than this share of the mask are filled
    speck_fraction: float = 0.02  # pieces smaller than this share of the mask are dropped
    max_growth: float = 1.15  # per-step growth allowed over the similarity prediction
    amodal: bool = True
    chunk_bytes: int = 64 << 20  # frames held at once when reading backwards


class _Flow:
    """Dense flow between two frames at the working scale, answered at full size."""

    def __init__(self, settings: FlowSettings, size: tuple[int, int]):
        import cv2

        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                   "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        h, w = size
        self.size = size
        self.scale = min(1.0, settings.work_side / max(h, w))
        self.work = (max(8, round(w * self.scale)), max(8, round(h * self.scale)))  # cv2 (w, h)
        self.dis = cv2.DISOpticalFlow_create(presets[settings.preset])
        fs = settings.finest_scale
        if fs is None:
            fs = max(0, int(np.floor(np.log2(max(self.work) / 320) + 0.5)))
        self.dis.setFinestScale(fs)
        self.dis.setVariationalRefinementAlpha(settings.smoothness)
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.grid = np.stack([gx, gy], axis=-1)

    def prepare(self, luma: np.ndarray) -> np.ndarray:
        import cv2

        gray = to_uint8(luma)
        if self.scale < 1.0:
            gray = cv2.resize(gray, self.work, interpolation=cv2.INTER_AREA)
        return gray

    def full(self, flow: np.ndarray) -> np.ndarray:
        import cv2

        if self.scale == 1.0:
            return flow
        h, w = self.size
        return cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / self.scale

    def pair(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flows ``b -> a`` and ``a -> b`` at full size, (H, W, 2) float32 (dx, dy)."""
        return self.full(self.dis.calc(b, a, None)), self.full(self.dis.calc(a, b, None))


DenseFlow = _Flow  # shared with the temporal stage (restorer.pipelines.temporal)


def consistent(f_ba: np.ndarray, f_ab: np.ndarray, where: np.ndarray, tolerance: float) -> np.ndarray:
    """Forward-backward consistency of a flow pair: (H, W) bool, True where a pixel of ``b``
    sent to ``where = grid + f_ba`` in ``a`` and brought back by ``f_ab`` lands within
    ``tolerance`` px (plus 5 % of its motion) of where it started."""
    import cv2

    back = cv2.remap(f_ab, where[..., 0], where[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    err = np.linalg.norm(f_ba + back, axis=-1)
    return err <= tolerance + 0.05 * np.linalg.norm(f_ba, axis=-1)


def _kernel(size: tuple[int, int]) -> np.ndarray:
    import cv2

    k = max(3, 2 * round(min(size) / 240) + 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def clean_mask(mask: np.ndarray, kernel: np.ndarray, hole_fraction: float,
               speck_fraction: float) -> np.ndarray:
    """Close, open, fill small holes and drop specks of a bool mask."""
    import cv2

    m = mask.astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel)
    area = int(m.sum())
    if area == 0:
        return m.astype(bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(1 - m, connectivity=4)
    h, w = m.shape
    for i in range(1, n):
        x, y, bw, bh, a = stats[i]
        inside = x > 0 and y > 0 and x + bw < w and y + bh < h
        if inside and a < hole_fraction * area:
            m[labels == i] = 1
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= max(4, speck_fraction * stats[1:, 4].sum())
    return keep[labels]


def _similarity(mask: np.ndarray, f_ab: np.ndarray) -> np.ndarray | None:
    """A 2x3 similarity transform fitted (RANSAC) to the flow inside ``mask``."""
    import cv2

    ys, xs = np.nonzero(mask)
    if len(xs) < 8:
        return None
    step = max(1, len(xs) // 2000)
    src = np.stack([xs[::step], ys[::step]], axis=1).astype(np.float32)
    dst = src + f_ab[ys[::step], xs[::step]]
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=0.3)
    return m


class _Track:
    """One instance's state in a sweep: its mask and its prompt region carried rigidly."""

    def __init__(self, region: np.ndarray):
        self.mask = region
        self.anchor = region.astype(np.uint8)
        self.total = np.float64([[1, 0, 0], [0, 1, 0]])
        self.has_motion = False
        self.step: np.ndarray | None = None
        self.prev_mask, self.prev_area, self.step_scale2 = region, region.sum(), 1.0

    def advance(self, step: np.ndarray | None) -> None:
        self.prev_mask, self.prev_area, self.step = self.mask, self.mask.sum(), step
        if step is None:
            return
        self.step_scale2 = abs(np.linalg.det(step[:, :2]))
        full = np.vstack([step, [0, 0, 1]]) @ np.vstack([self.total, [0, 0, 1]])
        self.total, self.has_motion = full[:2], True

    def amodal(self) -> np.ndarray:
        import cv2

        h, w = self.anchor.shape
        return cv2.warpAffine(self.anchor, self.total, (w, h), flags=cv2.INTER_NEAREST).astype(
            np.float32)


class FlowTracker:
    """Optical-flow mask propagation; see the module docstring."""

    name = "flow"

    def __init__(self, settings: FlowSettings | None = None):
        self.settings = settings or FlowSettings()

    def fingerprint(self) -> str:
        return f"flow-1-{self.settings}"

    # -- one step ----------------------------------------------------------------------

    def _step(self, flow: _Flow, a: np.ndarray, b: np.ndarray, tracks: list,
              kernel: np.ndarray) -> list:
        """Carry each instance's track (or None) from frame ``a`` to frame ``b``."""
        import cv2

        if all(tr is None for tr in tracks):
            return tracks
        f_ba, f_ab = flow.pair(a, b)
        where = flow.grid + f_ba
        ok = consistent(f_ba, f_ab, where, self.settings.fb_tolerance)
        okf = ok.astype(np.float32)
        win = (2 * kernel.shape[0] + 1,) * 2
        ok_blur = cv2.blur(okf, win) + 1e-6
        out = []
        for tr in tracks:
            if tr is None:
                out.append(None)
                continue
            warped = cv2.remap(tr.mask.astype(np.float32), where[..., 0], where[..., 1],
                               cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            tr.advance(_similarity(tr.mask, f_ab))
            # pixels seen for the first time (disoccluded) or with unreliable flow: the
            # rigidly carried prompt region says whether they belong, else their neighbours
            fill = tr.amodal() if (tr.has_motion and self.settings.amodal) else cv2.blur(warped * okf, win) / ok_blur
            soft = np.where(ok, warped, fill)
            new = clean_mask(soft >= 0.5, kernel, self.settings.hole_fraction,
                             self.settings.speck_fraction)
            tr.mask = self._guard(tr, new, kernel)
            out.append(tr)
        return out

    def _guard(self, tr: "_Track", new: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        """Clip a mask that grew much faster than the similarity fit of its flow says."""
        import cv2

        prev_area = max(1, int(tr.prev_area))
        if tr.step is None or new.sum() <= self.settings.max_growth * tr.step_scale2 * prev_area:
            return new
        h, w = new.shape
        rigid = cv2.warpAffine(tr.prev_mask.astype(np.uint8), tr.step, (w, h),
                               flags=cv2.INTER_NEAREST)
        return new & cv2.dilate(rigid, kernel).astype(bool)

    # -- sweeps ------------------------------------------------------------------------

    def _sweep(self, shot: ShotPrompts, frames: Iterator[tuple[int, np.ndarray]],
               forward: bool, store: MaskStore) -> None:
        """Propagate through ``frames`` (already in sweep order), writing each instance's
        masks on the frames whose nearest prompt lies behind the sweep."""
        flow, kernel = _Flow(self.settings, shot.size), _kernel(shot.size)
        anchors = [{p.frame: p for p in inst.prompts} for inst in shot.instances]
        keys = [inst.frames for inst in shot.instances]
        masks: list = [None] * len(shot.instances)
        prev = None
        empty = np.zeros(shot.size, bool)
        for t, luma in frames:
            gray = flow.prepare(luma)
            if prev is not None:
                masks = self._step(flow, prev, gray, masks, kernel)
            prev = gray
            for i, anchor in enumerate(anchors):
                if t in anchor:
                    masks[i] = _Track(prompt_region(anchor[t], shot.size))
            mine = [self._owns(keys[i], t, forward) for i in range(len(masks))]
            if not any(mine):
                continue
            have = store.get(t) if store.has(t) else None
            out = []
            for i, m in enumerate(masks):
                if mine[i]:
                    out.append(empty if m is None else m.mask)
                else:
                    out.append(empty if have is None else have[i])
            store.put(t, np.stack(out) if out else np.zeros((0, *shot.size), bool))

    @staticmethod
    def _owns(frames: list[int], t: int, forward: bool) -> bool:
        src = nearest_prompt(frames, t)
        if src is None:
            return forward  # no prompt: the forward sweep writes it empty
        return src <= t if forward else src > t

    def track(self, shot: ShotPrompts, read: FrameSource, store: MaskStore) -> None:
        """Fill ``store`` with the masks of every frame of the shot."""
        prompted = shot.prompt_frames
        first = prompted[0] if prompted else shot.start
        last = prompted[-1] if prompted else shot.start
        self._sweep(shot, read(first, shot.end), True, store)
        if last > shot.start:
            back = read_backwards(read, shot.start, last, shot.size, self.settings.chunk_bytes)
            self._sweep(shot, back, False, store)
        for t in range(shot.start, shot.end + 1):  # frames no sweep owned (no prompts at all)
            if not store.has(t):
                store.put(t, np.zeros((len(shot.instances), *shot.size), bool))


def read_backwards(read: FrameSource, start: int, end: int, size: tuple[int, int],
                   chunk_bytes: int) -> Iterator[tuple[int, np.ndarray]]:
    """Frames ``end`` down to ``start``, reading forward chunks of bounded size."""
    per_frame = max(1, size[0] * size[1] * 2)
    chunk = max(2, chunk_bytes // per_frame)
    hi = end
    while hi >= start:
        lo = max(start, hi - chunk + 1)
        frames = list(read(lo, hi))
        yield from reversed(frames)
        hi = lo - 1
