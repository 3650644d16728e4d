"""The anchors preset through the CLI and the pipelines: shots.yaml ``anchors:``, ``--seed``, ``--variants``,
a film with a tracked anchor. A tiny random DISCO saved as weights (EfficientNet-Lite0's real features)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from restorer.cli import main
from restorer.errors import ShotsError
from restorer.shots.resolve import resolve_shots
from restorer.shots.schema import ShotsFile

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from restorer.models.anchors.model import DiscoModel
    from tests.models.test_anchors import BINS

    torch.manual_seed(0)
    model = DiscoModel(bins=BINS, dim=32, heads=2, layers=1, ff=64, proj=8, spix_channels=8, refine_channels=8)
    with torch.no_grad():
        model.bins_head.weight.normal_(0, 2.0)
    root = tmp_path_factory.mktemp("anchors_weights")
    model.save_pretrained(root / "disco")
    return root


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    y, x = np.mgrid[0:96, 0:128]
    gray = (40 + 150 * (x > 64) + 30 * np.sin(y / 6.0)).clip(0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("in") / "wall.png"
    Image.fromarray(gray).save(path)
    return path


def _run(*args) -> object:
    return CliRunner().invoke(main, ["colorize", "--preset", "anchors", *map(str, args), "--quiet"])


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_without_a_seed_the_most_likely_colours_with_one_a_sample_each_seed_its_own(tmp_path, photo, weights):
    runs = {}
    for label, extra in (("auto", []), ("auto2", []), ("s1", ["--seed", "1"]), ("s1b", ["--seed", "1"]),
                         ("s2", ["--seed", "2"])):
        out = tmp_path / f"{label}.png"
        result = _run(photo, "-o", out, "--weights", weights, *extra)
        assert result.exit_code == 0, result.output
        runs[label] = _rgb(out)
    assert np.array_equal(runs["auto"], runs["auto2"])
    assert np.array_equal(runs["s1"], runs["s1b"])
    assert not np.array_equal(runs["s1"], runs["s2"])
    assert not np.array_equal(runs["auto"], runs["s1"])


def test_variants_write_each_seed_and_a_contact_sheet(tmp_path, photo, weights):
    out = tmp_path / "out"
    result = _run(photo, "-o", out, "--weights", weights, "--variants", "3", "--seed", "5")
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert files == ["wall_v1.png", "wall_v2.png", "wall_v3.png", "wall_variants.png"]
    # variant k is what --seed 5 + k - 1 gives on its own
    alone = tmp_path / "alone.png"
    assert _run(photo, "-o", alone, "--weights", weights, "--seed", "6").exit_code == 0
    assert np.array_equal(_rgb(out / "wall_v2.png"), _rgb(alone))
    sheet = Image.open(out / "wall_variants.png")
    assert sheet.width > 3 * 128 * 220 / 96  # gray + three variants side by side
    again = _run(photo, "-o", out, "--weights", weights, "--variants", "3", "--seed", "5")
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_variants_are_for_photos_only(tmp_path, weights):
    from tests.media import make_clip

    film = make_clip(tmp_path / "f.mp4", frames=4)
    result = _run(film, "-o", tmp_path / "o.mp4", "--weights", weights, "--variants", "2")
    assert result.exit_code == 2 and "--variants 2 is for photos" in result.output


def test_an_anchor_in_the_sidecar_turns_the_picture_around_it_towards_its_colour(tmp_path, photo, weights):
    plain = tmp_path / "plain.png"
    assert _run(photo, "-o", plain, "--weights", weights).exit_code == 0
    folder = tmp_path / "edited"
    folder.mkdir()
    src = folder / photo.name
    src.write_bytes(photo.read_bytes())
    (folder / "wall.shots.yaml").write_text('version: 1\nshots:\n  - anchors:\n      - point: [100, 50]\n'
                                            '        color: "#ff00ff"\n')  # magenta: far from the model's
    out = tmp_path / "edited.png"
    result = _run(src, "-o", out, "--weights", weights)
    assert result.exit_code == 0, result.output
    from skimage.color import rgb2lab

    from restorer.models.colornames import parse_color

    green = np.asarray(parse_color("#ff00ff").lab[1:])
    lab_plain, lab_edit = (rgb2lab(_rgb(p)[70:90, 80:120] / 255.0)[..., 1:].reshape(-1, 2) for p in (plain, out))
    assert np.linalg.norm(lab_edit.mean(0) - green) < np.linalg.norm(lab_plain.mean(0) - green) - 5


def _shots(anchor: dict, frames=None) -> ShotsFile:
    shot = {"anchors": [anchor]}
    if frames:
        shot["frames"] = frames
    return ShotsFile.model_validate({"version": 1, "shots": [shot]})


def test_shots_anchors_are_checked_against_the_picture():
    ok = resolve_shots(_shots({"point": [10, 20], "color": "#2f4f2f"}), frame_count=1, size=(48, 64))
    (anchor,) = ok[0].anchors
    assert (anchor.x, anchor.y, anchor.frame) == (10.0, 20.0, 0)
    assert anchor.ab[0] < 0 < anchor.ab[1]  # a green
    with pytest.raises(ShotsError, match="outside the 64x48 picture"):
        resolve_shots(_shots({"point": [70, 20], "color": "red"}), frame_count=1, size=(48, 64))
    with pytest.raises(ShotsError, match="anchor 1: no colour name"):
        resolve_shots(_shots({"point": [10, 20], "color": "wall"}), frame_count=1, size=(48, 64))
    with pytest.raises(ShotsError, match="frame 9, outside the shot"):
        resolve_shots(_shots({"point": [10, 20], "color": "red", "frame": 9}, frames=[0, 4]), frame_count=5,
                      size=(48, 64))


def test_a_films_anchor_point_moves_with_its_tracked_region():
    from restorer.pipelines.tracking import AnchorTracks
    from restorer.shots.resolve import ResolvedAnchor

    class Store:
        def get(self, index):
            masks = np.zeros((2, 40, 60), bool)
            masks[0, 0:5, 0:5] = True  # the instance
            masks[1, 10:20, 10 + 3 * index:20 + 3 * index] = True  # the anchor's region drifts right
            return masks

    tracks = AnchorTracks(Store(), 1, (ResolvedAnchor(12.0, 14.0, (1.0, 2.0), 2, "red"),))
    assert tracks.get(4).shape == (1, 40, 60)
    (at2,) = tracks.anchors_at(2)
    assert (at2.x, at2.y, at2.ab) == (12.0, 14.0, (1.0, 2.0))  # on its own frame: the user's point
    (at5,) = tracks.anchors_at(5)
    assert (at5.x, at5.y) == (21.0, 14.0)  # three frames later: 9 px to the right
