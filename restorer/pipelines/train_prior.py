"""``restorer train --stage prior``: tiny's automatic colour prior (:mod:`restorer.models.mtcolor.prior`).

Not a stage of the paper: SD 1.5 brings its own colour knowledge, tiny's base does not, so the
tiny preset learns one more small head on frozen EfficientNet-Lite0 features. It is
independent of stages 0-2 (it reads no U-Net weights) and can run before or after them.

Data: ``views`` augmented views per training photo (the same crops, flips and scale jitter as
:func:`restorer.pipelines.train.prepare_cache`), each stored once as gray and a*b* at the 32-cell
grid and the feature pyramid (``out/prior_cache``). A fifth of the training photos (by a hash
of the name, so the same ones every run) is held out inside the training split: the head
overfits a few hundred photos within a few hundred steps, so the held-out cross-entropy is
measured every ``eval_every`` steps and the best weights are kept (early stopping). The
dataset's validation split is never read.

Loss: cross-entropy against the soft-encoded true a*b*, with Zhang et al.'s class rebalancing
(``rebalance`` = their lambda, 0.5: without it the rare saturated bins lose to the common
near-gray ones and the annealed mean comes out about half as colourful). AdamW with linear warm-up then
cosine decay, dropout on the features. Every random draw of step ``s`` comes from a generator
seeded by (seed, s), checkpoints hold the weights, AdamW's moments and the best-so-far, so
``--resume`` continues exactly.

Writes ``out/prior/``: ``checkpoint-NNNNNN/``, ``best/`` (the early-stopped weights),
``final/`` (= best), ``log.csv`` (step, loss, lr, seconds, held-out cross-entropy) and ``loss.png``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from restorer.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriorConfig:
    steps: int
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 20
    weight_decay: float = 0.05
    dropout: float = 0.3
    rebalance: float = 0.5  # Zhang et al.'s lambda (theirs): 1 = no rebalancing
    holdout: float = 0.2
    eval_every: int = 50
    checkpoint_every: int = 250
    seed: int = 0
    backbone: str = "efficientnet-lite0"  # the frozen features the head reads (features.PYRAMIDS)
    context: int = 0  # dilated residual blocks after the head's first layer
    global_context: bool = False  # the scene's mean feature added to every cell
    jitter: float = 0.0  # exposure and contrast jitter of the gray input, +-jitter (the colour target is untouched)


def cache_key(records: list[dict], *, views: int, seed: int, backbone: str, jitter: float) -> str:
    """What a prior cache depends on: the training records (names, files, instances), the views, seed,
    backbone and jitter. A cache is reused only for the same key."""
    blob = json.dumps({"records": records, "views": views, "seed": seed, "backbone": backbone,
                       "jitter": jitter}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def jittered(luma: torch.Tensor, rng: np.random.Generator, amount: float) -> torch.Tensor:
    """Mild exposure and contrast jitter of a gray view (gain and contrast in 1 +- ``amount``), clipped to
    [0, 1]: a scan is often darker, brighter or flatter than the photo was. Hue is never touched (the
    colour target is the photo's own)."""
    if amount <= 0:
        return luma
    gain, contrast = rng.uniform(1 - amount, 1 + amount, size=2)
    mean = luma.mean()
    return (((luma - mean) * float(contrast) + mean) * float(gain)).clamp(0, 1)


def prepare_prior_cache(data: Path, cache: Path, *, views: int = 10, seed: int = 0,
                        backbone: str = "efficientnet-lite0", jitter: float = 0.0, features: Any = None,
                        progress: Callable[[int, int], None] | None = None) -> dict:
    """Gray, a*b* and the feature pyramid of ``views`` augmented views per training photo, computed once,
    in ``cache/KEY`` (:func:`cache_key`: another dataset or other settings get their own).

    ``features`` (tests) replaces EfficientNet: anything with ``pyramid(gray) -> dict``.
    """
    from safetensors.torch import load_file, save_file

    from restorer.fs import atomic_path
    from restorer.models.mtcolor.features import EfficientNetFeatures
    from restorer.pipelines.dataset import load_record, read_dataset
    from restorer.pipelines.train import VIEW, add_view, augmented_views

    records = read_dataset(data, "train")
    if not records:
        raise InputError("the dataset has no training photos", path=data)
    cache = Path(cache) / f"{backbone}-{cache_key(records, views=views, seed=seed, backbone=backbone, jitter=jitter)}"
    if (cache / "prior.safetensors").exists():
        return {**load_file(cache / "prior.safetensors"), "meta": json.loads((cache / "prior.json").read_text())}
    net = features or EfficientNetFeatures(input_size=VIEW, backbone=backbone)
    rng = np.random.default_rng(seed)
    jitter_rng = np.random.default_rng([seed, 1])  # its own stream: the views' crops do not depend on the jitter
    out: dict[str, list] = {"gray": [], "ab": [], "record": []}
    for i, rec in enumerate(records):
        rgb, labels = load_record(data, rec)
        for crop, luma, _ in augmented_views(rgb, labels, rng, views):
            luma = jittered(luma, jitter_rng, jitter)
            add_view(out, crop, luma, i)
            for name, t in net.pyramid(luma).items():
                out.setdefault(name, []).append(t[0].half())
        if progress:
            progress(i + 1, len(records))
    tensors = {k: torch.stack(v).contiguous() for k, v in out.items()}
    meta = {"records": [r["name"] for r in records], "views": views, "seed": seed, "backbone": backbone,
            "jitter": jitter}
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "prior.json").write_text(json.dumps(meta, indent=1) + "\n")
    with atomic_path(cache / "prior.safetensors") as tmp:
        save_file(tensors, tmp)
    return {**tensors, "meta": meta}


