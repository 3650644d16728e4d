"""Film I/O (restorer.io.probe, decode, encode, mux) on tiny generated clips and the damaged clips in tests/data."""

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
from restorer.io.decode import LumaReader  # noqa: E402
from restorer.io.encode import (  # noqa: E402
    SegmentWriter,
    area_average,
    chroma_layout,
    output_pix_fmt,
    quantise_chroma,
    segment_suffix,
)
from restorer.io.film import BT601, Damage, DecodedFrame, VideoInfo  # noqa: E402
from restorer.io.mux import _segment_signature, assemble  # noqa: E402
from restorer.io.probe import _cut_tail, _DeclaredEnd, probe  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


def colorize_gray(src: Path, info: VideoInfo, out_dir: Path, codec: str = "h264",
                  cuts: tuple[int, ...] = (), bit_depth: int | None = None) -> list[Path]:
    """Encode the film as segments split before each index in ``cuts`` (neutral chroma)."""
    bounds = [0, *cuts, info.frame_count]
    segments = []
    for k, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        path = out_dir / f"seg{k:03d}{segment_suffix(codec)}"
        with SegmentWriter(path, info, codec, bit_depth=bit_depth, preset="ultrafast") as writer:
            for frame in LumaReader(src, info, a, b - 1):
                zero = np.zeros(frame.luma.shape, np.float32)
                writer.write(frame.index, frame.luma, zero, zero)
        segments.append(path)
    return segments


def run_film(src: Path, out: Path, codec: str = "h264", cuts=(), bit_depth=None) -> VideoInfo:
    info = probe(src)
    segs = colorize_gray(src, info, out.parent, codec, cuts, bit_depth)
    assemble(segs, src, info, out)
    return info


def psnr(a: np.ndarray, b: np.ndarray, peak: int) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def luma_of(path: Path) -> list[np.ndarray]:
    return [y for _, y, _, _ in read_video_frames(path)]


# ------------------------------------------------------------------------- probing


def test_probe_cfr_clip(tmp_path):
    src = make_clip(tmp_path / "a.mp4", frames=12, size=(64, 48), audio_streams=2, subtitle=True)
    info = probe(src)
    assert (info.width, info.height, info.frame_count) == (64, 48, 12)
    assert info.frame_rate == 25 and isinstance(info.frame_rate, Fraction)
    assert [p * info.time_base for p in info.pts] == [Fraction(i, 25) for i in range(12)]
    assert (info.audio_streams, info.subtitle_streams, info.bit_depth, info.pix_fmt) == (2, 1, 8, "yuv420p")
    assert info.timecode(11) == "00:00:00.440"
    assert info.holes == ()


def test_probe_real_clip_carphone():
    info = probe(DATA / "carphone_pristine.mp4")
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
    assert probe(out).pts == info.pts
    assert audio_packets(out) == audio_packets(src)
    for a, b in zip(luma_of(out), luma_of(src), strict=True):
        assert psnr(a, b, 255) > 38  # within h264 loss at crf 18 on a noisy texture


@pytest.mark.parametrize("bits,pix_fmt", [(8, "yuv420p"), (10, "yuv420p10le")])
def test_ffv1_luma_bit_exact(tmp_path, bits, pix_fmt):
    src = make_clip(tmp_path / "src.mkv", frames=10, size=(80, 48), codec="ffv1", bit_depth=bits,
                    audio_streams=0)
    info = probe(src)
    assert (info.bit_depth, info.pix_fmt) == (bits, pix_fmt)
    decoded = list(LumaReader(src, info))
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
    info = probe(src)
    assert (info.width, info.height) == (65, 49)
    assert output_pix_fmt("ffv1", info, 8) == "yuv420p"
    out = tmp_path / "film.mkv"
    run_film(src, out, codec="ffv1")
    frames = read_video_frames(out)
    assert frames[0][1].shape == (49, 65) and frames[0][2].shape == (25, 33)
    assert all(np.array_equal(a, b) for a, b in zip(luma_of(out), luma_of(src), strict=True))


