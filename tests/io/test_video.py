"""restorer.io.video on tiny generated clips and the real damaged clips in tests/data."""

from __future__ import annotations

import shutil
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media import (  # noqa: E402
    audio_packets,
    frame_times,
    make_clip,
    read_video_frames,
    subtitle_packets,
    vfr_pts,
)

from restorer.errors import InputError, OutputError  # noqa: E402
from restorer.io import video as V  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


def colorize_gray(src: Path, info: V.VideoInfo, out_dir: Path, codec: str = "h264",
                  cuts: tuple[int, ...] = (), bit_depth: int | None = None) -> list[Path]:
    """Encode the film as segments split before each index in ``cuts`` (neutral chroma)."""
    bounds = [0, *cuts, info.frame_count]
    segments = []
    for k, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        path = out_dir / f"seg{k:03d}{V.segment_suffix(codec)}"
        with V.SegmentWriter(path, info, codec, bit_depth=bit_depth, preset="ultrafast") as writer:
            for frame in V.LumaReader(src, info, a, b - 1):
                zero = V.neutral_chroma(frame.luma.shape)
                writer.write(frame.index, frame.luma, zero, zero)
        segments.append(path)
    return segments


def run_film(src: Path, out: Path, codec: str = "h264", cuts=(), bit_depth=None) -> V.VideoInfo:
    info = V.probe(src)
    segs = colorize_gray(src, info, out.parent, codec, cuts, bit_depth)
    V.assemble(segs, src, info, out)
    return info


def psnr(a: np.ndarray, b: np.ndarray, peak: int) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def luma_of(path: Path) -> list[np.ndarray]:
    return [y for _, y, _, _ in read_video_frames(path)]


# ------------------------------------------------------------------------- probing


def test_probe_cfr_clip(tmp_path):
    src = make_clip(tmp_path / "a.mp4", frames=12, size=(64, 48), audio_streams=2, subtitle=True)
    info = V.probe(src)
    assert (info.width, info.height, info.frame_count) == (64, 48, 12)
    assert info.frame_rate == 25 and isinstance(info.frame_rate, Fraction)
    assert [p * info.time_base for p in info.pts] == [Fraction(i, 25) for i in range(12)]
    assert (info.audio_streams, info.subtitle_streams, info.bit_depth, info.pix_fmt) == (2, 1, 8, "yuv420p")
    assert info.timecode(11) == "00:00:00.440"
    assert info.holes == ()


def test_probe_real_clip_carphone():
    info = V.probe(DATA / "carphone_pristine.mp4")
    assert (info.width, info.height, info.frame_count) == (176, 144, 120)
    assert info.frame_rate == Fraction(30000, 1001)
    assert info.pts == tuple(range(0, 120 * 1001, 1001))
    assert info.audio_streams == 0


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("vfr", [False, True])
def test_h264_film_keeps_frames_pts_audio(tmp_path, vfr):
    src = make_clip(tmp_path / "src.mp4", frames=30, size=(96, 64), vfr=vfr, audio_streams=1)
    out_dir = tmp_path / "job"
    out_dir.mkdir()
    info = run_film(src, out_dir / "film.mp4", cuts=(7, 19))
    out = out_dir / "film.mp4"
    times = frame_times(out)
    assert times == frame_times(src) and len(times) == 30
    if vfr:
        assert times == [Fraction(p, 1000) for p in vfr_pts(30)]
    assert V.probe(out).pts == info.pts
    assert audio_packets(out) == audio_packets(src)
    for a, b in zip(luma_of(out), luma_of(src), strict=True):
        assert psnr(a, b, 255) > 38  # within h264 loss at crf 18 on a noisy texture


@pytest.mark.parametrize("bits,pix_fmt", [(8, "yuv420p"), (10, "yuv420p10le")])
def test_ffv1_luma_bit_exact(tmp_path, bits, pix_fmt):
    src = make_clip(tmp_path / "src.mkv", frames=10, size=(80, 48), codec="ffv1", bit_depth=bits,
                    audio_streams=0)
    info = V.probe(src)
    assert (info.bit_depth, info.pix_fmt) == (bits, pix_fmt)
    decoded = list(V.LumaReader(src, info))
    assert decoded[0].luma.dtype == (np.uint8 if bits == 8 else np.uint16)
    if bits == 10:
        assert decoded[0].luma.max() > 255  # code values, not shifted down or up
    source_luma = luma_of(src)
    assert all(np.array_equal(d.luma, y) for d, y in zip(decoded, source_luma, strict=True))
    out = tmp_path / "film.mkv"
    run_film(src, out, codec="ffv1", cuts=(4,))
    frames = read_video_frames(out)
    assert len(frames) == 10
    assert all(np.array_equal(y, s) for (_, y, _, _), s in zip(frames, source_luma, strict=True))
    neutral = 1 << (bits - 1)
    assert all((u == neutral).all() and (v == neutral).all() for _, _, u, v in frames)


