"""Training stages on a tiny seeded model: the loss goes down, only the stage's parameters move, resume is exact."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorer.errors import InputError
from restorer.models.mtcolor import tiny
from restorer.pipelines import train as T
from restorer.pipelines.dataset import build_dataset

torch.set_num_threads(1)

OPTIONS = {"features": "none", "model": {"token_dim": 16, "unet": {
    "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 16,
    "attention_head_dim": 8, "norm_num_groups": 8}}}


@pytest.fixture(scope="module", autouse=True)
def small_grid():
    """A 16-cell working grid instead of 32: the same code, a quarter of the tokens."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(T, "GRID", 16)
        yield


class FakeText:
    """384-d unit vectors from the text's hash: different texts, different vectors (no MiniLM)."""

    def pooled(self, texts: list[str]) -> torch.Tensor:
        out = [torch.randn(384, generator=torch.Generator().manual_seed(
            int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))) for t in texts]
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i, (top, bottom) in enumerate([((30, 60, 200), (40, 160, 50)), ((200, 30, 30), (235, 215, 40)),
                                       ((120, 120, 120), (30, 60, 200))]):
        img = np.zeros((48, 64, 3), np.float32)
        img[:24], img[24:] = top, bottom
        img[:, : 20 + 8 * i] *= 0.8  # a darker band, so luma says something
        img += rng.normal(0, 3, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"p{i}.png")
    out = tmp_path_factory.mktemp("ds") / "d"
    build_dataset(root, out, size=64, val_fraction=0.0, namer=lambda crop: "thing")
    return out


def _run(data: Path, out: Path, stage: int, steps: int, cache: Path, resume: bool = False, lr: float = 3e-3,
         every: int = 3) -> dict:
    cfg = T.TrainConfig(stage=stage, steps=steps, batch=4, lr=lr, warmup=2, checkpoint_every=every)
    return T.train("tiny", data, out, stage=stage, steps=steps, resume=resume, cache=cache, config=cfg,
                   views=2, text_encoder=FakeText(), options=OPTIONS)


def _fixed_loss(model, cache: dict, stage: int) -> float:
    """The loss on a fixed batch of 32, with fixed timesteps and noise."""
    cfg = T.TrainConfig(stage=stage, steps=1, batch=32)
    model.eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(123)
        opts = {**T._preset_options("tiny"), **OPTIONS}
        batch = T.make_batch(cache, cfg, g, counter=stage >= 1, control=stage >= 2, ab_scale=opts["ab_scale"])
        prediction = tiny.scheduler_config(opts)["prediction_type"]
        return float(T.loss_step(model, batch, stage, g, T._alphas(opts), prediction))


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _stage_keys(model, stage: int) -> set[str]:
    names = {id(p) for m in model.stage_modules(stage) for p in m.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in names}


@pytest.fixture(scope="module")
def stages(data, tmp_path_factory) -> dict:
    """Stages 0, 1, 2 in one run folder; the start and end weights of each."""
    out = tmp_path_factory.mktemp("run")
    cache = out / "cache"
    result = {"out": out, "cache": T.prepare_cache(data, cache, views=2, features=False, text_encoder=FakeText())}
    for stage, steps in ((0, 12), (1, 8), (2, 8)):
        start = T.build_model(OPTIONS, stage, out, None, 0)
        _run(data, out, stage, steps, cache, lr=1e-2 if stage else 3e-3, every=5)
        end = tiny.load(out / f"stage{stage}" / "final", OPTIONS)
        result[stage] = (start, end)
    return result


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_loss_goes_down(stages, stage) -> None:
    start, end = stages[stage]
    before, after = _fixed_loss(start, stages["cache"], stage), _fixed_loss(end, stages["cache"], stage)
    assert after < before, (before, after)


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_only_the_stages_parameters_change(stages, stage) -> None:
    start, end = stages[stage]
    a, b = _state(start), _state(end)
    assert a.keys() == b.keys()
    trained = _stage_keys(start, stage)
    assert trained
    moved = {k for k in a if not torch.equal(a[k], b[k])}
    assert moved <= trained  # every other parameter and buffer bit-identical
    assert len(moved) > 0.5 * len(trained)


