"""``restorer train``: the training stages of MT-Color (Sec. IV-A) for the tiny preset.

Stages (each starts from the previous stage's ``final/`` weights in the same ``out`` folder):

- **0** (tiny only, it has no pretrained base): the base U-Net and the global prompt projection
  learn grayscale -> a*b* chroma noise prediction; no instance tokens, no ControlNet.
- **1**: the instance mask and text guidance module (instance encoder + gated branches) on the
  frozen base.
- **2**: ControlNet (initialised from the stage-0 U-Net, as ControlNet is, zero convolutions at
  zero) and PMAM; the instance module and the base stay frozen.

``MTColorModel.stage_modules(stage)`` says which modules a stage trains; every other parameter
has ``requires_grad=False`` and is not in the optimizer, so it stays bit-identical.

Loss: Eq. 10, the mean squared error of the predicted noise, on a*b*/``ab_scale`` at the 32-cell grid,
timesteps uniform over the 1000 of the training schedule. The tiny preset predicts v instead
(``scheduler.prediction_type: v_prediction``; v = sqrt(ᾱ) eps - sqrt(1 - ᾱ) x0, Salimans & Ho
2022), i.e. Eq. 10 weighted by 1/ᾱ_t: trained from scratch with plain eps-prediction for 1,250
steps, tiny's noise error at t = 950 (ᾱ = 0.006) was small in eps but 13x larger in the x0 it
implies, and DDIM drifted every photo to magenta (CIEDE2000 35 against gray's 13 on training
photos). The engine turns v back into eps for its DDIM steps. AdamW, learning rate warmed up
linearly over ``warmup`` steps, then (a departure from the paper's constant rate, for runs of
a few thousand steps) cosine decay to 10 %. Condition dropout: the instance masks and texts
become null tokens with probability ``p_drop`` (0.5), independently the global prompt the
empty text with probability 0.5.

Counter-colour augmentation (stages 1-2): each kept instance with probability ``p_counter``
gets a vivid colour from :data:`~restorer.pipelines.dataset.COUNTER_COLORS` at least 90° of hue
away from its true colour; the target chroma inside its (soft) mask becomes that colour's a*b*
plus half the region's own a*b* texture, and its text is renamed ("a green car" -> "a red
car"), while the grayscale input is unchanged. A model that ignored the text could not fit
these samples. A sample with a counter-coloured instance gets the empty global prompt (the
global text would contradict it).

Frozen features are computed once (:func:`prepare_cache`): ``views`` augmented views per
training photo (random square crop of 60-100 % of the short side, i.e. scale jitter, and a
horizontal flip), each stored as gray and a*b* at the grid, EfficientNet-Lite0 features at 1/32
(8x8 for the 256² view, upsampled at train time exactly as at inference), and labels at 64²;
the MiniLM embeddings of every "a COLOUR OBJECT" text any instance can take and of every
global text. Only validation photos' names are excluded: they never enter the cache.

Determinism and resume: everything random in step ``s`` (views, timesteps, noise, dropout,
counter colours) comes from a generator seeded by (seed, stage, s), so a run resumed from a
checkpoint (weights + AdamW moments, safetensors) continues exactly as the uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from restorer.errors import InputError

log = logging.getLogger(__name__)

GRID = 32
VIEW = 256
LABEL_SIZE = 64
MAX_INSTANCES = 12


@dataclass(frozen=True)
class TrainConfig:
    stage: int
    steps: int
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 1e-2
    p_drop: float = 0.5
    p_drop_prompt: float = 0.5
    p_counter: float = 0.5
    seed: int = 0
    checkpoint_every: int = 250


# --- the feature cache --------------------------------------------------------------------------

def _view_params(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int, bool]:
    side = max(8, int(round(min(h, w) * rng.uniform(0.6, 1.0))))
    return int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)), side, bool(rng.random() < 0.5)


def _view(rgb: np.ndarray, labels: np.ndarray, y: int, x: int, side: int, flip: bool):
    from PIL import Image

    crop, lab = rgb[y:y + side, x:x + side], labels[y:y + side, x:x + side]
    if flip:
        crop, lab = crop[:, ::-1], lab[:, ::-1]
    crop = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
    crop = F.interpolate(crop, size=(VIEW, VIEW), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    lab = np.asarray(Image.fromarray(np.ascontiguousarray(lab)).resize((LABEL_SIZE, LABEL_SIZE), Image.NEAREST))
    return crop, torch.from_numpy(lab.copy())


def prepare_cache(data: Path, cache: Path, *, views: int = 8, seed: int = 0, features: bool = True,
                  text_encoder: Any = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Compute the frozen inputs of training once (see the module docstring); returns the cache.

    ``text_encoder`` (tests) replaces MiniLM: anything with ``pooled(list[str]) -> (n, 384)``.
    """
    from safetensors.torch import load_file, save_file

    from restorer.pipelines.dataset import PALETTE, instance_text, load_record, read_dataset

    cache = Path(cache)
    if (cache / "cache.safetensors").exists():
        return _read_cache(cache, load_file)
    records = read_dataset(data, "train")
    if not records:
        raise InputError("the dataset has no training photos", path=data)
    feats = _feature_net() if features else None
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("gray", "ab", "labels", "feat", "record")}
    for i, rec in enumerate(records):
        rgb, labels = load_record(data, rec)
        for crop, luma, lab in augmented_views(rgb, labels, rng, views):
            add_view(out, crop, luma, i)
            out["labels"].append(lab)
            if feats is not None:
                out["feat"].append(_raw_features(feats, luma)[0].half())
        if progress:
            progress(i + 1, len(records))
    objects = sorted({inst["object"] for r in records for inst in r["instances"]})
    texts = [instance_text(o, c) for o in objects for c in PALETTE]
    enc = text_encoder or _minilm()
    tensors = {k: torch.stack(v) for k, v in out.items() if v}
    tensors["text_emb"] = enc.pooled(texts).float().view(len(objects), len(PALETTE), -1)
    tensors["global_emb"] = enc.pooled([r["global"] for r in records] + [""]).float()
    inst_obj, inst_col = _instance_tables(records, objects)
    tensors["inst_obj"], tensors["inst_col"] = inst_obj, inst_col
    cache.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, cache / "cache.safetensors")
    meta = {"records": [r["name"] for r in records], "objects": objects, "views": views, "seed": seed,
            "features": features}
    (cache / "cache.json").write_text(json.dumps(meta, indent=1) + "\n")
    return _read_cache(cache, load_file)


