"""The `restorer` command as users meet it: bad input, damaged films, output safety, shots files.

Every refusal is checked for its exit code (2: bad usage or input) and for one message line that
names the file, says what is wrong and what to do, with no traceback. Most cases run the real
console script in a subprocess (with a timeout, so a hang fails); the shots.yaml matrix runs
in-process through click's runner to stay fast.
"""

from __future__ import annotations

import json
import os
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from media import make_clip, read_video_frames
from PIL import Image

from restorer.cli import main

DATA = Path(__file__).resolve().parent / "data"
FAST = ("--preset", "stencil", "--tracker", "static", "--quiet")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=16, size=(64, 48))


def make_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout, stream.format = "mono", "fltp"
        for k in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, 1024 * k, Fraction(1, 48000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def refused(proc, one_error, *words: str) -> str:
    """Exit 2, one error line holding every word (case-insensitive)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = one_error(proc)
    for word in words:
        assert word.lower() in line.lower(), (word, line)
    return line


# --------------------------------------------------------------------------- bad input


def test_missing_input(tmp_path, restorer, one_error):
    proc = restorer("colorize", tmp_path / "nope.mp4", "-o", tmp_path / "o.mkv", *FAST)
    refused(proc, one_error, "nope.mp4", "not found", "check the path")
    assert not (tmp_path / "o.mkv").exists()


def test_text_file_named_mp4(tmp_path, restorer, one_error):
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my notes, not a film\n")
    proc = restorer("colorize", fake, "-o", tmp_path / "o.mkv", *FAST)
    refused(proc, one_error, "notes.mp4", "cannot be read as a video", "re-export")
    assert fake.read_text() == "these are my notes, not a film\n"


def test_truncated_mp4(tmp_path, restorer, one_error, clip):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size * 2 // 3])  # moov at the end: gone
    proc = restorer("colorize", cut, "-o", tmp_path / "o.mkv", *FAST)
    refused(proc, one_error, "cut.mp4", "truncated", "re-copy")
    assert not (tmp_path / "o.mkv").exists()


def test_audio_only_file(tmp_path, restorer, one_error):
    song = make_audio_only(tmp_path / "song.mp4")
    proc = restorer("colorize", song, "-o", tmp_path / "o.mkv", *FAST)
    refused(proc, one_error, "song.mp4", "no video stream", "give a film")


def test_damaged_avi_is_colorized_as_far_as_it_decodes(tmp_path, restorer):
    out, report = tmp_path / "tree.mkv", tmp_path / "r.json"
    proc = restorer("colorize", DATA / "tree.avi", "-o", out, "--report", report, *FAST, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    frames = read_video_frames(out)
    assert len(frames) == r["frames"] == r["frames_processed"] > 60  # what decodes (68 of the index's 444)
    assert r["damaged"], "the reader names tree.avi's holes; the report must carry them"
    first = r["damaged"][0]
    assert {"first", "last", "start", "end", "reason"} <= set(first)
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d", first["start"]) and "missing" in first["reason"]
    assert any("tree.avi" in w and "damaged" in w for w in r["warnings"])
    assert "restorer: warning:" in proc.stderr and "Traceback" not in proc.stderr


def test_damaged_avi_with_strict_fails_and_leaves_nothing(tmp_path, restorer, one_error):
    out = tmp_path / "tree.mkv"
    proc = restorer("colorize", DATA / "tree.avi", "-o", out, "--strict", *FAST, timeout=120)
    refused(proc, one_error, "tree.avi", "damaged", "00:00:", "drop --strict")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no job folder, no partial file


@pytest.mark.slow
def test_megamind_packed_bframes_decode_whole_without_hanging(tmp_path, restorer):
    """Megamind_bugy.avi's packets are out of order: every frame still decodes, in order, and comes
    out; the damage painted into its pictures (stray frames) is reported, not hidden (--strict
    refusing it is tests/pipelines/test_video_damage.py's)."""
    out, report = tmp_path / "m.mkv", tmp_path / "r.json"
    proc = restorer("colorize", DATA / "Megamind_bugy.avi", "-o", out, "--codec", "ffv1",
                    "--report", report, *FAST, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    assert r["frames"] == r["frames_processed"] == 270
    assert r["damaged"] and all("both sides" in d["reason"] for d in r["damaged"])
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.demux(c.streams.video[0]) if _.size) == 270


# --------------------------------------------------------------------------- output safety


def test_output_equal_to_input_is_refused(tmp_path, restorer, one_error, clip):
    src = tmp_path / "film.mp4"
    src.write_bytes(clip.read_bytes())
    before = src.read_bytes()
    proc = restorer("colorize", src, "-o", src, "--overwrite", *FAST)
    refused(proc, one_error, "film.mp4", "overwrite an input", "choose an output")
    assert src.read_bytes() == before
    alias = tmp_path / "sub" / ".." / "film.mp4"  # the same file by another spelling
    (tmp_path / "sub").mkdir()
    refused(restorer("colorize", src, "-o", alias, "--overwrite", *FAST), one_error, "overwrite an input")
    assert src.read_bytes() == before


def test_existing_output_is_kept_without_overwrite(tmp_path, restorer, one_error, clip):
    out = tmp_path / "o.mkv"
    out.write_bytes(b"the user's earlier render")
    proc = restorer("colorize", clip, "-o", out, *FAST)
    refused(proc, one_error, "o.mkv", "exists", "--overwrite")
    assert out.read_bytes() == b"the user's earlier render"
    ok = restorer("colorize", clip, "-o", out, "--overwrite", *FAST)
    assert ok.returncode == 0, ok.stderr
    assert len(read_video_frames(out)) == 16


def test_unwritable_output_folder(tmp_path, restorer, one_error, clip):
    """chmod 555 stops everyone but root, and the tests may run as root, where os.access says
    yes to every mode bit; /proc refuses new files to root too (a pseudo file system)."""
    if os.geteuid() == 0:
        folder = Path("/proc/restorer-test-out")
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
    try:
        proc = restorer("colorize", clip, "-o", folder / "o.mkv", *FAST)
        line = refused(proc, one_error, "o.mkv", "not writable", "choose a folder")
        assert str(folder if folder.exists() else folder.parent) in line
    finally:
        if folder.is_relative_to(tmp_path):
            folder.chmod(0o755)
    assert not (folder / "o.mkv").exists()


# --------------------------------------------------------------------------- shots.yaml through the CLI

SHOT_ERRORS = {
    "syntax": ("version: 1\nshots:\n  - frames: [0, 15\n    prompt: x\n", r"s\.yaml:[34]:", "syntax"),
    "unknown-key": ("version: 1\nshots:\n  - frames: [0, 15]\n    instances:\n      - name: car\n"
                    "        txt: a red car\n", r"s\.yaml:6:", "unknown key 'txt'"),
    "past-the-end": ("version: 1\nshots:\n  - frames: [0, 99]\n", r"s\.yaml:3:", "16"),
    "overlap": ("version: 1\nshots:\n  - frames: [0, 9]\n  - frames: [5, 15]\n", r"s\.yaml:4:", "overlap"),
    "frame-outside-shot": ("version: 1\nshots:\n  - frames: [0, 7]\n    instances:\n      - name: car\n"
                           "        text: a red car\n        prompts:\n          - frame: 12\n"
                           "            box: [1, 1, 20, 20]\n", r"s\.yaml:8:", "12"),
    "mask-size": ("version: 1\nshots:\n  - frames: [0, 15]\n    instances:\n      - name: car\n"
                  "        text: a red car\n        prompts:\n          - frame: 0\n"
                  "            mask: m.png\n", r"s\.yaml:9:", "m.png"),
    "colour-word": ("version: 1\nshots:\n  - frames: [0, 15]\n    instances:\n      - name: car\n"
                    "        text: a rde car\n        prompts:\n          - frame: 0\n"
                    "            box: [1, 1, 20, 20]\n", r"s\.yaml:6:", "did you mean: red"),
}


@pytest.mark.parametrize("case", list(SHOT_ERRORS))
def test_shots_yaml_errors_point_at_file_and_line(tmp_path, clip, case):
    text, where, what = SHOT_ERRORS[case]
    shots = tmp_path / "s.yaml"
    shots.write_text(text, encoding="utf-8")
    Image.new("L", (10, 10), 255).save(tmp_path / "m.png")  # wrong size for a 64x48 film
    out = tmp_path / "o.mkv"
    result = CliRunner().invoke(main, ["colorize", str(clip), "--shots", str(shots), "-o", str(out), *FAST])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("restorer: error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert re.search(where, lines[0]) and what.lower() in lines[0].lower(), lines[0]
    assert " — " in lines[0], "the message says what to change"
    assert not out.exists() and not list(tmp_path.glob(".*")), "nothing written, not even a job folder"


# --------------------------------------------------------------------------- version and shots commands


def test_version_is_fast_and_plain(restorer):
    proc = restorer("--version", timeout=30)
    assert proc.returncode == 0 and re.fullmatch(r"restorer, version \d+\.\d+\.\d+\S*\n", proc.stdout)


def test_shots_init_then_check(tmp_path, restorer, clip):
    shots = tmp_path / "shots.yaml"
    init = restorer("shots", "init", clip, "-o", shots)
    assert init.returncode == 0, init.stderr
    assert "shots.yaml" in init.stdout and "1 shot" in init.stdout
    text = shots.read_text()
    assert "version: 1" in text and re.search(r"frames: \[0, 15\]", text)
    check = restorer("shots", "check", clip, shots)
    assert check.returncode == 0, check.stderr
    assert "frames 0-15" in check.stdout and check.stdout.rstrip().endswith(f"{shots}: ok")
    again = restorer("shots", "init", clip, "-o", shots)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # an edited template is never clobbered


def test_film_output_with_an_image_suffix_is_refused_before_work(tmp_path, clip, restorer, one_error):
    out = tmp_path / "film.png"
    proc = restorer("colorize", clip, "-o", out, *FAST)
    refused(proc, one_error, "film.png", "container", ".mkv")
    assert not any(tmp_path.iterdir()), "nothing may be left behind"


def test_sd15_without_weights_says_what_is_missing(tmp_path, clip, restorer, one_error):
    proc = restorer("colorize", clip, "-o", tmp_path / "o.mkv", *FAST, "--preset", "sd15",
                    env={"RESTORER_SD15": "", "RESTORER_WEIGHTS": ""})
    refused(proc, one_error, "--base", "RESTORER_SD15")


def test_shots_preview_draws_each_prompted_frame(tmp_path, clip, restorer):
    shots = tmp_path / "s.yaml"
    shots.write_text("version: 1\nshots:\n  - instances:\n      - name: car\n        text: a red car\n"
                     "        prompts:\n          - frame: 5\n            box: [10, 10, 40, 30]\n")
    proc = restorer(
        "shots", "preview", clip, "--shots", shots, "-o", tmp_path / "prev", "--every", "8", "--tracker", "static")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "prev").iterdir())
    assert "contact_sheet.png" in names
    assert [n for n in names if n.startswith("shot")] == [
        "shot0001_frame000000.png", "shot0001_frame000005.png", "shot0001_frame000008.png",
        "shot0001_frame000015.png"]
    frame = np.asarray(Image.open(tmp_path / "prev" / "shot0001_frame000005.png").convert("RGB")).astype(int)
    outline = np.abs(frame[..., 0] - frame[..., 1]) + np.abs(frame[..., 1] - frame[..., 2])
    assert outline[8:33, 8:43].max() > 60, "the instance's outline is drawn in colour around its box"
    assert outline[40:, 50:].max() < 10, "far from the box the frame stays gray"


def test_colour_film_is_accepted_with_a_warning_and_gray_film_without(tmp_path, restorer):
    colour = DATA / "carphone_pristine.mp4"
    gray = Path(__file__).resolve().parents[1] / "samples" / "carphone.mp4"
    for film, warned in ((colour, True), (gray, False)):
        report = tmp_path / f"{film.stem}{warned}.json"
        proc = restorer("colorize", film, "-o", tmp_path / f"{film.stem}{warned}.mkv", "--report", report,
                        "--codec", "ffv1", *FAST)
        assert proc.returncode == 0, proc.stderr
        warnings = json.loads(report.read_text())["warnings"]
        assert any("colour film" in w for w in warnings) is warned, warnings


def test_temporary_files_of_a_killed_run_are_cleaned_up(tmp_path, clip, restorer):
    out = tmp_path / "film.mkv"
    stale = [tmp_path / ".film.partial-4242-0a1b2c3d.mkv", tmp_path / ".film.partial-4242-7.mkv"]
    for p in stale:
        p.write_bytes(b"half a film")
    other = tmp_path / ".other.partial-4242-0a1b2c3d.mkv"  # another output's: not ours to touch
    other.write_bytes(b"x")
    proc = restorer("colorize", clip, "-o", out, "--codec", "ffv1", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and not any(p.exists() for p in stale) and other.exists()


def test_audio_the_output_container_cannot_hold_is_refused_before_work(tmp_path, restorer, one_error):
    film = tmp_path / "pcm.avi"
    with av.open(str(film), "w") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("pcm_u8", rate=8000)
        audio.layout = "mono"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for k in range(10):
            chunk = av.AudioFrame.from_ndarray(np.full((1, 800), 128, np.uint8), format="u8", layout="mono")
            chunk.sample_rate, chunk.pts = 8000, k * 800
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc = restorer("colorize", film, "-o", outdir / "o.mp4", *FAST)
    refused(proc, one_error, "o.mp4", "pcm_u8", ".mkv")
    assert not any(outdir.iterdir()), "refused before any work: no job folder, no partial file"
    assert restorer("colorize", film, "-o", outdir / "o.mkv", *FAST).returncode == 0


def test_shots_check_finds_an_unknown_colour_word_at_its_line(tmp_path, clip, restorer, one_error):
    shots = tmp_path / "s.yaml"
    shots.write_text("version: 1\nshots:\n  - instances:\n      - name: car\n        text: a blorpish car\n"
                     "        prompts:\n          - frame: 3\n            box: [1, 1, 20, 20]\n")
    proc = restorer("shots", "check", clip, shots, "--preset", "stencil")  # stencil needs colour names
    refused(proc, one_error, "s.yaml:5", "blorpish", "did you mean")


def test_cleanup_spares_the_temporary_files_of_similarly_named_outputs(tmp_path, clip, restorer):
    live = tmp_path / ".film.v2.partial-4242-0a1b2c3d.mkv"  # film.v2.mkv's assembly, maybe still running
    live.write_bytes(b"x")
    proc = restorer("colorize", clip, "-o", tmp_path / "film.mkv", "--codec", "ffv1", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert live.exists()


@pytest.mark.parametrize("args", [["-q", "colorize", "in.png", "-o", "out.png"],
                                  ["colorize", "in.png", "-o", "out.png", "--quiet"],
                                  ["colorize", "in.png", "-o", "out.png"]])
def test_quiet_means_the_same_given_to_the_group_or_to_colorize(monkeypatch, args):
    import restorer.pipelines.run as run

    seen = {}
    monkeypatch.setattr(run, "colorize_run", lambda inputs, output, opts: seen.setdefault("quiet", opts.quiet))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert seen["quiet"] is ("-q" in args or "--quiet" in args)  # no progress bars with either spelling
    from restorer.cli import colorize

    group, command = (next(p for p in c.params if p.name == "quiet") for c in (main, colorize))
    assert (group.opts, group.help, group.callback) == (command.opts, command.help, command.callback)


def test_device_auto_is_decided_in_one_place(monkeypatch):
    import torch

    from restorer.devices import resolve_device

    root = Path(__file__).resolve().parents[1] / "restorer"
    deciders = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "cuda.is_available" in p.read_text())
    assert deciders == ["devices.py"]  # engines, trackers and the pipeline all call resolve_device
    for seen, expected in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda seen=seen: seen)
        assert resolve_device("auto") == resolve_device(None) == resolve_device("") == expected
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
