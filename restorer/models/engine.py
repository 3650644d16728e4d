"""The engine contract.

An *engine* turns grayscale frames into chroma. Every colorizer (``stencil``, ``mtcolor`` for
the ``tiny`` and ``sd15`` presets, ``anchors``; the registry is :data:`restorer.presets.ENGINES`)
implements it, and the pipelines (photo, video, watch) only ever talk to this interface:

1. The pipeline builds the engine once per run with :func:`open_engine` (weights are
   loaded here, once).
2. Before any work it calls :meth:`Engine.validate` on every shot's texts; then for every
   shot (a photo is a one-shot film) it calls :meth:`Engine.shot` with a
   :class:`ShotContext` — the shot's seed, its prompt and its instance texts — and
   an iterator of :class:`FrameInput` in display order.
3. The engine yields one :class:`numpy.ndarray` per frame, shape ``(h, w, 2)``,
   float32 CIE a*, b* (D65) at *its own working size*; it may keep state across the
   frames of one shot (temporal engines do). An engine that knows the frame's colour
   without its instances attaches it (:func:`with_background`); the region outside every
   mask is then upsampled from that, so an instance changes nothing outside its mask.
4. The pipeline recombines: the source luma is kept exactly, the chroma is brought
   to full size by luma-guided upsampling and desaturated where it would leave the
   RGB gamut (:mod:`restorer.io.color`). Engines never write pixels.

Determinism: for a given shot seed, inputs and frame, an engine yields the same
chroma whether the shot is processed whole or resumed from a chunk boundary
(``FrameInput.index`` is the frame's index within the film, ``shot_start`` in the
context lets an engine derive per-frame randomness). Jobs rely on this to resume a
killed run and produce the identical film.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

import numpy as np


@dataclass(frozen=True)
class InstanceText:
    """One instance of a shot: its name (for messages, previews) and its text ("a red car")."""

    name: str
    text: str


@dataclass(frozen=True)
class ShotContext:
    """What an engine knows about a shot before its first frame."""

    seed: int
    prompt: str | None
    instances: tuple[InstanceText, ...]
    shot_start: int = 0
    shot_end: int = 0  # inclusive
    size: tuple[int, int] = (0, 0)  # full-resolution (height, width)
    source: str = ""  # file name, for messages only
    sample: bool = False  # the user chose a seed (--seed, --variants): engines that have a most likely
    # answer (anchors) give it without one, and sample from their distribution with the seed
    anchors: tuple = ()  # the shot's user anchors on its first frame (restorer.models.anchors.engine.AnchorEdit);
    # films give each frame its tracked ones in FrameInput.extra["anchors"]


@dataclass
class FrameInput:
    """One frame as an engine sees it.

    ``luma``: (H, W) float32 in [0, 1], the source's Y' at full resolution.
    ``masks``: (N, H, W) bool, one per instance of the shot in file order (later is on
    top); an instance absent from this frame has an all-False mask.
    """

    index: int
    luma: np.ndarray
    masks: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """A colorizer. See the module docstring for the whole contract."""

    name: str

    def validate(self, ctx: ShotContext) -> None:
        """Refuse the shot's texts before any work starts (:class:`restorer.errors.InputError`, one line), so a
        typo fails the run at once, not hours into a film; engines that take any text check nothing."""
        ...

    def shot(self, ctx: ShotContext, frames: Iterable[FrameInput]) -> Iterator[np.ndarray]:
        """Yield (h, w, 2) float32 a*b* chroma for each frame, in order. An engine that knows the
        frame's colour without its instances may attach it (:func:`with_background`)."""
        ...

    def close(self) -> None:
        ...


def check_chroma(ab: np.ndarray, where: str) -> np.ndarray:
    """Validate an engine's output; a wrong shape is a bug in the engine, said plainly. A background
    layer (:func:`with_background`) is validated and kept."""
    if ab.ndim != 3 or ab.shape[2] != 2:
        raise RuntimeError(f"engine {where} yielded chroma of shape {ab.shape}, expected (h, w, 2)")
    out = np.ascontiguousarray(ab, dtype=np.float32)
    layer = background_of(ab)
    if layer is None:
        return out
    if layer.shape != ab.shape:
        raise RuntimeError(f"engine {where} yielded a background layer of shape {layer.shape} for chroma of "
                           f"shape {ab.shape}")
    return with_background(out, layer)


class Chroma(np.ndarray):
    """An engine's (h, w, 2) a*b* that also carries ``background``: the frame's colour without its
    instances on the same grid (the upsampling then gives the region outside every mask exactly the
    colour it has without them). Anything computed from it is a plain array again."""

    background: np.ndarray | None = None

    def __array_finalize__(self, obj) -> None:
        self.background = None  # a slice or a sum is not the engine's output: no layer


def with_background(ab: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``ab`` with the frame's colour without its instances attached (see :class:`Chroma`)."""
    out = np.ascontiguousarray(ab, dtype=np.float32).view(Chroma)
    out.background = np.ascontiguousarray(background, dtype=np.float32)
    return out


def background_of(ab: np.ndarray) -> np.ndarray | None:
    """The background layer an engine attached to its chroma, or None."""
    return getattr(ab, "background", None)
