"""DISCO's anchor locator: cluster the primitives, take one primitive per cluster as an anchor.

Training clusters the ground truth's a*b* of the primitives (anchors then stand for colours that differ);
inference clusters the colour modeler's learned features, which were trained to predict those colours.
The clustering is k-means with a deterministic start (farthest-point seeding from the primitive nearest
the mean), so the same picture always gets the same anchors: no seed, no randomness. Each cluster's
anchor is its member nearest the cluster's centre (a real primitive, not the centre itself).
"""

from __future__ import annotations

import torch


def _dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(N, D), (K, D) -> (N, K) Euclidean distances (broadcast: cdist's overhead dominates at these sizes)."""
    return ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1).sqrt()


def farthest_points(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, D) -> (k,) indices: the point nearest the mean, then each time the point farthest from those chosen."""
    first = _dist(x, x.mean(0, keepdim=True))[:, 0].argmin()
    chosen = [int(first)]
    dist = _dist(x, x[first][None])[:, 0]
    for _ in range(1, k):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, _dist(x, x[nxt][None])[:, 0])
    return torch.tensor(chosen, device=x.device)


def kmeans(x: torch.Tensor, k: int, iterations: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on (N, D): (labels (N,), centres (k, D)); a cluster that empties keeps its centre."""
    k = min(k, x.shape[0])
    centres = x[farthest_points(x, k)].clone()
    labels = _dist(x, centres).argmin(1)
    for _ in range(iterations):
        onehot = torch.nn.functional.one_hot(labels, k).to(x.dtype)
        count = onehot.sum(0)
        moved = (onehot.T @ x) / count.clamp_min(1)[:, None]
        centres = torch.where(count[:, None] > 0, moved, centres)
        new = _dist(x, centres).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels, centres


@torch.no_grad()
def locate(x: torch.Tensor, k: int, iterations: int = 10) -> torch.Tensor:
    """One anchor per cluster of the primitives' vectors ``x`` (N, D): (k',) indices, k' = min(k, N),
    each the member nearest its cluster's centre, in the order of the clusters. A cluster left empty
    gives no anchor, so k' can be smaller when fewer distinct vectors exist."""
    labels, centres = kmeans(x.float(), k, iterations)
    dist = _dist(x.float(), centres)
    anchors = []
    for c in range(centres.shape[0]):
        members = (labels == c).nonzero().flatten()
        if len(members):
            anchors.append(int(members[dist[members, c].argmin()]))
    return torch.tensor(sorted(set(anchors), key=anchors.index), dtype=torch.long, device=x.device)
