"""``restorer train --stage prior``: tiny's automatic colour prior (:mod:`restorer.models.mtcolor.prior`).

Not a stage of the paper: SD 1.5 brings its own colour knowledge, tiny's base does not, so the
tiny preset learns one more small head on frozen EfficientNet-Lite0 features. It is
independent of stages 0-2 (it reads no U-Net weights) and can run before or after them.

Data: ``views`` augmented views per training photo (:mod:`.augment`, with exposure jitter), each stored
once as gray and a*b* at the 32-cell grid and the feature pyramid (``out/prior_cache/BACKBONE-KEY``,
:mod:`.cache`). A fifth of the training photos (by a hash of the name, so the same ones every run) is held
out inside the training split: the head overfits a few hundred photos within a few hundred steps, so the
held-out cross-entropy is measured every ``eval_every`` steps and the best weights are kept (early
stopping). The dataset's validation split is never read.

Loss: cross-entropy against the soft-encoded true a*b*, with Zhang et al.'s class rebalancing
(``rebalance`` = their lambda, 0.5: without it the rare saturated bins lose to the common
near-gray ones and the annealed mean comes out about half as colourful). AdamW with the shared schedule
(:mod:`.loop`), dropout on the features; checkpoints (:mod:`.checkpoints`) hold the weights, AdamW's
moments and the best-so-far, so ``--resume`` continues exactly.

Writes ``out/prior/``: ``checkpoint-NNNNNN/``, ``best/`` (the early-stopped weights),
``final/`` (= best), ``log.csv`` (step, loss, lr, seconds, held-out cross-entropy) and ``loss.png``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from restorer.training import augment
from restorer.training.registry import TrainRequest


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


def prepare_prior_cache(data: Path, cache: Path, *, views: int = 10, seed: int = 0,
                        backbone: str = "efficientnet-lite0", jitter: float = 0.0, features: Any = None,
                        progress: Callable[[int, int], None] | None = None) -> dict:
    """Gray, a*b* and the feature pyramid of ``views`` augmented views per training photo, computed once,
    in ``cache/BACKBONE-KEY`` (:func:`restorer.training.cache.cache_key` of the training records, views, seed,
    backbone and jitter: another dataset or other settings get their own).

    ``features`` (tests) replaces EfficientNet: anything with ``pyramid(gray) -> dict``.
    """
    from restorer.training.cache import cache_key, stored, training_records

    records = training_records(data)
    key = cache_key(records, views=views, seed=seed, backbone=backbone, jitter=jitter)

    def build() -> tuple[dict, dict]:
        from restorer.models.mtcolor.features import EfficientNetFeatures
        from restorer.training.dataset.records import load_record

        net = features or EfficientNetFeatures(input_size=augment.VIEW, backbone=backbone)
        rng = np.random.default_rng(seed)
        jitter_rng = np.random.default_rng([seed, 1])  # its own stream: the views' crops do not depend on the jitter
        out: dict[str, list] = {"gray": [], "ab": [], "record": []}
        for i, rec in enumerate(records):
            rgb, labels = load_record(data, rec)
            for crop, luma, _ in augment.augmented_views(rgb, labels, rng, views):
                luma = augment.jittered(luma, jitter_rng, jitter)
                augment.add_view(out, crop, luma, i)
                for name, t in net.pyramid(luma).items():
                    out.setdefault(name, []).append(t[0].half())
            if progress:
                progress(i + 1, len(records))
        meta = {"records": [r["name"] for r in records], "views": views, "seed": seed, "backbone": backbone,
                "jitter": jitter}
        return {k: torch.stack(v) for k, v in out.items()}, meta

    return stored(Path(cache) / f"{backbone}-{key}", "prior", build)


def train_prior(data: Path, out: Path, *, steps: int, resume: bool = False, config: PriorConfig | None = None,
                views: int = 10, features: Any = None, progress: bool = False) -> dict[str, Any]:
    """Train the colour prior; returns a summary (steps, seconds, best step, held-out cross-entropy, paths)."""
    from restorer.models.mtcolor.prior import ColourPrior, bins_for, rebalancing
    from restorer.training.cache import cache_progress, split_held_out
    from restorer.training.checkpoints import finish, fresh_or_resumed

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
    from restorer.models.mtcolor.prior import prior_loss
    from restorer.training import loop
    from restorer.training.checkpoints import checkpoint_with_best, keep_if_best

    state = {"best": best}

    def step(s: int) -> tuple[torch.Tensor, list[str]]:
        g = loop.step_generator(cfg.seed, 77_777, s)
        pick = fit_idx[torch.randint(0, len(fit_idx), (cfg.batch,), generator=g)]
        gray, feats, ab = _batch(cached, pick)
        if bool(torch.rand((), generator=g) < 0.5):
            gray, ab, feats = gray.flip(-1), ab.flip(-1), {k: v.flip(-1) for k, v in feats.items()}
        with loop.seeded(cfg.seed, 55_555, s):  # dropout masks
            return prior_loss(model, gray, feats, ab, weights), []

    def evaluate(s: int) -> str:
        ce = held_out_ce(model, cached, hold_idx, weights=weights)
        state["best"] = keep_if_best(model, stage_dir, state["best"], ce, s, "ce")
        return f"{ce:.5f}"

    def status(losses: list[float], rate: float) -> str:
        best = state["best"]
        return f"prior loss {np.mean(losses[-50:]):.3f} held-out best {best['ce']:.3f} @ {best['step']}"

    model.train()
    spec = loop.Loop("prior", ["step", "loss", "lr", "seconds", "heldout_ce"], step,
                     save=lambda s: checkpoint_with_best(model, opt, s, stage_dir, cfg, state["best"]),
                     status=status, evaluate=evaluate)
    summary = loop.run(spec, opt, cfg, start, stage_dir, show)
    losses, best = summary.pop("losses"), state["best"]
    return {"stage": "prior", **summary, "best_step": best["step"], "heldout_ce": round(best["ce"], 5),
            "final_loss": loop.final_loss(losses)}


def run_request(request: TrainRequest) -> dict[str, Any]:
    """``restorer train --stage prior``, with the prior's defaults where the user gave none."""
    cfg = PriorConfig(steps=request.steps, batch=request.batch or 16, lr=request.lr or 1e-3,
                      warmup=request.warmup or 20, seed=request.seed, checkpoint_every=request.checkpoint_every,
                      rebalance=request.rebalance, backbone=request.backbone, context=request.context,
                      global_context=request.global_context, dropout=request.dropout, jitter=request.jitter)
    return train_prior(request.data, request.out, steps=request.steps, resume=request.resume, config=cfg,
                       views=request.views or 10, progress=request.progress)
