"""What a tracker is asked: a shot's frame range, its instances' prompts, and a frame source.

These small types keep the trackers independent of the shots.yaml models and of the film
readers (``restorer.io``); a prompt's region is drawn by :func:`restorer.shots.regions.prompt_region`,
as a photo's is. The mapping from the resolved shots.yaml is one line each::

    shot = ShotPrompts.from_resolved(resolved_shot, size=(height, width))
    read = lambda a, b: ((f.index, f.luma) for f in LumaReader(path, info, a, b))

Coordinates are pixels of the full-resolution frame: ``x`` to the right, ``y`` down;
a box is ``(x0, y0, x1, y1)`` with ``x1, y1`` exclusive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

FrameSource = Callable[[int, int], Iterator[tuple[int, np.ndarray]]]
"""``read(start, end)`` yields ``(index, luma)`` for frames ``start..end`` (inclusive), in order.

``luma`` is the (H, W) Y' plane, uint8 or uint16 (or float in [0, 1]). Trackers call it
several times (backward propagation re-reads earlier frames in chunks), so it must be
cheap to call again: decoding again from the nearest keyframe is fine.
"""


@dataclass(frozen=True)
class Prompt:
    """One drawing of an instance on one frame (film index).

    ``mask`` (H, W) bool wins over everything else; otherwise ``box`` and/or positive
    ``points`` define the region and ``negative`` points carve out of it.
    """

    frame: int
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None
    points: tuple[tuple[float, float], ...] = ()
    negative: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.mask is None and self.box is None and not self.points:
            raise ValueError(f"prompt on frame {self.frame} has no box, mask or points")


@dataclass(frozen=True)
class InstancePrompts:
    """One instance of a shot: its name (for previews) and its prompts, any frames."""

    name: str
    prompts: tuple[Prompt, ...]

    @property
    def frames(self) -> list[int]:
        return sorted({p.frame for p in self.prompts})


@dataclass(frozen=True)
class ShotPrompts:
    """A shot to track: film frames ``start..end`` (inclusive) of ``size`` (height, width)."""

    start: int
    end: int
    size: tuple[int, int]
    instances: tuple[InstancePrompts, ...]

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"shot end {self.end} before its start {self.start}")
        for inst in self.instances:
            for p in inst.prompts:
                if not self.start <= p.frame <= self.end:
                    raise ValueError(f"{inst.name}: prompt frame {p.frame} outside shot "
                                     f"{self.start}..{self.end}")
                if p.mask is not None and p.mask.shape != tuple(self.size):
                    raise ValueError(f"{inst.name}: mask of shape {p.mask.shape} on a "
                                     f"{self.size} picture")

    @property
    def names(self) -> list[str]:
        return [inst.name for inst in self.instances]

    @property
    def prompt_frames(self) -> list[int]:
        """Every frame that carries a prompt of any instance, sorted."""
        return sorted({p.frame for inst in self.instances for p in inst.prompts})

    def fingerprint(self) -> str:
        """A digest of everything that changes the masks; a stored track is reused only on a match."""
        h = hashlib.sha256(f"{self.start}:{self.end}:{self.size}".encode())
        for inst in self.instances:
            h.update(f"|{inst.name}".encode())
            for p in sorted(inst.prompts, key=lambda q: q.frame):
                h.update(repr((p.frame, p.box, p.points, p.negative)).encode())
                if p.mask is not None:
                    h.update(np.packbits(p.mask.astype(bool)).tobytes())
        return h.hexdigest()[:16]

    @classmethod
    def from_resolved(cls, shot: Any, size: tuple[int, int]) -> "ShotPrompts":
        """Build from a resolved shots.yaml shot (duck-typed: ``start``, ``end``, ``instances``
        each with ``name`` and ``prompts`` of ``frame, box, mask, points, negative``)."""
        instances = tuple(
            InstancePrompts(
                name=inst.name,
                prompts=tuple(
                    Prompt(frame=p.frame,
                           box=None if p.box is None else tuple(float(v) for v in p.box),
                           mask=None if p.mask is None else np.asarray(p.mask, dtype=bool),
                           points=tuple(tuple(map(float, q)) for q in (p.points or ())),
                           negative=tuple(tuple(map(float, q)) for q in (p.negative or ())))
                    for p in inst.prompts),
            )
            for inst in shot.instances
        )
        return cls(start=shot.start, end=shot.end, size=tuple(size), instances=instances)


def to_uint8(luma: np.ndarray) -> np.ndarray:
    """The luma as uint8 for flow and previews (uint16 keeps its top byte, float is [0, 1])."""
    if luma.dtype == np.uint8:
        return luma
    if luma.dtype == np.uint16:
        return (luma >> 8).astype(np.uint8)
    return np.clip(np.asarray(luma, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def nearest_prompt(frames: list[int], t: int) -> int | None:
    """The prompted frame whose region frame ``t`` starts from: the nearest one, ties to the earlier."""
    if not frames:
        return None
    return min(frames, key=lambda f: (abs(f - t), f))
