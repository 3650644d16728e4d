"""shots.yaml: loading, schema errors with their lines, and resolving against a film."""

from __future__ import annotations

import json
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from restorer.errors import ShotsError
from restorer.shots.load import load_shots
from restorer.shots.paths import find_sidecar
from restorer.shots.resolve import resolve_shots
from restorer.shots.schema import ShotsFile, format_time, parse_time, shots_schema

SIZE = (240, 320)  # height, width

SAMPLE = """\
version: 1
prompt: "a street in the 1950s, daylight"
shots:
  - frames: [0, 47]
    prompt: "a street at noon"
    instances:
      - name: car
        text: "a red car"
        prompts:
          - frame: 24
            box: [100, 80, 180, 160]
"""


def write(tmp_path: Path, text: str, name: str = "shots.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ShotsError) as info:
        load_shots(path)
    return str(info.value)


def resolve_error(tmp_path: Path, text: str, frame_count: int = 100, **kw) -> str:
    shots = load_shots(write(tmp_path, text))
    with pytest.raises(ShotsError) as info:
        resolve(shots, frame_count, **kw)
    return str(info.value)


def resolve(shots: ShotsFile | None, frame_count: int = 100, **kw):
    kw.setdefault("frame_rate", Fraction(24))
    return resolve_shots(shots, frame_count=frame_count, size=SIZE, **kw)


def shot_with(region: str, frames: str = "[0, 47]", frame: int = 24) -> str:
    return f"""\
        version: 1
        shots:
          - frames: {frames}
            instances:
              - name: car
                text: "a red car"
                prompts:
                  - frame: {frame}
                    {region}
        """


# --------------------------------------------------------------------------- good files

def test_sample_loads_and_resolves(tmp_path):
    shots = resolve(load_shots(write(tmp_path, SAMPLE)), 48)
    assert len(shots) == 1
    shot = shots[0]
    assert (shot.index, shot.start, shot.end, shot.prompt, shot.detected) == (0, 0, 47, "a street at noon", False)
    (car,) = shot.instances
    assert (car.name, car.text) == ("car", "a red car")
    assert car.prompts[0].frame == 24 and car.prompts[0].box == (100, 80, 180, 160)


def test_gaps_are_filled_with_detected_shots(tmp_path):
    shots = resolve(load_shots(write(tmp_path, SAMPLE)), 100, detected_cuts=[10, 60, 80, 100])
    assert [(s.index, s.start, s.end, s.detected) for s in shots] == [
        (0, 0, 47, False), (1, 48, 59, True), (2, 60, 79, True), (3, 80, 99, True)]
    assert shots[1].prompt == "a street in the 1950s, daylight" and shots[1].instances == []


def test_no_file_gives_detected_shots():
    shots = resolve(None, 30, detected_cuts=[12, 24])
    assert [(s.start, s.end) for s in shots] == [(0, 11), (12, 23), (24, 29)]
    assert all(s.detected and s.prompt is None for s in shots)


def test_shots_in_any_order_come_back_sorted(tmp_path):
    path = write(tmp_path, """\
        version: 1
        shots:
          - {frames: [50, 99], prompt: second}
          - {frames: [0, 49], prompt: first}
        """)
    shots = resolve(load_shots(path), 100)
    assert [(s.index, s.prompt) for s in shots] == [(0, "first"), (1, "second")]


def test_time_ranges_become_frames(tmp_path):
    path = write(tmp_path, """\
        version: 1
        shots:
          - time: ["00:00:00.000", "00:00:02.000"]
          - time: [2, 2.5]
          - time: ["00:02.500", "00:00:04.1667"]
        """)
    shots = resolve(load_shots(path), 100, detected_cuts=[])
    assert [(s.start, s.end, s.detected) for s in shots][:3] == [(0, 47, False), (48, 59, False), (60, 99, False)]


def test_only_shot_may_leave_out_frames(tmp_path):
    path = write(tmp_path, 'version: 1\nshots:\n  - prompt: "all of it"\n')
    (shot,) = resolve(load_shots(path), 75)
    assert (shot.start, shot.end, shot.prompt) == (0, 74, "all of it")


def test_photo_with_points_and_segmenter(tmp_path):
    path = write(tmp_path, shot_with("points: [[10, 10]]\n                    negative: [[300, 200]]",
                                     frames="[0, 0]", frame=0))
    (shot,) = resolve(load_shots(path), 1, segmenter_available=True)
    prompt = shot.instances[0].prompts[0]
    assert prompt.points == [(10, 10)] and prompt.negative == [(300, 200)] and prompt.box is None


def test_prompt_frame_defaults_to_shot_start(tmp_path):
    path = write(tmp_path, """\
        version: 1
        shots:
          - frames: [10, 20]
            instances: [{name: a, text: "a hat", prompts: [{box: [0, 0, 5, 5]}]}]
        """)
    shots = resolve(load_shots(path), 30)
    assert shots[1].instances[0].prompts[0].frame == 10


def test_mask_is_loaded_relative_to_the_file(tmp_path):
    (tmp_path / "masks").mkdir()
    mask = np.zeros(SIZE, dtype=np.uint8)
    mask[10:20, 30:40] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "car.png")
    shots = resolve(load_shots(write(tmp_path, shot_with("mask: masks/car.png"))), 48)
    got = shots[0].instances[0].prompts[0].mask
    assert got.dtype == bool and got.shape == SIZE and got.sum() == 100