def test_odd_size_h264_switches_to_444(tmp_path):
    src = make_clip(tmp_path / "odd.mkv", frames=6, size=(65, 49), codec="ffv1", audio_streams=0)
    info = probe(src)
    assert output_pix_fmt("h264", info, 8) == "yuv444p"
    assert output_pix_fmt("prores", info, 10) == "yuv444p10le"
    out = tmp_path / "film.mp4"
    run_film(src, out, codec="h264", cuts=(3,))
    probed = probe(out)
    assert (probed.width, probed.height, probed.frame_count, probed.pix_fmt) == (65, 49, 6, "yuv444p")


@pytest.mark.parametrize("codec,suffix,pix_fmt", [("h265", ".mp4", "yuv420p10le"),
                                                  ("prores", ".mov", "yuv422p10le")])
def test_ten_bit_codecs(tmp_path, codec, suffix, pix_fmt):
    src = make_clip(tmp_path / "src.mkv", frames=6, size=(64, 48), codec="ffv1", bit_depth=10,
                    audio_streams=1, audio_codec="aac")
    out = tmp_path / f"film{suffix}"
    info = run_film(src, out, codec=codec, cuts=(3,))
    probed = probe(out)
    assert (probed.frame_count, probed.pix_fmt, probed.bit_depth) == (6, pix_fmt, 10)
    assert [p * probed.time_base for p in probed.pts] == [p * info.time_base for p in info.pts]
    assert audio_packets(out) == audio_packets(src)
    for a, b in zip(luma_of(out), luma_of(src), strict=True):
        assert psnr(a, b, 1023) > 35  # 10-bit code values (not shifted), lossy codec


def test_segments_are_deterministic(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=12, size=(64, 48), audio_streams=0)
    info = probe(src)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = colorize_gray(src, info, tmp_path / "a", cuts=(6,))
    again = colorize_gray(src, info, tmp_path / "b", cuts=(6,))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]


def test_segments_share_codec_extradata(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=12, size=(64, 48), audio_streams=0)
    info = probe(src)
    segs = colorize_gray(src, info, tmp_path, cuts=(1, 6))  # a one-frame segment too
    extradata = {_segment_signature(s)[4] for s in segs}
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
    info = probe(src)
    assert (info.color_primaries, info.color_trc, info.colorspace, info.color_range) == (1, 1, 1, 2)
    assert (info.rotation, info.sar, info.full_range, info.matrix) == (90, Fraction(4, 3), True, 1)
    out = tmp_path / "film.mp4"
    run_film(src, out)
    got = probe(out)
    assert (got.color_primaries, got.color_trc, got.colorspace, got.color_range) == (1, 1, 1, 2)
    assert (got.rotation, got.sar) == (90, Fraction(4, 3))
    frames = read_video_frames(out)
    assert (frames[0][2] == 128).all()  # full-range neutral chroma


def test_untagged_sd_source_gets_bt601_limited(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=4, size=(64, 48), audio_streams=0)
    info = probe(src)
    assert (info.colorspace, info.matrix, info.full_range) == (2, BT601, False)
    out = tmp_path / "film.mp4"
    run_film(src, out)
    got = probe(out)
    assert (got.colorspace, got.color_range, got.color_primaries) == (BT601, 1, 2)


def test_rgb_source_luma_from_matrix(tmp_path):
    src = make_clip(tmp_path / "rgb.mkv", frames=4, size=(64, 48), codec="ffv1", pix_fmt="bgr0",
                    audio_streams=0)
    info = probe(src)
    assert not info.is_yuv and info.full_range
    frames = list(LumaReader(src, info))
    with av.open(str(src)) as c:
        rgb = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for frame, img in zip(frames, rgb, strict=True):
        assert np.array_equal(frame.luma, img[..., 0])  # gray RGB: Y' equals the gray level
    assert output_pix_fmt("ffv1", info, 8) == "yuv444p"


def test_reader_range_matches_full_read(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=40, size=(64, 48), audio_streams=0)
    info = probe(src)
    full = list(LumaReader(src, info))
    part = list(LumaReader(src, info, 17, 29))
    assert [f.index for f in part] == list(range(17, 30))
    assert all(np.array_equal(a.luma, full[a.index].luma) for a in part)


# ------------------------------------------------------------------------- writer units