def held_out(names: list[str], share: float) -> torch.Tensor:
    """Which records are held out for early stopping: a stable share by a hash of the name."""
    return torch.tensor([int(hashlib.sha256(n.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share
                         for n in names])


def split_held_out(cached: dict, share: float, data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit, held-out) view indices of a cache: the views of a stable share of the photos (:func:`held_out`) are
    held out for early stopping (the prior's and the anchors trainer's).

    Raises:
        InputError: too few photos to hold some out and keep some to fit.
    """
    hold = held_out(cached["meta"]["records"], share)[cached["record"].long()]
    if hold.all() or not hold.any():
        raise InputError("too few training photos to hold some out for early stopping", path=data,
                         hint=f"use a dataset with more training photos ({share:.0%} of them, by name, are held out)")
    return (~hold).nonzero().flatten(), hold.nonzero().flatten()


def fresh_or_resumed(stage_dir: Path, resume: bool, model, opt, cfg: Any, best: dict, what: str) -> tuple[int, dict]:
    """The step to start at and the best so far: from the latest checkpoint with ``resume``, else 0 (and the old
    log is dropped)."""
    ckpt = _latest(stage_dir, what) if resume else None
    if ckpt is not None:
        return _restore(ckpt, model, opt, cfg, what)
    if (stage_dir / "log.csv").exists():
        (stage_dir / "log.csv").unlink()
    return 0, best


def finish(stage_dir: Path, title: str) -> Path:
    """``final/`` = ``best/`` (the early-stopped weights), and the loss plot; returns ``final/``."""
    from restorer.pipelines.train import draw_loss_plot

    final = stage_dir / "final"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(stage_dir / "best", final)
    draw_loss_plot(stage_dir / "log.csv", stage_dir / "loss.png", title=title)
    return final


def train_prior(data: Path, out: Path, *, steps: int, resume: bool = False, config: PriorConfig | None = None,
                views: int = 10, features: Any = None, progress: bool = False) -> dict[str, Any]:
    """Train the colour prior; returns a summary (steps, seconds, best step, held-out cross-entropy, paths)."""
    from restorer.models.mtcolor.prior import ColourPrior, bins_for, rebalancing
    from restorer.pipelines.train import cache_progress

    cfg = PriorConfig(**{**asdict(config or PriorConfig(steps=steps)), "steps": steps})
    out = Path(out)
    stage_dir = out / "prior"
    stage_dir.mkdir(parents=True, exist_ok=True)
    with cache_progress(progress, "prior feature cache, photos") as tick:
        cached = prepare_prior_cache(data, out / "prior_cache", views=views, seed=cfg.seed, backbone=cfg.backbone,
                                     jitter=cfg.jitter, features=features, progress=tick)
    fit_idx, hold_idx = split_held_out(cached, cfg.holdout, data)
    torch.manual_seed(cfg.seed)
    model = ColourPrior(bins=bins_for(cached["ab"][fit_idx]), dropout=cfg.dropout, backbone=cfg.backbone,
                        context=cfg.context, global_context=cfg.global_context)
    weights = rebalancing(cached["ab"][fit_idx], model.centers, cfg.rebalance)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, best = fresh_or_resumed(stage_dir, resume, model, opt, cfg, {"ce": float("inf"), "step": 0}, "the prior")
    summary = _loop(model, opt, cached, fit_idx, hold_idx, cfg, start, best, stage_dir, progress, weights)
    return {**summary, "final": str(finish(stage_dir, "tiny colour prior (cross-entropy)"))}


def _batch(cached: dict, idx: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
    from restorer.models.mtcolor.prior import PYRAMID

    feats = {name: cached[name][idx].float() for name, _ in PYRAMID}  # the names are the same for every backbone
    return cached["gray"][idx].float(), feats, cached["ab"][idx].float()


@torch.no_grad()
def held_out_ce(model, cached: dict, idx: torch.Tensor, chunk: int = 64, weights: torch.Tensor | None = None) -> float:
    from restorer.models.mtcolor.prior import prior_loss

    was = model.training
    model.eval()
    total = sum(float(prior_loss(model, *_batch(cached, idx[i:i + chunk]), weights)) * len(idx[i:i + chunk])
                for i in range(0, len(idx), chunk))
    model.train(was)
    return total / len(idx)


def _loop(model, opt, cached, fit_idx, hold_idx, cfg: PriorConfig, start: int, best: dict, stage_dir: Path,
          show: bool, weights: torch.Tensor | None) -> dict:
    from restorer.console import progress
    from restorer.models.mtcolor.prior import prior_loss
    from restorer.pipelines.train import lr_at

    model.train()
    t0, losses = time.perf_counter(), []
    with progress(show) as bar, (stage_dir / "log.csv").open("a", newline="") as fh:
        writer = csv.writer(fh)
        if start == 0:
            writer.writerow(["step", "loss", "lr", "seconds", "heldout_ce"])
            best = _evaluate(model, cached, hold_idx, 0, best, stage_dir, weights)
        task = bar.add_task("prior", total=cfg.steps, completed=start) if bar else None
        for step in range(start, cfg.steps):
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 77_777 + step)
            pick = fit_idx[torch.randint(0, len(fit_idx), (cfg.batch,), generator=g)]
            gray, feats, ab = _batch(cached, pick)
            if bool(torch.rand((), generator=g) < 0.5):
                gray, ab, feats = gray.flip(-1), ab.flip(-1), {k: v.flip(-1) for k, v in feats.items()}
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed * 1_000_003 + 55_555 + step)  # dropout masks
                loss = prior_loss(model, gray, feats, ab, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            ce = ""
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
                best = _evaluate(model, cached, hold_idx, step + 1, best, stage_dir, weights)
                ce = f"{best['last']:.5f}"
            writer.writerow([step + 1, f"{losses[-1]:.6f}", f"{lr:.3e}", f"{time.perf_counter() - t0:.1f}", ce])
            if bar:
                bar.update(task, advance=1, description=f"prior loss {np.mean(losses[-50:]):.3f} "
                                                        f"held-out best {best['ce']:.3f} @ {best['step']}")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                fh.flush()
                _checkpoint(model, opt, step + 1, best, stage_dir, cfg)
    return {"stage": "prior", "steps": cfg.steps, "resumed_at": start, "seconds": round(time.perf_counter() - t0, 1),
            "best_step": best["step"], "heldout_ce": round(best["ce"], 5),
            "final_loss": float(np.mean(losses[-100:])) if losses else None}


def _evaluate(model, cached, hold_idx, step: int, best: dict, stage_dir: Path, weights) -> dict:
    ce = held_out_ce(model, cached, hold_idx, weights=weights)
    best = {**best, "last": ce}
    if ce < best["ce"]:
        from restorer.fs import atomic_folder

        with atomic_folder(stage_dir / "best") as tmp:
            model.save_pretrained(tmp)
        best = {**best, "ce": ce, "step": step}
    return best


def _checkpoint(model, opt, step: int, best: dict, stage_dir: Path, cfg: PriorConfig) -> None:
    from restorer.pipelines.train import save_checkpoint

    folder = stage_dir / f"checkpoint-{step:06d}"
    params = list(model.named_parameters())
    save_checkpoint(model, opt, params, step, folder, cfg, save=lambda m, d: m.save_pretrained(d),
                    extra={"best": best}, add=lambda d: shutil.copytree(stage_dir / "best", d / "best"))
    for old in sorted(stage_dir.glob("checkpoint-*[0-9]"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)


def _latest(stage_dir: Path, what: str = "the prior") -> Path | None:
    found = sorted(stage_dir.glob("checkpoint-*[0-9]"))
    if not found:
        log.info("no checkpoint in %s: starting %s from the beginning", stage_dir, what)
    return found[-1] if found else None


def _restore(ckpt: Path, model, opt, cfg: Any, what: str = "the prior") -> tuple[int, dict]:
    """Weights, AdamW's moments, ``best/`` and the log of a checkpoint with early stopping (the prior's and
    the anchors trainer's): the settings must be the same (compared as JSON: tuples are lists there)."""
    from safetensors.torch import load_file

    from restorer.pipelines.train import _truncate_log, load_optimizer

    state = json.loads((ckpt / "state.json").read_text())
    if state["config"] != json.loads(json.dumps(asdict(cfg))):
        raise InputError("the checkpoint was made with other training settings", path=ckpt,
                         hint="resume with the same --steps and options, or start a new --out")
    model.load_state_dict(load_file(ckpt / "diffusion_pytorch_model.safetensors"), strict=True)
    load_optimizer(opt, list(model.named_parameters()), ckpt)
    stage_dir = ckpt.parent
    shutil.rmtree(stage_dir / "best", ignore_errors=True)
    shutil.copytree(ckpt / "best", stage_dir / "best")
    _truncate_log(stage_dir / "log.csv", state["step"])
    log.info("resuming %s at step %d from %s", what, state["step"], ckpt)
    return state["step"], state["best"]


def export_prior(src: Path, dst: Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Copy trained prior weights to ``dst/prior`` in ``dtype`` (loaded back as float32)."""
    from restorer.models.mtcolor.prior import ColourPrior

    model = ColourPrior.from_pretrained(Path(src), local_files_only=True, low_cpu_mem_usage=False, torch_dtype=dtype)
    target = Path(dst) / "prior"
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(target)
    return target