def test_find_sidecar(tmp_path):
    photo = tmp_path / "x.jpg"
    photo.write_bytes(b"")
    assert find_sidecar(photo) is None
    (tmp_path / "x.shots.yaml").write_text(SAMPLE)
    assert find_sidecar(photo) == tmp_path / "x.shots.yaml"


def test_schema_is_json():
    schema = shots_schema()
    json.dumps(schema)
    assert set(schema["properties"]) == {"version", "prompt", "shots"}
    assert schema["additionalProperties"] is False


def test_timecodes():
    assert parse_time("01:02:03.250") == Fraction(3723250, 1000)
    assert parse_time("02:03.5") == Fraction(247, 2)
    assert parse_time(1.2) == Fraction(6, 5)
    assert format_time(Fraction(29, 25)) == "00:00:01.160"


# --------------------------------------------------------------------------- load errors

def test_yaml_syntax_error_has_line(tmp_path):
    msg = load_error(tmp_path, "version: 1\nshots:\n  - frames: [0, 47]\n    prompt: \"open\n  - frames: [48, 60]\n")
    assert "shots.yaml:" in msg and "YAML syntax error" in msg
    msg = load_error(tmp_path, "version: 1\nshots:\n  - frames: [0, 47\n")
    assert "shots.yaml:3:" in msg and "YAML syntax error" in msg


def test_unknown_key_names_key_line_and_allowed(tmp_path):
    msg = load_error(tmp_path, SAMPLE.replace('text: "a red car"', 'txet: "a red car"'))
    assert "shots.yaml:8:" in msg and "unknown key 'txet'" in msg
    assert "allowed keys here: name, text, prompts" in msg


def test_unknown_top_level_key(tmp_path):
    msg = load_error(tmp_path, SAMPLE + "colour: red\n")
    assert "shots.yaml:12:" in msg and "'colour'" in msg and "version, prompt, shots" in msg


def test_wrong_type_points_at_value(tmp_path):
    msg = load_error(tmp_path, SAMPLE.replace("frames: [0, 47]", "frames: [0, forty]"))
    assert "shots.yaml:4:" in msg and "shots[0].frames" in msg and "frames: [0, 47]" in msg


def test_wrong_type_of_box(tmp_path):
    msg = load_error(tmp_path, SAMPLE.replace("box: [100, 80, 180, 160]", "box: [100, 80, 180]"))
    assert "shots.yaml:11:" in msg and "box" in msg and "[x0, y0, x1, y1]" in msg


def test_missing_required_key(tmp_path):
    msg = load_error(tmp_path, SAMPLE.replace('        text: "a red car"\n', ""))
    assert "shots.yaml:7:" in msg and "missing required key 'text'" in msg and 'text: "a red car"' in msg


@pytest.mark.parametrize("text, line, words", [
    ("shots: []\n", 1, "add `version: 1`"),
    ("prompt: x\nversion: 2\nshots: []\n", 2, "version 2 is not supported"),
    ("", 1, "empty"),
    ("- 1\n- 2\n", 1, "mapping"),
])
def test_version_problems(tmp_path, text, line, words):
    msg = load_error(tmp_path, text)
    assert f"shots.yaml:{line}:" in msg and words in msg


def test_reversed_frames(tmp_path):
    msg = load_error(tmp_path, SAMPLE.replace("[0, 47]", "[47, 0]"))
    assert "shots.yaml:4:" in msg and "reversed" in msg and "[0, 47]" in msg


def test_reversed_time(tmp_path):
    msg = load_error(tmp_path, 'version: 1\nshots:\n  - time: ["00:00:02.000", "00:00:01.000"]\n')
    assert "shots.yaml:3:" in msg and "ends before it starts" in msg


