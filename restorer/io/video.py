"""Film I/O with PyAV: probe, stream the luma out, encode segments, assemble the film.

Nothing here holds a film in memory: frames are decoded and encoded one at a time.

Reading
-------
``probe(path) -> VideoInfo`` demuxes the video stream once (no decoding, apart from
the first frame for its pixel format, rotation and colour tags) and records every
frame's pts. A film's *frame index* ``i`` is the i-th frame in display order and
``info.pts[i]`` its timestamp in ``info.time_base``; every other module speaks in
these indices.

``LumaReader(path, info, start=0, end=None)`` yields ``DecodedFrame(index, pts,
luma)`` for frames ``start..end`` (inclusive), seeking to the keyframe before
``start``. ``luma`` is the Y' plane at the source bit depth: ``uint8`` for 8-bit,
``uint16`` code values (0..1023 for 10-bit, not shifted) above that. For YUV sources
it is the decoded plane exactly, bit for bit. For other sources (rgb, pal8, ...)
Y' = Kr R + Kg G + Kb B with the resolved matrix (``VideoInfo.matrix``), full range;
gray sources give their plane as is.

Damaged input never raises out of the iterator: frames that do not decode are
skipped and recorded in ``LumaReader.damaged`` (a list of :class:`Damage`, with
frame-index ranges and timecodes), holes in an AVI's timeline found by ``probe``
are in ``VideoInfo.holes`` and are copied into ``damaged`` too. Iteration always
ends: the reader only moves forward through a finite file. Damage is:

* frames that do not decode (the decoder raised on their packets): "did not decode";
* frames the decoder outputs but flags as corrupt (``frame.is_corrupt``, FFmpeg's
  ``AV_FRAME_FLAG_CORRUPT``: it concealed errors in them): "decoded with errors";
* a stray frame: unlike both of its neighbours while they match each other (mean
  absolute difference of 8x8-block thumbnails, on the 8-bit scale, above
  ``GLITCH_MIN`` and ``GLITCH_RATIO`` times the neighbours' own difference plus 1).
  Such frames decode cleanly (Megamind_bugy.avi's damage was encoded into the
  picture: a white block, a mirrored frame, a black band), so only the picture
  tells; a one-frame flash of light reads the same and is reported too;
* a cut tail (``probe``): the container declares a longer video than the file's
  packets reach (the stream's duration, Matroska's DURATION tag, else the file's
  duration against where every stream's packets end). The missing frames are
  estimated from the mean frame interval of the frames present, and recorded as
  the range ``frame_count .. frame_count + missing - 1`` (indices past the last
  frame: they are not in the file); the reader whose range ends at the last frame
  carries it;
* AVI timeline holes and index/packet count mismatches (``probe``).

Writing
-------
``SegmentWriter(path, info, codec="h264")`` encodes frames given as the source's
Y' plane (code values, untouched) plus full-resolution float Pb, Pr in
[-0.5, 0.5]. Chroma is area-averaged to the pix_fmt's grid and quantised per
ITU-T H.273: limited range ``(16 + 224 * (P + 0.5)) * 2**(bits-8)`` i.e.
``128 * 2**(bits-8) + 224 * 2**(bits-8) * P`` clipped to 16..240 scaled; full range
``(2**bits - 1) * P + 2**(bits-1)``. Frames keep the source pts and time base.

Codecs (the table: :mod:`restorer.io.codecs`): ``h264``/``h265`` (yuv420p, or yuv420p10le at 10 bits), ``ffv1``
(source's chroma subsampling when the source is planar YUV, else 4:4:4) and
``prores`` (prores_ks, yuv422p10le, HQ). Decisions:

* Odd sizes: 4:2:0 and 4:2:2 need even sizes in x264/x265/prores, so for those
  codecs an odd width (or odd height with 4:2:0) switches to 4:4:4 (h264/h265:
  yuv444p / yuv444p10le, prores: yuv444p10le). The size and luma are never
  changed, nothing is padded. ffv1 handles odd sizes natively.
* Bit depth: 8 or 10 (``bit_depth=None`` keeps the source's, capped to 10).
  ProRes is always 10-bit. When output and source depth differ, Y' is shifted by
  the difference (the usual MSB alignment, 8->10 is x4).
* Colour tags: the output always carries the *resolved* matrix and range (the ones
  the chroma was computed with: source tag, else BT.601 for height <= 576 and BT.709
  above; limited range for YUV sources that do not say, full range for rgb/gray
  sources). Primaries and transfer are copied as they are, unspecified stays
  unspecified (we do not claim what we do not know).
* No B-frames for h264/h265: each packet's dts equals its pts, so segments
  concatenate with strictly increasing dts and exact source pts (no edit-list or
  composition offsets at the joins). Each segment starts with an IDR frame.
* Determinism: fixed encoder thread counts (``threads``, default 2, never "auto")
  and ``fflags=+bitexact`` on the muxer (no random Matroska UIDs, no version
  strings), so the same frames give a byte-identical segment on any machine with
  the same FFmpeg build.
* SAR and rotation (display matrix) are written onto the stream.

Name segments with ``segment_suffix(codec)`` (``.mp4``; ``.mov`` for ProRes): the
ISO/QuickTime muxers keep the source time base exactly (Matroska stores milliseconds,
so pts survive exactly in mp4/mov outputs and to the millisecond in mkv ones). The writer writes to a
temporary name in the same folder and renames on a clean exit; on an exception the
temporary file is deleted.

``assemble(segments, source, info, output)`` remuxes the segments' video packets (no
re-encode) and every audio and subtitle stream of the source, packet for packet,
interleaved by time, into ``output`` (temporary name, renamed when complete). It
checks that all segments share codec, size, pix_fmt and codec extradata (the
avcC/hvcC/ffv1 configuration record lives once in an mp4/mkv header, so segments with
different extradata cannot share one stream; with fixed encoder settings they are
identical, and a mismatch is reported instead of writing a broken film).

Errors a user can cause raise :class:`restorer.errors.InputError` /
:class:`restorer.errors.OutputError` with a one-line message.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import io
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from restorer.errors import InputError, OutputError
from restorer.fs import atomic_path, partial_name, refuse_existing, replace_synced
from restorer.io.codecs import codec_named

logger = logging.getLogger(__name__)

UNSPECIFIED = 2  # AVCOL_PRI/TRC/SPC_UNSPECIFIED
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2
BT709, BT601 = 1, 6  # AVCOL_SPC_BT709, AVCOL_SPC_SMPTE170M
# (Kr, Kb) per AVColorSpace value.
_MATRIX_COEFFS: dict[int, tuple[float, float]] = {
    1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
    7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593),
}
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".nut": "nut"}


@dataclass(frozen=True)
class Damage:
    """A run of frames that did not decode (or a hole in the file's timeline).

    ``first``/``last`` are inclusive frame indices; for a hole of frames missing from
    the file they both name the frame that follows the hole. ``start``/``end`` are
    timecodes "HH:MM:SS.mmm".
    """

    first: int
    last: int
    start: str
    end: str
    reason: str

    def __str__(self) -> str:
        return f"frames {self.first}-{self.last} ({self.start}-{self.end}): {self.reason}"


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a film. Colour fields are FFmpeg enum values."""

    path: str
    width: int
    height: int
    frame_count: int
    time_base: Fraction
    frame_rate: Fraction
    sar: Fraction
    rotation: int  # counter-clockwise degrees a player turns the picture, 0..359
    pix_fmt: str  # decoded pixel format
    bit_depth: int
    color_primaries: int
    color_trc: int
    colorspace: int
    color_range: int
    pts: tuple[int, ...]
    audio_streams: int
    subtitle_streams: int
    duration_s: float
    codec: str = ""
    holes: tuple[Damage, ...] = field(default=())
    is_color: bool = False  # most sampled frames are in colour (which restorer replaces)
    chroma: float = 0.0  # mean |Pb, Pr| of the sampled frames, 8-bit code values (x 255)
    last_duration: int = 0  # how long the last frame is shown, in time_base units (0: unknown)

    def frame_duration(self, index: int) -> int:
        """How long frame ``index`` is shown, in ``time_base`` units (the next frame's pts minus its own)."""
        if index + 1 < len(self.pts):
            return self.pts[index + 1] - self.pts[index]
        if self.last_duration:
            return self.last_duration
        return max(1, round(1 / (self.frame_rate * self.time_base))) if self.frame_rate else 1

    @property
    def is_yuv(self) -> bool:
        return _is_yuv(self.pix_fmt)

    @property
    def matrix(self) -> int:
        """The Y'CbCr matrix in force: the tag, else BT.601 up to 576 lines, else BT.709."""
        if self.colorspace in _MATRIX_COEFFS:
            return self.colorspace
        return BT601 if self.height <= 576 else BT709

    @property
    def kr_kb(self) -> tuple[float, float]:
        return _MATRIX_COEFFS[self.matrix]

    @property
    def matrix_name(self) -> str:
        """The matrix as :mod:`restorer.io.color` names it (the nearest of bt601/bt709/bt2020)."""
        from restorer.io.color import YCBCR_COEFFS

        kr, kb = self.kr_kb
        return min(YCBCR_COEFFS, key=lambda n: abs(YCBCR_COEFFS[n][0] - kr) + abs(YCBCR_COEFFS[n][1] - kb))

    @property
    def full_range(self) -> bool:
        """Full (0..2^b-1) or limited (16..235 scaled) code values for Y'."""
        if self.color_range in (RANGE_LIMITED, RANGE_FULL):
            return self.color_range == RANGE_FULL
        return self.pix_fmt.startswith("yuvj") or not self.is_yuv

    def time(self, index: int) -> Fraction:
        """Seconds from the first frame's pts to frame ``index``."""
        return (self.pts[index] - self.pts[0]) * self.time_base

    def frame_at(self, seconds: Fraction) -> int:
        """The index of the frame shown at ``seconds`` from the first (nearest start; variable frame
        rate included); ``frame_count`` once past the middle of the last frame."""
        times = [self.time(i) for i in range(self.frame_count)]
        end = Fraction(self.duration_s).limit_denominator(1 << 20)
        bounds = [(a + b) / 2 for a, b in zip(times, times[1:] + [end], strict=True)]
        return bisect.bisect_right(bounds, Fraction(seconds))

    def timecode(self, index: int) -> str:
        """Frame ``index``'s time as "HH:MM:SS.mmm" from the film's start."""
        return _hms(self.time(index))


def _hms(seconds: Fraction | float) -> str:
    ms = round(Fraction(seconds) * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


@dataclass
class DecodedFrame:
    index: int
    pts: int
    luma: np.ndarray  # (H, W) uint8 or uint16 code values


# --------------------------------------------------------------------------- probing


def probe(path: str | Path) -> VideoInfo:
    """Read a film's video properties and every frame's pts (demux only, plus a few sampled
    frames: the first for pix_fmt, tags and rotation, and some spread over the film for colour).

    Raises:
        InputError: missing file, not a readable video, no video stream, no frame.
    """
    path = Path(path)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        pts, keyframes, demux_error, packet_ends = _demux_pts(container, stream)
        declared = stream.frames
        fmt_name = container.format.name
        counts = _stream_counts(container)
        meta = _stream_meta(stream)
        ends = _declared_ends(container, stream, *packet_ends)
    if not pts:
        raise InputError("holds no video frames (truncated or empty)", path=path,
                         hint="re-copy or re-export the file")
    first, samples = _sample_frames(path, keyframes)
    info = _build_info(path, meta, first, pts, counts, packet_ends[0])
    holes = _find_holes(info, fmt_name, declared, demux_error, ends)
    is_color, chroma = _colour_of(samples)
    return VideoInfo(**{**info.__dict__, "holes": tuple(holes), "is_color": is_color, "chroma": chroma})


COLOUR_SAMPLES = 5  # frames spread over the film (besides the first) that decide whether it is in colour


def _colour_of(frames: list[av.VideoFrame]) -> tuple[bool, float]:
    """(in colour, mean chroma): colour when most of the sampled frames carry more than a trace
    of colour (:func:`_has_chroma`), so a black opening frame does not decide it. Mean chroma:
    mean |Pb, Pr| over the frames, in 8-bit code values (a gray film stored as colour: ~0).

    Not the photos' rule (:func:`restorer.io.images._chroma_kind`): it calls a frame whose colours
    share one hue "toned", and Megamind.avi's candle-lit colour frames are 4 of 6 samples so.
    """
    if not frames:
        return False, 0.0
    votes, sizes = [], []
    for frame in frames:
        small = _small_rgb(frame)
        votes.append(_has_chroma(small))
        rgb = small.astype(np.float32) / np.float32(255)
        y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
        sizes.append(float(np.hypot((rgb[..., 2] - y) / 1.772, (rgb[..., 0] - y) / 1.402).mean()))
    return 2 * sum(votes) > len(votes), round(255 * float(np.mean(sizes)), 1)


def _small_rgb(frame: av.VideoFrame) -> np.ndarray:
    small = frame.reformat(width=min(frame.width, 160), height=min(frame.height, 120), format="rgb24")
    return small.to_ndarray()


def _has_chroma(small_rgb: np.ndarray) -> bool:
    """More than a trace of colour in the (:func:`_small_rgb`) frame (a gray film stored as colour is not)."""
    rgb = small_rgb.astype(np.int16)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return bool(np.percentile(spread, 95) > 12)


def _sample_frames(path: Path, keyframes: list[int], count: int = COLOUR_SAMPLES,
                   opening: int = 24) -> tuple[av.VideoFrame, list[av.VideoFrame]]:
    """The first frame that decodes (the authority on pix_fmt, tags and rotation), and it with
    up to ``count`` more spread over the film: the first frame at each of ``count`` evenly spaced
    keyframes (a seek lands on a keyframe, and it decodes at once: a few frames each, whatever the
    film's length). A film with fewer keyframes than that also gives every 4th of its first
    ``opening`` frames. A seek that fails ends the sampling."""
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        decoded = _decode(container, stream, max_packets=opening)
        try:
            first = next(decoded, None)
            if first is None:
                raise InputError("has a video stream but no frame decodes", path=path,
                                 hint="the file is damaged beyond use; re-copy or re-export it")
            samples = [first]
            later = [k for k in keyframes if first.pts is None or k > first.pts]
            spots = [later[(2 * k + 1) * len(later) // (2 * count)] for k in range(count)] \
                if len(later) >= count else later
            if len(later) < count:
                samples += [frame for k, frame in enumerate(decoded, 1) if k % 4 == 0]
        finally:
            decoded.close()
        seen = {f.pts for f in samples}
        for target in spots:
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError as err:
                logger.debug("%s: cannot seek to sample its colour: %s", path, _reason(err))
                break
            decoded = _decode(container, stream, max_packets=16)
            frame = next(decoded, None)
            decoded.close()
            if frame is not None and frame.pts not in seen:
                samples.append(frame)
                seen.add(frame.pts)
    return first, samples


def _open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise InputError("no such file", path=path, hint="check the path and spelling")
    if path.is_dir():
        raise InputError("is a folder, not a video file", path=path, hint="give the film's file")
    try:
        return av.open(str(path), "r", timeout=30)
    except (av.error.FFmpegError, OSError) as err:
        raise InputError(f"cannot be read as a video ({_reason(err)}); it may be truncated or not a "
                         "video at all", path=path,
                         hint="re-copy or re-export the file, or check it plays in a video player") from None


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err).splitlines()[0]


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    videos = [s for s in container.streams.video if not s.disposition & 0x0400]  # skip cover art
    if not videos:
        raise InputError("has no video stream (audio only?)", path=path,
                         hint="give a film file; restorer colorizes video")
    return videos[0]


def _demux_pts(container, stream) -> tuple[list[int], list[int], str | None,
                                          tuple[Fraction | None, Fraction | None]]:
    """Every video packet's pts (dts when missing), sorted into display order; the keyframes'
    among them; the error that stopped the demuxer, if one did; where the video packets and
    the other streams' packets end (pts + duration, seconds; None without any)."""
    pts: list[int] = []
    keyframes: list[int] = []
    ends: list[Fraction | None] = [None, None]  # video, others
    error = None
    try:
        for packet in container.demux():
            end = _packet_end(packet)
            which = 0 if packet.stream.index == stream.index else 1
            if end is not None and (ends[which] is None or end > ends[which]):
                ends[which] = end
            if which:
                continue
            if packet.size == 0 and packet.pts is None:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None:
                pts.append(ts)
                if packet.is_keyframe:
                    keyframes.append(ts)
    except av.error.FFmpegError as err:
        logger.warning("%s: demuxing stopped after %d packets: %s", container.name, len(pts), _reason(err))
        error = _reason(err)
    return sorted(set(pts)), sorted(set(keyframes)), error, (ends[0], ends[1])


def _packet_end(packet: av.Packet) -> Fraction | None:
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is None or packet.time_base is None or packet.size == 0:
        return None
    return (ts + (packet.duration or 0)) * Fraction(packet.time_base)


@dataclass(frozen=True)
class _DeclaredEnd:
    """Where the container says the video ends (seconds, absolute), and who says so."""

    seconds: Fraction
    source: str  # "stream": the video stream's own duration; "file": the whole file's
    others_end: Fraction | None = None  # for "file": where the other streams' packets end
    video_end: Fraction | None = None  # where the video packets end (the last one's pts + duration)


def _declared_ends(container, stream, video_end: Fraction | None,
                   others_end: Fraction | None) -> _DeclaredEnd | None:
    """The video's declared end: its stream duration (from its start time), else Matroska's
    per-stream DURATION tag, else the file's duration (the longest stream's)."""
    tb = Fraction(stream.time_base) if stream.time_base else None
    start = Fraction(stream.start_time) * tb if tb is not None and stream.start_time is not None else None
    if tb is not None and stream.duration and stream.duration > 0:
        return _DeclaredEnd((start or 0) + stream.duration * tb, "stream", video_end=video_end)
    tag = _parse_duration_tag(stream.metadata.get("DURATION") or stream.metadata.get("duration"))
    if tag is not None:
        return _DeclaredEnd((start or 0) + tag, "stream", video_end=video_end)
    if container.duration and container.duration > 0:
        begin = Fraction(container.start_time or 0, av.time_base)
        return _DeclaredEnd(begin + Fraction(container.duration, av.time_base), "file", others_end, video_end)
    return None


def _parse_duration_tag(text: str | None) -> Fraction | None:
    """"HH:MM:SS.fffffffff" (Matroska's DURATION tag) in seconds; None when absent or malformed."""
    if not text:
        return None
    try:
        hours, minutes, seconds = text.strip().split(":")
        value = int(hours) * 3600 + int(minutes) * 60 + Fraction(seconds)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _stream_counts(container) -> tuple[int, int]:
    return len(container.streams.audio), len(container.streams.subtitles)


def _stream_meta(stream) -> dict:
    cc = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or (1 / stream.time_base)
    rotate = stream.metadata.get("rotate")
    return {
        "time_base": Fraction(stream.time_base), "frame_rate": Fraction(rate),
        "sar": Fraction(stream.sample_aspect_ratio or 0), "codec": cc.name,
        "tags": (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range),
        "rotate_meta": (-int(float(rotate))) % 360 if rotate else 0,
    }


def _build_info(path: Path, meta: dict, frame: av.VideoFrame, pts: list[int],
                counts: tuple[int, int], video_end: Fraction | None = None) -> VideoInfo:
    tags = [_tag(f, c) for f, c in zip(
        (frame.color_primaries, frame.color_trc, frame.colorspace, frame.color_range), meta["tags"], strict=True)]
    tags[3] = frame.color_range or meta["tags"][3] or 0
    rotation = (frame.rotation % 360) or meta["rotate_meta"]
    tb = meta["time_base"]
    last_duration = 1 / meta["frame_rate"] if meta["frame_rate"] else Fraction(0)
    if video_end is not None and video_end > pts[-1] * tb:  # the last packet's own duration: a VFR clip's
        last_duration = video_end - pts[-1] * tb          # last frame need not last 1 / average rate
    sar = meta["sar"] if meta["sar"] > 0 else Fraction(1)
    return VideoInfo(
        path=str(path), width=frame.width, height=frame.height, frame_count=len(pts), time_base=tb,
        frame_rate=meta["frame_rate"], sar=sar, rotation=int(rotation), pix_fmt=frame.format.name,
        bit_depth=frame.format.components[0].bits, color_primaries=tags[0], color_trc=tags[1],
        colorspace=tags[2], color_range=tags[3], pts=tuple(pts), audio_streams=counts[0],
        subtitle_streams=counts[1], duration_s=float((pts[-1] - pts[0]) * tb + last_duration),
        codec=meta["codec"], last_duration=max(1, round(last_duration / tb)) if last_duration else 0)


def _tag(frame_value: int, stream_value: int) -> int:
    if frame_value not in (None, UNSPECIFIED, 0):
        return int(frame_value)
    return int(stream_value) if stream_value not in (None, 0) else UNSPECIFIED


def _find_holes(info: VideoInfo, fmt_name: str, declared: int, demux_error: str | None,
                ends: _DeclaredEnd | None = None) -> list[Damage]:
    """Frames missing from the file: AVI timeline gaps (pts counts frames there) and a cut tail."""
    holes: list[Damage] = []
    if "avi" in fmt_name.split(","):
        for i in range(1, info.frame_count):
            gap = info.pts[i] - info.pts[i - 1] - 1
            if gap > 0:
                holes.append(_damage(info, i, i, f"{gap} frames missing from the file before this one"))
    tail = _cut_tail(info, ends, demux_error)
    if tail is not None:
        holes.append(tail)
        return holes
    missing_tail = declared - info.frame_count if declared and not holes else 0
    if demux_error or missing_tail > 0:
        why = demux_error or f"the file declares {declared} frames but holds {info.frame_count}"
        last = info.frame_count - 1
        holes.append(_damage(info, last, last, f"file ends early after this frame ({why})"))
    return holes


def _cut_tail(info: VideoInfo, ends: _DeclaredEnd | None, demux_error: str | None) -> Damage | None:
    """The frames a cut-short file lacks: the container's duration reaches further than its packets.

    The frame interval is the mean of the frames present (a film with dropped frames keeps its
    own rate). Allowed slack past the last frame's start: the longest interval seen plus one more
    (the last frame's own duration, and ~1 frame of rounding), so a variable-rate film whose last
    frame is long is not cut, nor one whose last packet says it lasts until the declared end (a
    still held at the end). Against the file's duration (no stream duration), the furthest
    packet of any stream counts: a sound track longer than the picture is not a cut.
    """
    if ends is None:
        return None
    n, tb = info.frame_count, info.time_base
    rate_step = 1 / info.frame_rate if info.frame_rate else None
    if n >= 2:
        step = (info.pts[-1] - info.pts[0]) * tb / (n - 1)
        longest = max(b - a for a, b in zip(info.pts, info.pts[1:], strict=False)) * tb
    elif rate_step is not None:
        step = longest = rate_step
    else:
        return None
    if step <= 0:
        return None
    last_start = info.pts[-1] * tb
    reached = last_start
    if ends.video_end is not None:
        reached = max(reached, ends.video_end - step)
    if ends.source == "file" and ends.others_end is not None:
        reached = max(reached, ends.others_end - step)
    if ends.seconds - reached <= longest + step:
        return None
    missing = max(1, round((ends.seconds - last_start) / step) - 1)
    begin = info.time(n - 1) + step
    length = float(ends.seconds - info.pts[0] * tb)
    said = "for the video" if ends.source == "stream" else "for the file"
    reason = (f"truncated: {n} of ~{n + missing} frames decode (the container says {length:.1f} s {said}, "
              f"the frames end at {float(begin):.1f} s)")
    if demux_error:
        reason += f"; reading stopped: {demux_error}"
    return Damage(n, n + missing - 1, _hms(begin), _hms(begin + (missing - 1) * step), reason)


def _damage(info: VideoInfo, first: int, last: int, reason: str) -> Damage:
    return Damage(first, last, info.timecode(first), info.timecode(last), reason)


# --------------------------------------------------------------------------- decoding


def _decode(container, stream, *, max_packets: int | None = None) -> Iterator[av.VideoFrame]:
    """Decoded frames; a packet that fails to decode is logged and skipped, never raised. Stops
    after ``max_packets`` packets when given."""
    packets = container.demux(stream)
    read = 0
    while max_packets is None or read < max_packets:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as err:  # the demuxer cannot go on: end here
            logger.warning("%s: reading stopped: %s", container.name, _reason(err))
            return
        read += 1
        try:
            yield from stream.decode(packet if packet.size or packet.pts is not None else None)
        except av.error.FFmpegError as err:
            logger.debug("%s: packet pts=%s does not decode: %s", container.name, packet.pts, _reason(err))


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
        with _open_input(self.path) as container:
            self._avi = "avi" in container.format.name.split(",")
            stream = _video_stream(container, self.path)
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
                out[-1] = _damage(self.info, out[-1].first, index, reason)
            else:
                out.append(_damage(self.info, index, index, reason))
        return out

    def _frames_from(self, container, stream) -> Iterator[tuple[int, av.VideoFrame]]:
        """(index, frame) pairs with index >= start, increasing, after frame ``start - 1`` when the
        seek's pre-roll decodes it; seeks when start > 0."""
        seeked = self.start > 0 and self._seek(container, stream)
        last = -1
        for frame in _decode(container, stream):
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
        for frame in _decode(container, stream):
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
            logger.info("%s: cannot seek (%s); decoding from the start", self.path, _reason(err))
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
            self.damaged.append(_damage(self.info, first, last, "did not decode"))


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


def _is_yuv(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("yuv", "yuvj", "nv", "p0", "p2", "p4", "uyvy", "yuyv", "yvyu", "ayuv",
                               "vuy", "xv", "y2", "y21", "v30", "vyu"))


def frame_luma(frame: av.VideoFrame, info: VideoInfo) -> np.ndarray:
    """The frame's Y' at source depth: the decoded plane for YUV/gray, else from RGB."""
    fmt = frame.format
    bits = fmt.components[0].bits
    planar_y = fmt.is_planar and (fmt.name.startswith(("yuv", "gray")) or fmt.name.startswith("y"))
    if planar_y and fmt.name.startswith(("yuv", "gray")):
        return _plane_array(frame.planes[0], bits, frame.width, frame.height)
    if _is_yuv(fmt.name):  # packed or semi-planar YUV: unscaled swscale copy to planar
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


def neutral_chroma(shape: tuple[int, int]) -> np.ndarray:
    """Pb = Pr = 0 for a frame of ``shape`` (H, W): gray."""
    return np.zeros(shape, dtype=np.float32)


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
        self._container = av.open(str(self._tmp), "w", format=_container_format(self.path),
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


def check_container(path: str | Path, source: str | Path | None = None) -> None:
    """Before any work: the output's suffix names a supported container, and that container can
    hold every audio and subtitle stream of ``source`` as it is (they are copied, not re-encoded).

    Raises:
        OutputError: one line naming the output, the streams it cannot hold and the fix.
    """
    path = Path(path)
    fmt = _container_format(path)
    if source is None:
        return
    with av.open(str(source)) as src:
        others = [s for s in src.streams if s.type in ("audio", "subtitle")]
        if not others:
            return
        out = av.open(io.BytesIO(), "w", format=fmt)
        try:
            _add_templates(out, others, path)
            _start(out, path)
        finally:
            try:
                out.close()
            except (av.error.FFmpegError, ValueError, OSError):
                pass


def _add_templates(out, streams, output: Path) -> dict:
    try:
        return {s.index: out.add_stream_from_template(s) for s in streams}
    except (av.error.FFmpegError, ValueError) as err:
        names = ", ".join(s.codec_context.name for s in streams if s.codec_context)
        raise OutputError(f"a {output.suffix} file cannot hold these streams ({names}: {_reason(err)})",
                          path=output, hint="choose an .mkv output, which holds every codec") from None


def _container_format(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"unsupported container {path.suffix!r}", path=path,
                          hint=f"use one of {', '.join(sorted(_FORMATS))}")
    return fmt


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


def luma_to_unit(y: np.ndarray, info: VideoInfo) -> np.ndarray:
    """Y' code values -> float32 in [0, 1], honouring the stream's range and bit depth."""
    bits = max(info.bit_depth, 8)
    if info.full_range:
        return (y.astype(np.float32) / float((1 << bits) - 1))
    scale = float(1 << (bits - 8))
    return np.clip((y.astype(np.float32) - 16.0 * scale) / (219.0 * scale), 0.0, 1.0)


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


# --------------------------------------------------------------------------- assembling


def assemble(segments: Iterable[str | Path], source: str | Path, info: VideoInfo, output: str | Path,
             *, overwrite: bool = False) -> None:
    """Remux the segments' video and the source's audio/subtitles into ``output``.

    Raises:
        OutputError: ``output`` exists (without ``overwrite``), its container cannot hold
            a stream, or the segments do not fit together.
    """
    segments, output = [Path(s) for s in segments], Path(output)
    if not segments:
        raise ValueError("assemble needs at least one segment")
    refuse_existing(output, overwrite=overwrite, instead="choose another name")
    _check_segments(segments)
    with atomic_path(output) as tmp:
        _remux(segments, Path(source), tmp, output, info)


def _segment_signature(path: Path) -> tuple:
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return (cc.name, cc.width, cc.height, cc.format.name if cc.format else None, bytes(cc.extradata or b""))


def _check_segments(segments: list[Path]) -> None:
    first = _segment_signature(segments[0])
    for seg in segments[1:]:
        sig = _segment_signature(seg)
        if sig[:4] != first[:4]:
            raise OutputError(f"segment is {sig[:4]}, the first segment {first[:4]}", path=seg,
                              hint="re-encode all segments with the same codec and settings")
        if sig[4] != first[4]:
            raise OutputError("segment's codec configuration (extradata) differs from the first "
                              "segment's; they cannot share one stream", path=seg,
                              hint="delete the job's segments and encode them again with one setting")


def _remux(segments: list[Path], source: Path, tmp: Path, output: Path, info: VideoInfo) -> None:
    fmt = _container_format(output)
    options = {"fflags": "+bitexact"}
    if fmt == "matroska":
        # By default the Matroska muxer shifts *every* stream so the earliest packet is at 0: an
        # AAC track's priming packet (pts -1024/48000) moved the video 21 ms late. Matroska blocks
        # hold negative offsets, so keep the source's timestamps as they are.
        options["avoid_negative_ts"] = "disabled"
    out = av.open(str(tmp), "w", format=fmt, options=options)
    try:
        with av.open(str(segments[0])) as first, av.open(str(source)) as src:
            video_out = out.add_stream_from_template(first.streams.video[0])
            if info.frame_rate:  # the rate the source advertises (a VFR clip's average), else none is written
                video_out.codec_context.framerate = info.frame_rate
            # the colour tags the chroma was computed with: an ffv1 bitstream does not carry them and
            # the segments' MP4 drops them, so without this a full-range master would read as limited
            cc = video_out.codec_context
            cc.color_range = RANGE_FULL if info.full_range else RANGE_LIMITED
            cc.colorspace, cc.color_primaries, cc.color_trc = info.matrix, info.color_primaries, info.color_trc
            others = [s for s in src.streams if s.type in ("audio", "subtitle")]
            mapping = _add_templates(out, others, output)
            _start(out, output)
            video = _tagged(_segment_packets(segments), video_out)
            rest = _tagged(_source_packets(src, others, fmt), None, mapping)
            for _, _, packet, stream in heapq.merge(video, rest, key=lambda t: (t[0], t[1])):
                packet.stream = stream
                out.mux(packet)
    finally:
        out.close()


def _start(out, output: Path) -> None:
    try:
        out.start_encoding()
    except (av.error.FFmpegError, ValueError) as err:
        codecs = ", ".join(s.codec_context.name if s.codec_context else str(s.name) for s in out.streams)
        raise OutputError(f"a {output.suffix} file cannot hold these streams ({codecs}: {_reason(err)})",
                          path=output, hint="choose an .mkv output, which holds every codec") from None


def _segment_packets(segments: list[Path]) -> Iterator[av.Packet]:
    for seg in segments:
        with av.open(str(seg)) as c:
            for packet in c.demux(c.streams.video[0]):
                if packet.size:
                    yield packet


def _source_packets(src, streams, fmt: str) -> Iterator[av.Packet]:
    if not streams:
        return
    for packet in src.demux(streams):
        if packet.size and not _regenerated_by_muxer(packet, fmt):
            yield packet


def _regenerated_by_muxer(packet: av.Packet, fmt: str) -> bool:
    """mov_text "end of cue" samples: the mp4/mov muxer writes its own, copies would double them."""
    return (fmt in ("mp4", "mov") and packet.stream.type == "subtitle"
            and packet.stream.codec_context is not None and packet.stream.codec_context.name == "mov_text"
            and packet.size == 2 and bytes(packet) == b"\x00\x00")


def _tagged(packets: Iterator[av.Packet], stream, mapping: dict | None = None):
    """(time, order, packet, out_stream) tuples for heapq.merge, ordered by dts."""
    for order, packet in enumerate(packets):
        ts = packet.dts if packet.dts is not None else packet.pts
        when = ts * packet.time_base if ts is not None else Fraction(0)
        yield when, order, packet, stream if mapping is None else mapping[packet.stream.index]