def test_quantise_chroma_ranges():
    p = np.array([-0.5, 0.0, 0.5], dtype=np.float32)
    assert quantise_chroma(p, 8, False).tolist() == [16, 128, 240]
    assert quantise_chroma(p, 10, False).tolist() == [64, 512, 960]
    assert quantise_chroma(p, 8, True).tolist() == [0, 128, 255]
    assert quantise_chroma(p, 10, True).tolist() == [0, 512, 1023]


def test_area_average_handles_odd_edges():
    plane = np.arange(15, dtype=np.float32).reshape(3, 5)
    avg = area_average(plane, 2, 2)
    assert avg.shape == (2, 3)
    assert avg[0, 0] == np.mean([0, 1, 5, 6]) and avg[1, 2] == 14 and avg[0, 2] == np.mean([4, 9])


def test_an_unknown_codec_is_refused_not_written_with_prores_options(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=2, size=(64, 48), audio_streams=0)
    info = probe(src)
    for call in (lambda: segment_suffix("vp9"), lambda: chroma_layout("vp9", info),
                 lambda: SegmentWriter(tmp_path / "seg.mov", info, "vp9")):
        with pytest.raises(InputError) as err:
            call()
        assert str(err.value) == "unknown codec 'vp9' — choose one of h264, h265, ffv1, prores"
    assert list(tmp_path.iterdir()) == [src]


def test_a_codec_is_named_as_the_cli_offers_it_and_no_other_way():
    from restorer.io.codecs import CODECS, codec_named

    assert [codec_named(name.upper()).name for name in CODECS] == list(CODECS)
    with pytest.raises(InputError, match="unknown codec 'hevc'"):  # no alias the CLI cannot pass
        codec_named("hevc")


def test_the_cli_offers_the_codec_tables_names():
    from restorer.cli import colorize

    choices = next(p.type.choices for p in colorize.params if p.name == "codec")
    assert tuple(choices) == ("h264", "h265", "ffv1", "prores")
    assert [segment_suffix(c) for c in choices] == [".mp4", ".mp4", ".mp4", ".mov"]


def test_writer_deletes_partial_file_on_error(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=4, size=(64, 48), audio_streams=0)
    info = probe(src)
    target = tmp_path / "seg.mov"
    with pytest.raises(ValueError):
        with SegmentWriter(target, info) as writer:
            zero = np.zeros((48, 64), np.float32)
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
        probe(path)
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


def _read_all_within(path: Path, seconds: float) -> tuple[VideoInfo, list[DecodedFrame], LumaReader]:
    """Probe and read in a thread so that a hang fails the test instead of blocking the run."""
    result: dict = {}

    def work():
        info = probe(path)
        reader = LumaReader(path, info)
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
    assemble(segs, src, info, out)
    assert probe(out).frame_count == len(frames)


def test_megamind_packed_bframes_in_display_order():
    info, frames, reader = _read_all_within(DATA / "Megamind_bugy.avi", 120)
    assert (info.width, info.height) == (720, 528)
    assert [f.index for f in frames] == list(range(info.frame_count)) and len(frames) == 270
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)
    # every frame decodes cleanly (no decoder flags, no errors); its damage is in the picture
    assert reader.damaged and all("both sides" in d.reason for d in reader.damaged)


def test_frame_at_follows_the_pts_of_a_variable_frame_rate_film(tmp_path):
    src = make_clip(tmp_path / "vfr.mkv", frames=30, vfr=True, codec="ffv1", audio_streams=0)
    info = probe(src)
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
    probed = probe(out)
    assert probed.bit_depth == 10 and probed.full_range
    src_luma = [f.luma for f in LumaReader(src, info)]
    out_luma = [f.luma for f in LumaReader(out, probed)]
    assert len(out_luma) == 3
    for a, b in zip(src_luma, out_luma, strict=True):
        assert np.array_equal(b, a.astype(np.uint16) << 2)
    assert int(out_luma[0].max()) == 1020 and int(out_luma[0].min()) == 0


# ------------------------------------------------------------------------- cut tails, corrupt and stray frames

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "video"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data/video")


def half_copy(src: Path, dst: Path) -> Path:
    """The first half of the file's bytes, as an interrupted copy leaves it."""
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


