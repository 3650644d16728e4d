"""What one U-Net forward needs besides its usual inputs: masks, instance tokens, control features.

The processors receive it through diffusers' ``cross_attention_kwargs={"mtcolor": state}``,
so nothing in diffusers is forked or patched. Region maps are computed once per grid and
cached on the state (every block at a resolution reuses them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from restorer.models.mtcolor.regions import region_map


@dataclass
class MTColorState:
    """Per-forward conditions, batch-aligned with the U-Net's sample.

    Attributes:
        masks: (B, R, H, W) bool at the latent grid (or finer); R may be 0.
        tokens: (B, R + 1, D) instance tokens; index 0 is the background/null token,
            index k + 1 belongs to instance k. ``None`` leaves the instance branch off.
        control: control features by grid (h, w) -> (B, C, h, w); empty leaves PMAM off.
        latent_size: (H, W) of the U-Net's input sample.
    """

    masks: torch.Tensor
    tokens: torch.Tensor | None
    control: dict[tuple[int, int], torch.Tensor]
    latent_size: tuple[int, int]
    _regions: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)

    def grid(self, n_tokens: int) -> tuple[int, int]:
        """The (h, w) of a block whose flattened sequence has ``n_tokens`` tokens."""
        h, w = self.latent_size
        for _ in range(8):
            if h * w == n_tokens:
                return h, w
            h, w = (h + 1) // 2, (w + 1) // 2
        raise ValueError(f"no grid of the latent {self.latent_size} has {n_tokens} tokens")

    def regions(self, size: tuple[int, int]) -> torch.Tensor:
        """(B, h * w) region ids at ``size``, cached."""
        if size not in self._regions:
            self._regions[size] = region_map(self.masks, size)
        return self._regions[size]

    def control_at(self, size: tuple[int, int]) -> torch.Tensor | None:
        """Control features resized to ``size`` (the closest grid, bilinear), or None."""
        if not self.control:
            return None
        if size in self.control:
            return self.control[size]
        near = min(self.control, key=lambda s: abs(s[0] * s[1] - size[0] * size[1]))
        return torch.nn.functional.interpolate(self.control[near], size=size, mode="bilinear",
                                               align_corners=False)
