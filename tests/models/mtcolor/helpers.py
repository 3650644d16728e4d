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


_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_VAE_ATTENTION = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
                  ("to_out.0.", "proj_out."))


def _replace(key: str, pairs) -> str:
    for a, b in pairs:
        key = key.replace(a, b)
    return key


def _unet_ldm_key(key: str, state: dict, layers: int) -> str:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top, p, n = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"], key.split("."), layers + 1
    if key in top:
        return top[key]
    if p[0] == "mid_block":
        rest = ".".join(p[3:])
        return f"middle_block.{2 * int(p[2])}.{_replace(rest, _RESNET)}" if p[1] == "resnets" else \
            f"middle_block.1.{rest}"
    b = int(p[1])
    if p[2] in ("resnets", "attentions"):
        j = int(p[3])
        block = f"input_blocks.{b * n + j + 1}" if p[0] == "down_blocks" else f"output_blocks.{b * n + j}"
        rest = ".".join(p[4:])
        return f"{block}.0.{_replace(rest, _RESNET)}" if p[2] == "resnets" else f"{block}.1.{rest}"
    if p[0] == "down_blocks":  # downsamplers.0.conv
        return f"input_blocks.{(b + 1) * n}.0.op.{p[-1]}"
    attended = any(k.startswith(f"up_blocks.{b}.attentions.") for k in state)  # upsamplers.0.conv
    return f"output_blocks.{b * n + layers}.{2 if attended else 1}.conv.{p[-1]}"


def _vae_ldm_item(key: str, value: torch.Tensor, blocks: int) -> tuple[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top, p = DIFFUSERS_TO_LDM_MAPPING["vae"], key.split(".")
    if key in top:
        return top[key], value
    if p[1] in ("down_blocks", "up_blocks"):
        i = int(p[2]) if p[1] == "down_blocks" else blocks - 1 - int(p[2])
        level = f"{p[0]}.{p[1][:-7]}.{i}"
        if p[3] == "resnets":
            return f"{level}.block.{p[4]}." + _replace(".".join(p[5:]), (("conv_shortcut", "nin_shortcut"),)), value
        return f"{level}.{'downsample' if p[1] == 'down_blocks' else 'upsample'}.conv.{p[-1]}", value
    rest = ".".join(p[4:])  # mid_block
    if p[2] == "resnets":
        return f"{p[0]}.mid.block_{int(p[3]) + 1}." + _replace(rest, (("conv_shortcut", "nin_shortcut"),)), value
    return f"{p[0]}.mid.attn_1.{_replace(rest, _VAE_ATTENTION)}", value[:, :, None, None] if value.ndim == 2 else value


def ldm_layout(unet, vae, text) -> dict[str, torch.Tensor]:
    """The original CompVis/LDM single-file layout of a diffusers U-Net, VAE and CLIP text model (the inverse of
    diffusers' single-file converters, for the layouts the tests build), as SD 1.5's own checkpoint names them."""
    unet_state, vae_state = unet.state_dict(), vae.state_dict()
    layers, blocks = unet.config.layers_per_block, len(vae.config.down_block_types)
    out = {f"model.diffusion_model.{_unet_ldm_key(k, unet_state, layers)}": v for k, v in unet_state.items()}
    out.update({f"first_stage_model.{k}": v for k, v in (_vae_ldm_item(k, v, blocks) for k, v in vae_state.items())})
    out.update({f"cond_stage_model.transformer.{k}": v for k, v in text.state_dict().items()})
    return {k: v.contiguous() for k, v in out.items()}
