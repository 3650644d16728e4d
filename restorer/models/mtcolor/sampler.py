"""Multi-instance sampling (Sec. III-C, Eqs. 8-9) on a DDIM schedule with classifier-free guidance.

1. All samples start from the same initial noise z_T (seeded per shot by the engine).
2. For the first ``round(alpha * steps)`` steps each instance is denoised with only its own mask and
   text (all instances in one batch; with ``crop`` on a box of ``margin`` latent cells around its mask),
   the global sample alongside with every condition.
3. The latents are fused by the masks (:func:`fuse`), then the remaining steps run globally (Eq. 9).

DDIM is written out (:func:`ddim_step`) so that each sample draws its eta-noise from its own generator:
an instance gets the same noise batched or alone, and a frame the same as any other frame of its shot.
The schedule comes from diffusers' ``DDIMScheduler``. With ``center_noise`` each sample starts from z_T
less its per-channel mean, which a model cannot tell from a global colour cast (the measurement:
bench/RESULTS.md, "MT-Color sampling").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Eps = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z, t) -> guided eps


@dataclass(frozen=True)
class Schedule:
    """DDIM timesteps (descending) and cumulative alphas (``alphas[t]``; ``final`` after the last step)."""

    timesteps: list[int]
    alphas: torch.Tensor
    final: float

    @staticmethod
    def ddim(scheduler_config: dict, steps: int) -> "Schedule":
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(scheduler_config)
        sched.set_timesteps(steps)
        return Schedule([int(t) for t in sched.timesteps], sched.alphas_cumprod.double(),
                        float(sched.final_alpha_cumprod))

    def alpha_at(self, index: int) -> float:
        """alpha-bar of the latent before step ``index`` (``index == len(timesteps)``: after the last)."""
        return float(self.alphas[self.timesteps[index]]) if index < len(self.timesteps) else self.final

    def prev_alpha(self, index: int) -> float:
        return float(self.alphas[self.timesteps[index + 1]]) if index + 1 < len(self.timesteps) else self.final


def ddim_step(z: torch.Tensor, eps: torch.Tensor, a_t: float, a_prev: float, eta: float,
              noise: torch.Tensor | None) -> torch.Tensor:
    """One DDIM update (Song et al., Eq. 12) from alpha-bar a_t to a_prev."""
    x0 = (z - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
    sigma = eta * ((1 - a_prev) / (1 - a_t)) ** 0.5 * (1 - a_t / a_prev) ** 0.5
    out = a_prev ** 0.5 * x0 + max(1 - a_prev - sigma ** 2, 0.0) ** 0.5 * eps
    return out if sigma == 0 or noise is None else out + sigma * noise


def partition(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft masks (R, h, w) -> (visible instance weights (R, h, w), background m_g (h, w)), summing to 1.

    Later instances are on top: each takes as much of a cell as it covers, up to what the
    instances above it left."""
    rest = torch.ones(masks.shape[-2:], dtype=masks.dtype, device=masks.device)
    visible = torch.zeros_like(masks)
    for i in reversed(range(masks.shape[0])):
        visible[i] = torch.minimum(masks[i].clamp(0, 1), rest)
        rest = (rest - visible[i]).clamp_min(0)
    return visible, rest


def fuse(z_g: torch.Tensor, z_i: torch.Tensor, masks: torch.Tensor, beta: float, form: str) -> torch.Tensor:
    """Eq. 8. z_g (C, h, w); z_i (R, C, h, w); masks (R, h, w) in [0, 1]; form 'literal', 'convex' or 'vp'.

    ``literal`` is Eq. 8 as printed, ``beta m_g z_g + sum_i m_i z_i``: the background keeps a fifth of the
    signal and of the noise the next step expects, and comes out grey. ``convex`` divides by the weights'
    sum: all samples share z_T, so a weighted mean keeps the noise's scale. ``vp`` divides by the weights'
    norm, right for independent noises (a border cell shared by two instances grows by up to sqrt 2).
    The masks are first a partition of unity (:func:`partition`), so overlaps count once.
    """
    m, m_g = partition(masks.to(z_g.dtype))
    fused = beta * m_g * z_g + (m[:, None] * z_i).sum(0)
    if form == "literal":
        return fused
    if form == "convex":
        return fused / (beta * m_g + m.sum(0)).clamp_min(1e-8)
    if form != "vp":
        raise ValueError(f"fusion must be 'literal', 'convex' or 'vp', not {form!r}")
    norm = (beta ** 2 * m_g ** 2 + (m ** 2).sum(0)).sqrt()
    return fused / norm.clamp_min(1e-8)


