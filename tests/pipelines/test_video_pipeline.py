"""`restorer colorize` on generated films, end to end: what a user's film keeps, and resume after SIGKILL.

Each case colorizes a tiny real clip through the CLI with the stencil preset and checks the
decoded output against the source: frame count and timestamps, audio packets byte for byte,
the luma plane, each instance's hue and a neutral background.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from media import audio_packets, frame_times, make_clip, read_video_frames

from restorer.cli import main
from restorer.io.color import hue_difference_deg, lab_chroma, lab_hue_deg, srgb_to_lab, ypbpr_to_rgb
from restorer.io.probe import probe
from restorer.models.colornames import parse_color

# Two instances on a 64x48 (or larger) frame, far enough apart to leave background between them.
RED_BOX = (4, 4, 28, 24)
BLUE_BOX = (36, 24, 60, 44)
SHOTS = """\
version: 1
prompt: "a street"
shots:
  - frames: [0, {last}]
    instances:
      - name: car
        text: "a red car"
        prompts:
          - frame: 0
            box: [{r[0]}, {r[1]}, {r[2]}, {r[3]}]
      - name: coat
        text: "a blue coat"
        prompts:
          - frame: 0
            box: [{b[0]}, {b[1]}, {b[2]}, {b[3]}]
"""


def write_shots(folder: Path, frames: int) -> Path:
    path = folder / "s.yaml"
    path.write_text(SHOTS.format(last=frames - 1, r=RED_BOX, b=BLUE_BOX), encoding="utf-8")
    return path


def colorize(*args: str | Path) -> None:
    """`restorer colorize ARGS` in this process (fast); fails with the command's own output."""
    result = CliRunner().invoke(main, ["colorize", "--preset", "stencil", *map(str, args), "--quiet", "--tracker",
                                       "static"])
    assert result.exit_code == 0, result.output


