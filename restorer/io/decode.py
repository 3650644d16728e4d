"""``LumaReader(path, info, start, end)``: the Y' planes of frames ``start..end`` (inclusive), in display order.

``luma`` is Y' at the source bit depth (``uint8``; ``uint16`` code values, not shifted, above 8 bits):
the decoded plane bit for bit for YUV and gray sources, else Kr R + Kg G + Kb B with
``VideoInfo.matrix``, full range.

Damaged input never raises out of the iterator, and iteration always ends. ``LumaReader.damaged``
holds the probe's holes in its range and what decoding finds:

* frames that do not decode ("did not decode");
* frames the decoder flags corrupt (``AV_FRAME_FLAG_CORRUPT``: FFmpeg concealed errors in them);
* stray frames: unlike both neighbours while those match each other (8x8-block thumbnails, ``GLITCH_MIN``,
  ``GLITCH_RATIO``). They decode cleanly, the damage being in the picture (a white block, a mirrored
  frame, a black band), so only the picture tells; a one-frame flash of light reads the same.
"""

from __future__ import annotations

import bisect
import logging
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from restorer.io.film import (
    Damage,
    DecodedFrame,
    VideoInfo,
    damage_at,
    decode_frames,
    error_text,
    is_yuv_format,
    open_input,
    video_stream,
)
from restorer.io.probe import probe

logger = logging.getLogger(__name__)

GLITCH_MIN = 3.0  # mean |difference| (8-bit scale) a stray frame has from each neighbour, at least ...
GLITCH_RATIO = 1.5  # ... and this many times the neighbours' own difference (+1)


class LumaReader:
    """Iterate the Y' planes of frames ``start..end`` (inclusive) in display order.

    Frames that do not decode are skipped and recorded in ``damaged``, as are frames the decoder
    flags corrupt and stray frames (see the module's notes); the iterator never raises on damaged
    data and always ends.

    A stray frame is judged against the frames on both sides, so the first frame of the range
    needs frame ``start - 1``: the reader has it when its seek lands before ``start``, else pass
    ``previous``, the ``edge`` of the reader of the range before (``(index, thumbnail)``). The
    last frame's next one is decoded anyway (it ends the range).
    """

    def __init__(self, path: str | Path, info: VideoInfo | None = None, start: int = 0,
                 end: int | None = None, *, threads: int = 2,
                 previous: tuple[int, np.ndarray] | None = None):
        self.path = Path(path)
        self.info = info or probe(self.path)
        last = self.info.frame_count - 1
        self.start = max(0, start)
        self.end = last if end is None else min(end, last)
        self.threads = threads
        self.previous = previous
        self.damaged: list[Damage] = []
        self.edge: tuple[int, np.ndarray] | None = None  # the range's last frame: ``previous`` of the next
        self._avi = False

    def __iter__(self) -> Iterator[DecodedFrame]:
        info = self.info
        self.damaged = [h for h in info.holes if self.start <= h.first <= self.end
                        or (h.first >= info.frame_count and self.end == info.frame_count - 1)]
        corrupt: list[int] = []
        strays = _StrayFrames(self.start, self.end)
        if self.previous is not None:
            strays.push(*self.previous)
        with open_input(self.path) as container:
            self._avi = "avi" in container.format.name.split(",")
            stream = video_stream(container, self.path)
            stream.thread_count = self.threads
            frames = self._frames_from(container, stream)
            expected = self.start
            for index, frame in frames:
                if index < self.start or index > self.end:  # the neighbours, for the stray-frame check
                    strays.push(index, _thumbnail(frame_luma(frame, info), info.bit_depth))
                    if index > self.end:
                        break
                    continue
                self._missing(expected, index - 1)
                expected = index + 1
                if frame.is_corrupt:
                    corrupt.append(index)
                luma = frame_luma(frame, info)
                self.edge = (index, _thumbnail(luma, info.bit_depth))
                strays.push(*self.edge)
                yield DecodedFrame(index, info.pts[index], luma)
            self._missing(expected, self.end)
        self.damaged += self._ranges(corrupt, "decoded with errors (the decoder flags the frame corrupt: "
                                              "it concealed what it could not read)")
        self.damaged += self._ranges([i for i in strays.found if i not in corrupt],
                                     "unlike the frames on both sides, which match each other: "
                                     "a damaged or stray frame (or a one-frame flash)")
        self.damaged.sort(key=lambda d: d.first)

    def _ranges(self, indices: list[int], reason: str) -> list[Damage]:
        out: list[Damage] = []
        for index in sorted(indices):
            if out and out[-1].last == index - 1:
                out[-1] = damage_at(self.info, out[-1].first, index, reason)
            else:
                out.append(damage_at(self.info, index, index, reason))
        return out

    def _frames_from(self, container, stream) -> Iterator[tuple[int, av.VideoFrame]]:
        """(index, frame) pairs with index >= start, increasing, after frame ``start - 1`` when the
        seek's pre-roll decodes it; seeks when start > 0."""
        seeked = self.start > 0 and self._seek(container, stream)
        last = -1
        for frame in decode_frames(container, stream):
            index = self._index_of(frame, last)
            if index is None or index < self.start:
                if index is not None and index == self.start - 1:
                    yield index, frame
                continue
            if seeked and last < 0 and index > self.start:  # seek overshot: decode from the top
                logger.info("%s: seek landed after frame %d; decoding from the start", self.path, self.start)
                container.seek(0)
                yield from self._frames_after_rewind(container, stream)
                return
            last = index
            yield index, frame

    def _frames_after_rewind(self, container, stream) -> Iterator[tuple[int, av.VideoFrame]]:
        last = -1
        for frame in decode_frames(container, stream):
            index = self._index_of(frame, last)
            if index is not None and index >= self.start - 1:
                if index >= self.start:
                    last = index
                yield index, frame

    def _seek(self, container, stream) -> bool:
        try:
            container.seek(self.info.pts[self.start], stream=stream, backward=True, any_frame=False)
            return True
        except av.error.FFmpegError as err:
            logger.info("%s: cannot seek (%s); decoding from the start", self.path, error_text(err))
            return False

    def _index_of(self, frame: av.VideoFrame, last: int) -> int | None:
        """Map a decoded frame to its index; out-of-order or unknown stamps take the next slot."""
        # AVI has no presentation stamps: packed B-frames carry wrong pts, and the
        # decoder's dts is the display counter (FFmpeg's best-effort timestamp agrees).
        ts = frame.dts if (self._avi and frame.dts is not None) or frame.pts is None else frame.pts
        pts = self.info.pts
        if ts is None:
            index = last + 1
        else:
            index = bisect.bisect_left(pts, ts)
            if index <= last:
                index = last + 1
        return index if index < len(pts) else None

    def _missing(self, first: int, last: int) -> None:
        if first <= last:
            self.damaged.append(damage_at(self.info, first, last, "did not decode"))