def test_odd_size_ffv1_keeps_size_and_luma(tmp_path):
    src = make_clip(tmp_path / "odd.mkv", frames=6, size=(65, 49), codec="ffv1", audio_streams=0)
    info = V.probe(src)
    assert (info.width, info.height) == (65, 49)
    assert V.output_pix_fmt("ffv1", info, 8) == "yuv420p"
    out = tmp_path / "film.mkv"
    run_film(src, out, codec="ffv1")
    frames = read_video_frames(out)
    assert frames[0][1].shape == (49, 65) and frames[0][2].shape == (25, 33)
    assert all(np.array_equal(a, b) for a, b in zip(luma_of(out), luma_of(src), strict=True))


def test_odd_size_h264_switches_to_444(tmp_path):
    src = make_clip(tmp_path / "odd.mkv", frames=6, size=(65, 49), codec="ffv1", audio_streams=0)
    info = V.probe(src)
    assert V.output_pix_fmt("h264", info, 8) == "yuv444p"
    assert V.output_pix_fmt("prores", info, 10) == "yuv444p10le"
    out = tmp_path / "film.mp4"
    run_film(src, out, codec="h264", cuts=(3,))
    probed = V.probe(out)
    assert (probed.width, probed.height, probed.frame_count, probed.pix_fmt) == (65, 49, 6, "yuv444p")


@pytest.mark.parametrize("codec,suffix,pix_fmt", [("h265", ".mp4", "yuv420p10le"),
                                                  ("prores", ".mov", "yuv422p10le")])
def test_ten_bit_codecs(tmp_path, codec, suffix, pix_fmt):
    src = make_clip(tmp_path / "src.mkv", frames=6, size=(64, 48), codec="ffv1", bit_depth=10,
                    audio_streams=1, audio_codec="aac")
    out = tmp_path / f"film{suffix}"
    info = run_film(src, out, codec=codec, cuts=(3,))
    probed = V.probe(out)
    assert (probed.frame_count, probed.pix_fmt, probed.bit_depth) == (6, pix_fmt, 10)
    assert [p * probed.time_base for p in probed.pts] == [p * info.time_base for p in info.pts]
    assert audio_packets(out) == audio_packets(src)
    for a, b in zip(luma_of(out), luma_of(src), strict=True):
        assert psnr(a, b, 1023) > 35  # 10-bit code values (not shifted), lossy codec


def test_segments_are_deterministic(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=12, size=(64, 48), audio_streams=0)
    info = V.probe(src)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = colorize_gray(src, info, tmp_path / "a", cuts=(6,))
    again = colorize_gray(src, info, tmp_path / "b", cuts=(6,))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]


def test_segments_share_codec_extradata(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=12, size=(64, 48), audio_streams=0)
    info = V.probe(src)
    segs = colorize_gray(src, info, tmp_path, cuts=(1, 6))  # a one-frame segment too
    extradata = {V._segment_signature(s)[4] for s in segs}
    assert len(extradata) == 1 and next(iter(extradata))


@pytest.mark.parametrize("streams", [0, 2])
def test_audio_streams_and_subtitles_copied(tmp_path, streams):
    src = make_clip(tmp_path / "src.mkv", frames=10, size=(64, 48), audio_streams=streams, subtitle=True)
    out = tmp_path / "film.mkv"
    run_film(src, out, cuts=(5,))
    assert len(audio_packets(out)) == streams
    assert audio_packets(out) == audio_packets(src)
    assert subtitle_packets(out) == subtitle_packets(src) and subtitle_packets(src)


def test_mp4_subtitles_copied_without_extra_cues(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=10, size=(64, 48), audio_streams=1, subtitle=True)
    out = tmp_path / "film.mp4"
    run_film(src, out)
    assert subtitle_packets(out) == subtitle_packets(src)