def augmented_views(rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator, views: int):
    """``views`` random crops (scale jitter) and flips of a photo: (crop (1, 3, VIEW, VIEW), its luma, labels)."""
    for _ in range(views):
        crop, lab = _view(rgb, labels, *_view_params(rng, *labels.shape))
        yield crop, 0.299 * crop[:, :1] + 0.587 * crop[:, 1:2] + 0.114 * crop[:, 2:], lab


def add_view(out: dict[str, list], crop: torch.Tensor, luma: torch.Tensor, record: int) -> None:
    """Append a view's gray (in [-1, 1]) and a*b* at the grid, float16, and its record index to ``out``."""
    from restorer.models.mtcolor.spaces import resize, rgb_to_ab

    out["gray"].append((resize(luma, (GRID, GRID)) * 2 - 1)[0].half())
    out["ab"].append(resize(rgb_to_ab(crop), (GRID, GRID))[0].half())
    out["record"].append(torch.tensor(record))


@contextmanager
def cache_progress(show: bool, what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar for building a feature cache (minutes on a CPU): yields the ``progress(done, total)``
    callback the cache builders take, or None when ``show`` is off."""
    from restorer.console import progress

    with progress(show) as bar:
        if bar is None:
            yield None
            return
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _instance_tables(records: list[dict], objects: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_records, MAX_INSTANCES) object and palette-colour indices of each instance (-1: none)."""
    from restorer.pipelines.dataset import PALETTE

    obj = torch.full((len(records), MAX_INSTANCES), -1, dtype=torch.long)
    col = torch.full((len(records), MAX_INSTANCES), -1, dtype=torch.long)
    for i, r in enumerate(records):
        for inst in r["instances"][:MAX_INSTANCES]:
            obj[i, inst["id"]] = objects.index(inst["object"])
            col[i, inst["id"]] = PALETTE.index(inst["color"])
    return obj, col


def _read_cache(cache: Path, load_file) -> dict[str, Any]:
    tensors = load_file(cache / "cache.safetensors")
    tensors["meta"] = json.loads((cache / "cache.json").read_text())
    return tensors


def _feature_net():
    from restorer.models.mtcolor.features import EfficientNetFeatures

    return EfficientNetFeatures(input_size=VIEW)


@torch.no_grad()
def _raw_features(feats, luma: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 at 1/32 of the 256² view, before the resize to the grid."""
    x = (luma.expand(-1, 3, -1, -1) - feats.mean) / feats.std
    return feats.net.extract_features(x)


def _minilm():
    from restorer.models.mtcolor.text import MiniLMText

    return MiniLMText("cpu")


# --- one batch ----------------------------------------------------------------------------------

@dataclass
class Batch:
    x0: torch.Tensor          # (B, 2, g, g) target a*b*/100
    gray: torch.Tensor        # (B, 1, g, g)
    control: torch.Tensor | None
    prompt: torch.Tensor      # (B, 384) global text embedding
    cover: torch.Tensor       # (B, R, g, g)
    small: torch.Tensor       # (B, R, 64, 64)
    text: torch.Tensor        # (B, R, 384)
    keep: torch.Tensor        # (B, R) bool


def _palette_ab() -> torch.Tensor:
    from restorer.pipelines.dataset import palette_lab

    return torch.tensor(np.stack([v[1:] for v in palette_lab().values()]), dtype=torch.float32)


def make_batch(cache: dict[str, Any], cfg: TrainConfig, g: torch.Generator, *, counter: bool,
               control: bool, ab_scale: float = 100.0) -> Batch:
    """Sample and augment one batch from the cache with generator ``g`` (see the module docstring)."""
    from restorer.pipelines.dataset import COUNTER_COLORS, PALETTE

    n = cache["gray"].shape[0]
    idx = torch.randint(0, n, (cfg.batch,), generator=g)
    rec = cache["record"][idx]
    onehot = F.one_hot(cache["labels"][idx].long(), MAX_INSTANCES).permute(0, 3, 1, 2).float()
    cover = F.avg_pool2d(onehot, LABEL_SIZE // GRID)
    ab = cache["ab"][idx].float()
    obj, col = cache["inst_obj"][rec], cache["inst_col"][rec].clone()
    present = (cover.flatten(2).amax(2) > 0) & (obj >= 0)
    keep = present & (torch.rand(cfg.batch, 1, generator=g) >= cfg.p_drop)
    drop_prompt = torch.rand(cfg.batch, generator=g) < cfg.p_drop_prompt
    if counter:
        pal = _palette_ab()
        counter_ids = torch.tensor([PALETTE.index(c) for c in COUNTER_COLORS])
        ab, col, changed = _counter_colour(ab, cover, col, keep, pal, counter_ids, cfg.p_counter, g)
        drop_prompt = drop_prompt | changed
    prompt = torch.where(drop_prompt[:, None], cache["global_emb"][-1], cache["global_emb"][rec])
    text = cache["text_emb"][obj.clamp_min(0), col.clamp_min(0)]
    ctrl = None
    gray = cache["gray"][idx].float()
    if control and "feat" in cache:
        feat = F.interpolate(cache["feat"][idx].float(), size=(GRID, GRID), mode="bilinear", align_corners=False)
        ctrl = torch.cat([gray, feat], dim=1)
    elif control:
        ctrl = gray  # a preset with ``features: none``
    return Batch(ab / ab_scale, gray, ctrl, prompt, cover, onehot, text, keep)


def _counter_colour(ab, cover, col, keep, pal, counter_ids, p, g):
    """Recolour a share of kept instances to a far-hue vivid colour; returns (ab, colour ids, changed rows)."""
    b, r = keep.shape
    area = cover.sum((2, 3)).clamp_min(1e-6)
    mean = torch.einsum("brhw,bchw->brc", cover, ab) / area[..., None]     # (B, R, 2)
    hue = torch.atan2(mean[..., 1], mean[..., 0])
    chroma = mean.norm(dim=-1)
    cand = pal[counter_ids]                                                  # (K, 2)
    cand_hue = torch.atan2(cand[:, 1], cand[:, 0])
    diff = torch.remainder(hue[..., None] - cand_hue + math.pi, 2 * math.pi) - math.pi
    far = (diff.abs() >= math.pi / 2) | (chroma[..., None] < 10)             # (B, R, K)
    choice = torch.multinomial((far.float() + 1e-9).view(b * r, -1), 1, generator=g).view(b, r)
    apply = keep & (torch.rand(b, r, generator=g) < p) & (area > 0.02 * cover.shape[-1] * cover.shape[-2])
    target = cand[choice]                                                    # (B, R, 2)
    out = ab.clone()
    for k in range(r):
        w = cover[:, k:k + 1] * apply[:, k, None, None, None]
        new = target[:, k, :, None, None] + 0.5 * (ab - mean[:, k, :, None, None])
        out = out + w * (new - out)
    col = torch.where(apply, counter_ids[choice], col)
    return out, col, apply.any(1)


# --- the model and its stages -------------------------------------------------------------------

def build_model(opts: dict[str, Any], stage: int, out: Path, init: Path | None, seed: int):
    """The model a stage starts from: fresh (stage 0), or the previous stage's final weights."""
    from restorer.models.mtcolor import tiny

    if stage == 0 and init is None:
        torch.manual_seed(seed)
        return tiny.build(opts)
    src = init or out / f"stage{stage - 1}" / "final"
    if not (src / "unet").exists():
        raise InputError(f"stage {stage} starts from stage {stage - 1}'s weights, which are missing", path=src,
                         hint=f"run 'restorer train ... --stage {stage - 1}' first, or pass --init DIR")
    model = tiny.load(src, opts)
    if stage == 2 and init is None:
        model = _fresh_controlnet(model, opts, seed)
    return model


def _fresh_controlnet(model, opts: dict[str, Any], seed: int):
    """ControlNet initialised from the trained U-Net's encoder, zero convolutions at zero."""
    from diffusers import ControlNetModel

    from restorer.models.mtcolor.features import CHANNELS
    from restorer.models.mtcolor.model import MTColorModel

    torch.manual_seed(seed)
    cond = 1 + (CHANNELS if opts.get("features", "efficientnet-lite0") != "none" else 0)
    controlnet = ControlNetModel.from_unet(model.unet, conditioning_channels=cond,
                                           conditioning_embedding_out_channels=(16,))
    return MTColorModel(model.unet, controlnet, model.adapter)


def trainable(model, stage: int) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze everything but the stage's modules; returns the trained (name, parameter) pairs."""
    model.requires_grad_(False)
    for module in model.stage_modules(stage):
        module.requires_grad_(True)
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def loss_step(model, batch: Batch, stage: int, g: torch.Generator, alphas: torch.Tensor,
              prediction: str = "epsilon") -> torch.Tensor:
    """Eq. 10 on one batch; with ``prediction="v_prediction"`` the target is v (see the module docstring)."""
    from restorer.models.mtcolor.model import Conditions

    b = batch.x0.shape[0]
    t = torch.randint(0, alphas.shape[0], (b,), generator=g)
    eps = torch.randn(batch.x0.shape, generator=g)
    a = alphas[t].view(b, 1, 1, 1)
    z = a.sqrt() * batch.x0 + (1 - a).sqrt() * eps
    tokens = None
    if stage >= 1:
        tokens = model.adapter.encoder(batch.text, batch.small, batch.keep)
    prompt = model.adapter.prompt_proj(batch.prompt[:, None])
    cond = Conditions(prompt, batch.cover, tokens, batch.control if stage >= 2 else None, batch.gray)
    target = eps if prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * batch.x0
    return F.mse_loss(model(z, t, cond), target)


def _generator(cfg: TrainConfig, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(cfg.seed * 1_000_003 + cfg.stage * 10_007 + step)


# --- checkpoints --------------------------------------------------------------------------------

def save_checkpoint(model, opt: torch.optim.Optimizer, params: list, step: int, folder: Path,
                    cfg: Any, save: Callable[[Any, Path], None] | None = None,
                    extra: dict[str, Any] | None = None, add: Callable[[Path], None] | None = None) -> None:
    """Weights (``save``, default :func:`restorer.models.mtcolor.tiny.save`), AdamW's state and the step
    (with ``extra`` in ``state.json``; ``add`` writes more files), written as one folder
    (:func:`restorer.fs.atomic_folder`)."""
    from safetensors.torch import save_file

    from restorer.fs import atomic_folder
    from restorer.models.mtcolor import tiny

    with atomic_folder(folder) as tmp:
        (save or tiny.save)(model, tmp)
        state = {}
        for i, (_, p) in enumerate(params):
            s = opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq", "step"):
                if key in s:
                    state[f"{i}.{key}"] = torch.as_tensor(s[key]).detach().clone().contiguous()
        save_file(state, tmp / "optimizer.safetensors")
        (tmp / "state.json").write_text(json.dumps({"step": step, "config": asdict(cfg), **(extra or {})},
                                                   indent=1) + "\n")
        if add is not None:
            add(tmp)


def load_optimizer(opt: torch.optim.Optimizer, params: list, folder: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(folder / "optimizer.safetensors")
    for i, (_, p) in enumerate(params):
        if f"{i}.step" in state:
            opt.state[p] = {k: state[f"{i}.{k}"].clone() for k in ("step", "exp_avg", "exp_avg_sq")}


def latest_checkpoint(stage_dir: Path) -> Path | None:
    found = sorted(stage_dir.glob("checkpoint-*[0-9]"))
    return found[-1] if found else None


# --- the loop -----------------------------------------------------------------------------------

def train(preset: str | Path, data: Path, out: Path, *, stage: int, steps: int, resume: bool = False,
          init: Path | None = None, cache: Path | None = None, config: TrainConfig | None = None,
          views: int = 8, text_encoder: Any = None, options: dict[str, Any] | None = None,
          progress: bool = False) -> dict[str, Any]:
    """Train one stage; returns a summary (steps, seconds, final losses, paths).

    Args:
        preset: preset name or YAML path (its ``options`` build the model); ``options`` overrides.
        data: a dataset folder from :func:`restorer.pipelines.dataset.build_dataset`.
        out: run folder; this stage writes ``out/stageN/`` (checkpoints, ``final/``, ``log.csv``,
            ``loss.png``) and starts from ``out/stage{N-1}/final`` unless ``init`` is given.
        stage: 0 (tiny's base), 1 (instance module) or 2 (ControlNet + PMAM).
        steps: total optimizer steps of the stage.
        resume: continue from the stage's latest checkpoint (same config), exactly.
        cache: frozen-feature cache folder (default ``out/cache``).

    Raises:
        InputError: bad stage, missing previous stage, or a checkpoint from another config.
    """
    if stage not in (0, 1, 2):
        raise InputError(f"stage must be 0, 1 or 2, not {stage}")
    opts = {**_preset_options(preset), **(options or {})}
    cfg = config or TrainConfig(stage=stage, steps=steps)
    cfg = TrainConfig(**{**asdict(cfg), "stage": stage, "steps": steps})
    out = Path(out)
    stage_dir = out / f"stage{stage}"
    stage_dir.mkdir(parents=True, exist_ok=True)
    with cache_progress(progress, "frozen-feature cache, photos") as tick:
        cached = prepare_cache(data, cache or out / "cache", views=views, seed=cfg.seed,
                               features=opts.get("features", "efficientnet-lite0") != "none",
                               text_encoder=text_encoder, progress=tick)
    if stage == 0:
        log.info("tiny has no pretrained base: stage 0 trains its base U-Net first")
    model, params, opt, start = _setup(opts, cfg, out, stage_dir, init, resume)
    summary = _loop(model, params, opt, start, cfg, cached, stage_dir, progress, opts)
    from restorer.models.mtcolor import tiny

    shutil.rmtree(stage_dir / "final", ignore_errors=True)
    tiny.save(model, stage_dir / "final")
    draw_loss_plot(stage_dir / "log.csv", stage_dir / "loss.png", title=f"tiny stage {stage}")
    return {**summary, "final": str(stage_dir / "final")}


def _preset_options(preset: str | Path) -> dict[str, Any]:
    """The options of a preset this trainer can train: MT-Color's tiny backbone at the cache's grid.

    Raises:
        InputError: another engine or backbone (sd15 is not trained on the CPU here), or another grid.
    """
    from restorer.presets import load_preset

    chosen = load_preset(str(preset))
    opts = dict(chosen.options)
    if chosen.engine != "mtcolor" or opts.get("backbone") != "tiny":
        what = chosen.engine if chosen.engine != "mtcolor" else f"mtcolor with backbone {opts.get('backbone')}"
        raise InputError(f"restorer train trains MT-Color's tiny backbone; preset {chosen.name!r} is {what}",
                         hint="train --preset tiny (or a preset YAML with engine: mtcolor and backbone: tiny)")
    if int(opts.get("grid", GRID)) != GRID:
        raise InputError(f"preset {chosen.name!r} asks for grid {opts['grid']}; the training caches are built "
                         f"at grid {GRID}", hint=f"set grid: {GRID} in the preset to train it")
    return opts


def _setup(opts, cfg: TrainConfig, out: Path, stage_dir: Path, init: Path | None, resume: bool):
    ckpt = latest_checkpoint(stage_dir) if resume else None
    if resume and ckpt is None:
        log.info("no checkpoint in %s: starting stage %d from the beginning", stage_dir, cfg.stage)
    if ckpt is not None:
        saved = json.loads((ckpt / "state.json").read_text())
        if saved["config"] != asdict(cfg):
            raise InputError("the checkpoint was made with other training settings", path=ckpt,
                             hint="resume with the same --steps and options, or start a new --out")
        from restorer.models.mtcolor import tiny

        model = tiny.load(ckpt, opts)
    else:
        model = build_model(opts, cfg.stage, out, init, cfg.seed)
    model.train()
    model.adapter.set_dense(True)  # N x N masked attention: faster than per-region loops at 16² on a CPU
    params = trainable(model, cfg.stage)
    opt = torch.optim.AdamW([p for _, p in params], lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if ckpt is not None:
        load_optimizer(opt, params, ckpt)
        start = json.loads((ckpt / "state.json").read_text())["step"]
        log.info("resuming stage %d at step %d from %s", cfg.stage, start, ckpt)
    _truncate_log(stage_dir / "log.csv", start)
    return model, params, opt, start


def _alphas(opts: dict[str, Any]) -> torch.Tensor:
    from diffusers import DDPMScheduler

    from restorer.models.mtcolor import tiny

    cfg = {k: v for k, v in tiny.scheduler_config(opts).items() if k != "set_alpha_to_one"}
    return DDPMScheduler.from_config(cfg).alphas_cumprod.float()


def _loop(model, params, opt, start: int, cfg: TrainConfig, cached, stage_dir: Path, show: bool,
          opts: dict[str, Any]) -> dict:
    from restorer.console import progress
    from restorer.models.mtcolor import tiny
    from restorer.models.mtcolor.spaces import AB_SCALE

    alphas = _alphas(opts)
    prediction = tiny.scheduler_config(opts)["prediction_type"]
    scale = float(opts.get("ab_scale", AB_SCALE))
    t0, losses = time.perf_counter(), []
    with progress(show) as bar, (stage_dir / "log.csv").open("a", newline="") as fh:
        writer = csv.writer(fh)
        if start == 0:
            writer.writerow(["step", "loss", "lr", "seconds"])
        task = bar.add_task(f"stage {cfg.stage}", total=cfg.steps, completed=start) if bar else None
        for step in range(start, cfg.steps):
            g = _generator(cfg, step)
            batch = make_batch(cached, cfg, g, counter=cfg.stage >= 1 and cfg.p_counter > 0,
                               control=cfg.stage >= 2, ab_scale=scale)
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = loss_step(model, batch, cfg.stage, g, alphas, prediction)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            writer.writerow([step + 1, f"{losses[-1]:.6f}", f"{lr:.3e}", f"{time.perf_counter() - t0:.1f}"])
            if bar:
                rate = (step + 1 - start) / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=1, description=f"stage {cfg.stage} loss {np.mean(losses[-50:]):.4f} "
                                                        f"{rate:.2f} steps/s")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                fh.flush()
                _checkpoint(model, opt, params, step + 1, stage_dir, cfg)
    return {"stage": cfg.stage, "steps": cfg.steps, "resumed_at": start,
            "seconds": round(time.perf_counter() - t0, 1),
            "final_loss": float(np.mean(losses[-100:])) if losses else None}


def _checkpoint(model, opt, params, step: int, stage_dir: Path, cfg: TrainConfig) -> None:
    save_checkpoint(model, opt, params, step, stage_dir / f"checkpoint-{step:06d}", cfg)
    for old in sorted(stage_dir.glob("checkpoint-*[0-9]"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows after ``step`` (a resumed run rewrites them)."""
    if not path.exists():
        return
    rows = list(csv.reader(path.open()))
    keep = [r for r in rows[1:] if int(r[0]) <= step] if step else []
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        if step:
            writer.writerow(rows[0])
            writer.writerows(keep)


# --- the plot (PIL: matplotlib is not a dependency) --------------------------------------------

def read_log(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = list(csv.reader(Path(path).open()))[1:]
    arr = np.array([[float(v) for v in r[:3]] for r in rows]) if rows else np.zeros((0, 3))
    return arr[:, 0], arr[:, 1], arr[:, 2]


def draw_loss_plot(csv_paths: Path | list[Path], png: Path, *, title: str = "training loss",
                   size: tuple[int, int] = (900, 420)) -> None:
    """Loss (raw, faint; moving average of 50, solid) and learning rate (dashed, right axis) per step.

    Several CSVs (stages) are drawn one after the other along the step axis, separated by lines.
    """
    from PIL import Image, ImageDraw

    paths = [csv_paths] if isinstance(csv_paths, (str, Path)) else list(csv_paths)
    logs = [read_log(p) for p in paths]
    steps = np.concatenate([s + sum(len(x[0]) for x in logs[:i]) for i, (s, _, _) in enumerate(logs)]) \
        if logs else np.zeros(0)
    loss = np.concatenate([x[1] for x in logs]) if logs else np.zeros(0)
    lr = np.concatenate([x[2] for x in logs]) if logs else np.zeros(0)
    w, h = size
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    left, right, top, bottom = 60, w - 70, 30, h - 40
    d.rectangle([left, top, right, bottom], outline="black")
    d.text((left, 8), title, fill="black")
    held = [_held_out_points(p) for p in paths]
    held_steps = np.concatenate([h[0] + sum(len(x[0]) for x in logs[:i]) for i, h in enumerate(held)]) \
        if held else np.zeros(0)
    held_ce = np.concatenate([h[1] for h in held]) if held else np.zeros(0)
    if len(loss):
        _curves(d, steps, loss, lr, (left, right, top, bottom), (held_steps, held_ce))
        bounds = np.cumsum([len(x[0]) for x in logs])[:-1]
        for b in bounds:
            x = left + (right - left) * b / max(steps.max(), 1)
            d.line([(x, top), (x, bottom)], fill=(150, 150, 150))
    im.save(png)


def _held_out_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a log's ``heldout_ce`` column where it has one (the colour prior's log)."""
    rows = list(csv.DictReader(Path(path).open()))
    pts = [(float(r["step"]), float(r["heldout_ce"])) for r in rows if r.get("heldout_ce")]
    return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (np.zeros(0), np.zeros(0))


def _curves(d, steps, loss, lr, box, held=None) -> None:
    left, right, top, bottom = box
    held = held if held is not None else (np.zeros(0), np.zeros(0))
    loss = np.log10(np.maximum(loss, 1e-8))  # log scale: the loss spans decades
    lo, hi = float(np.percentile(loss, 1)), float(np.percentile(loss, 99.5))
    hi = hi if hi > lo else lo + 1e-6
    sx = lambda s: left + (right - left) * (s - steps.min()) / max(steps.max() - steps.min(), 1)  # noqa: E731
    sy = lambda v, a, b: bottom - (bottom - top) * (np.clip(v, a, b) - a) / (b - a)  # noqa: E731
    d.line(list(zip(sx(steps), sy(loss, lo, hi), strict=True)), fill=(190, 200, 235))
    k = min(50, len(loss))
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")  # of log10 loss
    d.line(list(zip(sx(steps[k - 1:]), sy(smooth, lo, hi), strict=True)), fill=(20, 60, 200), width=2)
    lr_hi = float(lr.max()) or 1.0
    pts = list(zip(sx(steps), sy(lr, 0.0, lr_hi), strict=True))
    for i in range(0, len(pts) - 1, 2):
        d.line([pts[i], pts[i + 1]], fill=(220, 90, 30))
    for frac in (0.0, 0.5, 1.0):
        y = bottom - (bottom - top) * frac
        d.text((4, y - 6), f"{10 ** (lo + (hi - lo) * frac):.3g}", fill=(20, 60, 200))
        d.text((right + 4, y - 6), f"{lr_hi * frac:.1e}", fill=(220, 90, 30))
    d.text((left, bottom + 6), f"step {int(steps.min())}", fill="black")
    d.text((right - 90, bottom + 6), f"step {int(steps.max())}", fill="black")
    legend = "loss, log scale (blue: moving average of 50)   lr (orange)"
    if len(held[0]):
        for x, y in zip(sx(held[0]), sy(np.log10(np.maximum(held[1], 1e-8)), lo, hi), strict=True):
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(30, 150, 60))
        legend += "   held-out photos (green)"
    d.text((left + 150, 8), legend, fill="black")


def export_weights(src: Path, dst: Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Copy trained weights (``unet/ controlnet/ adapter/``) to ``dst`` in ``dtype`` (float16 halves
    the shipped size; :func:`restorer.models.mtcolor.tiny.load` reads them back as float32)."""
    from restorer.models.mtcolor import tiny

    model = tiny.load(Path(src), {}).to(dtype)
    dst = Path(dst)
    for part in ("unet", "controlnet", "adapter"):
        shutil.rmtree(dst / part, ignore_errors=True)
    tiny.save(model, dst)
    return dst
