"""Counter colours (tiny's stages 1-2): a kept instance is recoloured to a vivid colour of
:data:`restorer.models.colornames.COUNTER_COLORS` at least 90° of hue from its own, its text renamed to
match, the grayscale untouched, so a model that ignored the text could not fit the sample."""

from __future__ import annotations

import math

import numpy as np
import torch


def palette_ab() -> torch.Tensor:
    """(len(TRAINED_COLOURS), 2) a*b* of the training texts' colour words."""
    from restorer.models.colornames import palette_lab

    return torch.tensor(np.stack([v[1:] for v in palette_lab().values()]), dtype=torch.float32)


def counter_colour(ab, cover, col, keep, pal, counter_ids, p, g):
    """Recolour a share ``p`` of kept instances to a far-hue vivid colour: the target inside the (soft) mask
    becomes that colour's a*b* plus half the region's own texture. Returns (ab, colour ids, changed rows)."""
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