def test_colour_tags_sar_rotation_carried(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=6, size=(64, 48), audio_streams=0, color_range=2,
                    colorspace=1, color_primaries=1, color_trc=1, rotation=90, sar=Fraction(4, 3))
    info = V.probe(src)
    assert (info.color_primaries, info.color_trc, info.colorspace, info.color_range) == (1, 1, 1, 2)
    assert (info.rotation, info.sar, info.full_range, info.matrix) == (90, Fraction(4, 3), True, 1)
    out = tmp_path / "film.mp4"
    run_film(src, out)
    got = V.probe(out)
    assert (got.color_primaries, got.color_trc, got.colorspace, got.color_range) == (1, 1, 1, 2)
    assert (got.rotation, got.sar) == (90, Fraction(4, 3))
    frames = read_video_frames(out)
    assert (frames[0][2] == 128).all()  # full-range neutral chroma


def test_untagged_sd_source_gets_bt601_limited(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=4, size=(64, 48), audio_streams=0)
    info = V.probe(src)
    assert (info.colorspace, info.matrix, info.full_range) == (2, V.BT601, False)
    out = tmp_path / "film.mp4"
    run_film(src, out)
    got = V.probe(out)
    assert (got.colorspace, got.color_range, got.color_primaries) == (V.BT601, 1, 2)


def test_rgb_source_luma_from_matrix(tmp_path):
    src = make_clip(tmp_path / "rgb.mkv", frames=4, size=(64, 48), codec="ffv1", pix_fmt="bgr0",
                    audio_streams=0)
    info = V.probe(src)
    assert not info.is_yuv and info.full_range
    frames = list(V.LumaReader(src, info))
    with av.open(str(src)) as c:
        rgb = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for frame, img in zip(frames, rgb, strict=True):
        assert np.array_equal(frame.luma, img[..., 0])  # gray RGB: Y' equals the gray level
    assert V.output_pix_fmt("ffv1", info, 8) == "yuv444p"


def test_reader_range_matches_full_read(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=40, size=(64, 48), audio_streams=0)
    info = V.probe(src)
    full = list(V.LumaReader(src, info))
    part = list(V.LumaReader(src, info, 17, 29))
    assert [f.index for f in part] == list(range(17, 30))
    assert all(np.array_equal(a.luma, full[a.index].luma) for a in part)


# ------------------------------------------------------------------------- writer units


def test_quantise_chroma_ranges():
    p = np.array([-0.5, 0.0, 0.5], dtype=np.float32)
    assert V.quantise_chroma(p, 8, False).tolist() == [16, 128, 240]
    assert V.quantise_chroma(p, 10, False).tolist() == [64, 512, 960]
    assert V.quantise_chroma(p, 8, True).tolist() == [0, 128, 255]
    assert V.quantise_chroma(p, 10, True).tolist() == [0, 512, 1023]


def test_area_average_handles_odd_edges():
    plane = np.arange(15, dtype=np.float32).reshape(3, 5)
    avg = V.area_average(plane, 2, 2)
    assert avg.shape == (2, 3)
    assert avg[0, 0] == np.mean([0, 1, 5, 6]) and avg[1, 2] == 14 and avg[0, 2] == np.mean([4, 9])


def test_writer_deletes_partial_file_on_error(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=4, size=(64, 48), audio_streams=0)
    info = V.probe(src)
    target = tmp_path / "seg.mov"
    with pytest.raises(ValueError):
        with V.SegmentWriter(target, info) as writer:
            zero = V.neutral_chroma((48, 64))
            writer.write(0, np.zeros((48, 64), np.uint8), zero, zero)
            writer.write(1, np.zeros((10, 10), np.uint8), zero, zero)
    assert list(tmp_path.iterdir()) == [src]


def test_assemble_names_container_that_cannot_hold_audio(tmp_path):
    src = make_clip(tmp_path / "src.mkv", frames=4, size=(64, 48), audio_streams=1, audio_codec="flac")
    out = tmp_path / "film.mov"
    with pytest.raises(OutputError, match="film.mov: a .mov file cannot hold"):
        run_film(src, out)
    assert not out.exists() and not list(tmp_path.glob(".film*"))