def decoded_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, bits: int) -> np.ndarray:
    """Limited-range BT.601 Y'CbCr planes (chroma at any subsampling) -> R'G'B' in [0, 1]."""
    h, w = y.shape
    scale = float(1 << (bits - 8))
    sy, sx = -(-h // u.shape[0]), -(-w // u.shape[1])
    up = [np.repeat(np.repeat(p, sy, 0), sx, 1)[:h, :w].astype(np.float32) for p in (u, v)]
    yn = (y.astype(np.float32) - 16 * scale) / (219 * scale)
    pb, pr = ((p - 128 * scale) / (224 * scale) for p in up)
    return np.clip(ypbpr_to_rgb(yn, pb, pr, "bt601"), 0, 1)


def video_end(path: Path) -> Fraction:
    """When the video stream ends (last frame's pts + its duration), as the container states it:
    the stream's duration (MP4) or its DURATION tag (Matroska writes one per track)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration:
            return Fraction(stream.start_time or 0) * stream.time_base + stream.duration * stream.time_base
        h, m, sec = stream.metadata["DURATION"].split(":")
        whole, _, frac = sec.partition(".")
        return 3600 * int(h) + 60 * int(m) + int(whole) + Fraction(int(frac or 0), 10 ** len(frac))


def region(box, shape, inset: int) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    return slice(y0 + inset, min(shape[0], y1) - inset), slice(x0 + inset, min(shape[1], x1) - inset)


def background_mask(shape, margin: int) -> np.ndarray:
    keep = np.ones(shape, bool)
    for x0, y0, x1, y1 in (RED_BOX, BLUE_BOX):
        keep[max(0, y0 - margin):y1 + margin, max(0, x0 - margin):x1 + margin] = False
    return keep


def assert_colours(frames, bits: int) -> None:
    """Each instance's mean hue within 10 degrees of its colour name's; the rest neutral."""
    for _, y, u, v in frames[:: max(1, len(frames) // 4)]:
        lab = srgb_to_lab(decoded_rgb(y, u, v, bits))
        for box, text in ((RED_BOX, "a red car"), (BLUE_BOX, "a blue coat")):
            mean_ab = lab[region(box, y.shape, 3)][..., 1:].reshape(-1, 2).mean(axis=0)
            want = lab_hue_deg(np.asarray(parse_color(text).lab[1:]))
            assert lab_chroma(mean_ab) > 10, (text, mean_ab)
            assert hue_difference_deg(lab_hue_deg(mean_ab), want) < 10, (text, mean_ab)
        background = lab[background_mask(y.shape, 6)][..., 1:]
        assert float(lab_chroma(background).mean()) < 2.0


CASES = {
    "cfr-8bit-one-audio": dict(suffix=".mp4", size=(64, 48), frames=24),
    "vfr": dict(suffix=".mp4", size=(64, 48), frames=24, vfr=True),
    "10bit": dict(suffix=".mkv", size=(64, 48), frames=16, bit_depth=10, codec="ffv1"),
    "odd-size": dict(suffix=".mkv", size=(67, 49), frames=16, codec="ffv1"),
    "no-audio": dict(suffix=".mp4", size=(64, 48), frames=16, audio_streams=0),
    "two-audio": dict(suffix=".mkv", size=(80, 60), frames=16, audio_streams=2),
    "ntsc-rate": dict(suffix=".mp4", size=(64, 48), frames=16, rate=Fraction(30000, 1001)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_ffv1_output_keeps_timing_audio_luma_and_named_colours(tmp_path, case):
    spec = dict(CASES[case])
    src = make_clip(tmp_path / f"clip{spec.pop('suffix')}", **spec)
    out = tmp_path / "out.mkv"
    colorize(src, "--shots", write_shots(tmp_path, spec["frames"]), "--preset", "stencil", "-o", out,
             "--codec", "ffv1", "--report", tmp_path / "r.json")

    source, result = read_video_frames(src), read_video_frames(out)
    assert len(result) == len(source) == spec["frames"]
    # Matroska stores milliseconds: each frame's time survives to the millisecond.
    for t_in, t_out in zip(frame_times(src), frame_times(out), strict=True):
        assert abs(t_in - t_out) <= Fraction(1, 1000)
    # ... and so does the last frame's display time (its end is the video stream's end); VFR too.
    assert abs(video_end(out) - video_end(src)) <= Fraction(1, 1000), (video_end(src), video_end(out))
    # The frame rate the source advertises (a VFR clip's average) is the one the output advertises.
    assert probe(out).frame_rate == probe(src).frame_rate
    assert audio_packets(out) == audio_packets(src)
    assert len(audio_packets(out)) == spec.get("audio_streams", 1)
    for (_, y_in, _, _), (_, y_out, _, _) in zip(source, result, strict=True):
        assert y_out.dtype == y_in.dtype and y_out.shape == y_in.shape
        # ffv1 is lossless and the source's Y' code values are passed through untouched: bit-exact.
        assert np.array_equal(y_out, y_in)
    assert_colours(result, spec.get("bit_depth", 8))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == report["frames_processed"] == spec["frames"]
    assert report["frames_reused"] == 0 and report["preset"] == "stencil"
    # the generated clips carry chroma: exactly one warning, that one, naming the film
    assert len(report["warnings"]) == 1, report["warnings"]
    assert "colour film" in report["warnings"][0] and str(src) in report["warnings"][0]
    assert not list(tmp_path.glob(".*"))  # no job folder or partial file left behind


def test_h264_mp4_output_keeps_exact_pts_and_audio(tmp_path):
    src = make_clip(tmp_path / "clip.mp4", frames=24, size=(64, 48), vfr=True, audio_streams=2)
    out = tmp_path / "out.mp4"
    colorize(src, "--shots", write_shots(tmp_path, 24), "-o", out)  # default codec: h264

    source, result = read_video_frames(src), read_video_frames(out)
    assert len(result) == len(source) == 24
    assert frame_times(out) == frame_times(src)
    # the VFR clip's last frame keeps its own length (x264 leaves packet durations 0: the writer sets them)
    assert video_end(out) == video_end(src), (video_end(src), video_end(out))
    assert audio_packets(out) == audio_packets(src)
    for (_, y_in, _, _), (_, y_out, _, _) in zip(source, result, strict=True):
        diff = y_out.astype(np.float64) - y_in.astype(np.float64)
        # Within the codec's own loss (x264 crf 18 on a noisy pattern: about 34 dB), and unbiased.
        assert 10 * np.log10(255.0 ** 2 / max(np.mean(diff ** 2), 1e-9)) > 30 and abs(diff.mean()) < 0.5
    assert_colours(result, 8)


# --------------------------------------------------------------------------- resume and lock


def frame_hashes(path: Path) -> list[str]:
    return [hashlib.sha256(b"".join(p.tobytes() for p in planes[1:])).hexdigest()
            for planes in read_video_frames(path)]


def resume_args(src: Path, shots: Path, out: Path) -> list[str]:
    return ["colorize", str(src), "--shots", str(shots), "-o", str(out), "--chunk-frames", "8",
            "--preset", "stencil", "--tracker", "static", "--quiet"]


def test_sigkill_mid_film_then_rerun_resumes_to_the_same_film(tmp_path, restorer):
    frames = 96
    src = make_clip(tmp_path / "clip.mp4", frames=frames, size=(160, 120))
    shots = write_shots(tmp_path, frames)
    reference = tmp_path / "reference.mkv"
    done = restorer(*resume_args(src, shots, reference))
    assert done.returncode == 0, done.stderr

    out = tmp_path / "out.mkv"
    segments = tmp_path / ".out.mkv.restorer-job" / "segments"
    proc = subprocess.Popen(restorer.command() + resume_args(src, shots, out),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(segments.glob("*.done.json")):
            assert proc.poll() is None, "the run ended before its first segment was seen"
            assert not out.exists()
            assert time.monotonic() < deadline, "no segment finished within 60 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = len(list(segments.glob("*.done.json")))
    assert 0 < finished < frames // 8, "kill it mid-film, not after the last segment"
    assert not out.exists(), "nothing may appear under the final name before completion"

    rerun = restorer(*resume_args(src, shots, out), "--report", tmp_path / "r.json")
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == frames
    assert report["frames_reused"] >= 8 * finished - 8 and report["frames_reused"] > 0
    assert report["frames_processed"] < frames
    assert report["frames_processed"] + report["frames_reused"] == frames
    assert frame_hashes(out) == frame_hashes(reference)
    assert frame_times(out) == frame_times(reference)
    assert not (tmp_path / ".out.mkv.restorer-job").exists()


def test_a_live_run_holds_the_lock_and_a_dead_ones_lock_is_taken_over(tmp_path, restorer, one_error):
    src = make_clip(tmp_path / "clip.mp4", frames=16, size=(64, 48))
    out = tmp_path / "out.mkv"
    job = tmp_path / ".out.mkv.restorer-job"
    job.mkdir()
    # A live run: this process holds the job's lock as a running restorer would.
    fd = os.open(job / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = restorer("colorize", src, "-o", out, "--preset", "stencil", "--tracker", "static", "--quiet")
        assert busy.returncode == 2
        line = one_error(busy)
        assert "out.mkv" in line and "another restorer run" in line and "wait" in line
        assert not out.exists()
    finally:
        os.close(fd)
    # A lock file left by a killed run (its pid long gone, no holder): taken over.
    (job / "lock").write_text("999999999")
    ok = restorer("colorize", src, "-o", out, "--preset", "stencil", "--tracker", "static", "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert len(read_video_frames(out)) == 16
