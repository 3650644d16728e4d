"""``SegmentWriter(path, info, codec)``: frames as the source's Y' plus float Pb, Pr, encoded into one segment.

* Chroma (full resolution, in [-0.5, 0.5]) is area-averaged to the codec's grid
  (:mod:`restorer.io.codecs`) and quantised per ITU-T H.273. A size the grid does not fit switches to
  4:4:4; nothing is padded or resized, and Y' is written as given.
* Bit depth 8 or 10 (default: the source's, capped to 10); Y' is MSB-aligned when it differs.
* Tags: the resolved matrix and range, the ones the chroma was computed with; primaries and transfer
  copied (unspecified stays unspecified); SAR and rotation copied.
* Segments join exactly: the source's pts and time base (mp4/mov keep it exactly: :func:`segment_suffix`),
  no B-frames for h264/h265 (dts = pts), an IDR frame first.
* Deterministic: fixed thread counts and ``+bitexact``, so the same frames give a byte-identical segment
  with the same FFmpeg build.
* Written under a temporary name, renamed on a clean exit, deleted on an exception.
"""

from __future__ import annotations

import functools
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from restorer.fs import partial_name, replace_synced
from restorer.io.codecs import codec_named
from restorer.io.film import RANGE_FULL, RANGE_LIMITED, VideoInfo
from restorer.io.mux import container_format

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- encoding


def chroma_layout(codec: str, info: VideoInfo) -> tuple[int, int]:
    """(horizontal, vertical) chroma subsampling factors the writer uses for ``codec`` (its table entry)."""
    spec = codec_named(codec)
    if spec.subsampling is None:
        return _source_subsampling(info) if info.is_yuv else (1, 1)
    return spec.chroma(info.width, info.height)


