"""The instance mask and text guidance module of Sec. III-B (Eqs. 3-7).

Tokens (Eq. 3). Per instance, ``token = MLP2(concat(text_embedding, MLP1(mask)))``: MLP1 is
three strided convolutions over the mask resized to ``mask_size``², pooled to a vector;
MLP2 is three linear layers. A learned *null token* stands for the background region, for
an instance whose text is dropped (the unconditional half of classifier-free guidance,
and the 50 % condition dropout of training), and for a frame with no instances.

Branch (Eqs. 4-7). In every transformer block a gated self-attention runs over
``[latent tokens; instance tokens]`` (the GLIGEN / InstanceDiffusion pattern), its output
taken only at the latent rows (Eq. 7) and scaled by ``tanh(gate)``, gate initialised at
zero: at its initial state the branch changes nothing. The masks of Eqs. 5-6, resolved to
one region per token (see :mod:`restorer.models.mtcolor.regions`):

- latent i may attend latent j iff both lie in the same region (Eq. 5; the background is
  a region of its own, so no row is left without keys);
- latent i may attend instance token k iff i lies in instance k's region (Eq. 6); the
  background's tokens attend the null token.

Like PMAM, masking happens before the softmax and the attention is computed per region.
The branch reads the block's normalised hidden states (inside ``attn1``'s processor), so
it is "a trainable branch added to the self-attention module", as the paper puts it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorer.models.mtcolor.pmam import _heads, _merge
from restorer.models.mtcolor.regions import dense_attention, grouped_attention


class InstanceEncoder(nn.Module):
    """Eq. 3: text embeddings and masks -> instance tokens, with the null token at index 0."""

    def __init__(self, text_dim: int, token_dim: int, mask_size: int = 64, hidden: int = 256):
        super().__init__()
        self.mask_size = mask_size
        self.mask_mlp = nn.Sequential(  # MLP1: three convolutions, 64² -> 1²
            nn.Conv2d(1, 16, 4, stride=4), nn.SiLU(),
            nn.Conv2d(16, 32, 4, stride=4), nn.SiLU(),
            nn.Conv2d(32, 64, mask_size // 16), nn.Flatten())
        self.mlp = nn.Sequential(  # MLP2: three linear layers
            nn.Linear(text_dim + 64, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, token_dim))
        self.null = nn.Parameter(torch.zeros(token_dim))
        nn.init.normal_(self.null, std=0.02)

    def forward(self, text: torch.Tensor, masks: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Args: text (B, R, text_dim); masks (B, R, H, W); keep (B, R) bool, False -> null token.
        Returns (B, R + 1, token_dim), index 0 the null/background token."""
        b, r = masks.shape[:2]
        null = self.null.expand(b, 1, -1)
        if r == 0:
            return null
        # pooled in float32, then in the modules' dtype (a float32 mask into a float16 convolution crashed)
        small = F.adaptive_avg_pool2d(masks.float().flatten(0, 1)[:, None], self.mask_size).to(self.null.dtype)
        feats = torch.cat([text.to(small.dtype), self.mask_mlp(small).view(b, r, -1)], dim=-1)
        tokens = self.mlp(feats)
        tokens = torch.where(keep[..., None], tokens, self.null.to(tokens.dtype))
        return torch.cat([null.to(tokens.dtype), tokens], dim=1)


class InstanceBranch(nn.Module):
    """Eqs. 4-7 for one transformer block of width ``dim``."""

    def __init__(self, dim: int, token_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.token_proj = nn.Linear(token_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.gate = nn.Parameter(torch.zeros(()))
        self.dense = False

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Args: x (B, N, dim) latent tokens; tokens (B, R + 1, token_dim); regions (B, N).
        Returns tanh(gate) * branch output at the latent rows, (B, N, dim)."""
        n = x.shape[1]
        p = self.norm(torch.cat([x, self.token_proj(tokens.to(x.dtype))], dim=1))
        q = _heads(self.to_q(p[:, :n]), self.heads)
        k, v = _heads(self.to_k(p), self.heads), _heads(self.to_v(p), self.heads)
        attend = dense_attention if self.dense else grouped_attention
        out = attend(q, k[:, :, :n], v[:, :, :n], regions, k[:, :, n:], v[:, :, n:])
        return torch.tanh(self.gate).to(x.dtype) * self.to_out(_merge(out))
