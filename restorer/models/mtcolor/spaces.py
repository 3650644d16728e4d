"""Where each preset denoises, and how its latent becomes a*b* chroma.

tiny — *chroma space*. The latent is CIE a*, b* (D65) divided by ``ab_scale`` at a
reduced grid: the frame is scaled so that its long side is ``grid`` cells (32 by default,
a downscale factor of 16 for a 512² frame; both sides rounded to a multiple of 4 for the
U-Net), which is where a 2-core CPU can afford 20 guided steps (bench/RESULTS.md, MT-Color). Colour is
low-frequency, and the pipeline upsamples the chroma under the full-resolution luma. The
grayscale at the grid is concatenated to the U-Net input (3 channels in, 2 out), and
ControlNet's condition is that grayscale plus frozen EfficientNet-Lite0 features
(:mod:`restorer.models.mtcolor.features`).

sd15 — *VAE latent space*, as the paper. The frame is scaled so its long side is ``size``
pixels (512), both sides multiples of 64; the latent is 1/8 of that. ControlNet's condition
is the grayscale replicated to RGB at the working size. The decoded RGB is converted to
a*b* at the working size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

AB_SCALE = 100.0  # the default; the tiny preset sets its own (its weights were trained with it)
_AB_LIMIT = 128.0  # a*b* of any sRGB colour lie within about ±128


def working_size(shape: tuple[int, int], long_side: int, multiple: int) -> tuple[int, int]:
    """Scale (H, W) so its long side is ``long_side``, each side rounded to ``multiple`` (at least one)."""
    h, w = shape
    s = long_side / max(h, w)
    return max(multiple, round(h * s / multiple) * multiple), max(multiple, round(w * s / multiple) * multiple)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-style resize of (B, C, H, W) floats (antialiased bilinear)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


@dataclass
class TinySpace:
    grid: int = 32
    multiple: int = 4
    features: torch.nn.Module | None = None  # EfficientNetFeatures, or None for a gray-only condition
    channels: int = 2
    ab_scale: float = AB_SCALE

    def latent_size(self, frame: tuple[int, int]) -> tuple[int, int]:
        return working_size(frame, self.grid, self.multiple)

    @staticmethod
    def gray(luma: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """luma (1, 1, H, W) in [0, 1] -> the gray at the grid in [-1, 1]."""
        return resize(luma, size) * 2 - 1

    def prepare(self, luma: torch.Tensor, size: tuple[int, int],
                pyramid: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """luma (1, 1, H, W) -> (gray at the grid, control image at the grid); ``pyramid``: the features'
        :meth:`~restorer.models.mtcolor.features.EfficientNetFeatures.pyramid` of this luma, if already computed."""
        gray = self.gray(luma, size)
        if self.features is None:
            return gray, gray
        if pyramid is None:
            return gray, torch.cat([gray, self.features(luma, size)], dim=1)
        head = F.interpolate(pyramid["head"], size=size, mode="bilinear", align_corners=False)
        return gray, torch.cat([gray, head.to(gray.dtype)], dim=1)

    def decode(self, z: torch.Tensor) -> np.ndarray:
        return (z[0].float().permute(1, 2, 0) * self.ab_scale).clamp(-_AB_LIMIT, _AB_LIMIT).cpu().numpy()


@dataclass
class SDSpace:
    vae: torch.nn.Module
    size: int = 512
    channels: int = 4

    def latent_size(self, frame: tuple[int, int]) -> tuple[int, int]:
        h, w = working_size(frame, self.size, 64)
        return h // 8, w // 8

    def prepare(self, luma: torch.Tensor, size: tuple[int, int], pyramid: None = None) -> tuple[None, torch.Tensor]:
        return None, resize(luma, (size[0] * 8, size[1] * 8)).expand(-1, 3, -1, -1)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        rgb = self.vae.decode((z / self.vae.config.scaling_factor).to(self.vae.dtype)).sample
        return rgb_to_ab(((rgb.float() + 1) / 2).clamp(0, 1))[0].permute(1, 2, 0).cpu().numpy()


def rgb_to_ab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (B, 3, H, W) in [0, 1] -> CIE a*, b* (B, 2, H, W), D65."""
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                      [0.0193339, 0.1191920, 0.9503041]], dtype=lin.dtype, device=lin.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    xyz = xyz / torch.tensor([0.95047, 1.0, 1.08883], dtype=lin.dtype, device=lin.device).view(1, 3, 1, 1)
    f = torch.where(xyz > (6 / 29) ** 3, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return torch.stack([500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)
