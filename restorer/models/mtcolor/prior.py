"""tiny's automatic colour prior: a distribution over a*b* bins per grid cell, from the gray picture.

Why it exists: tiny's diffusion base, trained from scratch on a few hundred photos, barely
knows colour from a gray picture (its x0 at t = 999 has the error of predicting no colour;
``restorer/weights/tiny/RECIPE.md``), so without texts it added only faint colour. This head
reads what a frozen ImageNet classifier already knows, at several scales (EfficientNet-Lite0
blocks at 1/8, 1/16 and 1/32 of the picture and its last convolution: texture as well as
semantics), and predicts, per cell of tiny's working grid, a distribution over a*b* bins, as
in Zhang et al., "Colorful Image Colorization" (ECCV 2016): cross-entropy against soft-encoded
targets, decoded by the annealed mean (the mean of the distribution sharpened by a temperature
``T``; T = 1 is the plain mean, which greys out every uncertain cell, small T tends to the mode).

The engine starts the global sample's DDIM from this prior (``prior_strength``: the share of
the steps that run from the noised prior; 0 gives the prior itself), so instances keep their
own diffusion, seeded from pure noise, and only the picture outside every instance mask takes
the prior's colour.

Weights: ``prior/`` beside ``unet/ controlnet/ adapter/`` in a tiny weights folder
(``config.json`` + safetensors, as diffusers models are). Trained by ``restorer train --stage
prior`` (:mod:`restorer.training.prior`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from restorer.models.mtcolor.features import PYRAMIDS

# EfficientNet-Lite0's channels at 1/8, 1/16 and 1/32, and of its last convolution
PYRAMID = PYRAMIDS["efficientnet-lite0"]
DILATIONS = (2, 4, 8, 1)  # the context blocks' dilations, in order (at the 32-cell grid 8 spans a quarter of it)
BIN = 10.0          # a*b* bin width
AB_RANGE = 110.0    # bins cover [-110, 110)² (only those the training data reaches are kept)
SIGMA = 5.0         # soft encoding: Gaussian over the 5 nearest bins


class ColourPrior(ModelMixin, ConfigMixin):
    """(gray (B, 1, h, w) in [-1, 1], pyramid features) -> logits (B, Q, h, w) over ``bins``.

    ``backbone``: the feature network the pyramid comes from (``efficientnet-lite0`` or ``-lite2``;
    the engine computes it). ``context``: residual blocks of dilated 3x3 convolutions (dilations
    :data:`DILATIONS`) after the first layer, so that a cell sees the picture around it;
    ``global_context``: the mean of the last convolution over the picture, projected and added to
    every cell (what the whole scene is). With 0 and False the head is the first shipped one.
    """

    @register_to_config
    def __init__(self, bins: list[list[float]], pyramid: list[list] | None = None, proj: int = 32,
                 hidden: int = 64, dropout: float = 0.3, backbone: str = "efficientnet-lite0", context: int = 0,
                 global_context: bool = False):
        super().__init__()
        pyramid = [list(p) for p in (pyramid or PYRAMIDS[backbone])]
        self.names = [name for name, _ in pyramid]
        self.projections = nn.ModuleDict({name: nn.Conv2d(ch, proj, 1) for name, ch in pyramid})
        self.gray_conv = nn.Conv2d(1, 16, 3, padding=1)
        self.out = nn.Sequential(nn.GELU(), nn.Conv2d(proj * len(pyramid) + 16, hidden, 3, padding=1), nn.GELU(),
                                 nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, len(bins), 1))
        self.context_blocks = nn.ModuleList(
            nn.Sequential(nn.GELU(), nn.Conv2d(hidden, hidden, 3, padding=d, dilation=d))
            for d in (DILATIONS * (1 + context // len(DILATIONS)))[:context])
        self.scene_proj = nn.Linear(dict(pyramid)["head"], hidden) if global_context else None
        self.register_buffer("centers", torch.tensor(bins, dtype=torch.float32), persistent=False)

    def forward(self, gray: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        # a 1x1 convolution commutes with bilinear resizing, so projecting before the resize to the
        # grid gives the same as after it, for less work
        size = gray.shape[-2:]
        drop = self.config.dropout
        parts = [F.interpolate(self.projections[n](F.dropout(features[n].to(gray.dtype), drop, self.training)),
                               size=size, mode="bilinear", align_corners=False) for n in self.names]
        x = self.out[1](self.out[0](torch.cat(parts + [self.gray_conv(gray)], dim=1)))
        if self.scene_proj is not None:
            scene = F.dropout(features["head"].to(gray.dtype).mean((-2, -1)), drop, self.training)
            x = x + self.scene_proj(scene)[..., None, None]
        for block in self.context_blocks:
            x = x + block(x)
        return self.out[5](self.out[4](self.out[3](self.out[2](x))))

    def decode(self, logits: torch.Tensor, temperature: float) -> torch.Tensor:
        """Annealed mean: (B, Q, h, w) logits -> (B, 2, h, w) a*b*."""
        p = F.softmax(logits.float() / temperature, dim=1)
        return torch.einsum("bqhw,qc->bchw", p, self.centers.float().to(p.device))


def prior_backbone(prior) -> str:
    """The feature network a prior (torch or ONNX Runtime stand-in) reads: its config's ``backbone``, or
    EfficientNet-Lite0 for the first shipped prior, whose config predates the key."""
    return getattr(getattr(prior, "config", None), "backbone", "efficientnet-lite0")


def bins_for(ab: torch.Tensor) -> list[list[float]]:
    """The centres of the a*b* bins that ``ab`` (N, 2, h, w) reaches, in a fixed order."""
    n = int(2 * AB_RANGE / BIN)
    idx = ((ab.float().clamp(-AB_RANGE, AB_RANGE - 1e-3) + AB_RANGE) // BIN).long()
    used = torch.bincount((idx[:, 0] * n + idx[:, 1]).flatten(), minlength=n * n).nonzero().flatten()
    return [[float((u // n) * BIN - AB_RANGE + BIN / 2), float((u % n) * BIN - AB_RANGE + BIN / 2)]
            for u in used.tolist()]


def soft_encode(ab: torch.Tensor, centers: torch.Tensor, k: int = 5) -> torch.Tensor:
    """(N, 2, h, w) a*b* -> (N, Q, h, w) target distribution: a Gaussian (``SIGMA``) over the k nearest bins."""
    n, _, h, w = ab.shape
    x = ab.float().permute(0, 2, 3, 1).reshape(-1, 2)
    dist, near = torch.cdist(x, centers.float()).topk(min(k, centers.shape[0]), largest=False)
    weight = torch.exp(-dist ** 2 / (2 * SIGMA ** 2))
    target = torch.zeros(x.shape[0], centers.shape[0]).scatter_(1, near, weight / weight.sum(1, keepdim=True))
    return target.view(n, h, w, -1).permute(0, 3, 1, 2)


def prior_loss(model: ColourPrior, gray: torch.Tensor, features: dict[str, torch.Tensor],
               ab: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the predicted distribution against the soft-encoded true a*b*; ``weights`` (Q,)
    weigh each cell by its true colour's nearest bin (class rebalancing, :func:`rebalancing`)."""
    logp = F.log_softmax(model(gray, features), dim=1)
    target = soft_encode(ab, model.centers)
    ce = -(target * logp).sum(1)
    if weights is not None:
        ce = ce * weights.to(ce)[target.argmax(1)]
    return ce.mean()


def rebalancing(ab: torch.Tensor, centers: torch.Tensor, lam: float) -> torch.Tensor | None:
    """Zhang et al.'s class rebalancing: weight 1 / ((1 - lam) p + lam / Q) per bin, p the bins' share of
    the training cells, normalised to a mean weight of 1 over them; ``lam`` = 1 (or more) gives None."""
    if lam >= 1:
        return None
    nearest = torch.cdist(ab.float().permute(0, 2, 3, 1).reshape(-1, 2), centers.float()).argmin(1)
    p = torch.bincount(nearest, minlength=centers.shape[0]).float()
    p = p / p.sum()
    w = 1 / ((1 - lam) * p + lam / centers.shape[0])
    return w / (p * w).sum()
