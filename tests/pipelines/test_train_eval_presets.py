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


def test_every_engine_trainer_takes_the_stages_the_registry_names() -> None:
    """The CLI's --stage choices come from the registry; each trainer has exactly the stages named there."""
    from restorer.training.registry import STAGES, TRAINERS, trainer_for

    for engine, (_, stages) in TRAINERS.items():
        preset = {"mtcolor": "tiny", "anchors": "anchors"}[engine]
        got = trainer_for(preset).stages
        assert sorted(s for s in got if s is not None) == sorted(stages)
        assert (None in got) == (not stages)
    assert STAGES == ("0", "1", "2", "prior")


@pytest.mark.parametrize("preset, stage, words", [
    ("anchors", ["--stage", "1"], "--stage 1 is not a stage of the anchors network: it trains in one stage"),
    ("tiny", [], "--stage is required for the tiny preset"),
])
def test_train_refuses_a_stage_its_trainer_does_not_have(tmp_path, restorer, one_error, preset, stage, words) -> None:
    data = tmp_path / "data"
    data.mkdir()
    proc = restorer("train", "--preset", preset, "--data", data, "--out", tmp_path / "run", *stage, "--steps", "1")
    assert proc.returncode == 2, proc.stderr
    assert words in one_error(proc)
    assert not (tmp_path / "run").exists()


def test_a_new_engines_trainer_is_one_registry_entry(tmp_path, monkeypatch) -> None:
    """An engine with its own trainer needs only an entry in TRAINERS: ``restorer train`` runs it and exports
    what it trained, with the command line's values, and tiny's trainer is not involved."""
    import json
    import sys
    import types

    from click.testing import CliRunner

    from restorer.cli import main
    from restorer.training import registry

    seen = []

    def run(request: registry.TrainRequest) -> dict:
        seen.append(request)
        (request.out / "final").mkdir(parents=True)
        return {"stage": "stencil", "final": str(request.out / "final")}

    module = types.ModuleType("fake_stencil_trainer")
    module.TRAINER = registry.Trainer("the stencil trainer",
                                      {None: registry.Stage(run, lambda src, dst: Path(dst) / "copied")})
    monkeypatch.setitem(sys.modules, "fake_stencil_trainer", module)
    monkeypatch.setitem(registry.TRAINERS, "stencil", ("fake_stencil_trainer:TRAINER", ()))
    data = tmp_path / "data"
    data.mkdir()
    result = CliRunner().invoke(main, ["train", "--preset", "stencil", "--data", str(data), "--out",
                                       str(tmp_path / "run"), "--steps", "3", "--seed", "5", "--export",
                                       str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary == {"stage": "stencil", "final": str(tmp_path / "run" / "final"),
                       "exported": str(tmp_path / "w" / "copied")}
    assert [(r.preset, r.steps, r.seed, r.stage) for r in seen] == [("stencil", 3, 5, None)]


def test_train_refuses_a_grid_its_caches_do_not_have(tmp_path) -> None:
    import yaml

    from restorer.presets import load_preset
    from restorer.training.augment import GRID
    from restorer.training.model import preset_options

    mine = load_preset("tiny").model_dump()
    mine["options"]["grid"] = GRID // 2
    path = tmp_path / "half.yaml"
    path.write_text(yaml.safe_dump(mine))
    with pytest.raises(InputError, match=f"grid {GRID // 2}"):
        preset_options(path)
    assert preset_options("tiny")["grid"] == GRID


def _two_photo_dataset(tmp_path: Path) -> Path:
    from restorer.training.dataset.build import build_dataset

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