def test_zero_area_box(tmp_path):
    msg = load_error(tmp_path, shot_with("box: [100, 80, 100, 160]"))
    assert "shots.yaml:9:" in msg and "zero area" in msg and "x1 > x0" in msg


def test_prompt_without_region_and_with_two(tmp_path):
    msg = load_error(tmp_path, shot_with("negative: [[1, 1]]"))
    assert "shots.yaml:8:" in msg and "needs a region" in msg
    msg = load_error(tmp_path, shot_with("box: [0, 0, 5, 5]\n                    mask: m.png"))
    assert "shots.yaml:8:" in msg and "box or mask, not both" in msg


def test_duplicate_key(tmp_path):
    msg = load_error(tmp_path, "version: 1\nshots: []\nshots: []\n")
    assert "shots.yaml:3:" in msg and "appears twice" in msg


def test_missing_file(tmp_path):
    with pytest.raises(ShotsError, match="not found"):
        load_shots(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- resolve errors

def test_range_past_end_of_film(tmp_path):
    msg = resolve_error(tmp_path, SAMPLE, frame_count=40)
    assert "shots.yaml:4:" in msg and "past the end" in msg and "frame 39 or before" in msg


def test_overlapping_shots(tmp_path):
    msg = resolve_error(tmp_path, """\
        version: 1
        shots:
          - frames: [0, 47]
          - frames: [40, 60]
        """)
    assert "shots.yaml:4:" in msg and "overlaps shot 0" in msg and "line 3" in msg


def test_several_shots_need_frames(tmp_path):
    msg = resolve_error(tmp_path, "version: 1\nshots:\n  - frames: [0, 10]\n  - prompt: x\n")
    assert "shots.yaml:4:" in msg and "frames: [first, last]" in msg


def test_photo_takes_one_shot(tmp_path):
    msg = resolve_error(tmp_path, "version: 1\nshots:\n  - prompt: a\n  - prompt: b\n", frame_count=1)
    assert "shots.yaml:4:" in msg and "one shot" in msg


def test_prompt_frame_outside_shot(tmp_path):
    msg = resolve_error(tmp_path, shot_with("box: [0, 0, 5, 5]", frame=60))
    assert "shots.yaml:8:" in msg and "outside its shot" in msg and "from 0 to 47" in msg


def test_box_outside_picture(tmp_path):
    msg = resolve_error(tmp_path, shot_with("box: [300, 80, 330, 160]"))
    assert "shots.yaml:9:" in msg and "outside the picture (320x240)" in msg and "x1 <= 320" in msg


@pytest.mark.parametrize("region", ["points: [[10, 250]]",
                                    "points: [[10, 10]]\n                    negative: [[-1, 5]]"])
def test_points_outside_picture(tmp_path, region):
    msg = resolve_error(tmp_path, shot_with(region), segmenter_available=True)
    assert "outside the picture" in msg and "0 <= y < 240" in msg
    assert "shots.yaml:9:" in msg or "shots.yaml:10:" in msg


def test_points_alone_need_a_segmenter(tmp_path):
    msg = resolve_error(tmp_path, shot_with("points: [[10, 10]]"))
    assert "shots.yaml:5:" in msg and "points need --tracker sam2 with --sam2 DIR, or add a box/mask" in msg


def test_mask_missing(tmp_path):
    msg = resolve_error(tmp_path, shot_with("mask: masks/car.png"))
    assert "shots.yaml:9:" in msg and "masks/car.png not found" in msg and "relative to the shots file" in msg


def test_mask_wrong_size(tmp_path):
    Image.new("L", (100, 50), 255).save(tmp_path / "car.png")
    msg = resolve_error(tmp_path, shot_with("mask: car.png"))
    assert "shots.yaml:9:" in msg and "100x50, expected 320x240" in msg


def test_time_needs_a_frame_rate(tmp_path):
    msg = resolve_error(tmp_path, 'version: 1\nshots:\n  - time: [0, 1]\n', frame_rate=None)
    assert "shots.yaml:3:" in msg and "use frames" in msg


def test_duplicate_instance_names(tmp_path):
    msg = load_error(tmp_path, """\
        version: 1
        shots:
          - instances:
              - {name: car, text: "a red car", prompts: [{box: [0, 0, 5, 5]}]}
              - {name: car, text: "a blue car", prompts: [{box: [0, 0, 5, 5]}]}
        """)
    assert "shots.yaml:5:" in msg and "two instances named 'car'" in msg and "line 4" in msg