def _thumbnail(luma: np.ndarray, bit_depth: int) -> np.ndarray:
    """8x8-block means of Y' (area resampling) on the 8-bit scale, less their mean (a frame brighter
    or darker as a whole, flicker or a fade, is not a stray frame)."""
    import cv2

    h, w = luma.shape
    b = max(1, min(8, h // 4, w // 4))
    blocks = cv2.resize(luma, (max(1, w // b), max(1, h // b)), interpolation=cv2.INTER_AREA).astype(np.float32)
    blocks *= np.float32(255 / ((1 << max(bit_depth, 8)) - 1))
    return blocks - blocks.mean()


class _StrayFrames:
    """Frames unlike both neighbours while the neighbours agree, among ``first..last``."""

    def __init__(self, first: int, last: int):
        self.first, self.last = first, last
        self.window: list[tuple[int, np.ndarray]] = []
        self.found: list[int] = []

    def push(self, index: int, thumb: np.ndarray) -> None:
        if self.window and self.window[-1][0] == index:
            self.window[-1] = (index, thumb)
            return
        self.window = [*self.window[-2:], (index, thumb)]
        if len(self.window) < 3:
            return
        (i0, a), (i1, b), (i2, c) = self.window
        if i0 + 1 == i1 == i2 - 1 and self.first <= i1 <= self.last and a.shape == b.shape == c.shape:
            near = min(float(np.abs(b - a).mean()), float(np.abs(b - c).mean()))
            if near > GLITCH_MIN and near > GLITCH_RATIO * (float(np.abs(c - a).mean()) + 1):
                self.found.append(i1)


def frame_luma(frame: av.VideoFrame, info: VideoInfo) -> np.ndarray:
    """The frame's Y' at source depth: the decoded plane for YUV/gray, else from RGB."""
    fmt = frame.format
    bits = fmt.components[0].bits
    planar_y = fmt.is_planar and (fmt.name.startswith(("yuv", "gray")) or fmt.name.startswith("y"))
    if planar_y and fmt.name.startswith(("yuv", "gray")):
        return _plane_array(frame.planes[0], bits, frame.width, frame.height)
    if is_yuv_format(fmt.name):  # packed or semi-planar YUV: unscaled swscale copy to planar
        target = "yuv444p" if bits <= 8 else f"yuv444p{bits}le"
        return frame_luma(frame.reformat(format=target), info)
    return _luma_from_rgb(frame, bits, info.kr_kb)


def _plane_array(plane, bits: int, width: int, height: int) -> np.ndarray:
    dtype = np.uint8 if bits <= 8 else np.dtype("<u2")
    arr = np.frombuffer(plane, dtype=dtype)
    stride = plane.line_size // arr.itemsize
    out = arr[: stride * height].reshape(height, stride)[:, :width]
    return out.astype(np.uint16) if bits > 8 else out.copy()


def _luma_from_rgb(frame: av.VideoFrame, bits: int, kr_kb: tuple[float, float]) -> np.ndarray:
    kr, kb = kr_kb
    rgb = frame.to_ndarray(format="rgb24" if bits <= 8 else "rgb48le").astype(np.float32)
    y = kr * rgb[..., 0] + (1 - kr - kb) * rgb[..., 1] + kb * rgb[..., 2]
    if bits <= 8:
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)
    top = (1 << bits) - 1
    return np.clip(np.rint(y * (top / 65535)), 0, top).astype(np.uint16)


def luma_to_unit(y: np.ndarray, info: VideoInfo) -> np.ndarray:
    """Y' code values -> float32 in [0, 1], honouring the stream's range and bit depth."""
    bits = max(info.bit_depth, 8)
    if info.full_range:
        return (y.astype(np.float32) / float((1 << bits) - 1))
    scale = float(1 << (bits - 8))
    return np.clip((y.astype(np.float32) - 16.0 * scale) / (219.0 * scale), 0.0, 1.0)
