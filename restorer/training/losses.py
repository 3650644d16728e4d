"""Tiny's loss: Eq. 10, the mean squared error of the predicted noise, on a*b*/``ab_scale`` at the grid,
timesteps uniform over the 1000 of the training schedule.

The tiny preset predicts v instead (``scheduler.prediction_type: v_prediction``; v = sqrt(ᾱ) eps -
sqrt(1 - ᾱ) x0, Salimans & Ho 2022), i.e. Eq. 10 weighted by 1/ᾱ_t: trained from scratch with plain
eps-prediction, tiny drifted every photo to magenta (RECIPE.md). The engine turns v back into eps for its
DDIM steps. The prior's loss is :func:`restorer.models.mtcolor.prior.prior_loss`, the anchors network's
:func:`restorer.training.anchors.losses`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from restorer.training.augment import Batch


def alphas(opts: dict[str, Any]) -> torch.Tensor:
    """ᾱ_t of the preset's training schedule (the one the engine samples with)."""
    from diffusers import DDPMScheduler

    from restorer.models.mtcolor import tiny

    cfg = {k: v for k, v in tiny.scheduler_config(opts).items() if k != "set_alpha_to_one"}
    return DDPMScheduler.from_config(cfg).alphas_cumprod.float()


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