def _source_subsampling(info: VideoInfo) -> tuple[int, int]:
    fmt = av.VideoFormat(info.pix_fmt, info.width, info.height)
    if len(fmt.components) < 3:  # gray
        return (1, 1)
    c = fmt.components[1]
    return (max(1, -(-info.width // c.width)) if c.width else 1,
            max(1, -(-info.height // c.height)) if c.height else 1)


def output_pix_fmt(codec: str, info: VideoInfo, bit_depth: int) -> str:
    """The pixel format the writer encodes for ``codec`` at ``bit_depth``."""
    sub = chroma_layout(codec, info)
    name = {(2, 2): "yuv420p", (2, 1): "yuv422p", (1, 1): "yuv444p", (4, 1): "yuv411p",
            (1, 2): "yuv440p", (4, 4): "yuv410p"}.get(sub, "yuv444p")
    if bit_depth > 8:
        if name in ("yuv411p", "yuv440p", "yuv410p"):
            name = "yuv444p"
        name += f"{bit_depth}le"
    return name


def area_average(plane: np.ndarray, sx: int, sy: int) -> np.ndarray:
    """Mean over sx x sy blocks; edge blocks average only the pixels that exist."""
    if sx == 1 and sy == 1:
        return plane.astype(np.float32, copy=False)
    h, w = plane.shape
    padded = np.pad(plane, ((0, -h % sy), (0, -w % sx)), mode="edge").astype(np.float32)
    hh, ww = padded.shape
    return padded.reshape(hh // sy, sy, ww // sx, sx).mean(axis=(1, 3))


def quantise_chroma(p: np.ndarray, bits: int, full_range: bool) -> np.ndarray:
    """Pb or Pr in [-0.5, 0.5] to Cb/Cr code values (ITU-T H.273)."""
    if full_range:
        top = (1 << bits) - 1
        codes, lo, hi = p * top + (1 << (bits - 1)), 0, top
    else:
        scale = 1 << (bits - 8)
        codes, lo, hi = (128 + 224 * p) * scale, 16 * scale, 240 * scale
    return np.clip(np.rint(codes), lo, hi).astype(np.uint8 if bits <= 8 else np.uint16)


class SegmentWriter:
    """Encode frames of one segment; a context manager that renames into place on success.

    Args:
        path: the segment's final name (suffix from :func:`segment_suffix`).
        info: the source's :class:`VideoInfo` (pts, time base, tags, SAR, rotation).
        codec: a name in :data:`restorer.io.codecs.CODECS`.
        bit_depth: 8 or 10; None keeps the source's (capped to 10).
        quality: CRF for h264/h265 (default 18/20), ProRes profile 0-5 (default 3, HQ).
        preset: x264/x265 preset.
        threads: encoder threads; fixed so that output does not depend on the machine.
    """

    def __init__(self, path: str | Path, info: VideoInfo, codec: str = "h264", *,
                 bit_depth: int | None = None, quality: int | None = None,
                 preset: str = "medium", threads: int = 2):
        self.path = Path(path)
        self.info = info
        self.spec = codec_named(codec)
        self.codec = self.spec.name
        self.bit_depth = self.spec.depth(info.bit_depth, bit_depth)
        self.pix_fmt = output_pix_fmt(self.codec, info, self.bit_depth)
        self.subsampling = chroma_layout(self.codec, info)
        self.full_range = info.full_range
        self.frames_written = 0
        self._last_index = -1
        self._durations: dict[int, int] = {}  # pts -> the frame's duration, until its packet is muxed
        self._tmp = partial_name(self.path)
        self._container = av.open(str(self._tmp), "w", format=container_format(self.path),
                                  options={"fflags": "+bitexact"})
        try:
            self._stream = self._add_stream(quality, preset, threads)
        except Exception:
            self.abort()
            raise

    def _add_stream(self, quality: int | None, preset: str, threads: int):
        info = self.info
        spec = self.spec
        stream = self._container.add_stream(spec.encoder, rate=info.frame_rate)
        cc = stream.codec_context
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, self.pix_fmt
        stream.time_base = info.time_base
        cc.time_base = info.time_base
        cc.thread_count = threads
        cc.sample_aspect_ratio = info.sar
        cc.color_primaries, cc.color_trc = info.color_primaries, info.color_trc
        cc.colorspace = info.matrix
        cc.color_range = RANGE_FULL if self.full_range else RANGE_LIMITED
        options = spec.options(quality, preset, threads)
        if "slices" in options and not _slices_fit(spec.encoder, info.width, info.height, self.pix_fmt,
                                                   info.time_base, tuple(sorted(options.items()))):
            options = {k: v for k, v in options.items() if k != "slices"}  # the encoder's own count
        cc.options = options
        if not spec.b_frames:
            cc.max_b_frames = 0
        if spec.iso_tag and self.path.suffix.lower() in (".mp4", ".mov", ".m4v"):
            cc.codec_tag = spec.iso_tag
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        return stream

    def write(self, index: int, y_plane: np.ndarray, pb: np.ndarray, pr: np.ndarray) -> None:
        """Encode frame ``index``: Y' code values (H, W) and float Pb, Pr (H, W) in [-0.5, 0.5]."""
        if index <= self._last_index:
            raise ValueError(f"frame {index} written after frame {self._last_index}; indices must increase")
        shape = (self.info.height, self.info.width)
        for name, plane in (("y_plane", y_plane), ("pb", pb), ("pr", pr)):
            if plane.shape != shape:
                raise ValueError(f"{name} has shape {plane.shape}, expected {shape}")
        frame = self._frame(y_plane, pb, pr)
        frame.pts = self.info.pts[index]
        frame.time_base = self.info.time_base
        self._durations[frame.pts] = self.info.frame_duration(index)
        self._mux(self._stream.encode(frame))
        self._last_index = index
        self.frames_written += 1

    def _mux(self, packets) -> None:
        """Mux with each frame's own duration: encoders leave it 0 and muxers then guess 1 / rate, so a
        VFR film's last frame would end at the wrong time (no B-frames: a packet's pts is its frame's)."""
        for packet in packets:
            if packet.pts is not None and packet.pts in self._durations:
                packet.duration = self._durations.pop(packet.pts)
            self._container.mux(packet)

    def _frame(self, y: np.ndarray, pb: np.ndarray, pr: np.ndarray) -> av.VideoFrame:
        bits, (sx, sy) = self.bit_depth, self.subsampling
        frame = av.VideoFrame(self.info.width, self.info.height, self.pix_fmt)
        frame.color_range = RANGE_FULL if self.full_range else RANGE_LIMITED
        frame.colorspace = self.info.matrix
        planes = (_rescale_luma(y, self.info.bit_depth, bits),
                  quantise_chroma(area_average(pb, sx, sy), bits, self.full_range),
                  quantise_chroma(area_average(pr, sx, sy), bits, self.full_range))
        for plane, data in zip(frame.planes, planes, strict=True):
            _fill_plane(plane, data)
        return frame

    def close(self) -> None:
        """Flush the encoder, finish the file and rename it to ``path``."""
        if self._container is None:
            return
        self._mux(self._stream.encode(None))
        self._container.close()
        self._container = None
        replace_synced(self._tmp, self.path)  # a segment recorded as done must survive a crash of the machine
        logger.debug("wrote %s (%d frames)", self.path, self.frames_written)

    def abort(self) -> None:
        """Drop the unfinished file."""
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError):
                pass
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def segment_suffix(codec: str) -> str:
    """The file suffix for a segment of ``codec``: a container that keeps the time base exactly."""
    return codec_named(codec).segment_suffix


@functools.lru_cache(maxsize=32)
def _slices_fit(encoder: str, width: int, height: int, pix_fmt: str, time_base: Fraction,
                options: tuple[tuple[str, str], ...]) -> bool:
    """Whether the encoder accepts the slice count asked at this size: FFV1 refuses some odd sizes
    (67x49 4:2:0, "Unsupported number 4 of slices", ENOSYS), found by opening a throwaway encoder."""
    cc = av.CodecContext.create(encoder, "w")
    cc.width, cc.height, cc.pix_fmt, cc.time_base = width, height, pix_fmt, time_base
    cc.options = dict(options)
    try:
        cc.open()
    except av.error.FFmpegError:
        return False
    return True


def _rescale_luma(y: np.ndarray, src_bits: int, dst_bits: int) -> np.ndarray:
    dtype = np.uint8 if dst_bits <= 8 else np.uint16
    src_bits = max(src_bits, 8)
    if src_bits == dst_bits:
        return y.astype(dtype, copy=False)
    if dst_bits > src_bits:
        return (y.astype(np.uint32) << (dst_bits - src_bits)).astype(dtype)
    shift = src_bits - dst_bits
    top = (1 << dst_bits) - 1
    return np.minimum((y.astype(np.uint32) + (1 << (shift - 1))) >> shift, top).astype(dtype)


def _fill_plane(plane, data: np.ndarray) -> None:
    buf = np.frombuffer(plane, dtype=data.dtype)
    stride = plane.line_size // data.itemsize
    h, w = data.shape
    buf[: stride * h].reshape(h, stride)[:, :w] = data
