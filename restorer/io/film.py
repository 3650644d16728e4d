"""A film as restorer sees it (:class:`VideoInfo`, :class:`Damage`) and the PyAV steps every reader shares.

Film I/O is one module per step, and none holds a film in memory (frames go one at a time):

* :mod:`restorer.io.probe`: ``probe(path) -> VideoInfo``, every frame's pts and the damage the container shows;
* :mod:`restorer.io.decode`: ``LumaReader``, the Y' planes of a range of frames and the damage decoding finds;
* :mod:`restorer.io.encode`: ``SegmentWriter``, Y' plus Pb, Pr into one segment (codecs: :mod:`restorer.io.codecs`);
* :mod:`restorer.io.mux`: ``assemble``, the segments and the source's audio and subtitles into the film.

A film's *frame index* ``i`` is the i-th frame in display order and ``info.pts[i]`` its timestamp in
``info.time_base``; every other module speaks in these indices. Errors a user can cause raise
:class:`restorer.errors.InputError` / :class:`restorer.errors.OutputError` with a one-line message.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from restorer.errors import InputError

logger = logging.getLogger(__name__)

UNSPECIFIED = 2  # AVCOL_PRI/TRC/SPC_UNSPECIFIED
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2
BT709, BT601 = 1, 6  # AVCOL_SPC_BT709, AVCOL_SPC_SMPTE170M
# (Kr, Kb) per AVColorSpace value.
_MATRIX_COEFFS: dict[int, tuple[float, float]] = {
    1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
    7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593),
}


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
        return is_yuv_format(self.pix_fmt)

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
        return hms(self.time(index))


def hms(seconds: Fraction | float) -> str:
    ms = round(Fraction(seconds) * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


@dataclass
class DecodedFrame:
    index: int
    pts: int
    luma: np.ndarray  # (H, W) uint8 or uint16 code values


def open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise InputError("no such file", path=path, hint="check the path and spelling")
    if path.is_dir():
        raise InputError("is a folder, not a video file", path=path, hint="give the film's file")
    try:
        return av.open(str(path), "r", timeout=30)
    except (av.error.FFmpegError, OSError) as err:
        raise InputError(f"cannot be read as a video ({error_text(err)}); it may be truncated or not a "
                         "video at all", path=path,
                         hint="re-copy or re-export the file, or check it plays in a video player") from None


def error_text(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err).splitlines()[0]


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    videos = [s for s in container.streams.video if not s.disposition & 0x0400]  # skip cover art
    if not videos:
        raise InputError("has no video stream (audio only?)", path=path,
                         hint="give a film file; restorer colorizes video")
    return videos[0]


def damage_at(info: VideoInfo, first: int, last: int, reason: str) -> Damage:
    return Damage(first, last, info.timecode(first), info.timecode(last), reason)


def decode_frames(container, stream, *, max_packets: int | None = None) -> Iterator[av.VideoFrame]:
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
            logger.warning("%s: reading stopped: %s", container.name, error_text(err))
            return
        read += 1
        try:
            yield from stream.decode(packet if packet.size or packet.pts is not None else None)
        except av.error.FFmpegError as err:
            logger.debug("%s: packet pts=%s does not decode: %s", container.name, packet.pts, error_text(err))


def is_yuv_format(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("yuv", "yuvj", "nv", "p0", "p2", "p4", "uyvy", "yuyv", "yvyu", "ayuv",
                               "vuy", "xv", "y2", "y21", "v30", "vyu"))