def test_assemble_refuses_to_replace_output(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=4, size=(64, 48), audio_streams=0)
    out = tmp_path / "film.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError):
        run_film(src, out)
    assert out.read_bytes() == b"keep me"


# ------------------------------------------------------------------------- bad input


def _message(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        V.probe(path)
    text = str(caught.value)
    assert str(path) in text and "\n" not in text and " — " in text  # file, problem, fix
    return text


def test_missing_file(tmp_path):
    assert "no such file" in _message(tmp_path / "nope.mp4")


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not frames\n" * 20)
    assert "cannot be read as a video" in _message(path)


def test_truncated_mp4(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=20, size=(64, 48), audio_streams=1)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    assert "truncated" in _message(cut)


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.mka"
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("flac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert "no video stream" in _message(path)


# ------------------------------------------------------------------------- real damaged clips


def _read_all_within(path: Path, seconds: float) -> tuple[V.VideoInfo, list[V.DecodedFrame], V.LumaReader]:
    """Probe and read in a thread so that a hang fails the test instead of blocking the run."""
    result: dict = {}

    def work():
        info = V.probe(path)
        reader = V.LumaReader(path, info)
        result["frames"] = list(reader)
        result["info"], result["reader"] = info, reader

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"reading {path.name} did not finish in {seconds}s"
    return result["info"], result["frames"], result["reader"]


def test_damaged_tree_avi_decodes_in_part(tmp_path):
    src = tmp_path / "tree.avi"
    shutil.copy(DATA / "tree.avi", src)
    info, frames, reader = _read_all_within(src, 60)
    assert 60 <= len(frames) == info.frame_count <= 70
    assert frames[0].luma.shape == (240, 320) and frames[0].luma.dtype == np.uint8
    assert [f.index for f in frames] == list(range(len(frames)))
    assert reader.damaged and all(d in reader.damaged for d in info.holes)
    assert all("missing" in d.reason for d in info.holes)
    assert all(":" in d.start for d in reader.damaged)
    out = tmp_path / "film.mkv"
    segs = colorize_gray(src, info, tmp_path, "ffv1", cuts=(30,))
    V.assemble(segs, src, info, out)
    assert V.probe(out).frame_count == len(frames)


def test_megamind_packed_bframes_in_display_order():
    info, frames, reader = _read_all_within(DATA / "Megamind_bugy.avi", 120)
    assert (info.width, info.height) == (720, 528)
    assert [f.index for f in frames] == list(range(info.frame_count)) and len(frames) == 270
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)
    assert reader.damaged == []


def test_frame_at_follows_the_pts_of_a_variable_frame_rate_film(tmp_path):
    src = make_clip(tmp_path / "vfr.mkv", frames=30, vfr=True, codec="ffv1", audio_streams=0)
    info = V.probe(src)
    assert [info.frame_at(info.time(i)) for i in range(info.frame_count)] == list(range(info.frame_count))
    assert info.frame_at(Fraction(info.duration_s)) == info.frame_count
    gaps = [info.time(i + 1) - info.time(i) for i in range(info.frame_count - 1)]
    assert len(set(gaps)) > 1, "the clip really has a variable frame rate"


def test_full_range_8_bit_source_to_10_bit_is_a_bit_shift(tmp_path):
    """A full-range 8-bit film written at 10 bits: every Y' code value is shifted by 2 bits (255 -> 1020,
    0 -> 0), the usual MSB alignment, not rescaled to 1023."""
    src = tmp_path / "full.mkv"
    levels = np.array([0, 1, 16, 128, 235, 254, 255], np.uint8)
    with av.open(str(src), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 14, 8, "gray"
        for k in range(3):
            img = np.repeat(np.repeat(np.roll(levels, k)[None], 8, axis=0), 2, axis=1)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="gray")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    out = tmp_path / "out.mkv"
    info = run_film(src, out, codec="ffv1", bit_depth=10)
    assert info.full_range and info.bit_depth == 8
    probed = V.probe(out)
    assert probed.bit_depth == 10 and probed.full_range
    src_luma = [f.luma for f in V.LumaReader(src, info)]
    out_luma = [f.luma for f in V.LumaReader(out, probed)]
    assert len(out_luma) == 3
    for a, b in zip(src_luma, out_luma, strict=True):
        assert np.array_equal(b, a.astype(np.uint16) << 2)
    assert int(out_luma[0].max()) == 1020 and int(out_luma[0].min()) == 0