def test_stage_log_plot_and_checkpoints(stages) -> None:
    stage_dir = stages["out"] / "stage0"
    steps, loss, lr = T.read_log(stage_dir / "log.csv")
    assert list(steps) == list(range(1, 13)) and np.isfinite(loss).all() and lr.max() == pytest.approx(3e-3)
    assert Image.open(stage_dir / "loss.png").size == (900, 420)
    ckpts = sorted(p.name for p in stage_dir.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-000010", "checkpoint-000012"]  # every 5 steps and the last; two kept
    assert (stage_dir / "checkpoint-000012" / "optimizer.safetensors").exists()
    assert (stage_dir / "final" / "unet" / "diffusion_pytorch_model.safetensors").exists()


def test_resume_equals_uninterrupted(data, tmp_path) -> None:
    cache = tmp_path / "cache"
    _run(data, tmp_path / "a", 0, 6, cache)
    b = tmp_path / "b"
    _run(data, b, 0, 6, cache)
    import shutil

    shutil.rmtree(b / "stage0" / "checkpoint-000006")  # as if killed after step 3's checkpoint
    shutil.rmtree(b / "stage0" / "final")
    summary = _run(data, b, 0, 6, cache, resume=True)
    assert summary["resumed_at"] == 3
    wa, wb = _state(tiny.load(tmp_path / "a" / "stage0" / "final", OPTIONS)), \
        _state(tiny.load(b / "stage0" / "final", OPTIONS))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "stage0" / "log.csv").read_text().count("\n") == \
        (b / "stage0" / "log.csv").read_text().count("\n") == 7
    la, lb = T.read_log(tmp_path / "a" / "stage0" / "log.csv"), T.read_log(b / "stage0" / "log.csv")
    assert np.array_equal(la[1], lb[1])
    with pytest.raises(InputError, match="other training settings"):
        _run(data, b, 0, 9, cache, resume=True)


def test_counter_colour_recolours_and_renames(stages) -> None:
    from restorer.pipelines.dataset import COUNTER_COLORS, PALETTE

    cache = stages["cache"]
    cfg = T.TrainConfig(stage=1, steps=1, batch=16, p_drop=0.0, p_counter=1.0)
    plain = T.make_batch(cache, cfg, torch.Generator().manual_seed(5), counter=False, control=False)
    recol = T.make_batch(cache, cfg, torch.Generator().manual_seed(5), counter=True, control=False)
    assert torch.equal(plain.gray, recol.gray)  # the picture says the old colour
    changed_text = (plain.text != recol.text).any(-1)  # (B, R)
    assert changed_text.any()
    counter_rows = [PALETTE.index(c) for c in COUNTER_COLORS]
    for b, r in changed_text.nonzero().tolist():
        w = recol.cover[b, r]
        mean = (recol.x0[b] * w).sum((1, 2)) / w.sum() * 100
        # the new mean a*b* is near one of the counter colours', and its text is that colour's
        targets = T._palette_ab()[counter_rows]
        k = int((targets - mean).norm(dim=1).argmin())
        assert (targets[k] - mean).norm() < 40
        obj = cache["inst_obj"][0, 0]  # one object word in this dataset ("thing")
        assert torch.allclose(recol.text[b, r], cache["text_emb"][obj, counter_rows[k]])


def test_bad_stage_and_missing_previous_stage(data, tmp_path) -> None:
    with pytest.raises(InputError, match="stage must be"):
        T.train("tiny", data, tmp_path, stage=3, steps=1, options=OPTIONS)
    with pytest.raises(InputError, match="stage 0's weights"):
        _run(data, tmp_path / "fresh", 1, 2, tmp_path / "cache")


def test_v_target_turns_back_into_the_noise_in_the_engine() -> None:
    """Training's v target and the engine's v -> eps conversion agree (tiny predicts v)."""
    from types import SimpleNamespace

    from restorer.models.mtcolor.engine import MTColorEngine
    from restorer.models.mtcolor.sampler import Schedule

    opts = T._preset_options("tiny")
    assert tiny.scheduler_config(opts)["prediction_type"] == "v_prediction"
    schedule = Schedule.ddim(tiny.scheduler_config(opts), 20)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 2, 4, 4, generator=g), torch.randn(1, 2, 4, 4, generator=g)
    for t in (schedule.timesteps[0], schedule.timesteps[10]):
        a = schedule.alphas[t].float()
        z = a.sqrt() * x0 + (1 - a).sqrt() * eps
        v = a.sqrt() * eps - (1 - a).sqrt() * x0  # as in loss_step
        engine = SimpleNamespace(scheduler=tiny.scheduler_config(opts))
        as_eps = MTColorEngine._as_eps(engine, lambda z_, t_, v=v: v, schedule)
        assert torch.allclose(as_eps(z, torch.tensor(t)), eps, atol=1e-5)
