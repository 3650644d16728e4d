"""The film codecs restorer writes, in one table: add a codec by adding one :class:`Codec` to ``_TABLE``.

The CLI's ``--codec`` choices are :data:`CODECS`; :class:`restorer.io.encode.SegmentWriter` reads
everything else from the entry (encoder, chroma grid, bit depths, options, segment container).
A name that is not in the table is an :class:`~restorer.errors.InputError` naming the choices.

Light on purpose (no PyAV): ``restorer --help`` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from restorer.errors import InputError

Options = Callable[[int | None, str, int], dict[str, str]]  # (quality, preset, threads) -> encoder options


@dataclass(frozen=True)
class Codec:
    """One output codec.

    Attributes:
        name: the ``--codec`` name.
        encoder: the FFmpeg encoder.
        subsampling: (horizontal, vertical) chroma subsampling; an odd size the grid does not fit
            switches to 4:4:4 (the size is never changed). None: the source's, at any size (4:4:4 for
            sources that are not YUV).
        segment_suffix: the container of segments: one that keeps the source's time base exactly.
        depths: the bit depths it writes. One depth: always that one, whatever is asked.
        options: the encoder options for (quality, preset, threads).
        b_frames: False forces none, so that each packet's dts equals its pts and segments join exactly.
        iso_tag: the codec tag written in mp4/mov/m4v files (what Apple players require), if any.
    """

    name: str
    encoder: str
    subsampling: tuple[int, int] | None
    segment_suffix: str
    depths: tuple[int, ...]
    options: Options
    b_frames: bool = True
    iso_tag: str | None = None

    def chroma(self, width: int, height: int) -> tuple[int, int]:
        """The subsampling for a ``width`` x ``height`` frame (only for a fixed :attr:`subsampling`)."""
        sx, sy = self.subsampling
        return (1, 1) if width % sx or height % sy else (sx, sy)

    def depth(self, source_bits: int, requested: int | None) -> int:
        """The bit depth written: ``requested``, else the source's capped to the deepest allowed.

        Raises:
            ValueError: ``requested`` is not one of :attr:`depths`.
        """
        if len(self.depths) == 1:
            return self.depths[0]
        depth = requested or min(max(source_bits, 8), max(self.depths))
        if depth not in self.depths:
            raise ValueError(f"bit_depth must be {' or '.join(map(str, self.depths))}, not {depth}")
        return depth


def _x264(quality: int | None, preset: str, threads: int) -> dict[str, str]:
    return {"crf": str(18 if quality is None else quality), "preset": preset}


def _x265(quality: int | None, preset: str, threads: int) -> dict[str, str]:
    params = f"bframes=0:open-gop=0:frame-threads=1:pools={threads}:info=0:log-level=error"
    return {"crf": str(20 if quality is None else quality), "preset": preset, "x265-params": params}


def _ffv1(quality: int | None, preset: str, threads: int) -> dict[str, str]:
    return {"level": "3", "g": "1", "slices": "4", "slicecrc": "1", "coder": "1", "context": "1"}


def _prores(quality: int | None, preset: str, threads: int) -> dict[str, str]:
    return {"profile": str(3 if quality is None else quality), "vendor": "apl0"}  # 3: HQ


_TABLE: dict[str, Codec] = {c.name: c for c in (
    Codec("h264", "libx264", (2, 2), ".mp4", (8, 10), _x264, b_frames=False),
    Codec("h265", "libx265", (2, 2), ".mp4", (8, 10), _x265, b_frames=False, iso_tag="hvc1"),
    Codec("ffv1", "ffv1", None, ".mp4", (8, 10), _ffv1),  # lossless archival master
    Codec("prores", "prores_ks", (2, 1), ".mov", (10,), _prores),  # for editing
)}
CODECS: tuple[str, ...] = tuple(_TABLE)


def codec_named(name: str) -> Codec:
    """The table's entry for ``name`` (any case).

    Raises:
        InputError: ``name`` is not a codec restorer writes; names the choices.
    """
    found = _TABLE.get(str(name).lower())
    if found is None:
        raise InputError(f"unknown codec {name!r}", hint=f"choose one of {', '.join(CODECS)}")
    return found
