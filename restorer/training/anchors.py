"""``restorer train --preset anchors``: the DISCO engine's network (:mod:`restorer.models.anchors.model`).

One run trains every part, each by its own loss (the paper's Sec. 4.4, adapted as the model docstring says):

* superpixels: Yang et al.'s self-reconstruction of the true a*b* (/110) and of the pixels' positions
  (``compactness``), weight ``w_spix``, during the first ``spix_steps`` steps; then SPixNet is frozen (DISCO
  pre-trains and freezes it; the other losses never reach it, so this is the same in one loop);
* colour modeler: cross-entropy of every primitive's bins against its soft-encoded pooled true colour,
  with class rebalancing (``rebalance``, Zhang et al.'s lambda; DISCO: 0.5);
* colour generator: anchors located by k-means on the primitives' true colours (between ``anchors_min``
  and ``anchors_max`` clusters, plus up to ``extra_anchors`` random primitives, so the generator knows
  anchors where a user puts them), given their true colours (teacher forcing); L1 of every primitive's
  spread colour against its pooled truth (/110), weight ``w_gen``;
* refinement: L1 of the pixels' a*b* against the truth (/110), weight ``w_ref``.

Data: ``views`` augmented 256x256 views per training photo (the crops, flips and scale jitter of
:func:`restorer.training.augment.augmented_views`), stored once as 8-bit gray and a*b* rounded to integers at
the model's pixel level (128x128), and the frozen EfficientNet-Lite0 pyramid of the 256x256 view
(``out/anchors_cache/KEY``, :mod:`restorer.training.cache`: keyed by the dataset's records and the
settings). A share of the training photos (by a hash of the name) is held out inside the training split for
early stopping; the dataset's development split is never read.

Exact resume: every random draw of step ``s`` (batch, flip, anchor counts, extra anchors, dropout) comes
from generators seeded by (seed, s) (:mod:`restorer.training.loop`); checkpoints
(:mod:`restorer.training.checkpoints`) hold the weights, AdamW's moments and the best so far.

Writes ``out/anchors/``: ``checkpoint-NNNNNN/``, ``best/``, ``final/`` (= best), ``log.csv`` and ``loss.png``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from restorer.training import augment
from restorer.training.export import export_anchors
from restorer.training.registry import Stage, Trainer, TrainRequest

NAMES = ("s8", "s16", "s32", "head")


@dataclass(frozen=True)
class AnchorsConfig:
    steps: int
    batch: int = 8
    lr: float = 5e-4
    warmup: int = 50
    weight_decay: float = 0.01
    rebalance: float = 0.5
    holdout: float = 0.15
    eval_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    compactness: float = 0.01
    spix_steps: int = 400  # SPixNet trains this many steps, then is frozen
    anchors_min: int = 4
    anchors_max: int = 12
    extra_anchors: int = 2
    w_spix: float = 10.0
    w_gen: float = 10.0
    w_ref: float = 10.0
    model: tuple = ()  # DiscoModel keyword overrides, as (key, value) pairs (tests build tiny models)


def prepare_cache(data: Path, cache: Path, *, views: int = 8, seed: int = 0, features: Any = None,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Gray (uint8), a*b* (int8) and the EfficientNet pyramid (float16) of ``views`` views per training photo,
    computed once in ``cache/KEY`` (:func:`restorer.training.cache.cache_key` of the training records, views and
    seed). ``features`` (tests) replaces EfficientNet: anything with ``pyramid``."""
    from restorer.training.cache import cache_key, stored, training_records

    records = training_records(data)
    key = cache_key(records, views=views, seed=seed, what="anchors-v1")

    def build() -> tuple[dict, dict]:
        from restorer.models.mtcolor.features import EfficientNetFeatures
        from restorer.models.mtcolor.spaces import resize, rgb_to_ab
        from restorer.training.dataset.records import load_record

        net = features or EfficientNetFeatures(input_size=augment.VIEW)
        rng = np.random.default_rng(seed)
        out: dict[str, list] = {"gray": [], "ab": [], "record": []}
        for i, rec in enumerate(records):
            rgb, labels = load_record(data, rec)
            for crop, luma, _ in augment.augmented_views(rgb, labels, rng, views):
                half = (luma.shape[-2] // 2, luma.shape[-1] // 2)  # the model's pixel level
                out["gray"].append((resize(luma, half)[0] * 255).round().clamp(0, 255).to(torch.uint8))
                out["ab"].append(resize(rgb_to_ab(crop), half)[0].round().clamp(-127, 127).to(torch.int8))
                out["record"].append(torch.tensor(i))
                for name, t in net.pyramid(luma).items():
                    out.setdefault(name, []).append(t[0].half())
            if progress:
                progress(i + 1, len(records))
        meta = {"records": [r["name"] for r in records], "views": views, "seed": seed}
        return {k: torch.stack(v) for k, v in out.items()}, meta

    return stored(Path(cache) / key, "anchors", build)


def batch_of(cached: dict, idx: torch.Tensor, flip: bool = False) -> tuple[torch.Tensor, dict, torch.Tensor]:
    gray = cached["gray"][idx].float() / 127.5 - 1
    ab = cached["ab"][idx].float()
    feats = {n: cached[n][idx].float() for n in NAMES if n in cached}
    if flip:
        gray, ab, feats = gray.flip(-1), ab.flip(-1), {k: v.flip(-1) for k, v in feats.items()}
    return gray, feats, ab


def true_anchors(token_ab: torch.Tensor, counts: list[int], extra: list[list[int]]) -> torch.Tensor:
    """(B, N, 2) true primitive colours -> (B, N) bool: one anchor per k-means cluster of each picture's colours
    (``counts[b]`` clusters), plus the ``extra[b]`` primitives."""
    from restorer.models.anchors.locator import locate
    from restorer.models.anchors.model import AB_NORM

    mask = torch.zeros(token_ab.shape[:2], dtype=torch.bool)
    for b in range(token_ab.shape[0]):
        mask[b, locate(token_ab[b].float() / AB_NORM, counts[b])] = True
        mask[b, extra[b]] = True
    return mask


def losses(model, gray, feats, ab, anchors_of: Callable[[torch.Tensor], torch.Tensor], cfg: AnchorsConfig,
           weights: torch.Tensor | None, spix: bool = True) -> dict[str, torch.Tensor]:
    """Every loss of one batch (see the module docstring) and their weighted ``total``; ``spix`` False: the
    superpixels are frozen (computed without gradient, their loss reported but not in the total)."""
    from restorer.models.anchors.model import AB_NORM
    from restorer.models.anchors.superpixels import sp_pool, superpixel_loss
    from restorer.models.mtcolor.prior import soft_encode

    cell = model.pixel_cell
    with torch.set_grad_enabled(spix and torch.is_grad_enabled()):
        assoc = model.associate(gray)
        spix_loss = superpixel_loss(assoc, ab / AB_NORM, cell, cfg.compactness)
    tokens = model.tokens(gray, feats, assoc)
    pooled = sp_pool(assoc.detach(), ab, cell)  # (B, 2, gy, gx)
    true = pooled.flatten(2).transpose(1, 2)  # (B, N, 2)
    logits, _ = model.model_colours(tokens)
    target = soft_encode(pooled, model.centers)  # (B, Q, gy, gx)
    logp = F.log_softmax(logits.float(), dim=-1).transpose(1, 2).reshape(target.shape)
    ce = -(target * logp).sum(1)
    if weights is not None:
        ce = ce * weights.to(ce)[target.argmax(1)]
    mask = anchors_of(true.detach())
    spread = model.spread(model.affinity(tokens, mask), true.detach())
    gen = (spread - true).abs().mean() / AB_NORM
    pixels = model.refine(gray, feats, assoc, spread)
    ref = (pixels - ab).abs().mean() / AB_NORM
    total = ce.mean() + cfg.w_gen * gen + cfg.w_ref * ref + (cfg.w_spix * spix_loss if spix else 0)
    return {"total": total, "spix": spix_loss, "ce": ce.mean(), "gen": gen, "ref": ref}


def _anchor_draws(g: torch.Generator, b: int, n: int, cfg: AnchorsConfig) -> tuple[list[int], list[list[int]]]:
    counts = torch.randint(cfg.anchors_min, cfg.anchors_max + 1, (b,), generator=g).tolist()
    extra = [torch.randint(0, n, (int(torch.randint(0, cfg.extra_anchors + 1, (), generator=g)),),
                           generator=g).tolist() for _ in range(b)]
    return counts, extra


def build_model(cached: dict, fit_idx: torch.Tensor, cfg: AnchorsConfig):
    from restorer.models.anchors.model import DiscoModel
    from restorer.models.mtcolor.prior import bins_for

    small = F.avg_pool2d(cached["ab"][fit_idx].float(), 4)
    torch.manual_seed(cfg.seed)
    return DiscoModel(bins=bins_for(small), **dict(cfg.model))


def train_anchors(data: Path, out: Path, *, steps: int, resume: bool = False, config: AnchorsConfig | None = None,
                  views: int = 8, features: Any = None, progress: bool = False) -> dict[str, Any]:
    """Train the anchors network; returns a summary (steps, seconds, best step, held-out loss, paths)."""
    from restorer.models.mtcolor.prior import rebalancing
    from restorer.training.cache import cache_progress, split_held_out
    from restorer.training.checkpoints import finish, fresh_or_resumed

    cfg = AnchorsConfig(**{**asdict(config or AnchorsConfig(steps=steps)), "steps": steps})
    out = Path(out)
    stage_dir = out / "anchors"
    stage_dir.mkdir(parents=True, exist_ok=True)
    with cache_progress(progress, "anchors feature cache, photos") as tick:
        cached = prepare_cache(data, out / "anchors_cache", views=views, seed=cfg.seed, features=features,
                               progress=tick)
    fit_idx, hold_idx = split_held_out(cached, cfg.holdout, data)
    model = build_model(cached, fit_idx, cfg)
    weights = rebalancing(F.avg_pool2d(cached["ab"][fit_idx].float(), 8), model.centers, cfg.rebalance)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, best = fresh_or_resumed(stage_dir, resume, model, opt, cfg, {"score": float("inf"), "step": 0}, "anchors")
    summary = _loop(model, opt, cached, fit_idx, hold_idx, cfg, start, best, stage_dir, progress, weights)
    return {**summary, "final": str(finish(stage_dir, "anchors (DISCO): total loss"))}


@torch.no_grad()
def held_out_losses(model, cached: dict, idx: torch.Tensor, cfg: AnchorsConfig, weights, chunk: int = 32) -> dict:
    """Mean losses over the held-out views, with a fixed anchor count (8) and no extra anchors."""
    was = model.training
    model.eval()
    sums: dict[str, float] = {}
    for i in range(0, len(idx), chunk):
        part = idx[i:i + chunk]
        gray, feats, ab = batch_of(cached, part)
        n = len(part)
        got = losses(model, gray, feats, ab, lambda t, n=n: true_anchors(t, [8] * n, [[]] * n),
                     cfg, weights, spix=False)
        for k, v in got.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(part)
    model.train(was)
    return {k: v / len(idx) for k, v in sums.items()}


def _loop(model, opt, cached, fit_idx, hold_idx, cfg: AnchorsConfig, start: int, best: dict, stage_dir: Path,
          show: bool, weights) -> dict:
    from restorer.training import loop
    from restorer.training.checkpoints import checkpoint_with_best, keep_if_best

    n_tokens = (cached["gray"].shape[-2] // model.pixel_cell) * (cached["gray"].shape[-1] // model.pixel_cell)
    state = {"best": best}

    def step(s: int) -> tuple[torch.Tensor, list[str]]:
        g = loop.step_generator(cfg.seed, 91_919, s)
        pick = fit_idx[torch.randint(0, len(fit_idx), (cfg.batch,), generator=g)]
        flip = bool(torch.rand((), generator=g) < 0.5)
        counts, extra = _anchor_draws(g, cfg.batch, n_tokens, cfg)
        gray, feats, ab = batch_of(cached, pick, flip)
        with loop.seeded(cfg.seed, 37_373, s):  # dropout masks
            got = losses(model, gray, feats, ab, lambda t: true_anchors(t, counts, extra), cfg, weights,
                         spix=s < cfg.spix_steps)
        return got["total"], [f"{float(got[k].detach()):.5f}" for k in ("spix", "ce", "gen", "ref")]

    def evaluate(s: int) -> str:
        parts = held_out_losses(model, cached, hold_idx, cfg, weights)
        state["best"] = keep_if_best(model, stage_dir, state["best"], parts["total"], s, "score",
                                     parts={k: round(v, 5) for k, v in parts.items()})
        return f"{parts['total']:.5f}"

    def status(totals: list[float], rate: float) -> str:
        best = state["best"]
        return f"anchors loss {np.mean(totals[-50:]):.3f} held-out best {best['score']:.3f} @ {best['step']}"

    model.train()
    spec = loop.Loop("anchors", ["step", "loss", "lr", "seconds", "spix", "ce", "gen", "ref", "heldout"], step,
                     save=lambda s: checkpoint_with_best(model, opt, s, stage_dir, cfg, state["best"]),
                     status=status, evaluate=evaluate)
    summary = loop.run(spec, opt, cfg, start, stage_dir, show)
    totals, best = summary.pop("losses"), state["best"]
    return {"stage": "anchors", **summary, "best_step": best["step"], "heldout": round(best["score"], 5),
            "heldout_parts": best.get("parts"), "final_loss": loop.final_loss(totals)}


def _run(request: TrainRequest) -> dict[str, Any]:
    cfg = AnchorsConfig(steps=request.steps, batch=request.batch or 8, lr=request.lr or 5e-4,
                        warmup=request.warmup or 50, seed=request.seed, checkpoint_every=request.checkpoint_every,
                        rebalance=request.rebalance)
    return train_anchors(request.data, request.out, steps=request.steps, resume=request.resume, config=cfg,
                         views=request.views or 8, progress=request.progress)


TRAINER = Trainer("the anchors network", {None: Stage(_run, export_anchors)})
