"""Damage a film run must report (issue 16): a cut tail, frames the decoder flags corrupt, stray frames,
and the colour-film warning; ``--strict`` turns damage into exit 2 with one line and nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from media import make_clip, read_video_frames

from restorer.cli import main
from restorer.io.probe import probe

DATA = Path(__file__).resolve().parents[1] / "data"
FAST = ("--preset", "stencil", "--tracker", "static", "--quiet")


def colorize(*args) -> tuple[int, str]:
    """`restorer colorize ARGS` in this process: (exit code, output)."""
    result = CliRunner().invoke(main, ["colorize", *map(str, args), *FAST])
    return result.exit_code, result.output


def half_copied(tmp_path: Path, frames: int = 50) -> Path:
    """An h264 + flac Matroska film cut at half its bytes, as an interrupted copy leaves it."""
    src = make_clip(tmp_path / "whole.mkv", frames=frames, size=(64, 48), audio_streams=1)
    cut = tmp_path / "half.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    src.unlink()
    return cut


def test_strict_refuses_a_half_copied_mkv_in_one_line(tmp_path, restorer, one_error):
    film = half_copied(tmp_path)
    out = tmp_path / "out.mkv"
    proc = restorer("colorize", film, "-o", out, "--strict", *FAST, timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = one_error(proc)
    for word in ("half.mkv", "damaged", "truncated", "drop --strict"):
        assert word in line, (word, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.mkv"]  # no output, no job folder


def test_half_copied_mkv_without_strict_is_colorized_as_far_as_it_goes_with_a_warning(tmp_path):
    film = half_copied(tmp_path)
    info = probe(film)
    out, report = tmp_path / "out.mkv", tmp_path / "r.json"
    code, output = colorize(film, "-o", out, "--codec", "ffv1", "--report", report)
    assert code == 0, output
    r = json.loads(report.read_text())
    assert len(read_video_frames(out)) == r["frames"] == info.frame_count < 50
    tail = [d for d in r["damaged"] if d["first"] == info.frame_count]
    assert len(tail) == 1 and tail[0]["reason"].startswith("truncated:") and tail[0]["last"] >= 45, r["damaged"]
    assert any("damaged" in w and "truncated" in w and str(film) in w for w in r["warnings"]), r["warnings"]


def scrambled(tmp_path: Path) -> Path:
    """An h264 clip whose video packets 20 and 21 are noise after their first 24 bytes."""
    src = make_clip(tmp_path / "src.mkv", frames=48, size=(96, 64), audio_streams=0)
    dst = tmp_path / "bad.mkv"
    with av.open(str(src)) as i, av.open(str(dst), "w", format="matroska") as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        for k, p in enumerate(pk for pk in i.demux(s) if pk.size):
            data = bytes(p)
            if k in (20, 21):
                data = data[:24] + np.random.default_rng(k).integers(0, 256, len(data) - 24, np.uint8).tobytes()
            q = av.Packet(data)
            q.pts, q.dts, q.time_base, q.is_keyframe = p.pts, p.dts, p.time_base, p.is_keyframe
            q.stream = out
            o.mux(q)
    src.unlink()
    return dst


def test_corrupt_frames_are_reported_and_refused_under_strict(tmp_path):
    film = scrambled(tmp_path)
    report = tmp_path / "r.json"
    code, output = colorize(film, "-o", tmp_path / "out.mkv", "--codec", "ffv1", "--report", report)
    assert code == 0, output
    damaged = json.loads(report.read_text())["damaged"]
    assert damaged and all(d["first"] >= 20 for d in damaged), damaged
    code, output = colorize(film, "-o", tmp_path / "strict.mkv", "--codec", "ffv1", "--strict")
    assert code == 2, output
    assert not (tmp_path / "strict.mkv").exists()


def stray_clip(tmp_path: Path, stray: int, frames: int = 30) -> Path:
    """Intra-only ffv1 (a seek lands exactly on its frame) of a drifting pattern, frame ``stray`` blotted."""
    base = make_clip(tmp_path / "pattern.mkv", frames=frames, size=(96, 64), codec="ffv1", audio_streams=0)
    path = tmp_path / "stray.mkv"
    with av.open(str(base)) as src, av.open(str(path), "w", format="matroska") as out:
        s = src.streams.video[0]
        o = out.add_stream("ffv1", rate=25)
        o.width, o.height, o.pix_fmt, o.time_base = s.width, s.height, "yuv420p", s.time_base
        o.codec_context.options = {"g": "1"}
        for k, frame in enumerate(src.decode(s)):
            yuv = frame.to_ndarray(format="yuv420p").copy()
            if k == stray:
                yuv[10:40, 20:70] = 235
            f = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            f.pts, f.time_base = frame.pts, s.time_base
            out.mux(o.encode(f))
        out.mux(o.encode(None))
    base.unlink()
    return path


def test_a_stray_frame_that_starts_a_shot_is_judged_with_the_previous_segments_last_frame(tmp_path):
    """A damaged frame is often taken for a cut, so it starts a shot (and a segment): the pipeline hands
    the previous segment's last frame to the next reader."""
    film = stray_clip(tmp_path, stray=12)
    shots = tmp_path / "s.yaml"
    shots.write_text("version: 1\nshots:\n  - frames: [0, 11]\n  - frames: [12, 29]\n", encoding="utf-8")
    report = tmp_path / "r.json"
    code, output = colorize(film, "--shots", shots, "-o", tmp_path / "out.mkv", "--codec", "ffv1",
                            "--report", report)
    assert code == 0, output
    r = json.loads(report.read_text())
    assert r["shots"] == 2
    assert [(d["first"], d["last"]) for d in r["damaged"]] == [(12, 12)], r["damaged"]
    assert "unlike the frames on both sides" in r["damaged"][0]["reason"]


