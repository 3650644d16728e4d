"""`restorer train` and `restorer eval` honour the preset they are given (issue 10 item 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from restorer.errors import InputError
from restorer.pipelines import evaluate as ev


@pytest.mark.parametrize("preset, words", [("sd15", "backbone sd15"), ("stencil", "is stencil")])
def test_train_refuses_a_preset_it_cannot_train(tmp_path, restorer, one_error, preset, words) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for stage in ("1", "prior"):
        out = tmp_path / f"run{stage}"
        proc = restorer("train", "--preset", preset, "--data", data, "--out", out, "--stage", stage, "--steps", "1")
        assert proc.returncode == 2, proc.stderr
        line = one_error(proc)
        assert words in line and "--preset tiny" in line
        assert not out.exists()  # refused before any cache or checkpoint


def test_train_refuses_a_grid_its_caches_do_not_have(tmp_path) -> None:
    import yaml

    from restorer.pipelines.train import GRID, _preset_options
    from restorer.presets import load_preset

    mine = load_preset("tiny").model_dump()
    mine["options"]["grid"] = GRID // 2
    path = tmp_path / "half.yaml"
    path.write_text(yaml.safe_dump(mine))
    with pytest.raises(InputError, match=f"grid {GRID // 2}"):
        _preset_options(path)
    assert _preset_options("tiny")["grid"] == GRID


def _two_photo_dataset(tmp_path: Path) -> Path:
    from restorer.pipelines.dataset import build_dataset

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i, (top, bottom) in enumerate([((40, 90, 200), (60, 150, 40)), ((210, 40, 40), (230, 210, 60))]):
        img = np.zeros((96, 128, 3), np.float32)
        img[:48], img[48:] = top, bottom
        img += rng.normal(0, 3, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(photos / f"p{i}.png")
    data = tmp_path / "data"
    build_dataset(photos, data, size=128, val_fraction=0.0, namer=lambda crop: "thing")
    return data


def test_eval_runs_the_preset_it_names(tmp_path) -> None:
    """The stencil preset has no automatic colour: its automatic numbers are the gray picture's, exactly;
    and it lays each counter colour it is asked for (binding 1). A tiny engine would do neither."""
    data = _two_photo_dataset(tmp_path)
    result = ev.evaluate_split(data, split="train", preset="stencil", per_image=1)
    assert result["preset"] == "stencil" and result["engine"] == "stencil"
    assert result["automatic"] == result["gray_baseline"]
    assert result["binding_instances"] == 2 and result["binding"] == 1.0


def test_eval_uses_the_seed_colorize_uses(tmp_path, monkeypatch) -> None:
    from restorer.pipelines.options import shot_seed

    data = _two_photo_dataset(tmp_path)
    seen = []
    real = ev.colorize

    def spy(engine, luma, texts, masks, seed):
        seen.append(seed)
        return real(engine, luma, texts, masks, seed)

    monkeypatch.setattr(ev, "colorize", spy)
    ev.evaluate_split(data, split="train", preset="stencil", per_image=0, seed=7)
    assert seen and set(seen) == {shot_seed(7, 0)}  # a photo is a one-frame shot starting at 0
