"""Training stages on a tiny seeded model: the loss goes down, only the stage's parameters move, resume is exact."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorer.errors import InputError
from restorer.models.mtcolor import tiny
from restorer.training import augment, losses
from restorer.training.cache import prepare_cache
from restorer.training.dataset.build import build_dataset
from restorer.training.log import read_log
from restorer.training.model import build_model, preset_options
from restorer.training.tiny import TrainConfig, train

torch.set_num_threads(1)

OPTIONS = {"features": "none", "model": {"token_dim": 16, "unet": {
    "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 16,
    "attention_head_dim": 8, "norm_num_groups": 8}}}


PRESET = Path("unset")  # the tiny preset at grid 16, written by ``small_grid``


@pytest.fixture(scope="module", autouse=True)
def small_grid(tmp_path_factory):
    """A 16-cell working grid instead of 32: the same code, a quarter of the tokens; the tiny
    preset at that grid (training refuses a preset whose grid its caches do not have)."""
    import yaml

    from restorer.presets import load_preset

    global PRESET
    mine = load_preset("tiny").model_dump()
    mine["options"]["grid"] = 16
    PRESET = tmp_path_factory.mktemp("preset") / "tiny16.yaml"
    PRESET.write_text(yaml.safe_dump(mine))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(augment, "GRID", 16)
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
    cfg = TrainConfig(stage=stage, steps=steps, batch=4, lr=lr, warmup=2, checkpoint_every=every)
    return train(PRESET, data, out, stage=stage, steps=steps, resume=resume, cache=cache, config=cfg,
                   views=2, text_encoder=FakeText(), options=OPTIONS)


def _fixed_loss(model, cache: dict, stage: int) -> float:
    """The loss on a fixed batch of 32, with fixed timesteps and noise."""
    cfg = TrainConfig(stage=stage, steps=1, batch=32)
    model.eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(123)
        opts = {**preset_options(PRESET), **OPTIONS}
        batch = augment.make_batch(cache, cfg, g, counter=stage >= 1, control=stage >= 2, ab_scale=opts["ab_scale"])
        prediction = tiny.scheduler_config(opts)["prediction_type"]
        return float(losses.loss_step(model, batch, stage, g, losses.alphas(opts), prediction))


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
    result = {"out": out, "cache": prepare_cache(data, cache, views=2, features=False, text_encoder=FakeText())}
    for stage, steps in ((0, 12), (1, 8), (2, 8)):
        start = build_model(OPTIONS, stage, out, None, 0)
        _run(data, out, stage, steps, cache, lr=1e-2 if stage else 3e-3, every=5)
        end = tiny.load(out / f"stage{stage}" / "final", OPTIONS)
        result[stage] = (start, end)
    return result


# The least share of the fixed-batch loss each stage's short run must remove (measured: 43.5 %,
# 0.034 %, 0.84 %). Stage 1 starts with every gate at zero, so its branches contribute tanh(gate) x
# their output and 8 steps only begin to open them: a real but small drop, and exactly 0 if the
# gates got no gradient; half the measured drop also fails a learning rate 10x too small.
MIN_DROP = {0: 0.2, 1: 1.5e-4, 2: 4e-3}


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_loss_goes_down(stages, stage) -> None:
    start, end = stages[stage]
    before, after = _fixed_loss(start, stages["cache"], stage), _fixed_loss(end, stages["cache"], stage)
    assert after < (1 - MIN_DROP[stage]) * before, (before, after, (before - after) / before)


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
    steps, loss, lr = read_log(stage_dir / "log.csv")
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
    la, lb = read_log(tmp_path / "a" / "stage0" / "log.csv"), read_log(b / "stage0" / "log.csv")
    assert np.array_equal(la[1], lb[1])
    with pytest.raises(InputError, match="other training settings"):
        _run(data, b, 0, 9, cache, resume=True)


def test_counter_colour_recolours_and_renames(stages) -> None:
    """Each recoloured instance: its text names one counter colour, at least 90 degrees of hue from
    its true colour; inside its mask the target becomes that colour's a*b* plus half the region's
    own texture (exactly, where the mask covers the whole cell); cells no recoloured instance
    touches keep their a*b*; the grayscale is unchanged."""
    from restorer.models.colornames import COUNTER_COLORS, TRAINED_COLOURS, palette_lab

    cache = stages["cache"]
    cfg = TrainConfig(stage=1, steps=1, batch=16, p_drop=0.0, p_counter=1.0)
    plain = augment.make_batch(cache, cfg, torch.Generator().manual_seed(5), counter=False, control=False)
    recol = augment.make_batch(cache, cfg, torch.Generator().manual_seed(5), counter=True, control=False)
    assert torch.equal(plain.gray, recol.gray)  # the picture says the old colour
    changed_text = (plain.text != recol.text).any(-1)  # (B, R)
    assert changed_text.sum() >= 8
    pal = palette_lab()
    obj = cache["inst_obj"][0, 0]  # one object word in this dataset ("thing")
    touched = torch.zeros(plain.x0.shape[0], *plain.x0.shape[2:], dtype=torch.bool)
    for b, r in changed_text.nonzero().tolist():
        names = [c for c in COUNTER_COLORS
                 if torch.equal(recol.text[b, r], cache["text_emb"][obj, TRAINED_COLOURS.index(c)])]
        assert len(names) == 1, names  # the new text is exactly one counter colour's
        want = torch.tensor(pal[names[0]][1:], dtype=torch.float32)
        w = recol.cover[b, r]
        ab = plain.x0[b] * 100  # the true a*b* of this view
        mean = (ab * w).sum((1, 2)) / w.sum()
        hue = lambda v: math.degrees(math.atan2(float(v[1]), float(v[0])))  # noqa: E731
        assert abs((hue(want) - hue(mean) + 180) % 360 - 180) >= 90 or float(mean.norm()) < 10
        full = w == 1
        assert full.sum() > 0
        expected = want[:, None] + 0.5 * (ab[:, full] - mean[:, None])
        assert torch.allclose(recol.x0[b][:, full] * 100, expected, atol=1e-3)
        touched[b] |= w > 0
    assert torch.equal(recol.x0.permute(1, 0, 2, 3)[:, ~touched], plain.x0.permute(1, 0, 2, 3)[:, ~touched])


def test_bad_stage_and_missing_previous_stage(data, tmp_path) -> None:
    with pytest.raises(InputError, match="stage must be"):
        train(PRESET, data, tmp_path, stage=3, steps=1, options=OPTIONS)
    with pytest.raises(InputError, match="stage 0's weights"):
        _run(data, tmp_path / "fresh", 1, 2, tmp_path / "cache")


def test_v_target_turns_back_into_the_noise_in_the_engine() -> None:
    """loss_step's target, turned back by the engine's v -> eps conversion, is the very noise the
    latent was made with, and DDIM's x0 from it the training x0 (tiny predicts v); the two share
    one noise schedule."""
    from types import SimpleNamespace

    from restorer.models.mtcolor.engine import MTColorEngine
    from restorer.models.mtcolor.sampler import Schedule

    opts = preset_options(PRESET)
    scheduler = tiny.scheduler_config(opts)
    assert scheduler["prediction_type"] == "v_prediction"
    schedule = Schedule.ddim(scheduler, 20)
    alphas = losses.alphas(opts)
    assert torch.allclose(alphas.double(), schedule.alphas, rtol=0, atol=1e-6)

    class Recorder:
        """Records the noised latent and timesteps loss_step feeds the model; predicts 0."""

        adapter = SimpleNamespace(prompt_proj=lambda p: p)

        def __call__(self, z, t, cond):
            self.z, self.t = z, t
            self.pred = torch.zeros_like(z, requires_grad=True)
            return self.pred

    b = 8
    x0 = torch.randn(b, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.3
    batch = augment.Batch(x0, torch.zeros(b, 1, 4, 4), None, torch.zeros(b, 384), torch.zeros(b, 0, 4, 4),
                    torch.zeros(b, 0, 64, 64), torch.zeros(b, 0, 384), torch.zeros(b, 0, dtype=torch.bool))
    model = Recorder()
    losses.loss_step(model, batch, 0, torch.Generator().manual_seed(1), alphas, "v_prediction").backward()
    target = -model.pred.grad * model.pred.numel() / 2  # d/dp mean((p - target)^2) at p = 0
    engine = SimpleNamespace(scheduler=scheduler)
    assert len(set(model.t.tolist())) > 4  # timesteps spread over the schedule
    for i in range(b):
        t = int(model.t[i])
        a = float(schedule.alphas[t])
        z = model.z[i:i + 1].detach()
        eps = (z - a ** 0.5 * x0[i:i + 1]) / (1 - a) ** 0.5  # the noise z = sqrt(a) x0 + sqrt(1 - a) eps holds
        as_eps = MTColorEngine._as_eps(engine, lambda z_, t_, v=target[i:i + 1]: v, schedule)
        got = as_eps(z, torch.tensor(t))
        assert torch.allclose(got, eps, atol=1e-4), t
        assert torch.allclose((z - (1 - a) ** 0.5 * got) / a ** 0.5, x0[i:i + 1], atol=1e-3), t


def test_a_changed_dataset_gets_its_own_cache(data, tmp_path) -> None:
    """The cache is keyed by the dataset it came from: the same dataset reuses it, a rebuilt one (the same photo
    names, other pixels) gets its own (``cache.safetensors`` used to be reused whatever the dataset)."""
    cache = tmp_path / "cache"
    first = prepare_cache(data, cache, views=2, features=False, text_encoder=FakeText())
    again = prepare_cache(data, cache, views=2, features=False, text_encoder=FakeText())
    assert torch.equal(first["ab"], again["ab"]) and len(list(cache.iterdir())) == 1
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.full((48, 64, 3), (200, 40, 40), np.uint8)).save(root / f"p{i}.png")
    build_dataset(root, tmp_path / "red", size=64, val_fraction=0.0, namer=lambda crop: "thing")
    red = prepare_cache(tmp_path / "red", cache, views=2, features=False, text_encoder=FakeText())
    assert len(list(cache.iterdir())) == 2
    assert red["meta"]["records"] == first["meta"]["records"] == ["p0", "p1", "p2"]
    assert float(red["ab"][:, 0].float().mean()) > 40  # its own photos' colours: red, not the first dataset's
    assert float(first["ab"][:, 0].float().mean()) < 40
