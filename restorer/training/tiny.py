"""``restorer train --preset tiny --stage 0|1|2``: the training stages of MT-Color (Sec. IV-A) for tiny.

Each stage starts from the previous stage's ``final/`` weights in the same ``out`` folder:

- **0** (tiny only, it has no pretrained base): the base U-Net and the global prompt projection
  learn grayscale -> a*b* chroma noise prediction; no instance tokens, no ControlNet.
- **1**: the instance mask and text guidance module (instance encoder + gated branches) on the
  frozen base.
- **2**: ControlNet (initialised from the stage-0 U-Net, as ControlNet is, zero convolutions at
  zero) and PMAM; the instance module and the base stay frozen.

Which parameters a stage trains: :mod:`.model`; the loss: :mod:`.losses`; the batches (condition dropout
and counter colours): :mod:`.augment`, :mod:`.counter`; the frozen features: :mod:`.cache`. AdamW with
the shared schedule (:func:`restorer.training.loop.lr_at`; a departure from the paper's constant rate,
for runs of a few thousand steps). Condition dropout: the instance masks and texts become null tokens
with probability ``p_drop`` (0.5), independently the global prompt the empty text with probability 0.5;
counter colours (stages 1-2) with probability ``p_counter``, and a sample with a counter-coloured
instance gets the empty global prompt (the global text would contradict it).

The colour prior (``--stage prior``) is :mod:`restorer.training.prior`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from restorer.errors import InputError
from restorer.training import augment
from restorer.training.export import export_prior, export_weights
from restorer.training.prior import run_request
from restorer.training.registry import Stage, Trainer, TrainRequest

log = logging.getLogger(__name__)


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


def train(preset: str | Path, data: Path, out: Path, *, stage: int, steps: int, resume: bool = False,
          init: Path | None = None, cache: Path | None = None, config: TrainConfig | None = None,
          views: int = 8, text_encoder: Any = None, options: dict[str, Any] | None = None,
          progress: bool = False) -> dict[str, Any]:
    """Train one stage; returns a summary (steps, seconds, final losses, paths).

    Args:
        preset: preset name or YAML path (its ``options`` build the model); ``options`` overrides.
        data: a dataset folder from :func:`restorer.training.dataset.build.build_dataset`.
        out: run folder; this stage writes ``out/stageN/`` (checkpoints, ``final/``, ``log.csv``,
            ``loss.png``) and starts from ``out/stage{N-1}/final`` unless ``init`` is given.
        stage: 0 (tiny's base), 1 (instance module) or 2 (ControlNet + PMAM).
        steps: total optimizer steps of the stage.
        resume: continue from the stage's latest checkpoint (same config), exactly.
        cache: frozen-feature cache folder (default ``out/cache``; one sub-folder per dataset and settings).

    Raises:
        InputError: bad stage, missing previous stage, or a checkpoint from another config.
    """
    from restorer.models.mtcolor import tiny
    from restorer.training.cache import cache_progress, prepare_cache
    from restorer.training.log import draw_loss_plot
    from restorer.training.model import preset_options

    if stage not in (0, 1, 2):
        raise InputError(f"stage must be 0, 1 or 2, not {stage}")
    opts = {**preset_options(preset), **(options or {})}
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
    shutil.rmtree(stage_dir / "final", ignore_errors=True)
    tiny.save(model, stage_dir / "final")
    draw_loss_plot(stage_dir / "log.csv", stage_dir / "loss.png", title=f"tiny stage {stage}")
    return {**summary, "final": str(stage_dir / "final")}


def _setup(opts, cfg: TrainConfig, out: Path, stage_dir: Path, init: Path | None, resume: bool):
    from restorer.models.mtcolor import tiny
    from restorer.training.checkpoints import resume_from, resume_point
    from restorer.training.model import build_model, trainable

    what = f"stage {cfg.stage}"
    ckpt = resume_point(stage_dir, resume, cfg, what)
    model = tiny.load(ckpt, opts) if ckpt is not None else build_model(opts, cfg.stage, out, init, cfg.seed)
    model.train()
    model.adapter.set_dense(True)  # N x N masked attention: faster than per-region loops at 16² on a CPU
    params = trainable(model, cfg.stage)
    opt = torch.optim.AdamW([p for _, p in params], lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = resume_from(ckpt, opt, params, what)["step"] if ckpt is not None else 0
    return model, params, opt, start


def _loop(model, params, opt, start: int, cfg: TrainConfig, cached, stage_dir: Path, show: bool,
          opts: dict[str, Any]) -> dict:
    from restorer.models.mtcolor import tiny
    from restorer.models.mtcolor.spaces import AB_SCALE
    from restorer.training import loop
    from restorer.training.checkpoints import checkpoint
    from restorer.training.losses import alphas, loss_step

    schedule = alphas(opts)
    prediction = tiny.scheduler_config(opts)["prediction_type"]
    scale = float(opts.get("ab_scale", AB_SCALE))

    def step(s: int) -> tuple[torch.Tensor, list[str]]:
        g = loop.step_generator(cfg.seed, cfg.stage * 10_007, s)
        batch = augment.make_batch(cached, cfg, g, counter=cfg.stage >= 1 and cfg.p_counter > 0,
                                   control=cfg.stage >= 2, ab_scale=scale)
        return loss_step(model, batch, cfg.stage, g, schedule, prediction), []

    spec = loop.Loop(f"stage {cfg.stage}", ["step", "loss", "lr", "seconds"], step,
                     save=lambda s: checkpoint(model, opt, params, s, stage_dir, cfg),
                     status=lambda losses, rate: f"stage {cfg.stage} loss {np.mean(losses[-50:]):.4f} "
                                                 f"{rate:.2f} steps/s")
    summary = loop.run(spec, opt, cfg, start, stage_dir, show)
    losses = summary.pop("losses")
    return {"stage": cfg.stage, **summary, "final_loss": loop.final_loss(losses)}


def _run(request: TrainRequest) -> dict[str, Any]:
    stage = int(request.stage)
    cfg = TrainConfig(stage=stage, steps=request.steps, batch=request.batch or 8, lr=request.lr or 1e-3,
                      warmup=request.warmup or 100, seed=request.seed, checkpoint_every=request.checkpoint_every)
    return train(request.preset, request.data, request.out, stage=stage, steps=request.steps, resume=request.resume,
                 init=request.init, config=cfg, views=request.views or 6, progress=request.progress)


def _check(preset: str) -> None:
    from restorer.training.model import preset_options

    preset_options(preset)


_STAGE = Stage(_run, export_weights)
TRAINER = Trainer("the tiny preset", {"0": _STAGE, "1": _STAGE, "2": _STAGE,
                                      "prior": Stage(run_request, export_prior)}, check=_check)
