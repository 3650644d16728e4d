"""The temporal stage of a film: the engine colours keyframes, optical flow carries their chroma between them.

Keyframes. A shot is cut into *windows* that start at fixed frames: the shot's first frame,
every ``interval`` frames after it (``shot.start + k * interval``) and any frame the user names
(``keyframes:`` of a shot, when the shot carries them). The first decoded frame of each window
is a keyframe. Inside a window, adaptive keyframes are added while sweeping forwards from the
last keyframe: when the share of pixels the flow still explains all the way back to that keyframe
falls below ``min_confidence``, when one step explains less than ``min_step_confidence`` of the
picture (a sudden change), or when an instance's tracked mask appears or grows past ``growth``
times its area on the last keyframe (new content). A step explains a pixel when the flow pair is
forward-backward consistent there (or the luma is flat: nothing to track, and chroma is smooth
where luma is) and the luma it brings matches within ``max_residual``. A
window's keyframes depend on the frames of that window alone, and film segments are cut at
multiples of ``interval`` (:func:`segment_chunk`), so the keyframes of a shot are the same
whether it runs whole, in chunks, or resumed after a kill.

Propagation. Between two keyframes ``k0 < k1`` each frame carries a coordinate map back to
``k0`` (composed frame to frame along the DIS flow, :mod:`restorer.models.tracking.flow`) and
one forward to ``k1``, each with a validity that drops to 0 where a step fails the
forward-backward check or leaves the picture. The chroma is sampled once from each keyframe at
those coordinates (no repeated resampling, so no blur builds up) and blended per pixel by
validity times the distance to the other keyframe. The flow of each frame pair is computed once
and used by both directions.

Instances ride on their masks. Each keyframe's chroma is split into layers, one per region of
the frame's instance masks (background and each instance, later on top), each layer filled out
beyond its region by push-pull. A pixel samples only the layer of its own region in the frame
being coloured: a pixel outside every mask never takes an instance's colour, even where the
flow carries it from inside a mask on the keyframe (it then gets the background's colour from
nearby, with low weight); a pixel inside an instance's mask takes that instance's colour.

No pops. A keyframe is *reconciled* with the colour carried to it: per pixel it is the mean of the
engine's colour on it and the engine's colours on the ``reconcile`` keyframes before it in the shot,
each carried along the flow and counted by how confidently the chain of flow from it arrives (and
lands in the same region). Where the flow holds, the colour shown thus changes from one keyframe to
the next by a ``1 / (reconcile + 1)`` share of the engine's disagreement with itself, and where
the flow has lost track the engine's own colour shows (no drift: nothing older than ``reconcile``
keyframes counts). A segment that starts inside a shot first replays the ``reconcile`` windows
before it (their flow, and the engine on their last keyframes), so its keyframes are what a whole
run gives and a resumed or chunked film is identical.

Pixels that no flow explains take the nearer keyframe's colour along its (unreliable) flow,
blended with the engine's cheap automatic colour of that frame (``fill``: tiny's prior, no
diffusion step) where the frame's background is unexplained; without a ``fill`` the engine is
never run on a frame that is not a keyframe.

Everything runs at a working size (longer side at most ``work_side``); the pipeline brings the
chroma to full size guided by the luma, as it does for an engine's chroma.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np


@dataclass(frozen=True)
class TemporalSettings:
    interval: int = 24  # a keyframe at least every this many frames (fixed at shot.start + k * interval)
    work_side: int = 512  # propagation runs with the longer side at most this many pixels
    min_confidence: float = 0.5  # share of pixels the flow must still explain, else a new keyframe
    min_step_confidence: float = 0.75  # ... and the share one frame step explains (below: a sudden change)
    fb_tolerance: float = 1.0  # px (working size) of forward-backward disagreement allowed per step
    # luma gradient (code values per px, 8 bits) below which a pixel is flat: the flow there is free to
    # disagree with itself (nothing to track, and chroma is smooth where luma is), so it is not failed
    flat_gradient: float = 10.0
    max_residual: float = 16.0  # code values (8 bits) the luma may differ from its flow-warped neighbour
    growth: float = 2.0  # an instance's mask this many times its keyframe area: new content, a keyframe
    entering_pixels: int = 16  # ... and at least this many working-size pixels
    flow_preset: str = "medium"
    # a keyframe shows the mean of the engine's colour on it and on this many keyframes before it, carried by
    # the flow where it is confident (0: the engine's colour as it is). Chosen on carphone (bench/RESULTS.md):
    # CDC 1.04x the clip's own at 0, 0.97x at 1, 0.96x at 2 to 4; CIEDE2000 12.69, 12.70, 12.78, 12.81, 12.82
    reconcile: int = 2
    # the engine's cheap colour fills an unexplained background when more than this share of a frame is
    # (each fill costs about what the engine's automatic path costs on a keyframe, so it is kept for frames
    # that need it: measured on carphone, 0.01 filled nearly every frame and ran at 0.64x the per-frame speed)
    fill_share: float = 0.2


@dataclass
class Item:
    """One decoded frame: its film index, Y' in [0, 1] at full size, its (N, H, W) masks, and what the
    caller wants back with it."""

    index: int
    luma: np.ndarray
    masks: np.ndarray
    payload: Any = None


@dataclass
class Stats:
    keyframes: list[int] = field(default_factory=list)
    frames: int = 0
    propagated: float = 0.0  # sum over frames of the share of pixels whose chroma came by flow


def segment_chunk(chunk_frames: int, interval: int) -> int:
    """The chunk length of a shot's segments: a multiple of ``interval`` (at least one), so every
    segment starts on a fixed keyframe and carries everything it needs."""
    interval = max(1, int(interval))
    return max(interval, (int(chunk_frames) // interval) * interval)


def window_starts(shot_start: int, shot_end: int, interval: int, user: Iterable[int] = ()) -> list[int]:
    """The fixed keyframe positions of a shot: its start, every ``interval`` frames, the user's frames."""
    fixed = set(range(shot_start, shot_end + 1, max(1, int(interval))))
    fixed.update(int(k) for k in user if shot_start <= int(k) <= shot_end)
    return sorted(fixed)


