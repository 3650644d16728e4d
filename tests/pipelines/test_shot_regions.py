"""A photo and a film meet their shots file the same way (issue 13, item 1).

One resolve path (:func:`restorer.shots.resolve.resolve`) and one rasteriser
(:func:`restorer.shots.regions.prompt_region`): a fractional box gives the same pixels on a photo
and on a film's frame, every prompt of a photo's instance is drawn, and the segmenter a points-only
instance needs is judged for a photo as it is for a film.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from media import make_clip
from PIL import Image

from restorer.cli import main
from restorer.pipelines.options import ColorizeOptions
from restorer.shots.regions import prompt_region
from restorer.shots.resolve import FilmInfo, has_segmenter, resolve

W, H = 64, 48
FAST = ("--preset", "stencil", "--tracker", "static", "--box-refine", "off", "--quiet")
FRACTIONAL = "[10.4, 8.6, 30.5, 20.5]"  # rounding gives x 10..30, y 9..20; covering every touched pixel, 10..31, 8..21


def shots_text(prompts: str, frames: str = "") -> str:
    return ("version: 1\nshots:\n  - " + (f"frames: {frames}\n    " if frames else "")
            + "instances:\n      - name: car\n        text: a red car\n        prompts:\n" + prompts)


def box(b: str, frame: int = 0) -> str:
    return f"          - frame: {frame}\n            box: {b}\n"


def photo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:H, 0:W]
    Image.fromarray((60 + 2 * xx + yy).astype(np.uint8), "L").save(folder / "p.png")
    return folder / "p.png"


def saved(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127


def colorize(*args) -> None:
    result = CliRunner().invoke(main, ["colorize", *map(str, args), *FAST])
    assert result.exit_code == 0, result.output


def test_a_fractional_box_gives_the_same_mask_on_a_photo_and_on_a_film(tmp_path):
    src = photo(tmp_path / "in")
    (tmp_path / "in" / "p.shots.yaml").write_text(shots_text(box(FRACTIONAL)))
    colorize(src, "-o", tmp_path / "p.png", "--save-masks", tmp_path / "pm")
    on_photo = saved(tmp_path / "pm" / "p" / "00_car.png")

    film = make_clip(tmp_path / "f.mkv", frames=6, size=(W, H), codec="ffv1", audio_streams=0)
    shots = tmp_path / "f.shots.yaml"
    shots.write_text(shots_text(box(FRACTIONAL, frame=2), frames="[0, 5]"))
    colorize(film, "--shots", shots, "-o", tmp_path / "o.mkv", "--save-masks", tmp_path / "fm")
    on_film = saved(tmp_path / "fm" / "shot0001" / "00_car" / "00000002.png")

    assert np.array_equal(on_photo, on_film), "one rasteriser for photos and films"
    expected = np.zeros((H, W), bool)
    expected[8:21, 10:31] = True  # every pixel the box touches
    assert np.array_equal(on_photo, expected)


def test_a_photo_instance_draws_every_prompt(tmp_path):
    src = photo(tmp_path / "in")
    (tmp_path / "in" / "p.shots.yaml").write_text(shots_text(box("[2, 2, 10, 10]") + box("[40, 30, 60, 44]")))
    colorize(src, "-o", tmp_path / "p.png", "--save-masks", tmp_path / "pm")
    mask = saved(tmp_path / "pm" / "p" / "00_car.png")
    expected = np.zeros((H, W), bool)
    expected[2:10, 2:10] = expected[30:44, 40:60] = True
    assert np.array_equal(mask, expected), "both boxes of the instance"

    film = make_clip(tmp_path / "f.mkv", frames=4, size=(W, H), codec="ffv1", audio_streams=0)
    shots = tmp_path / "f.shots.yaml"
    shots.write_text(shots_text(box("[2, 2, 10, 10]", frame=1) + box("[40, 30, 60, 44]", frame=1), frames="[0, 3]"))
    colorize(film, "--shots", shots, "-o", tmp_path / "o.mkv", "--save-masks", tmp_path / "fm")
    for frame in range(4):
        on_film = saved(tmp_path / "fm" / "shot0001" / "00_car" / f"{frame:08d}.png")
        assert np.array_equal(on_film, expected), f"a film's frame {frame} draws both boxes too"


POINTS_ONLY = "          - frame: 0\n            points: [[20, 20]]\n"


def test_points_alone_on_a_photo_ask_for_the_segmenter_as_on_a_film(tmp_path):
    """``--tracker sam2`` is a segmenter for a photo as for a film: without ``--sam2`` both stop at the missing
    weights, not at "points need --tracker sam2"."""
    src = photo(tmp_path / "in")
    (tmp_path / "in" / "p.shots.yaml").write_text(shots_text(POINTS_ONLY))
    args = ["colorize", str(src), "-o", str(tmp_path / "p.png"), "--preset", "stencil", "--tracker", "sam2", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "only points" not in result.output and "SAM2 weights" in result.output, result.output


class FakeSam2:
    """Stands in for SAM2 on a photo: each prompt's region is the box or a 5-pixel square at each point."""

    name = "sam2"

    def __init__(self):
        self.seen = []

    def fingerprint(self) -> str:
        return "fake"

    def track(self, shot, read, store) -> None:
        masks = []
        for inst in shot.instances:
            (p,) = inst.prompts
            self.seen.append(p)
            m = np.zeros(shot.size, bool)
            for x, y in p.points:
                m[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = True
            masks.append(m)
        store.put(0, np.stack(masks))


def test_a_photo_segments_every_points_prompt_with_sam2(tmp_path, monkeypatch):
    import restorer.models.tracking as tracking

    fake = FakeSam2()
    monkeypatch.setattr(tracking, "open_tracker", lambda kind, folder, device=None: fake)
    src = photo(tmp_path / "in")
    two = POINTS_ONLY + "          - frame: 0\n            points: [[50, 40]]\n"
    (tmp_path / "in" / "p.shots.yaml").write_text(shots_text(two))
    (tmp_path / "sam2").mkdir()
    for name in ("config.json", "model.safetensors", "processor_config.json"):  # what preflight looks for
        (tmp_path / "sam2" / name).write_text("{}")
    colorize_args = ["colorize", str(src), "-o", str(tmp_path / "p.png"), "--preset", "stencil", "--sam2",
                     str(tmp_path / "sam2"), "--save-masks", str(tmp_path / "pm"), "--quiet"]
    result = CliRunner().invoke(main, colorize_args)
    assert result.exit_code == 0, result.output
    assert [p.points for p in fake.seen] == [((20.0, 20.0),), ((50.0, 40.0),)]
    mask = saved(tmp_path / "pm" / "p" / "00_car.png")
    assert mask[20, 20] and mask[40, 50] and mask.sum() == 50


def test_one_segmenter_rule():
    assert not has_segmenter(None, None) and not has_segmenter("flow", None)
    assert has_segmenter("sam2", None) and has_segmenter("flow", Path("sam2"))
    opts = ColorizeOptions(tracker="sam2")
    assert has_segmenter(opts.tracker, opts.sam2)


def test_resolve_takes_height_then_width(tmp_path):
    """A box that fits a 48-high, 64-wide picture only if the size is read as (height, width)."""
    path = tmp_path / "s.yaml"
    path.write_text(shots_text(box("[0, 0, 60, 40]")))
    (shot,) = resolve(path, FilmInfo(1, W, H, None))
    assert shot.instances[0].prompts[0].box == (0, 0, 60, 40)
    from restorer.errors import ShotsError
    from restorer.shots.load import load_shots
    from restorer.shots.resolve import resolve_shots

    resolve_shots(load_shots(path), frame_count=1, size=(H, W))
    with pytest.raises(ShotsError, match="outside the picture"):
        resolve_shots(load_shots(path), frame_count=1, size=(W, H))


def test_prompt_region_draws_resolved_and_tracker_prompts_alike():
    from restorer.models.tracking import Prompt
    from restorer.shots.resolve import ResolvedPrompt

    a = prompt_region(ResolvedPrompt(0, box=(1.5, 1.5, 4.2, 3.0), points=[(7.0, 7.0)]), (12, 12))
    b = prompt_region(Prompt(0, box=(1.5, 1.5, 4.2, 3.0), points=((7.0, 7.0),)), (12, 12))
    assert np.array_equal(a, b) and a[1:3, 1:5].all() and a[7, 7]
