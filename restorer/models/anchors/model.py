"""DISCO at CPU size: soft superpixels, a colour modeler, anchors, and a colour generator by affinity.

The three parts of Xia et al. (TOG 2022), sized for a 2-core CPU and the few hundred photos we train on:

1. **Features and primitives.** The gray picture (long side 256, sides multiples of 32) is read by the
   frozen EfficientNet-Lite0 tiny already uses (its blocks at 1/8, 1/16, 1/32 and its last convolution:
   what things are), projected, brought to 1/4 scale beside a small trainable convolution of the gray,
   and *SP-pooled* into one token per soft superpixel (:mod:`restorer.models.anchors.superpixels`).
   The superpixels are learned, as DISCO's SPixNet (cell 16 pixels of the 256-px picture): a small
   network predicts each pixel's association to the 9 cells around it. The *pixel level* of this model
   is half the picture (128 px, cell 8 there): the association, the refinement and the output live
   there, which costs a quarter of full resolution on a CPU; the pipeline's luma-guided upsampling
   brings the chroma to the film's size, as for every engine. SPixNet is trained by Yang et al.'s
   self-reconstruction of the true a*b*
   and of the pixels' positions. Learned rather than classic (SLIC) because the association is soft, so a
   colour gradient inside a superpixel survives pooling and diffusion, and it is differentiable; the main
   losses do not reach it: it is trained by its own loss during the first steps of training, then frozen,
   as DISCO pre-trains and freezes it.
2. **Colour modeler.** A small Transformer over the tokens (sine position of each cell) predicts a
   distribution over the a*b* bins (10-unit bins the training data reaches, as tiny's prior) for every
   primitive: cross-entropy against the soft-encoded pooled true colour, with class rebalancing (Zhang et
   al.'s lambda). Its last layer's features are what the anchor locator clusters at inference
   (:mod:`restorer.models.anchors.locator`).
3. **Colour generator.** A second Transformer reads the tokens and which of them are anchors (a learned
   flag added to anchor tokens; never their colours). Every primitive then attends to the anchors:
   ``affinity = softmax_j(q_i . k_j / sqrt(d))`` over anchors j, and its colour is the affinity-weighted
   mean of the anchors' colours; an anchor keeps its own colour exactly. So the colour is linear in the
   anchors' colours through an affinity that depends only on the picture: editing one anchor moves
   exactly the primitives tied to it, by their affinity (this is DISCO's disentanglement made
   explicit; their generator reads one-hot hints and predicts bins). Trained with an L1 loss against
   the pooled true colours given the true anchors' colours (teacher forcing, anchors from k-means on
   the true colours, as the paper). A pixel-level refinement (a small CNN at half the working size on the
   gray and the diffused colour) adds a bounded residual; L1 against the true a*b*. DISCO's refinement
   uses a VGG-19 perceptual loss; no VGG weights exist here, so it is L1.

The model works at any aspect ratio: the grid is (H/16, W/16) and positions are sine codes of the cell
centres, scaled by the long side. Every method takes ``gray``: the picture at the pixel level (half the
backbone's input), (B, 1, H/2, W/2) in [-1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from restorer.models.anchors.superpixels import associate, sp_diffuse, sp_pool
from restorer.models.mtcolor.features import PYRAMIDS

AB_NORM = 110.0  # a*b* / 110 is about [-1, 1], as DISCO normalises


def sine_positions(like: torch.Tensor, dim: int) -> torch.Tensor:
    """(gy * gx, dim) sine codes of the cell centres (row-major) of a (B, C, gy, gx) grid ``like``, positions
    scaled by the long side. Made from the grid itself, so an exported graph keeps any grid size."""
    ones = torch.ones_like(like[0, 0], dtype=torch.float32)  # (gy, gx)
    yy, xx = ones.cumsum(0) - 0.5, ones.cumsum(1) - 0.5
    long = torch.maximum(yy[-1:, :1], xx[:1, -1:]) + 0.5
    yy, xx = yy / long, xx / long
    quarter = dim // 4
    freq = torch.exp(torch.arange(quarter, device=like.device, dtype=torch.float32) * (-math.log(100.0) / quarter))
    parts = []
    for coord in (yy.flatten(), xx.flatten()):
        angle = coord[:, None] * freq[None] * 2 * math.pi
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1)


class SPixNet(nn.Module):
    """Gray (B, 1, H, W) in [-1, 1] -> association logits (B, 9, H, W): a small encoder to 1/4 scale and back."""

    def __init__(self, channels: int = 24):
        super().__init__()
        c = channels
        self.down = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.LeakyReLU(0.1),
                                  nn.Conv2d(c, c, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
                                  nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
                                  nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2), nn.LeakyReLU(0.1))
        self.full = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.LeakyReLU(0.1))
        self.out = nn.Conv2d(2 * c + 8, 9, 3, padding=1)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        coarse = F.interpolate(self.down(gray), size=gray.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(torch.cat([coarse, self.full(gray)], dim=1))


def _encoder(dim: int, heads: int, layers: int, ff: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class DiscoModel(ModelMixin, ConfigMixin):
    """See the module docstring. Inputs: gray (B, 1, H, W) in [-1, 1] with H, W multiples of 32, and the
    EfficientNet pyramid of the same picture."""

    @register_to_config
    def __init__(self, bins: list[list[float]], cell: int = 16, dim: int = 64, heads: int = 4, layers: int = 3,
                 ff: int = 192, proj: int = 24, dropout: float = 0.1, feature_dropout: float = 0.3,
                 backbone: str = "efficientnet-lite0", spix_channels: int = 16, refine_channels: int = 16,
                 refine_range: float = 0.3):
        super().__init__()
        pyramid = PYRAMIDS[backbone]
        self.names = [name for name, _ in pyramid]
        self.spixnet = SPixNet(spix_channels)
        self.projections = nn.ModuleDict({name: nn.Conv2d(ch, proj, 1) for name, ch in pyramid})
        self.gray_net = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.GELU(),
                                      nn.Conv2d(16, 16, 3, padding=1), nn.GELU())
        self.token_in = nn.Sequential(nn.Linear(proj * len(pyramid) + 16 + 1, dim), nn.GELU(), nn.Linear(dim, dim))
        self.modeler = _encoder(dim, heads, layers, ff, dropout)
        self.modeler_norm = nn.LayerNorm(dim)
        self.bins_head = nn.Linear(dim, len(bins))
        self.anchor_flag = nn.Parameter(torch.zeros(dim))
        self.generator = _encoder(dim, heads, layers, ff, dropout)
        self.generator_norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        r = refine_channels
        self.refine_net = nn.Sequential(nn.Conv2d(3 + proj, r, 3, padding=1), nn.GELU(),
                                        nn.Conv2d(r, r, 3, padding=2, dilation=2), nn.GELU(),
                                        nn.Conv2d(r, 2, 3, padding=1))
        nn.init.zeros_(self.refine_net[-1].weight)
        nn.init.zeros_(self.refine_net[-1].bias)
        self.register_buffer("centers", torch.tensor(bins, dtype=torch.float32), persistent=False)

    # -- primitives -------------------------------------------------------------------------------------
    @property
    def pixel_cell(self) -> int:
        """The cell size at the pixel level (half the picture)."""
        return self.config.cell // 2

    def associate(self, gray: torch.Tensor) -> torch.Tensor:
        """The soft superpixels at the pixel level: (B, 9, h, w) association map."""
        return associate(self.spixnet(gray), self.pixel_cell)

    def tokens(self, gray: torch.Tensor, pyramid: dict[str, torch.Tensor], assoc: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) primitive tokens, N = (H/cell) (W/cell) row-major: features SP-pooled at 1/4 scale."""
        cell = self.config.cell
        quarter = (gray.shape[-2] // 2, gray.shape[-1] // 2)
        drop = self.config.feature_dropout
        maps = [F.interpolate(self.projections[n](F.dropout(pyramid[n].to(gray.dtype), drop, self.training)),
                              size=quarter, mode="bilinear", align_corners=False) for n in self.names]
        maps += [self.gray_net(gray), F.avg_pool2d(gray, 2)]
        x = torch.cat(maps, dim=1)
        a4 = F.avg_pool2d(assoc.detach(), 2)  # the association at 1/4 scale still sums to 1 per pixel
        pooled = sp_pool(a4, x, cell // 4)  # (B, C, gy, gx)
        t = self.token_in(pooled.flatten(2).transpose(1, 2))
        return t + sine_positions(pooled, self.config.dim).to(t.dtype)[None]

    # -- colour modeler ---------------------------------------------------------------------------------
    def model_colours(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, dim) -> (logits (B, N, Q) over ``bins``, features (B, N, dim) the locator clusters)."""
        feats = self.modeler_norm(self.modeler(tokens))
        return self.bins_head(feats), feats

    # -- colour generator -------------------------------------------------------------------------------
    def affinity(self, tokens: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) tokens and (B, N) bool anchor mask -> (B, N, N) affinity: row i sums to 1 over the anchors,
        and an anchor's row is one at itself."""
        h = self.generator_norm(self.generator(tokens + anchors[..., None].to(tokens.dtype) * self.anchor_flag))
        logits = self.query(h) @ self.key(h).transpose(1, 2) / math.sqrt(h.shape[-1])
        logits = logits.float().masked_fill(~anchors[:, None, :], float("-inf"))
        aff = F.softmax(logits, dim=-1)
        order = torch.ones_like(anchors[0], dtype=aff.dtype).cumsum(0)  # 1..N, from the input (any N when exported)
        eye = (order[:, None] == order[None, :]).to(aff.dtype)[None]
        return torch.where(anchors[..., None], eye, aff).to(tokens.dtype)

    @staticmethod
    def spread(affinity: torch.Tensor, anchor_ab: torch.Tensor) -> torch.Tensor:
        """(B, N, N) affinity, (B, N, 2) colours (only anchors' rows are read) -> (B, N, 2) every primitive's a*b*."""
        return affinity @ anchor_ab

    def refine(self, gray: torch.Tensor, pyramid: dict[str, torch.Tensor], assoc: torch.Tensor,
               token_ab: torch.Tensor) -> torch.Tensor:
        """The primitives' a*b* (B, N, 2) -> pixel a*b* (B, 2, h, w) at the pixel level: SP-diffused, plus the
        refinement's bounded residual."""
        return self.refine_projected(gray, self.projected_s8(pyramid, gray.dtype), assoc, token_ab)

    def projected_s8(self, pyramid: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """The 1/8 features the refinement reads, projected (at their own size)."""
        return self.projections["s8"](pyramid["s8"].to(dtype))

    def refine_projected(self, gray: torch.Tensor, s8: torch.Tensor, assoc: torch.Tensor,
                         token_ab: torch.Tensor) -> torch.Tensor:
        """:meth:`refine` given :meth:`projected_s8`."""
        b = token_ab.shape[0]
        cell = self.pixel_cell
        v = token_ab.transpose(1, 2).reshape(b, 2, gray.shape[-2] // cell, gray.shape[-1] // cell)
        coarse = sp_diffuse(assoc.detach(), v, cell)
        s8 = F.interpolate(s8, size=gray.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([gray, coarse / AB_NORM, s8], dim=1)
        return coarse + torch.tanh(self.refine_net(x)) * (self.config.refine_range * AB_NORM)

    # -- the two halves of inference (the anchors are chosen between them; each is one ONNX graph) -------
    def encode(self, gray: torch.Tensor, pyramid: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Everything before the anchors: (association, tokens, bin logits, locator features, projected s8)."""
        assoc = self.associate(gray)
        tokens = self.tokens(gray, pyramid, assoc)
        logits, feats = self.model_colours(tokens)
        return assoc, tokens, logits, feats, self.projected_s8(pyramid, gray.dtype)

    def generate(self, gray: torch.Tensor, assoc: torch.Tensor, s8: torch.Tensor, tokens: torch.Tensor,
                 anchors: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Given the anchors ((B, N) bool) and their colours (``table`` (B, N, 2), other rows unread): the pixels'
        a*b* (B, 2, h, w)."""
        return self.refine_projected(gray, s8, assoc, self.spread(self.affinity(tokens, anchors), table))

    def bin_colour(self, index: torch.Tensor) -> torch.Tensor:
        """Bin indices -> their centres' a*b*."""
        return self.centers.to(index.device)[index]