def tree_as_mkv(dst: Path) -> Path:
    """tree.avi's 68 frames re-encoded (h264) into Matroska with their own times (29.6 s)."""
    with av.open(str(DATA / "tree.avi")) as src, av.open(str(dst), "w", format="matroska") as out:
        s = src.streams.video[0]
        o = out.add_stream("libx264", rate=s.average_rate)
        o.width, o.height, o.pix_fmt, o.time_base = s.width, s.height, "yuv420p", s.time_base
        o.codec_context.options = {"preset": "ultrafast"}
        for frame in src.decode(s):
            yuv = frame.reformat(format="yuv420p")
            yuv.pts, yuv.time_base = frame.pts, s.time_base
            out.mux(o.encode(yuv))
        out.mux(o.encode(None))
    return dst


def _tail(info: VideoInfo) -> Damage:
    tails = [h for h in info.holes if h.first >= info.frame_count]
    assert len(tails) == 1, info.holes
    return tails[0]


def test_half_copied_mkv_reports_its_cut_tail(tmp_path):
    """The issue's film: a half-copied .mkv whose container says 29.6 s while 35 of its 68 frames are there."""
    whole = probe(tree_as_mkv(tmp_path / "tree.mkv"))
    assert whole.frame_count == 68 and whole.holes == ()
    info = probe(half_copy(tmp_path / "tree.mkv", tmp_path / "half.mkv"))
    tail = _tail(info)
    assert 30 <= info.frame_count <= 40 and tail.first == info.frame_count
    expected = tail.last + 1
    assert abs(expected - 68) <= 5, tail  # from the mean interval of the frames present
    assert tail.reason.startswith(f"truncated: {info.frame_count} of ~{expected} frames decode")
    assert "29.6 s" in tail.reason and tail.start < tail.end <= "00:00:29.600"
    # the reader of the range that ends at the last frame carries it; an earlier range does not
    assert tail in _read_all_within(tmp_path / "half.mkv", 30)[2].damaged
    early = LumaReader(tmp_path / "half.mkv", info, 0, 9)
    assert len(list(early)) == 10 and early.damaged == []


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_half_copied_clip_with_sound(tmp_path, suffix):
    src = make_clip(tmp_path / f"src{suffix}", frames=50, size=(64, 48), audio_streams=1)
    assert probe(src).holes == ()
    if suffix == ".mp4":  # the index (moov) is at the end: half a file cannot be read at all
        assert "truncated" in _message(half_copy(src, tmp_path / f"half{suffix}"))
        return
    info = probe(half_copy(src, tmp_path / f"half{suffix}"))
    tail = _tail(info)
    assert info.frame_count < 50 and abs(tail.last + 1 - 50) <= 2 and "truncated" in tail.reason


@pytest.mark.parametrize("spec", [dict(suffix=".mkv", vfr=True, codec="ffv1"), dict(suffix=".mp4", vfr=True),
                                  dict(suffix=".mkv", audio_streams=2), dict(suffix=".mp4", frames=1),
                                  dict(suffix=".avi", codec="ffv1", audio_streams=0)])
def test_whole_clips_are_not_cut(tmp_path, spec):
    spec = dict(spec)
    src = make_clip(tmp_path / f"clip{spec.pop('suffix')}", **{"frames": 30, **spec})
    info = probe(src)
    assert info.holes == (), info.holes
    reader = LumaReader(src, info)
    assert len(list(reader)) == info.frame_count and reader.damaged == []


def test_sound_longer_than_the_picture_is_not_a_cut():
    """samples/carphone.mp4: 4.0 s of video, 7.3 s of sound."""
    info = probe(Path(__file__).resolve().parents[2] / "samples" / "carphone.mp4")
    assert info.holes == () and info.duration_s < 4.1


def test_a_last_frame_held_to_the_end_is_not_a_cut(tmp_path):
    """The last packet lasts 4 s (a still held at the end): the container's 4.36 s is all there."""
    path = tmp_path / "held.mkv"
    with av.open(str(path), "w", format="matroska") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt, s.time_base = 64, 48, "gray", Fraction(1, 25)
        packets = []
        for k in range(10):
            f = av.VideoFrame.from_ndarray(np.full((48, 64), 20 * k, np.uint8), format="gray")
            f.pts, f.time_base = k, Fraction(1, 25)
            packets += s.encode(f)
        packets += s.encode(None)
        packets[-1].duration = 100
        for packet in packets:
            out.mux(packet)
    info = probe(path)
    with av.open(str(path)) as c:
        assert c.streams.video[0].metadata["DURATION"].startswith("00:00:04.36")
    assert info.frame_count == 10 and info.holes == ()