def working_size(size: tuple[int, int], work_side: int) -> tuple[int, int]:
    """(h, w) with the longer side at most ``work_side``, never upscaled."""
    h, w = size
    scale = min(1.0, work_side / max(h, w))
    return max(8, round(h * scale)), max(8, round(w * scale))


class _Frame:
    """A frame at the working size: its gray for flow and its region ids."""

    def __init__(self, item: Item, flow, wsize: tuple[int, int], flat_gradient: float):
        import cv2

        from restorer.pipelines.frames import region_ids

        self.item = item
        h, w = wsize
        luma = np.asarray(item.luma, np.float32)
        self.luma = luma if luma.shape == (h, w) else cv2.resize(luma, (w, h), interpolation=cv2.INTER_AREA)
        self.gray = flow.prepare(self.luma)
        g = self.gray.astype(np.float32)
        grad = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)) / 8
        self.flat = cv2.blur(grad, (5, 5)) < flat_gradient
        masks = np.asarray(item.masks)
        if len(masks):
            small = masks if masks.shape[1:] == (h, w) else np.stack(
                [cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5 for m in masks])
            self.masks = small.astype(bool)
            self.labels = region_ids(small).astype(np.int32)
        else:
            self.masks = np.zeros((0, h, w), bool)
            self.labels = np.zeros((h, w), np.int32)
        self.areas = self.masks.reshape(len(self.masks), h * w).sum(axis=1)


