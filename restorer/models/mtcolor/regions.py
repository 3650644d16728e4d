"""Instance regions and region-restricted attention, shared by PMAM and the instance branch.

Regions. Masks are resolved to *one region per token*: region 0 is the background (no
mask), region ``k + 1`` is instance ``k``; where masks overlap, the later instance wins
(file order, "later is on top", as in :class:`restorer.models.engine.FrameInput`). A mask
is resized to a block's grid by area averaging and a token belongs to it when at least
half of its cell is covered. Resolving to one region makes the allowed pairs an
equivalence relation, which is what lets attention be computed group by group.

Mask before the softmax. Eq. 2 of the paper multiplies the mask *after* the softmax; the
normaliser then still sums over tokens of other instances, so a change inside region A
moves every weight inside region B. Here a disallowed pair gets -inf before the softmax
(equivalently: each region's queries only ever see that region's keys), so isolation is
exact: outputs inside B do not depend on anything inside A, to float precision.

Grouped computation. :func:`grouped_attention` gathers each region's tokens and runs one
attention per region, so the work is the sum of squared region sizes, and the peak
memory follows the largest region, not the square of the grid. Batch rows with the same
region map (classifier-free guidance pairs, repeated frames) share one call per region.
:func:`dense_attention` is the plain N x N reference used by the tests and the bench.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def region_map(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resolve instance masks to one region id per token at a grid.

    Args:
        masks: (B, R, H, W) bool or float in [0, 1]; all-False rows are absent instances.
        size: (h, w) grid of the attention block.

    Returns:
        (B, h * w) long, 0 for background, k + 1 for instance k (later instances on top).
    """
    b, r = masks.shape[:2]
    if r == 0:
        return torch.zeros(b, size[0] * size[1], dtype=torch.long, device=masks.device)
    cover = F.adaptive_avg_pool2d(masks.float(), size) if masks.shape[-2:] != size else masks.float()
    inside = cover.flatten(2) >= 0.5  # (B, R, N)
    ids = torch.arange(1, r + 1, device=masks.device).view(1, r, 1)
    return (inside.long() * ids).amax(dim=1)


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, regions: torch.Tensor,
                    extra_k: torch.Tensor | None = None, extra_v: torch.Tensor | None = None) -> torch.Tensor:
    """Reference: full N x N attention with disallowed pairs set to -inf before the softmax.

    Args:
        q, k, v: (B, heads, N, d); keys and values at the same N positions as the queries.
        regions: (B, N) long region ids.
        extra_k, extra_v: optional (B, heads, R, d), one extra key/value per region id
            (the instance tokens of Eq. 6); token r is visible to the queries of region r.

    Returns:
        (B, heads, N, d).
    """
    allowed = regions[:, :, None] == regions[:, None, :]
    if extra_k is not None:
        token_ids = torch.arange(extra_k.shape[2], device=regions.device)
        allowed = torch.cat([allowed, regions[:, :, None] == token_ids[None, None, :]], dim=2)
        k, v = torch.cat([k, extra_k], dim=2), torch.cat([v, extra_v], dim=2)
    scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    return scores.softmax(dim=-1) @ v


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, regions: torch.Tensor,
                      extra_k: torch.Tensor | None = None, extra_v: torch.Tensor | None = None) -> torch.Tensor:
    """Same result as :func:`dense_attention`, computed region by region.

    Empty regions cost nothing; a single region is one ordinary attention call.
    """
    out = torch.empty_like(q)
    maps, inverse = torch.unique(regions, dim=0, return_inverse=True)
    for m, region_row in enumerate(maps):
        rows = (inverse == m).nonzero().flatten()
        _attend_rows(out, q, k, v, region_row, rows, extra_k, extra_v)
    return out


def _attend_rows(out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 region_row: torch.Tensor, rows: torch.Tensor,
                 extra_k: torch.Tensor | None, extra_v: torch.Tensor | None) -> None:
    """Attention for the batch rows ``rows`` that share the region map ``region_row``."""
    order = torch.argsort(region_row, stable=True)
    counts = torch.bincount(region_row).tolist()
    every = rows.numel() == q.shape[0]
    qb, kb, vb = (q, k, v) if every else (q[rows], k[rows], v[rows])
    start = 0
    for rid, count in enumerate(counts):
        if count == 0:
            continue
        idx = order[start:start + count]
        start += count
        ks, vs = kb[:, :, idx], vb[:, :, idx]
        if extra_k is not None:
            ek = extra_k[:, :, rid:rid + 1] if every else extra_k[rows][:, :, rid:rid + 1]
            ev = extra_v[:, :, rid:rid + 1] if every else extra_v[rows][:, :, rid:rid + 1]
            ks, vs = torch.cat([ks, ek], dim=2), torch.cat([vs, ev], dim=2)
        res = F.scaled_dot_product_attention(qb[:, :, idx], ks, vs)
        if every:
            out[:, :, idx] = res
        else:
            out[rows[:, None], :, idx[None, :]] = res.permute(0, 2, 1, 3)