def opening_on_black(path: Path, frames: int = 30, black: int = 8) -> Path:
    """A colour clip whose first ``black`` frames are black (as Megamind.avi's first frame is)."""
    with av.open(str(path), "w", format="matroska") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for k in range(frames):
            yuv = np.full((72, 64), 128, np.uint8)
            yuv[:48] = 16 if k < black else 90
            if k >= black:
                yuv[48:60, :32], yuv[60:, :32] = 70, 200
            f = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            f.pts = k
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    return path


@pytest.mark.parametrize("kind", ["colour", "gray"])
def test_colour_film_warning_looks_past_a_black_opening(tmp_path, kind):
    if kind == "colour":
        film = opening_on_black(tmp_path / "film.mkv")
    else:
        film = make_clip(tmp_path / "film.mkv", frames=20, codec="ffv1", pix_fmt="gray", audio_streams=0)
    report = tmp_path / "r.json"
    code, output = colorize(film, "-o", tmp_path / "out.mkv", "--codec", "ffv1", "--report", report)
    assert code == 0, output
    warnings = json.loads(report.read_text())["warnings"]
    colour = [w for w in warnings if "looks like a colour film (mean chroma" in w]
    assert len(colour) == (kind == "colour"), warnings
    if colour:
        assert str(film) in colour[0] and "restorer keeps its luma and replaces its colours" in colour[0]


def test_megamind_bugy_under_strict_names_its_damage_in_one_line(tmp_path, restorer, one_error):
    """Every frame of Megamind_bugy.avi decodes cleanly; its damage is in the picture (stray frames)."""
    out = tmp_path / "m.mkv"
    proc = restorer("colorize", DATA / "Megamind_bugy.avi", "-o", out, "--codec", "ffv1", "--strict", *FAST,
                    timeout=300)
    assert proc.returncode == 2, proc.stderr
    line = one_error(proc)
    assert "Megamind_bugy.avi" in line and "unlike the frames on both sides" in line, line
    assert "looks like a colour film" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