class Propagator:
    """Colour one segment of a shot: keyframes by ``colour(item) -> engine a*b*``, the rest by flow.

    ``run(items, next_item)`` yields ``(item, ab)`` in order, ``ab`` (h, w, 2) float32 at the working
    size. ``items`` are the segment's decoded frames; ``next_item`` the first decoded frame after the
    segment in the same shot (the next window's keyframe), or ``None`` at the shot's end. ``fill(item)``,
    when given, is the engine's cheap automatic chroma of a frame (for what no flow explains).
    """

    def __init__(self, settings: TemporalSettings, size: tuple[int, int], starts: list[int],
                 colour: Callable[[Item], np.ndarray], fill: Callable[[Item], np.ndarray] | None = None):
        from restorer.models.tracking.flow import DenseFlow, FlowSettings

        self.settings = settings
        self.wsize = working_size(size, settings.work_side)
        h, w = self.wsize
        # flow at the working size itself (no further downscale), sharp (finest level) on small film
        self.flow = DenseFlow(FlowSettings(preset=settings.flow_preset, work_side=max(h, w),
                                           fb_tolerance=settings.fb_tolerance), self.wsize)
        self.grid = self.flow.grid
        self.starts = starts
        self.colour = colour
        self.fill = fill
        self.stats = Stats()
        self.step_share = 1.0  # the share of pixels the last step of :meth:`_carry` explained
        self._raws: dict[int, _Layers] = {}  # keyframe chroma as the engine gives it, by film index
        self._keys: dict[int, _Layers] = {}  # ... and as shown (reconciled)
        # a keyframe's history: the keyframes before it (their frames, nearest first, at most ``reconcile``)
        # with the chain of flow from it to each
        self._history: dict[int, list[tuple[_Frame, tuple]]] = {}

    def window_of(self, index: int) -> int:
        return bisect.bisect_right(self.starts, index) - 1

    def run(self, items: Iterable[Item], next_item: Callable[[], Item | None],
            before: Iterable[Item] = ()) -> Iterator[tuple[Item, np.ndarray]]:
        """``before``: when the segment starts inside a shot, the frames of the ``reconcile`` windows
        before it (the segment's keyframes are reconciled with what those carry to them, as in a whole run)."""
        buffer: list[_Frame] = []
        before = [self._frame(item) for item in before]
        for item in items:
            frame = self._frame(item)
            if before:
                self._replay(before, frame)
                before = []
            if buffer and self.window_of(item.index) != self.window_of(buffer[0].item.index):
                yield from self._window(buffer, frame)
                buffer = []
            buffer.append(frame)
        if buffer:
            nxt = next_item()
            yield from self._window(buffer, None if nxt is None else self._frame(nxt))

    def _frame(self, item: Item) -> "_Frame":
        return _Frame(item, self.flow, self.wsize, self.settings.flat_gradient)

    def _replay(self, frames: list["_Frame"], first: "_Frame") -> None:
        """Plan the windows before the segment as the previous segment did, keeping their keyframes'
        histories up to ``first`` (the engine runs only on the keyframes ``first`` is reconciled with)."""
        windows: dict[int, list[_Frame]] = {}
        for frame in frames:
            windows.setdefault(self.window_of(frame.item.index), []).append(frame)
        runs = list(windows.values())
        for n, run in enumerate(runs):
            plan = self._plan(run, runs[n + 1][0] if n + 1 < len(runs) else first)
            for a, b in zip(plan.keys, plan.keys[1:], strict=False):
                self._follow(plan.seq[a], plan.seq[b], plan.arrive[b])

    def _follow(self, key: "_Frame", nxt: "_Frame", chain: tuple) -> None:
        """``nxt`` is the keyframe after ``key``, ``chain`` the flow from it back to ``key``: its history is
        ``key`` and ``key``'s own history composed with ``chain``."""
        depth = int(self.settings.reconcile)
        if depth <= 0:
            return
        older = self._history.get(key.item.index, [])[:depth - 1]
        self._history = {**_newest(self._history),
                         nxt.item.index: [(key, chain)] + [(f, compose(chain, c)) for f, c in older]}

    # -- one window --------------------------------------------------------------------

    def _working(self, ab: np.ndarray, frame: _Frame) -> np.ndarray:
        """An engine's chroma at the working size."""
        import cv2

        from restorer.pipelines.frames import full_chroma

        ab = np.asarray(ab, np.float32)
        h, w = self.wsize
        if ab.shape[0] > h or ab.shape[1] > w:
            return cv2.resize(ab, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, 2)
        if ab.shape[:2] != (h, w):
            return full_chroma(ab, frame.luma, frame.masks)
        return ab

    def _raw(self, frame: "_Frame") -> "_Layers":
        """A keyframe's chroma as the engine gives it (working size, in layers); the newest
        ``reconcile + 1`` are kept."""
        index = frame.item.index
        if index not in self._raws:
            ab = self._working(self.colour(frame.item), frame)
            self._raws = {**_newest(self._raws, int(self.settings.reconcile)), index: _Layers(frame, ab)}
        return self._raws[index]

    def _key(self, frame: "_Frame") -> "_Layers":
        """A keyframe's chroma as shown: the engine's, averaged with the keyframes before it where the
        flow carries them confidently (see the module docstring)."""
        index = frame.item.index
        if index not in self._keys:
            history = self._history.get(index, [])
            for before, _chain in reversed(history):  # the engine runs on keyframes in film order
                self._raw(before)
            raw = self._raw(frame)
            ab = raw.ab
            if history:
                total, weight = ab.copy(), np.ones(self.wsize, np.float32)
                for before, (coords, valid) in history:
                    carried, has, match = self._raw(before).sample(coords, frame.labels)
                    trust = np.clip(valid * match * (has >= 1.0), 0.0, 1.0)
                    total += trust[..., None] * carried
                    weight += trust
                ab = total / weight[..., None]
            layers = raw if ab is raw.ab else _Layers(frame, ab.astype(np.float32))
            self._keys = {**_newest(self._keys), index: layers}
        return self._keys[index]

    def _carry(self, coords: np.ndarray, valid: np.ndarray, f_to: np.ndarray, f_from: np.ndarray,
               here: "_Frame", there: "_Frame") -> tuple[np.ndarray, np.ndarray]:
        """One step: a frame's coordinates in the keyframe and their validity, from its neighbour's.

        ``f_to``: flow from this frame (``here``) to the neighbour (``there``); ``f_from``: the neighbour's
        flow back. A step holds where the pair is forward-backward consistent (or ``here`` is flat) and the
        luma it brings matches ``here``'s."""
        import cv2

        from restorer.models.tracking.flow import consistent

        where = self.grid + f_to
        h, w = self.wsize
        ok = consistent(f_to, f_from, where, self.settings.fb_tolerance) | here.flat
        brought = cv2.remap(there.gray, where[..., 0], where[..., 1], cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
        ok &= np.abs(brought.astype(np.float32) - here.gray) <= self.settings.max_residual
        ok &= (where[..., 0] >= 0) & (where[..., 0] <= w - 1) & (where[..., 1] >= 0) & (where[..., 1] <= h - 1)
        self.step_share = float(ok.mean())
        return compose((where, ok), (coords, valid))

    def _entering(self, frame: _Frame, key: _Frame) -> bool:
        s = self.settings
        return bool(np.any(frame.areas >= np.maximum(s.entering_pixels, s.growth * key.areas)))

    def _plan(self, frames: list["_Frame"], end: "_Frame | None") -> "_Plan":
        """A window's flow, keyframes and forward chains: sweeping forwards from its first frame, a
        keyframe where the flow stops explaining the picture; ``end``: the next window's first frame."""
        seq = frames + ([end] if end is not None else [])
        plan = _Plan(seq, [self.flow.pair(seq[i].gray, seq[i + 1].gray) for i in range(len(seq) - 1)])
        ones = np.ones(self.wsize, np.float32)
        coords, valid = self.grid.copy(), ones
        plan.fwd = [None] * len(frames)
        s = self.settings
        for i in range(1, len(frames)):
            f_ba, f_ab = plan.pairs[i - 1]
            coords, valid = self._carry(coords, valid, f_ba, f_ab, frames[i], frames[i - 1])
            if (float(valid.mean()) < s.min_confidence or self.step_share < s.min_step_confidence
                    or self._entering(frames[i], frames[plan.keys[-1]])):
                plan.keys.append(i)
                plan.arrive[i] = (coords, valid)
                coords, valid = self.grid.copy(), ones
            plan.fwd[i] = (coords, valid)
        if end is not None:
            plan.keys.append(len(seq) - 1)
            f_ba, f_ab = plan.pairs[len(frames) - 1]
            plan.arrive[len(seq) - 1] = self._carry(coords, valid, f_ba, f_ab, end, frames[-1])
        return plan

    def _window(self, frames: list["_Frame"], end: "_Frame | None") -> Iterator[tuple[Item, np.ndarray]]:
        plan = self._plan(frames, end)
        seq, keys, pairs = plan.seq, plan.keys, plan.pairs
        ones = np.ones(self.wsize, np.float32)
        out: list[np.ndarray | None] = [None] * len(frames)
        shares = [0.0] * len(frames)
        for n, k0 in enumerate(keys):
            if k0 >= len(frames):
                break
            key0 = self._key(seq[k0])
            out[k0] = key0.ab
            k1 = keys[n + 1] if n + 1 < len(keys) else None
            last = (k1 if k1 is not None else len(frames)) - 1
            if k1 is not None and k1 in plan.arrive:
                self._follow(seq[k0], seq[k1], plan.arrive[k1])
            if last <= k0:
                continue
            back: list = [None] * (last + 1)
            key1 = None
            if k1 is not None:
                key1 = self._key(seq[k1])  # the engine runs on keyframes in film order
                coords, valid = self.grid.copy(), ones
                for i in range(k1 - 1, k0, -1):
                    f_ba, f_ab = pairs[i]  # between frames i and i + 1
                    coords, valid = self._carry(coords, valid, f_ab, f_ba, seq[i], seq[i + 1])
                    back[i] = (coords, valid)
            for i in range(k0 + 1, last + 1):
                out[i], shares[i] = self._blend(frames[i], key0, plan.fwd[i], i - k0,
                                                key1, back[i], (k1 - i) if k1 is not None else 0)
        self.stats.frames += len(frames)
        self.stats.propagated += float(sum(shares))
        self.stats.keyframes.extend(frames[k].item.index for k in keys if k < len(frames))
        for f, ab in zip(frames, out, strict=True):
            yield f.item, ab

    def _blend(self, frame: _Frame, key0: "_Layers", fwd, d0: int, key1: "_Layers | None", bwd,
               d1: int) -> tuple[np.ndarray, float]:
        """A frame's chroma from its keyframes: per pixel by validity and by the distance to the other."""
        total = np.zeros((*self.wsize, 2), np.float32)
        weight = np.zeros(self.wsize, np.float32)
        explained = np.zeros(self.wsize, bool)
        best = np.zeros(self.wsize, np.float32)  # the most any keyframe explains a pixel
        sides = [(key0, fwd, d1 if key1 is not None else 1)]
        if key1 is not None:
            sides.append((key1, bwd, d0))
        for key, (coords, valid), dist in sides:
            value, has, match = key.sample(coords, frame.labels)
            conf = valid * match
            explained |= conf > 0.5
            best = np.maximum(best, conf * has)
            w = (conf + 1e-3) * has * float(dist)  # 1e-3: a pixel nothing explains takes the nearer keyframe
            total += w[..., None] * value
            weight += w
        if self.fill is not None:
            total, weight = self._fill(frame, total, weight, best, sum(d for _k, _c, d in sides))
        ab = total / np.maximum(weight, 1e-12)[..., None]
        return ab.astype(np.float32), float(explained.mean())

    def _fill(self, frame: _Frame, total: np.ndarray, weight: np.ndarray, best: np.ndarray,
              full: float) -> tuple[np.ndarray, np.ndarray]:
        """Blend the engine's cheap colour into the background no keyframe explains (feathered).

        ``best``: per pixel the most any keyframe explains it; ``full``: the weight a side the flow
        explains completely carries."""
        import cv2

        # a pixel explained less than half-way takes the cheap colour, fully where nothing explains it
        unexplained = np.clip(1.0 - 2.0 * best, 0.0, 1.0) * (frame.labels == 0)
        if float((unexplained > 0).mean()) <= self.settings.fill_share:
            return total, weight
        side = max(3, (max(self.wsize) // 64) | 1)
        soft = cv2.blur(unexplained.astype(np.float32), (side, side)) * (frame.labels == 0)
        ab = self._working(self.fill(frame.item), frame)
        w = soft * full
        return total + w[..., None] * ab, weight + w


class _Layers:
    """A keyframe's chroma per region (background, each instance), each layer filled beyond its region."""

    def __init__(self, frame: _Frame, ab: np.ndarray):
        self.ab = ab
        self.labels = frame.labels
        self.layers: dict[int, np.ndarray] = {}
        from restorer.io.color import push_pull

        for label in np.unique(frame.labels):
            region = frame.labels == label
            self.layers[int(label)] = push_pull(ab, region) if not region.all() else ab

    def sample(self, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel of a frame with region ids ``labels``: its region's chroma at ``coords`` in this
        keyframe, how far this keyframe has that region (1; 1e-3 where it has not and the background
        stands in), and whether the flow lands in that region."""
        import cv2

        h, w = labels.shape
        value = np.zeros((h, w, 2), np.float32)
        has = np.zeros((h, w), np.float32)
        for label in np.unique(labels):
            own = int(label) in self.layers
            layer = self.layers.get(int(label), self.layers.get(0, next(iter(self.layers.values()))))
            sel = labels == label
            sampled = cv2.remap(layer, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
            value[sel] = sampled[sel]
            has[sel] = 1.0 if own else 1e-3
        src = cv2.remap(self.labels.astype(np.float32), coords[..., 0], coords[..., 1], cv2.INTER_NEAREST,
                        borderMode=cv2.BORDER_REPLICATE)
        match = (src == labels).astype(np.float32)
        return value, has, match


@dataclass
class _Plan:
    """One window: its frames (and the next window's first), flow pairs, keyframes (positions in ``seq``),
    the forward chain of each frame and the chain arriving at each keyframe after the first."""

    seq: list
    pairs: list
    keys: list[int] = field(default_factory=lambda: [0])
    fwd: list = field(default_factory=list)
    arrive: dict[int, tuple] = field(default_factory=dict)


def compose(near: tuple, far: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A chain of flow through a frame: ``near`` = (coords, validity) of each pixel in that frame, ``far``
    the same from that frame on; the coordinates of each pixel at the far end and their validity."""
    import cv2

    (coords, valid), (far_coords, far_valid) = near, far
    x, y = coords[..., 0], coords[..., 1]
    return (cv2.remap(far_coords, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
            cv2.remap(far_valid, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0) * valid)


def _newest(cache: dict, n: int = 1) -> dict:
    """The ``n`` newest entries of a cache keyed by film index (with the one added, ``n + 1`` are kept)."""
    return {k: cache[k] for k in sorted(cache)[max(0, len(cache) - n):]} if n > 0 else {}