def crop_boxes(masks: torch.Tensor, margin: int, multiple: int) -> list[tuple[int, int, int, int]]:
    """One (y, x, h, w) box per instance around its mask, all of the same size, inside the frame."""
    H, W = masks.shape[-2:]
    spans = [_span(m, margin) for m in masks]
    h = min(H, _round_up(max(s[1] - s[0] for s in spans), multiple))
    w = min(W, _round_up(max(s[3] - s[2] for s in spans), multiple))
    boxes = []
    for y0, y1, x0, x1 in spans:
        y = min(max((y0 + y1 - h) // 2, 0), H - h)
        x = min(max((x0 + x1 - w) // 2, 0), W - w)
        boxes.append((y, x, h, w))
    return boxes


def _span(mask: torch.Tensor, margin: int) -> tuple[int, int, int, int]:
    ys, xs = (mask > 0).nonzero(as_tuple=True)
    if ys.numel() == 0:
        return 0, 1, 0, 1
    H, W = mask.shape
    return (max(int(ys.min()) - margin, 0), min(int(ys.max()) + 1 + margin, H),
            max(int(xs.min()) - margin, 0), min(int(xs.max()) + 1 + margin, W))


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


@dataclass(frozen=True)
class SamplingOptions:
    """What the CLI can set (steps, guidance, alpha, beta, fusion) and the crop strategy."""

    steps: int = 20
    guidance: float = 5.0
    eta: float = 0.0
    alpha: float = 0.2
    beta: float = 0.2
    fusion: str = "convex"
    crop: bool = True
    margin: int = 2
    center_noise: bool = False  # remove each sample's spatial mean from its initial noise (see below)
    prior_strength: float = 0.0  # with a colour prior: the share of the steps the global sample runs from it
    multiple: int = 4  # latent size multiple the U-Net needs (2 ** (levels - 1))


def denoise(eps_fn: Eps, z: torch.Tensor, schedule: Schedule, steps: range, eta: float,
            generators: list[torch.Generator]) -> torch.Tensor:
    """Run DDIM steps ``steps`` (indices into the schedule) on a batch; row b draws from generators[b]."""
    for i in steps:
        t = schedule.timesteps[i]
        eps = eps_fn(z, torch.tensor(t, device=z.device))
        noise = None
        if eta > 0:
            noise = torch.stack([torch.randn(z.shape[1:], generator=g, dtype=torch.float32)
                                 for g in generators]).to(z.device, z.dtype)
        z = ddim_step(z, eps, float(schedule.alphas[t]), schedule.prev_alpha(i), eta, noise)
    return z


def sample(global_eps: Eps, instance_eps: Eps, z_T: torch.Tensor, masks: torch.Tensor, schedule: Schedule,
           opts: SamplingOptions, seed: int, ids: list[int] | None = None,
           x0_prior: torch.Tensor | None = None, layers: dict | None = None) -> torch.Tensor:
    """Multi-instance sampling of one frame.

    Args:
        global_eps: guided eps for the global sample with every condition (batch of 1).
        instance_eps: guided eps for all instances batched, row i with only instance i's mask
            and text, on the boxes of :func:`instance_boxes` (crops when ``opts.crop``).
        z_T: (1, C, h, w) initial noise, shared by all samples.
        masks: (R, h, w) instance coverage at the latent grid.
        ids: the instances' indices in the shot (they seed each instance's eta-noise).
        x0_prior: (1, C, h, w) a guess of z_0 (tiny's colour prior): the global sample starts from it,
            noised with z_T to the level of step ``round((1 - opts.prior_strength) * steps)`` (SDEdit,
            Meng et al. 2022); strength 0 keeps it as it is. Instances still start from z_T.
        layers: when given and the instances are denoised to the end (alpha 1), ``layers["global"]`` is
            set to the global sample before the fusion: the frame without its instances.

    Returns:
        (1, C, h, w) z_0.
    """
    n = len(schedule.timesteps)
    k = round(opts.alpha * n) if masks.shape[0] else 0
    g_global = torch.Generator().manual_seed(seed)
    z = z_T = centered(z_T) if opts.center_noise else z_T
    start = 0 if x0_prior is None else n - round(opts.prior_strength * n)
    if k:
        start = min(start, k)  # the fusion at step k needs the global latent at step k's level
    z = z_T if x0_prior is None else noised(x0_prior.to(z_T), z_T, schedule.alpha_at(start))
    ran = bool(k) and (k < n or bool((partition(masks)[1] > 0).any()))  # else the global has no weight
    if ran:
        z = denoise(global_eps, z, schedule, range(start, k), opts.eta, [g_global])
    if layers is not None and k == n and (ran or (x0_prior is not None and start == n)):
        layers["global"] = z  # complete: no global step follows the fusion
    if k:
        z_i = run_instances(instance_eps, z_T, masks, schedule, range(k), opts, seed, ids)
        z = fuse(z[0], z_i, masks, opts.beta, opts.fusion)[None]
    return denoise(global_eps, z, schedule, range(k if k else start, n), opts.eta, [g_global])


def noised(x0: torch.Tensor, noise: torch.Tensor, alpha: float) -> torch.Tensor:
    """q(z_t | x0) with the given noise: sqrt(alpha-bar) x0 + sqrt(1 - alpha-bar) noise."""
    return alpha ** 0.5 * x0 + (1 - alpha) ** 0.5 * noise


def centered(z: torch.Tensor) -> torch.Tensor:
    """z (B, C, h, w) minus its per-sample, per-channel spatial mean."""
    return z - z.mean(dim=(-2, -1), keepdim=True)


def instance_boxes(masks: torch.Tensor, opts: SamplingOptions) -> list[tuple[int, int, int, int]]:
    """The boxes instances are denoised on: crops, or the whole frame."""
    if opts.crop:
        return crop_boxes(masks, opts.margin, opts.multiple)
    return [(0, 0, *masks.shape[-2:])] * masks.shape[0]


def run_instances(instance_eps: Eps, z_T: torch.Tensor, masks: torch.Tensor, schedule: Schedule,
                  steps: range, opts: SamplingOptions, seed: int, ids: list[int] | None = None) -> torch.Tensor:
    """Phase 1 for all instances in one batch; returns full-frame latents (R, C, h, w)."""
    boxes = instance_boxes(masks, opts)
    z = torch.cat([z_T[..., y:y + h, x:x + w] for y, x, h, w in boxes])
    if opts.center_noise:
        z = centered(z)
    ids = list(range(len(boxes))) if ids is None else ids
    gens = [torch.Generator().manual_seed(seed + 1 + i) for i in ids]
    z = denoise(instance_eps, z, schedule, steps, opts.eta, gens)
    full = z_T.repeat(len(boxes), 1, 1, 1)  # outside its box an instance's weight is zero
    for i, (y, x, h, w) in enumerate(boxes):
        full[i, :, y:y + h, x:x + w] = z[i]
    return full
