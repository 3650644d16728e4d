"""Cut detection, the shots.yaml template and `shots check`, on small clips made here."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from restorer.errors import InputError, OutputError, ShotsError
from restorer.shots.detect import detect_cuts, init_template, template_text, write_template
from restorer.shots.load import load_shots
from restorer.shots.resolve import check_shots, probe_film, resolve_shots

W, H, FPS = 64, 48, 24
SEGMENTS = ((40, 12), (200, 12), (110, 12))  # (gray level, frames): cuts at 12 and 24


def make_clip(path: Path, segments=SEGMENTS, codec: str = "mpeg4") -> Path:
    """A tiny film of textured gray segments at very different luma."""
    rng = np.random.default_rng(0)
    texture = rng.integers(-12, 13, size=(H, W, 1))
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for level, count in segments:
            img = np.clip(level + texture, 0, 255).astype(np.uint8).repeat(3, axis=2)
            for _ in range(count):
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "three.mkv")


def test_detect_cuts_finds_both_cuts(clip):
    assert detect_cuts(clip, min_len=3) == [12, 24]  # the first frame of each new shot


def test_detect_cuts_single_shot_gives_empty(tmp_path):
    film = make_clip(tmp_path / "one.mkv", segments=((90, 10),))
    assert detect_cuts(film, min_len=3) == []


def test_detect_cuts_damaged_tail_keeps_cuts_before(tmp_path, clip):
    data = clip.read_bytes()
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(data[: int(len(data) * 0.8)])
    cuts = detect_cuts(damaged, min_len=3)
    assert cuts and abs(cuts[0] - 12) <= 1


def test_detect_cuts_not_a_video(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a film" * 10)
    with pytest.raises(InputError, match="junk.mp4"):
        detect_cuts(junk)


def test_probe_film(clip):
    info = probe_film(clip)
    assert (info.frame_count, info.width, info.height) == (36, W, H)
    assert info.frame_rate == FPS


def test_template_round_trips(tmp_path):
    out = tmp_path / "film.shots.yaml"
    write_template(out, tmp_path / "film.mp4", [29, 75], 100, Fraction(25))
    text = out.read_text()
    assert "version: 1" in text and "frames: [29, 74]" in text
    assert "# 00:00:01.160 – 00:00:03.000" in text
    assert "# prompt:" in text and "#   - name: car" in text
    shots = resolve_shots(load_shots(out), frame_count=100, size=(H, W), frame_rate=25)
    assert [(s.start, s.end, s.detected) for s in shots] == [(0, 28, False), (29, 74, False), (75, 99, False)]
    assert not list(tmp_path.glob(".*partial*"))


def test_template_refuses_to_overwrite(tmp_path):
    out = tmp_path / "x.yaml"
    out.write_text("keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        write_template(out, "film.mp4", [], 10, 24)
    assert out.read_text() == "keep me"
    write_template(out, "film.mp4", [], 10, 24, overwrite=True)
    assert load_shots(out).shots[0].frames == (0, 9)


def test_template_with_no_frames_loads(tmp_path):
    out = tmp_path / "empty.yaml"
    out.write_text(template_text("f.mp4", [], 0, Fraction(24)))
    assert load_shots(out).shots == []


def test_init_then_check(tmp_path, clip):
    # three shots of 20 frames, longer than the default shortest shot (15): all three are found
    film = make_clip(tmp_path / "long.mkv", segments=((40, 20), (200, 20), (110, 20)))
    out = tmp_path / "long.shots.yaml"
    assert init_template(film, out) == 3
    assert "frames: [0, 19]" in out.read_text() and "frames: [20, 39]" in out.read_text()
    shots = check_shots(film, out)
    assert [(s.start, s.end) for s in shots] == [(0, 19), (20, 39), (40, 59)]
    assert not any(s.detected for s in shots)
    # the module's clip has 12-frame shots, under the default 15: no cut is kept (the detector measures
    # the shortest shot from the last change it saw, so the cut at 24 is 12 frames after the one at 12)
    out = tmp_path / "three.shots.yaml"
    assert init_template(clip, out) == 1
    assert [(s.start, s.end) for s in check_shots(clip, out)] == [(0, 35)]


def test_check_reports_range_past_end(tmp_path, clip):
    shots_path = tmp_path / "s.yaml"
    shots_path.write_text("version: 1\nshots:\n  - frames: [0, 40]\n")
    with pytest.raises(ShotsError, match=r"s\.yaml:3: .*past the end.*frame 35"):
        check_shots(clip, shots_path)


def test_check_photo(tmp_path):
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.new("L", (W, H)).save(photo)
    shots_path = tmp_path / "p.shots.yaml"
    shots_path.write_text('version: 1\nshots:\n  - instances:\n      - {name: a, text: "a red hat", '
                          "prompts: [{box: [1, 1, 9, 9]}]}\n")
    (shot,) = check_shots(photo, shots_path)
    assert (shot.start, shot.end, shot.instances[0].prompts[0].frame) == (0, 0, 0)