def test_file_duration_counts_every_streams_packets(tmp_path):
    """Without a stream duration, the file's duration is compared with where all packets end."""
    info = probe(make_clip(tmp_path / "c.mkv", frames=25, audio_streams=0))
    end = Fraction(info.pts[-1]) * info.time_base
    far = _DeclaredEnd(end + 3, "file", others_end=end + 3)  # sound runs on: the picture is just shorter
    assert _cut_tail(info, far, None) is None
    cut = _cut_tail(info, _DeclaredEnd(end + 3, "file", others_end=end), None)
    assert cut is not None and cut.first == 25 and abs(cut.last - (25 + 75 - 1)) <= 1 and "for the file" in cut.reason
    assert _cut_tail(info, _DeclaredEnd(end + Fraction(1, 25), "stream"), None) is None


def scramble_packets(src: Path, dst: Path, bad: set[int], keep: int = 24) -> Path:
    """A copy whose video packets ``bad`` (decode order) keep ``keep`` bytes and are noise after them."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="matroska") as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        for k, p in enumerate(pk for pk in i.demux(s) if pk.size):
            data = bytes(p)
            if k in bad:
                data = data[:keep] + np.random.default_rng(k).integers(0, 256, len(data) - keep, np.uint8).tobytes()
            q = av.Packet(data)
            q.pts, q.dts, q.time_base, q.is_keyframe = p.pts, p.dts, p.time_base, p.is_keyframe
            q.stream = out
            o.mux(q)
    return dst


def test_frames_the_decoder_flags_corrupt_are_damage(tmp_path):
    src = make_clip(tmp_path / "src.mkv", frames=48, size=(96, 64), audio_streams=0)
    bad = scramble_packets(src, tmp_path / "bad.mkv", {20, 21})
    info = probe(bad)
    reader = LumaReader(bad, info)
    frames = list(reader)
    assert info.holes == () and len(frames) >= 46
    assert reader.damaged, "scrambled packets must not pass as a clean film"
    assert all(d.first >= 20 for d in reader.damaged), reader.damaged
    assert any(d.reason.startswith(("decoded with errors", "did not decode")) and d.first <= 22
               for d in reader.damaged), reader.damaged


def test_corrupt_flag_of_a_real_clip(tmp_path):
    """Megamind_bugy.avi with noise over two packets: mpeg4's concealed frames come out flagged."""
    src = DATA / "Megamind_bugy.avi"
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        big = [k for k, p in enumerate(pk for pk in c.demux(s) if pk.size) if 140 <= k and p.size > 2000][:2]
    bad = tmp_path / "bad.avi"
    with av.open(str(src)) as i, av.open(str(bad), "w", format="avi") as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        for k, p in enumerate(pk for pk in i.demux(s) if pk.size):
            data = bytes(p)
            if k in big:
                data = data[:64] + np.random.default_rng(k).integers(0, 256, len(data) - 64, np.uint8).tobytes()
            q = av.Packet(data)
            q.pts, q.dts, q.time_base, q.is_keyframe = p.pts, p.dts, p.time_base, p.is_keyframe
            q.stream = out
            o.mux(q)
    info = probe(bad)
    reader = LumaReader(bad, info, 130, 269)
    list(reader)
    assert reader.damaged and all(big[0] <= d.first <= big[1] + 5 for d in reader.damaged), (big, reader.damaged)
    assert any(d.reason.startswith("decoded with errors") for d in reader.damaged), reader.damaged


