"""``restorer train --stage prior`` on a tiny dataset: the loss goes down, early stopping keeps the best
held-out weights, resume is exact, export halves the weights and the engine loads them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from restorer.models.mtcolor.prior import ColourPrior, prior_loss
from restorer.training import augment
from restorer.training import prior as P
from restorer.training.cache import held_out
from restorer.training.dataset.build import build_dataset
from restorer.training.export import export_prior

torch.set_num_threads(1)


class FakePyramid:
    """EfficientNet-Lite0's pyramid shapes from fixed random filters of the luma (no weights to load)."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.w = {name: torch.randn(ch, 1, 3, 3, generator=g) for name, ch in
                  (("s8", 40), ("s16", 112), ("s32", 320), ("head", 1280))}

    def pyramid(self, luma: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, w in self.w.items():
            stride = 32 if name == "head" else int(name[1:])
            out[name] = torch.tanh(F.conv2d(F.avg_pool2d(luma, stride), w, padding=1))
        return out


PRESET = Path("unset")  # the tiny preset at grid 16, written by ``small_grid``


@pytest.fixture(scope="module", autouse=True)
def small_grid(tmp_path_factory):
    """16-cell grid, 64-px views; the tiny preset at that grid for the CLI (training refuses a preset
    whose grid its caches do not have)."""
    import yaml

    from restorer.presets import load_preset

    global PRESET
    mine = load_preset("tiny").model_dump()
    mine["options"]["grid"] = 16
    PRESET = tmp_path_factory.mktemp("preset") / "tiny16.yaml"
    PRESET.write_text(yaml.safe_dump(mine))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(augment, "GRID", 16)
        mp.setattr(augment, "VIEW", 64)
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return sky_dataset(tmp_path_factory)


def sky_dataset(tmp_path_factory) -> Path:
    """Eight photos: blue sky over green grass or yellow sand, with the same luma cue for each colour."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(8):
        img = np.zeros((48, 64, 3), np.float32)
        img[:24] = (60, 110, 220)
        img[24:] = (50, 150, 40) if i % 2 else (225, 200, 90)
        img += rng.normal(0, 3, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"p{i}.png")
    out = tmp_path_factory.mktemp("ds") / "d"
    build_dataset(root, out, size=64, val_fraction=0.0, namer=lambda crop: "thing")
    return out


def _run(data: Path, out: Path, steps: int, resume: bool = False) -> dict:
    cfg = P.PriorConfig(steps=steps, batch=4, lr=3e-3, warmup=2, eval_every=2, checkpoint_every=3, holdout=0.3)
    return P.train_prior(data, out, steps=steps, resume=resume, config=cfg, views=2, features=FakePyramid())


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return ColourPrior.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False).state_dict()


def _held_out_ce_by_hand(model: ColourPrior, cached: dict, held: torch.Tensor, lam: float = 0.5) -> float:
    """The held-out loss written out: cross-entropy against a Gaussian (sigma 5) over the 5 nearest
    bins, each cell weighted by Zhang's rebalancing of its nearest bin (the first, on a tie),
    1 / ((1 - lam) p + lam / Q) normalised to mean 1 over the training cells."""
    from restorer.models.mtcolor.prior import PYRAMID

    centers = model.centers.float()

    def cells(idx):
        return cached["ab"][idx].float().permute(0, 2, 3, 1).reshape(-1, 2)

    nearest_fit = torch.cdist(cells(~held), centers).argmin(1)
    p = torch.bincount(nearest_fit, minlength=len(centers)).float() / len(nearest_fit)
    w = 1 / ((1 - lam) * p + lam / len(centers))
    w = w / (p * w).sum()
    idx = held.nonzero().flatten()
    feats = {name: cached[name][idx].float() for name, _ in PYRAMID}
    with torch.no_grad():
        logp = F.log_softmax(model.eval()(cached["gray"][idx].float(), feats), dim=1)
    logp = logp.permute(0, 2, 3, 1).reshape(-1, len(centers))
    all_dist = torch.cdist(cells(held), centers)
    dist, near = all_dist.topk(5, largest=False)
    soft = torch.exp(-dist ** 2 / (2 * 5.0 ** 2))
    soft = soft / soft.sum(1, keepdim=True)
    ce = -(soft * logp.gather(1, near)).sum(1)
    return float((ce * w[all_dist.argmin(1)]).mean())  # a gray cell is as near 4 bins: the first of them


def test_loss_goes_down_and_early_stopping_keeps_the_best(data, tmp_path) -> None:
    summary = _run(data, tmp_path / "run", 12)
    rows = list(csv.DictReader((tmp_path / "run" / "prior" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    loss = [float(r["loss"]) for r in rows]
    assert np.mean(loss[-3:]) < 0.9 * np.mean(loss[:3])
    ces = {int(r["step"]): float(r["heldout_ce"]) for r in rows if r["heldout_ce"]}
    assert sorted(ces) == [2, 4, 6, 8, 10, 12]
    # early stopping: the best logged step (better than the untrained start, which is step 0), not
    # the last one, whose held-out loss is higher
    best = min(ces, key=ces.get)
    assert summary["best_step"] == best and best != 12 and ces[12] > ces[best]
    assert summary["heldout_ce"] == pytest.approx(ces[best], abs=1e-5)
    final = Path(summary["final"])
    last = _weights(tmp_path / "run" / "prior" / "checkpoint-000012")
    assert any(not torch.equal(t, last[k]) for k, t in _weights(final).items())  # not the last step's
    # and those weights have, recomputed here, the held-out loss logged at that step
    cached = P.prepare_prior_cache(data, tmp_path / "run" / "prior_cache", views=2, features=FakePyramid())
    held = held_out(cached["meta"]["records"], 0.3)[cached["record"]]
    assert 0 < int(held.sum()) < len(held)
    model = ColourPrior.from_pretrained(final, local_files_only=True, low_cpu_mem_usage=False)
    assert _held_out_ce_by_hand(model, cached, held) == pytest.approx(ces[best], abs=2e-5)
    plot = np.asarray(Image.open(tmp_path / "run" / "prior" / "loss.png").convert("RGB"))
    assert ((plot == (30, 150, 60)).all(-1)).sum() > 20  # the held-out points are drawn


def test_resume_equals_uninterrupted(data, tmp_path) -> None:
    whole = _run(data, tmp_path / "a", 9)
    _run(data, tmp_path / "b", 9)
    # a kill after the checkpoint at step 6: drop what came after it, then resume
    import shutil

    shutil.rmtree(tmp_path / "b" / "prior" / "checkpoint-000009")
    resumed = _run(data, tmp_path / "b", 9, resume=True)
    assert resumed["resumed_at"] == 6
    a, b = _weights(Path(whole["final"])), _weights(Path(resumed["final"]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "prior" / "log.csv").read_text().count("\n") == \
        (tmp_path / "b" / "prior" / "log.csv").read_text().count("\n")


def test_resume_with_other_settings_is_refused(data, tmp_path) -> None:
    from restorer.errors import InputError

    _run(data, tmp_path / "r", 3)
    with pytest.raises(InputError, match="other training settings"):
        _run(data, tmp_path / "r", 5, resume=True)


def test_the_prior_learns_the_colour_the_luma_tells(data, tmp_path) -> None:
    """Sky blue on top, and grass or sand below: after training, the decoded top is blue (b* < 0)."""
    summary = _run(data, tmp_path / "learn", 30)
    model = ColourPrior.from_pretrained(Path(summary["final"]), local_files_only=True, low_cpu_mem_usage=False)
    cached = P.prepare_prior_cache(data, tmp_path / "learn" / "prior_cache", views=2, features=FakePyramid())
    idx = torch.arange(len(cached["record"]))
    gray, feats, ab = P._batch(cached, idx)
    with torch.no_grad():
        pred = model.decode(model(gray, feats), 0.4)
        untrained = ColourPrior(bins=model.config.bins)
        assert float(prior_loss(model, gray, feats, ab)) < float(prior_loss(untrained, gray, feats, ab))
    top = pred[:, :, : pred.shape[2] // 3]
    assert float(top[:, 1].mean()) < -10  # b* of the sky


def test_export_and_the_engine_loads_it(data, tmp_path) -> None:
    from restorer.models.mtcolor import tiny

    summary = _run(data, tmp_path / "e", 4)
    target = export_prior(Path(summary["final"]), tmp_path / "weights")
    assert target == tmp_path / "weights" / "prior"
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float16 for v in load_file(target / "diffusion_pytorch_model.safetensors").values())
    loaded = tiny.load_prior(tmp_path / "weights")
    full = _weights(Path(summary["final"]))
    state = loaded.state_dict()
    assert state.keys() == full.keys()
    # float32 weights rounded to float16 once, read back as float32: nothing else changes
    assert all(state[k].dtype == torch.float32 and torch.equal(state[k], full[k].half().float()) for k in full)
    assert tiny.load_prior(tmp_path / "nothing") is None


def test_cli_trains_and_exports_the_prior(data, tmp_path) -> None:
    """``restorer train --stage prior`` with the real EfficientNet-Lite0 pyramid (64-px views here)."""
    import json

    from click.testing import CliRunner

    from restorer.cli import main

    result = CliRunner().invoke(main, ["train", "--preset", str(PRESET), "--data", str(data), "--out",
                                       str(tmp_path / "run"), "--stage", "prior", "--steps", "3", "--views", "1",
                                       "--checkpoint-every", "2", "--export", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["stage"] == "prior" and summary["steps"] == 3 and summary["resumed_at"] == 0
    assert sorted(p.name for p in (tmp_path / "run" / "prior").glob("checkpoint-*")) == \
        ["checkpoint-000002", "checkpoint-000003"]
    rows = list(csv.DictReader((tmp_path / "run" / "prior" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and all(np.isfinite(float(r["loss"])) for r in rows)
    assert rows[-1]["heldout_ce"] and summary["best_step"] in (0, 3)  # evaluated at the start and the end
    if summary["best_step"] == 3:
        assert summary["heldout_ce"] == pytest.approx(float(rows[-1]["heldout_ce"]), abs=1e-5)
    # --export: the final (early-stopped) weights in float16, with the real pyramid's shapes
    from safetensors.torch import load_file

    final = _weights(Path(summary["final"]))
    exported = load_file(tmp_path / "w" / "prior" / "diffusion_pytorch_model.safetensors")
    assert exported.keys() == final.keys()
    assert all(torch.equal(exported[k], final[k].half()) for k in final)
    assert exported["projections.head.weight"].shape[1] == 1280  # EfficientNet-Lite0's last convolution


def test_the_cache_is_keyed_by_the_dataset_and_jitter_leaves_the_colours(data, tmp_path) -> None:
    """Another dataset gets its own cache, not the first one's; jitter changes the gray input only."""
    plain = P.prepare_prior_cache(data, tmp_path / "c", views=2, features=FakePyramid())
    jit = P.prepare_prior_cache(data, tmp_path / "c", views=2, jitter=0.3, features=FakePyramid())
    assert len(list((tmp_path / "c").iterdir())) == 2
    assert torch.equal(plain["ab"], jit["ab"])  # the same crops, the same colour targets
    assert not torch.equal(plain["gray"], jit["gray"])
    # the jitter is a gain and a contrast of at most 1.3: no gray cell moves by more than that allows
    assert float((jit["gray"].float() - plain["gray"].float()).abs().max()) < 2 * 0.7

    root = tmp_path / "other_photos"
    root.mkdir()
    img = np.full((48, 64, 3), (200, 40, 40), np.uint8)
    for i in range(4):
        Image.fromarray(img).save(root / f"red{i}.png")
    other = tmp_path / "other_ds"
    build_dataset(root, other, size=64, val_fraction=0.0, namer=lambda crop: "thing")
    red = P.prepare_prior_cache(other, tmp_path / "c", views=2, features=FakePyramid())
    assert len(list((tmp_path / "c").iterdir())) == 3
    assert red["meta"]["records"] == [f"red{i}" for i in range(4)]
    assert float(red["ab"][:, 0].float().mean()) > 40  # its own photos' colours: red, not the first dataset's


def test_jitter_is_mild_and_keeps_the_range() -> None:
    rng = np.random.default_rng(0)
    luma = torch.linspace(0, 1, 100).view(1, 1, 10, 10)
    assert augment.jittered(luma, rng, 0.0) is luma
    for _ in range(20):
        out = augment.jittered(luma, rng, 0.15)
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        # an affine map of the luma: the order of the grays is kept (no hue or tone reversal)
        inside = (out > 0) & (out < 1)
        assert bool((out[inside].diff() >= 0).all())
        assert abs(float(out.mean()) - float(luma.mean())) < 0.15 * 0.6
