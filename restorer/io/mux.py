"""``assemble(segments, source, info, output)``: the segments and the source's other streams into the film.

The segments' video packets (no re-encode) and every audio and subtitle stream of the source, packet for
packet, are interleaved by time into ``output`` (a temporary name, renamed when complete). The segments
must share codec, size, pix_fmt and extradata (the codec configuration lives once in the file's header):
a mismatch is an error, never a broken film. :func:`check_container` refuses, before any work, an output
whose container cannot hold the source's streams.
"""

from __future__ import annotations

import heapq
import io
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av

from restorer.errors import OutputError
from restorer.fs import atomic_path, refuse_existing
from restorer.io.film import RANGE_FULL, RANGE_LIMITED, VideoInfo, error_text

_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".nut": "nut"}


def check_container(path: str | Path, source: str | Path | None = None) -> None:
    """Before any work: the output's suffix names a supported container, and that container can
    hold every audio and subtitle stream of ``source`` as it is (they are copied, not re-encoded).

    Raises:
        OutputError: one line naming the output, the streams it cannot hold and the fix.
    """
    path = Path(path)
    fmt = container_format(path)
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
        raise OutputError(f"a {output.suffix} file cannot hold these streams ({names}: {error_text(err)})",
                          path=output, hint="choose an .mkv output, which holds every codec") from None


def container_format(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"unsupported container {path.suffix!r}", path=path,
                          hint=f"use one of {', '.join(sorted(_FORMATS))}")
    return fmt




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
    fmt = container_format(output)
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
        raise OutputError(f"a {output.suffix} file cannot hold these streams ({codecs}: {error_text(err)})",
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
