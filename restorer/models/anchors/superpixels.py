"""Soft superpixels on a regular grid (Yang et al., "Superpixel Segmentation with Fully Convolutional
Networks", CVPR 2020), as DISCO's SPixNet uses them.

The picture (H, W) is cut into cells of ``cell`` pixels; each cell is one superpixel seed. Every pixel
belongs softly to the 9 cells around its own: the *association map* ``A`` is (B, 9, H, W), a softmax
over those 9 candidates (order: row offsets -1, 0, 1, each with column offsets -1, 0, 1).

* :func:`sp_pool` (DISCO's *SP-Pooling*, their Eq. 1): a superpixel's property is the
  association-weighted mean of its pixels' properties.
* :func:`sp_diffuse` (*SP-Diffusion*, Eq. 2): a pixel's property is the association-weighted sum of
  its 9 candidates' properties.

Both are exact for any grid size (H and W multiples of ``cell``): candidates outside the picture
have no pixels, so they pool nothing, and the network is trained to give them no weight (their
logits are masked to -inf before the softmax by :func:`associate`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """y[..., i, j] = x[..., i + dy, j + dx], zero outside (|dy|, |dx| <= 1: the candidates' offsets).

    Padding and constant crops, so an exported graph keeps any grid size."""
    padded = F.pad(x, (1, 1, 1, 1))
    return padded[..., 1 + dy:(dy - 1) or None, 1 + dx:(dx - 1) or None]


def candidate_valid(like: torch.Tensor, cell: int) -> torch.Tensor:
    """(1, 9, H, W) bool for a (B, C, H, W) pixel map ``like``: each pixel's candidate cell lies inside the grid."""
    ones = torch.ones_like(like[:1, :1, ::cell, ::cell], dtype=torch.float32)  # (1, 1, H/cell, W/cell)
    valid = torch.cat([_shift(ones, dy, dx) for dy, dx in OFFSETS], dim=1)  # at cell (i, j): cell (i+dy, j+dx) exists
    return F.interpolate(valid, scale_factor=cell, mode="nearest") > 0


def associate(logits: torch.Tensor, cell: int) -> torch.Tensor:
    """(B, 9, H, W) logits -> the association map: a softmax over the candidates inside the grid."""
    valid = candidate_valid(logits, cell)
    return F.softmax(logits.float().masked_fill(~valid, float("-inf")), dim=1).to(logits.dtype)


def sp_pool(assoc: torch.Tensor, x: torch.Tensor, cell: int, eps: float = 1e-6) -> torch.Tensor:
    """(B, 9, H, W) association, (B, C, H, W) pixel properties -> (B, C, H/cell, W/cell) superpixel means."""
    num = den = 0
    for k, (dy, dx) in enumerate(OFFSETS):
        a = assoc[:, k:k + 1]
        # pixels of cell (i, j) with candidate k feed cell (i + dy, j + dx)
        num = num + _shift(F.avg_pool2d(a * x, cell), -dy, -dx)
        den = den + _shift(F.avg_pool2d(a, cell), -dy, -dx)
    return num / (den + eps)


def sp_diffuse(assoc: torch.Tensor, v: torch.Tensor, cell: int) -> torch.Tensor:
    """(B, 9, H, W) association, (B, C, H/cell, W/cell) superpixel properties -> (B, C, H, W) pixels."""
    out = 0
    for k, (dy, dx) in enumerate(OFFSETS):
        out = out + assoc[:, k:k + 1] * F.interpolate(_shift(v, dy, dx), scale_factor=cell, mode="nearest")
    return out


def pixel_coords(h: int, w: int, cell: int, device=None) -> torch.Tensor:
    """(1, 2, H, W): each pixel's (y, x) centre in cell units."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / cell
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / cell
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))[None]


def hard_labels(assoc: torch.Tensor, cell: int) -> torch.Tensor:
    """(B, 9, H, W) -> (B, H, W) long: the index (row-major in the cell grid) of each pixel's most likely cell."""
    b, _, h, w = assoc.shape
    gx = w // cell
    k = assoc.argmax(1)
    dy = torch.tensor([o[0] for o in OFFSETS], device=assoc.device)[k]
    dx = torch.tensor([o[1] for o in OFFSETS], device=assoc.device)[k]
    cy = torch.arange(h, device=assoc.device)[:, None] // cell
    cx = torch.arange(w, device=assoc.device)[None, :] // cell
    return (cy + dy) * gx + (cx + dx)


def superpixel_loss(assoc: torch.Tensor, ab: torch.Tensor, cell: int, compactness: float) -> torch.Tensor:
    """Yang et al.'s self-reconstruction loss: the ground truth's a*b* (scaled to about [-1, 1]) pooled into the
    superpixels and diffused back should equal itself (squared error), plus ``compactness`` times the same for
    the pixels' positions in cell units (superpixels stay compact)."""
    rec = sp_diffuse(assoc, sp_pool(assoc, ab, cell), cell)
    pos = pixel_coords(ab.shape[-2], ab.shape[-1], cell, ab.device).expand(ab.shape[0], -1, -1, -1)
    rec_pos = sp_diffuse(assoc, sp_pool(assoc, pos, cell), cell)
    return ((rec - ab) ** 2).sum(1).mean() + compactness * ((rec_pos - pos) ** 2).sum(1).mean()
