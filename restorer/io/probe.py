"""``probe(path) -> VideoInfo``: a film's properties and every frame's pts, from one demux.

Only a few frames are decoded: the first (pix_fmt, colour tags, rotation) and some spread over the film
(whether it is in colour). Damage the container shows goes into ``VideoInfo.holes`` (each reader copies
the holes of its range into its ``damaged``):

* AVI timeline holes, and fewer packets than the index declares;
* a cut tail: the container declares a longer video than its packets reach (the stream's duration,
  Matroska's DURATION tag, else the file's duration against where every stream's packets end). The
  missing frames, estimated from the mean frame interval, are the range ``frame_count ..`` past the
  last frame; the reader whose range ends at the last frame carries it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from restorer.errors import InputError
from restorer.io.film import (
    UNSPECIFIED,
    Damage,
    VideoInfo,
    damage_at,
    decode_frames,
    error_text,
    hms,
    open_input,
    video_stream,
)

logger = logging.getLogger(__name__)

def probe(path: str | Path) -> VideoInfo:
    """Read a film's video properties and every frame's pts (demux only, plus a few sampled
    frames: the first for pix_fmt, tags and rotation, and some spread over the film for colour).

    Raises:
        InputError: missing file, not a readable video, no video stream, no frame.
    """
    path = Path(path)
    with open_input(path) as container:
        stream = video_stream(container, path)
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
        stream = video_stream(container, path)
        decoded = decode_frames(container, stream, max_packets=opening)
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
                logger.debug("%s: cannot seek to sample its colour: %s", path, error_text(err))
                break
            decoded = decode_frames(container, stream, max_packets=16)
            frame = next(decoded, None)
            decoded.close()
            if frame is not None and frame.pts not in seen:
                samples.append(frame)
                seen.add(frame.pts)
    return first, samples


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
        logger.warning("%s: demuxing stopped after %d packets: %s", container.name, len(pts), error_text(err))
        error = error_text(err)
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
                holes.append(damage_at(info, i, i, f"{gap} frames missing from the file before this one"))
    tail = _cut_tail(info, ends, demux_error)
    if tail is not None:
        holes.append(tail)
        return holes
    missing_tail = declared - info.frame_count if declared and not holes else 0
    if demux_error or missing_tail > 0:
        why = demux_error or f"the file declares {declared} frames but holds {info.frame_count}"
        last = info.frame_count - 1
        holes.append(damage_at(info, last, last, f"file ends early after this frame ({why})"))
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
    return Damage(n, n + missing - 1, hms(begin), hms(begin + (missing - 1) * step), reason)
