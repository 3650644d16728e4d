"""PMAM, the pixel-level mask attention of Sec. III-A (Eqs. 1-2).

In every transformer block the latent tokens attend to the ControlNet features of the
same grid, restricted to pairs of tokens in the same instance region
(:mod:`restorer.models.mtcolor.regions`): the mask is applied *before* the softmax, so
no information crosses a region border, not even through the normaliser.

K' and V'. The paper writes Q' and K' from the latent and V' from the control features.
We take **K' and V' from the control features** (``key_source="control"``, the other
reading is kept as ``key_source="latent"``). The key decides which positions a latent
token reads from; control features come from the clean grayscale frame, so keys built
from them route by image structure (edges, textures) at every noise level, whereas keys
from the noisy latent are close to noise in the early steps, which are the ones that
decide colour (Sec. III-C). It is also the ordinary cross-attention that ControlNet-style
feature injection expects.

The output is scaled by ``tanh(gate)`` with the gate initialised at zero, so adding PMAM
to a trained model changes nothing until stage 2 trains it (Sec. IV-A).
"""

from __future__ import annotations

import torch
from torch import nn

from restorer.models.mtcolor.regions import dense_attention, grouped_attention


class PMAM(nn.Module):
    """Region-restricted attention from latent tokens (dim) to control features (control_dim)."""

    def __init__(self, dim: int, control_dim: int, heads: int, key_source: str = "control"):
        super().__init__()
        if key_source not in ("control", "latent"):
            raise ValueError(f"key_source must be 'control' or 'latent', not {key_source!r}")
        self.heads, self.key_source = heads, key_source
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(control_dim if key_source == "control" else dim, dim, bias=False)
        self.to_v = nn.Linear(control_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.gate = nn.Parameter(torch.zeros(()))
        self.dense = False  # tests and the bench switch to the N x N reference

    def forward(self, x: torch.Tensor, control: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Args: x (B, N, dim) latent tokens; control (B, C, h, w) with h * w = N;
        regions (B, N) long. Returns tanh(gate) * attention output, (B, N, dim)."""
        y = control.flatten(2).transpose(1, 2).to(x.dtype)
        q = _heads(self.to_q(x), self.heads)
        k = _heads(self.to_k(y if self.key_source == "control" else x), self.heads)
        v = _heads(self.to_v(y), self.heads)
        attend = dense_attention if self.dense else grouped_attention
        out = attend(q, k, v, regions)
        return torch.tanh(self.gate).to(x.dtype) * self.to_out(_merge(out))


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = t.shape
    return t.view(b, n, heads, c // heads).transpose(1, 2)


def _merge(t: torch.Tensor) -> torch.Tensor:
    b, h, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, h * d)
