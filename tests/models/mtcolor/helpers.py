"""Tiny seeded models for the MT-Color tests (no weights, no network)."""

from __future__ import annotations

import torch

from restorer.models.mtcolor.adapter import MTColorAdapter
from restorer.models.mtcolor.model import Conditions, MTColorModel

UNET = dict(sample_size=8, block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=16,
            attention_head_dim=8, norm_num_groups=8,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))


def tiny_unet(in_channels: int = 3, out_channels: int = 2, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(in_channels=in_channels, out_channels=out_channels, **UNET).eval()


def tiny_model(seed: int = 0, gates: float = 0.5, cond_channels: int = 1, text_dim: int = 12) -> MTColorModel:
    from diffusers import ControlNetModel

    unet = tiny_unet(seed=seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_channels=cond_channels,
                                           conditioning_embedding_out_channels=(8,))
    adapter = MTColorAdapter.for_unet(unet, text_dim=text_dim, token_dim=16, mask_size=16, prompt_dim=text_dim)
    for g in adapter.gates():
        torch.nn.init.constant_(g, gates)
    return MTColorModel(unet, controlnet, adapter).eval()


def instance_masks(size: int = 8, n: int = 2) -> torch.Tensor:
    """(n, size, size) float masks: instance k covers a band of columns, the rest is background."""
    m = torch.zeros(n, size, size)
    width = size // (n + 1)
    for k in range(n):
        m[k, :, k * width:(k + 1) * width] = 1
    return m


def conditions(model: MTColorModel, masks: torch.Tensor, seed: int = 0, keep: bool = True) -> Conditions:
    g = torch.Generator().manual_seed(seed)
    n, h, w = masks.shape
    text = torch.randn(1, n, model.adapter.config.text_dim, generator=g)
    tokens = model.adapter.encoder(text, masks[None], torch.full((1, n), keep))
    prompt = model.adapter.prompt_proj(torch.randn(1, 1, model.adapter.config.prompt_dim, generator=g))
    gray = torch.rand(1, 1, h, w, generator=g) * 2 - 1
    return Conditions(prompt, masks[None], tokens, control_image=gray, gray=gray)
