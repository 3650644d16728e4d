"""The ``stencil`` engine: each instance's named colour laid over the picture, as early cinema's
stencil colour (Pathécolor) did by hand.

Per frame the engine works at a small size (long side at most ``max_side``): the background takes
the tint the shot prompt names ("sepia", "cold night") or stays neutral, and every instance's
mask, area-averaged to that size so its edge is soft, lays the a*, b* of its colour name on top,
later instances over earlier ones. Lightness always stays the source's; the pipeline brings the
chroma to full size guided by the luma and recombines (:mod:`restorer.io.color`).

No weights, no randomness: the same inputs give the same chroma, frame by frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import cv2
import numpy as np

from restorer.errors import InputError
from restorer.models.colornames import parse_color, parse_tone
from restorer.models.engine import FrameInput, ShotContext

log = logging.getLogger(__name__)

DEFAULT_MAX_SIDE = 512


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) with the long side at most ``max_side``, aspect kept, never upscaled."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def instance_colours(ctx: ShotContext) -> np.ndarray:
    """(N, 2) a*b* of the colour each instance text names (stencil, and the anchors engine inside masks).

    Raises:
        InputError: a text names no colour; the message names the shot and the instance.
    """
    colours = []
    for inst in ctx.instances:
        try:
            colours.append(parse_color(inst.text).lab[1:])
        except InputError as err:
            where = f"shot at frame {ctx.shot_start}, instance {inst.name!r}"
            raise InputError(f"{where}: {err.problem}", path=ctx.source or None, hint=err.hint) from None
    return np.asarray(colours, np.float32).reshape(-1, 2)


class StencilEngine:
    """Flat named colours inside instance masks; see the module docstring."""

    name = "stencil"

    def __init__(self, max_side: int = DEFAULT_MAX_SIDE, tone_strength: float = 1.0):
        if max_side < 8:
            raise ValueError(f"max_side must be at least 8, got {max_side}")
        self.max_side = int(max_side)
        self.tone_strength = float(tone_strength)

    def palette(self, ctx: ShotContext) -> tuple[np.ndarray, np.ndarray]:
        """The shot's background a*b* (2,) and one a*b* per instance (N, 2), from its texts.

        Raises:
            InputError: an instance text names no colour; the message names the instance.
        """
        tone = parse_tone(ctx.prompt)
        background = np.zeros(2, np.float32) if tone is None else \
            np.float32(self.tone_strength) * np.asarray(tone[1:], np.float32)
        return background, instance_colours(ctx)

    def validate(self, ctx: ShotContext) -> None:
        """Check a shot's texts before any work starts, so a typo fails the run at once."""
        self.palette(ctx)

    def shot(self, ctx: ShotContext, frames: Iterable[FrameInput]) -> Iterator[np.ndarray]:
        """Yield (h, w, 2) float32 a*b* per frame; the texts are checked before the first frame."""
        background, colours = self.palette(ctx)
        log.debug("stencil shot %d: %d instances, background %s", ctx.shot_start, len(colours), background)
        return self._frames(background, colours, frames)

    def _frames(self, background: np.ndarray, colours: np.ndarray,
                frames: Iterable[FrameInput]) -> Iterator[np.ndarray]:
        for frame in frames:
            yield self.paint(frame, background, colours)

    def paint(self, frame: FrameInput, background: np.ndarray, colours: np.ndarray) -> np.ndarray:
        """One frame's chroma at the working size."""
        height, width = frame.luma.shape
        h, w = working_size(height, width, self.max_side)
        ab = np.empty((h, w, 2), np.float32)
        ab[:] = background
        masks = np.asarray(frame.masks)
        if masks.shape[0] != len(colours):
            raise RuntimeError(f"frame {frame.index} has {masks.shape[0]} masks for {len(colours)} instances")
        for mask, colour in zip(masks, colours, strict=True):
            if not mask.any():
                continue
            cover = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
            ab += cover[..., None] * (colour - ab)
        return ab

    def close(self) -> None:
        """Nothing to release."""


_OPTIONS = {"max_side": int, "tone_strength": float}


def check_options(options: dict[str, Any]) -> None:
    """Refuse an option the stencil engine does not read (:data:`restorer.presets.OPTION_CHECKS`)."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InputError(f"unknown stencil option(s): {', '.join(unknown)}",
                         hint=f"the stencil engine takes {', '.join(_OPTIONS)}")


def open_stencil(options: dict[str, Any] | None = None, *, device: str = "cpu", dtype: str = "auto",
                 **_unused: Any) -> StencilEngine:
    """Build the stencil engine from a preset's engine options.

    Args:
        options: ``max_side`` (working size, long side; default 512) and ``tone_strength``
            (scale of the prompt's tint; default 1).
        device, dtype: ignored; the engine is plain numpy on the CPU (weights, base and the
            diffusion overrides of other engines are ignored too).

    Raises:
        InputError: an unknown option or a value of the wrong type.
    """
    options = dict(options or {})
    check_options(options)
    try:
        kwargs = {key: _OPTIONS[key](value) for key, value in options.items()}
        return StencilEngine(**kwargs)
    except (TypeError, ValueError) as err:
        raise InputError(f"bad stencil option: {err}") from None