def stray_clip(path: Path, stray: int, frames: int = 30, flicker: int | None = None) -> Path:
    """Intra-only ffv1 (every frame a keyframe: a seek lands exactly on its frame) of a drifting pattern,
    with frame ``stray`` blotted by a white block, and frame ``flicker`` brighter as a whole."""
    base = make_clip(path.with_name("pattern.mkv"), frames=frames, size=(96, 64), codec="ffv1", audio_streams=0)
    with av.open(str(base)) as src, av.open(str(path), "w", format="matroska") as out:
        s = src.streams.video[0]
        o = out.add_stream("ffv1", rate=25)
        o.width, o.height, o.pix_fmt, o.time_base = s.width, s.height, "yuv420p", s.time_base
        o.codec_context.options = {"g": "1"}
        for k, frame in enumerate(src.decode(s)):
            yuv = frame.to_ndarray(format="yuv420p").copy()
            if k == stray:
                yuv[10:40, 20:70] = 235
            if k == flicker:
                yuv[:64] = np.minimum(yuv[:64].astype(np.int16) + 30, 235).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            f.pts, f.time_base = frame.pts, s.time_base
            out.mux(o.encode(f))
        out.mux(o.encode(None))
    return path


def test_stray_frame_is_damage_and_a_brighter_frame_is_not(tmp_path):
    clip = stray_clip(tmp_path / "stray.mkv", stray=12, flicker=20)
    info = probe(clip)
    reader = LumaReader(clip, info)
    assert len(list(reader)) == 30
    assert [(d.first, d.last) for d in reader.damaged] == [(12, 12)]
    assert "unlike the frames on both sides" in reader.damaged[0].reason


def test_stray_frame_at_a_range_start_is_judged_with_the_previous_readers_edge(tmp_path):
    clip = stray_clip(tmp_path / "stray.mkv", stray=12)
    info = probe(clip)
    before = LumaReader(clip, info, 0, 11)
    assert len(list(before)) == 12 and before.damaged == [] and before.edge[0] == 11
    alone = LumaReader(clip, info, 12, 29)
    list(alone)
    assert alone.damaged == []  # the seek lands on frame 12 itself: nothing to compare it with
    chained = LumaReader(clip, info, 12, 29, previous=before.edge)
    list(chained)
    assert [d.first for d in chained.damaged] == [12]
    last = LumaReader(clip, info, 5, 12)  # the range's last frame: judged with the frame that ends the range
    list(last)
    assert [d.first for d in last.damaged] == [12]


def _clean_reference_damage() -> list[int]:
    """Frames of Megamind_bugy.avi that differ from the clean Megamind.avi (>0.2% of pixels by >40 levels)."""
    bugy = LumaReader(DATA / "Megamind_bugy.avi")
    clean = LumaReader(SHARED / "Megamind.avi")
    return [a.index for a, b in zip(bugy, clean, strict=True)
            if (np.abs(a.luma.astype(np.int16) - b.luma.astype(np.int16)) > 40).mean() > 0.002]


@pytest.mark.skipif(not (SHARED / "Megamind.avi").exists(), reason="needs the clean Megamind.avi")
def test_megamind_bugy_damage_checked_against_the_clean_film():
    truth = _clean_reference_damage()
    assert len(truth) > 15  # the bugy clip's blocks, lines and bands, every ~5 frames up to frame 115
    reader = LumaReader(DATA / "Megamind_bugy.avi")
    list(reader)
    found = [d.first for d in reader.damaged]
    assert set(found) <= set(truth), sorted(set(found) - set(truth))  # no clean frame reported
    assert {40, 75, 95, 100} <= set(found)  # the big blocks, the mirrored frame and the black band
    clean = LumaReader(SHARED / "Megamind.avi")
    assert len(list(clean)) == 270 and clean.damaged == []


def test_colour_is_judged_past_a_black_opening(tmp_path):
    path = tmp_path / "opening.mkv"
    with av.open(str(path), "w", format="matroska") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for k in range(30):
            yuv = np.full((72, 64), 128, np.uint8)
            yuv[:48] = 16 if k < 8 else 90
            if k >= 8:
                yuv[48:60, :32], yuv[60:, :32] = 70, 200  # U then V planes, left half: red/blue
            f = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            f.pts = k
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    info = probe(path)
    assert info.is_color and info.chroma > 5
    gray = probe(make_clip(tmp_path / "gray.mkv", frames=20, codec="ffv1", pix_fmt="gray", audio_streams=0))
    assert not gray.is_color and gray.chroma == 0


@pytest.mark.skipif(not (SHARED / "Megamind.avi").exists(), reason="needs Megamind.avi")
def test_megamind_is_a_colour_film_though_it_opens_on_black():
    info = probe(SHARED / "Megamind.avi")
    assert info.is_color and info.chroma > 10
