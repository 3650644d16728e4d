"""``restorer train --preset anchors`` on a tiny dataset: losses fall, resume is exact, export loads back
bit-identically into the engine, and the CLI runs it end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from restorer.training import anchors as A
from restorer.training import augment
from restorer.training.export import export_anchors
from tests.models.test_anchors import FakeFeatures
from tests.pipelines.test_train_prior import sky_dataset

torch.set_num_threads(1)

SMALL = (("dim", 32), ("heads", 2), ("layers", 1), ("ff", 64), ("proj", 8), ("spix_channels", 8),
         ("refine_channels", 8))


@pytest.fixture(scope="module", autouse=True)
def small_views():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(augment, "VIEW", 64)
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return sky_dataset(tmp_path_factory)  # the prior trainer's eight sky over grass or sand photos


def _cfg(steps: int) -> A.AnchorsConfig:
    return A.AnchorsConfig(steps=steps, batch=4, lr=3e-3, warmup=2, eval_every=2, checkpoint_every=3, holdout=0.3,
                           spix_steps=4, model=SMALL)


def _run(data: Path, out: Path, steps: int, resume: bool = False) -> dict:
    return A.train_anchors(data, out, steps=steps, resume=resume, config=_cfg(steps), views=2, features=FakeFeatures())


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(Path(folder) / "diffusion_pytorch_model.safetensors")


def test_training_lowers_the_losses_and_logs_and_plots(data, tmp_path):
    summary = _run(data, tmp_path / "run", 12)
    rows = list(csv.DictReader((tmp_path / "run" / "anchors" / "log.csv").open()))
    assert len(rows) == 12
    def mean(rows, key):
        return np.mean([float(r[key]) for r in rows])

    assert mean(rows[-3:], "ce") < mean(rows[:3], "ce")  # the modeler learns the two scenes' colours
    assert mean(rows[-3:], "ref") < mean(rows[:3], "ref")  # the pixels come nearer the truth
    # SPixNet trains for spix_steps (4) steps, then is frozen: between steps 9 and 12 it stays, the heads move
    six, nine = (_weights(tmp_path / "run" / "anchors" / f"checkpoint-0000{n:02d}") for n in (9, 12))
    spix = [k for k in six if k.startswith("spixnet.")]
    assert spix and all(torch.equal(six[k], nine[k]) for k in spix)
    assert not all(torch.equal(six[k], nine[k]) for k in six if k.startswith("bins_head."))
    assert (tmp_path / "run" / "anchors" / "loss.png").stat().st_size > 1000
    assert summary["best_step"] > 0 and Path(summary["final"]).is_dir()


def test_resume_equals_an_uninterrupted_run(data, tmp_path):
    import shutil

    _run(data, tmp_path / "whole", 9)
    killed = tmp_path / "killed"
    _run(data, killed, 9)
    # as if killed between steps 6 and 9: the last checkpoint is step 6's, nothing final was written
    shutil.rmtree(killed / "anchors" / "checkpoint-000009")
    shutil.rmtree(killed / "anchors" / "final")
    summary = _run(data, killed, 9, resume=True)
    assert summary["resumed_at"] == 6
    whole, again = _weights(tmp_path / "whole" / "anchors" / "final"), _weights(killed / "anchors" / "final")
    assert whole.keys() == again.keys()
    for k in whole:
        assert torch.equal(whole[k], again[k]), k
    rows = list(csv.DictReader((killed / "anchors" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 10))


def test_export_loads_back_bit_identically_into_the_engine(data, tmp_path):
    from restorer.models.anchors.engine import AnchorsEngine, open_anchors
    from restorer.models.anchors.model import DiscoModel

    summary = _run(data, tmp_path / "run", 4)
    exported = export_anchors(Path(summary["final"]), tmp_path / "weights")
    assert exported == tmp_path / "weights" / "disco"
    trained = DiscoModel.from_pretrained(summary["final"], local_files_only=True, low_cpu_mem_usage=False)
    mine = AnchorsEngine(trained, FakeFeatures(), size=64)
    engine = open_anchors({"size": 64}, weights=tmp_path / "weights", device="cpu")
    # the shipped EfficientNet replaced by the same fake the training used (the encoder holds its own reference)
    engine.features = engine.encoder.features = FakeFeatures()
    luma = np.random.default_rng(0).random((48, 64)).astype(np.float32)
    a, _ = mine.colorize(luma)
    b, _ = engine.colorize(luma)
    np.testing.assert_array_equal(a, b)
    for k, v in _weights(summary["final"]).items():
        assert torch.equal(v, _weights(exported)[k]), k


def test_missing_weights_are_refused_with_the_flag_that_supplies_them(tmp_path):
    from restorer.errors import WeightsError
    from restorer.models.anchors.paths import check_paths

    with pytest.raises(WeightsError) as err:
        check_paths({}, tmp_path / "nothing")
    assert "disco/config.json" in str(err.value) and "--weights" in str(err.value)


def test_the_cache_is_keyed_by_the_dataset(data, tmp_path):
    """Another dataset in the same cache folder gets its own cache, with its own photos' colours."""
    from PIL import Image

    from restorer.training.dataset.build import build_dataset

    sky = A.prepare_cache(data, tmp_path / "c", views=2, features=FakeFeatures())
    assert len(list((tmp_path / "c").iterdir())) == 1
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(4):
        Image.fromarray(np.full((48, 64, 3), (200, 40, 40), np.uint8)).save(root / f"red{i}.png")
    build_dataset(root, tmp_path / "red", size=64, val_fraction=0.0, namer=lambda crop: "thing")
    red = A.prepare_cache(tmp_path / "red", tmp_path / "c", views=2, features=FakeFeatures())
    assert len(list((tmp_path / "c").iterdir())) == 2
    assert red["meta"]["records"] == [f"red{i}" for i in range(4)] != sky["meta"]["records"]
    assert float(red["ab"][:, 0].float().mean()) > 40
