"""Tiny real media for tests, made on demand with PyAV.

``make_clip`` writes an encoded film (h264, h265, ffv1, prores, or raw rgb/gray via
ffv1) with optional audio streams (sine tones) and a subtitle stream;
``read_video_frames`` and ``audio_packets`` read files back for assertions.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

_ENCODERS = {"h264": "libx264", "h265": "libx265", "ffv1": "ffv1", "prores": "prores_ks"}
_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".nut": "nut", ".avi": "avi"}


def textured_pattern(size: tuple[int, int], bit_depth: int = 8) -> Callable[[int], np.ndarray]:
    """Moving textured shapes: a drifting gradient, a bouncing square, fine noise."""
    w, h = size
    top = (1 << bit_depth) - 1
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = np.random.default_rng(7).random((h, w), dtype=np.float32)

    def frame(index: int) -> np.ndarray:
        img = 0.15 + 0.5 * ((xx + 2 * index) % w) / w + 0.1 * noise
        x0, y0 = (3 * index) % max(1, w - w // 4), (2 * index) % max(1, h - h // 4)
        img[y0:y0 + h // 4, x0:x0 + w // 4] = 0.9 - 0.02 * (index % 5)
        img += 0.05 * np.sin(xx / 3 + yy / 5 + index)
        return np.clip(np.rint(img * top), 0, top).astype(np.uint8 if bit_depth <= 8 else np.uint16)

    return frame


def vfr_pts(frames: int) -> list[int]:
    """Millisecond pts with uneven steps (40, 40, 80, 20, 120, 40, ...)."""
    steps = [40, 40, 80, 20, 120, 40, 33, 67]
    pts, t = [], 0
    for i in range(frames):
        pts.append(t)
        t += steps[i % len(steps)]
    return pts


def make_clip(path: str | Path, *, frames: int = 24, size: tuple[int, int] = (64, 48),
              rate: Fraction = Fraction(25), vfr: bool = False, bit_depth: int = 8, codec: str = "h264",
              pix_fmt: str | None = None, audio_streams: int = 1, audio_codec: str | None = None,
              subtitle: bool = False, color_range: int | None = None, colorspace: int | None = None,
              color_primaries: int | None = None, color_trc: int | None = None, rotation: int = 0,
              sar: Fraction | None = None, pattern: Callable[[int], np.ndarray] | None = None,
              crf: int = 18) -> Path:
    """Write a small real clip and return its path.

    ``pattern(index)`` gives the Y' plane (uint8, or uint16 code values for 10 bits);
    for rgb/gray ``pix_fmt`` it is used as the gray level of all channels. Chroma is a
    slow colour gradient so the file is not trivially gray. Audio: ``audio_streams``
    sine tones (aac in mp4/mov, flac in mkv/nut unless ``audio_codec``).
    """
    path = Path(path)
    w, h = size
    pattern = pattern or textured_pattern(size, bit_depth)
    pix_fmt = pix_fmt or ("yuv420p" if bit_depth <= 8 else f"yuv420p{bit_depth}le")
    if codec == "prores" and pix_fmt.startswith("yuv420"):
        pix_fmt = "yuv422p10le"
    if vfr:
        time_base, pts = Fraction(1, 1000), vfr_pts(frames)
    else:
        time_base, pts = 1 / Fraction(rate), list(range(frames))
    with av.open(str(path), "w", format=_FORMATS[path.suffix.lower()]) as out:
        video = out.add_stream(_ENCODERS[codec], rate=Fraction(rate))
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        video.time_base = time_base
        cc = video.codec_context
        cc.time_base = time_base
        cc.thread_count = 1
        if codec in ("h264", "h265"):
            cc.options = {"crf": str(crf), "preset": "ultrafast" if codec == "h264" else "ultrafast",
                          **({"x265-params": "log-level=error"} if codec == "h265" else {})}
        for attr, value in (("color_range", color_range), ("colorspace", colorspace),
                            ("color_primaries", color_primaries), ("color_trc", color_trc),
                            ("sample_aspect_ratio", sar)):
            if value is not None:
                setattr(cc, attr, value)
        if rotation:
            video.set_display_rotation(rotation)
        audios = [_add_audio(out, path, audio_codec, 440.0 * (k + 1)) for k in range(audio_streams)]
        subs = _add_subtitle(out, path) if subtitle else None
        duration = (pts[-1] + (pts[-1] - pts[-2] if frames > 1 else 1)) * time_base
        for i in range(frames):
            frame = _video_frame(pattern(i), i, pix_fmt, bit_depth, (color_range, colorspace))
            frame.pts, frame.time_base = pts[i], time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for stream, freq in audios:
            _write_tone(out, stream, freq, float(duration))
        if subs is not None:
            _write_subtitles(out, subs, float(duration))
    return path


def _video_frame(y: np.ndarray, index: int, pix_fmt: str, bit_depth: int, tags) -> av.VideoFrame:
    h, w = y.shape
    if pix_fmt in ("rgb24", "bgr0", "gbrp", "gray", "gray10le", "pal8"):
        if pix_fmt.startswith("gray"):
            return av.VideoFrame.from_ndarray(np.ascontiguousarray(y), format=pix_fmt)
        rgb = np.stack([y] * 3, axis=-1).astype(np.uint8)
        return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
    frame = av.VideoFrame(w, h, pix_fmt)
    if tags[0] is not None:
        frame.color_range = tags[0]
    dtype = np.uint8 if bit_depth <= 8 else np.uint16
    mid = 1 << (bit_depth - 1)
    for k, plane in enumerate(frame.planes):
        ph, pw = plane.height, plane.width
        if k == 0:
            data = y.astype(dtype)
        else:
            ramp = np.linspace(-0.25, 0.25, pw, dtype=np.float32)[None, :] * (1 if k == 1 else -1)
            data = np.rint(mid + (ramp + 0.05 * np.sin(index / 3)) * mid * np.ones((ph, 1))).astype(dtype)
        buf = np.frombuffer(plane, dtype=dtype)
        stride = plane.line_size // buf.itemsize
        buf[: stride * ph].reshape(ph, stride)[:, :pw] = data
    return frame


def _add_audio(out, path: Path, codec: str | None, freq: float):
    codec = codec or ("aac" if path.suffix.lower() in (".mp4", ".mov") else "flac")
    stream = out.add_stream(codec, rate=48000)
    stream.layout = "mono"
    if codec == "aac":
        stream.format = "fltp"
    elif codec == "flac":
        stream.format = "s16"
    stream.codec_context.thread_count = 1
    return stream, freq


def _write_tone(out, stream, freq: float, seconds: float) -> None:
    rate, fmt = 48000, stream.format.name
    n = max(1024, int(seconds * rate))
    chunk = 1024
    for start in range(0, n, chunk):
        t = (np.arange(start, min(n, start + chunk)) / rate).astype(np.float32)
        wave = 0.3 * np.sin(2 * np.pi * freq * t)
        data = wave.astype(np.float32) if fmt.startswith("flt") else (wave * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data[None, :], format=fmt, layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _add_subtitle(out, path: Path):
    codec = "mov_text" if path.suffix.lower() in (".mp4", ".mov") else "subrip"
    stream = out.add_mux_stream(codec)  # packets are written as they are: no encoder
    stream.time_base = Fraction(1, 1000)
    return stream


def _write_subtitles(out, stream, seconds: float) -> None:
    mov_text = out.format.name in ("mp4", "mov")
    for k, start in enumerate(np.arange(0.0, seconds, 0.4)):
        text = f"line {k}".encode()
        payload = len(text).to_bytes(2, "big") + text if mov_text else text
        packet = av.Packet(payload)
        packet.pts = packet.dts = int(start * 1000)
        packet.duration = 300
        packet.time_base = Fraction(1, 1000)
        packet.stream = stream
        out.mux(packet)


def read_video_frames(path: str | Path) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Every decoded frame as (pts, Y, U, V) planes at their own sizes and depth."""
    result = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for frame in c.decode(stream):
            bits = frame.format.components[0].bits
            dtype = np.uint8 if bits <= 8 else np.dtype("<u2")
            planes = []
            for plane in frame.planes[:3]:
                buf = np.frombuffer(plane, dtype=dtype)
                stride = plane.line_size // buf.itemsize
                planes.append(buf[: stride * plane.height].reshape(plane.height, stride)[:, : plane.width]
                              .astype(np.uint16 if bits > 8 else np.uint8))
            while len(planes) < 3:
                planes.append(np.zeros((0, 0), np.uint8))
            result.append((frame.pts, *planes))
    return result


def frame_times(path: str | Path) -> list[Fraction]:
    """Each decoded video frame's time in seconds (pts x time base), in output order."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [f.pts * stream.time_base for f in c.decode(stream)]


def audio_packets(path: str | Path) -> list[list[bytes]]:
    """The payload bytes of every audio packet, one list per audio stream."""
    with av.open(str(path)) as c:
        streams = list(c.streams.audio)
        out: list[list[bytes]] = [[] for _ in streams]
        if not streams:
            return out
        position = {s.index: k for k, s in enumerate(streams)}
        for packet in c.demux(streams):
            if packet.size:
                out[position[packet.stream.index]].append(bytes(packet))
    return out


def subtitle_packets(path: str | Path) -> list[bytes]:
    """The payload bytes of every packet of the first subtitle stream."""
    with av.open(str(path)) as c:
        if not c.streams.subtitles:
            return []
        return [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size]
