"""The MT-Color modules added to a diffusers U-Net, saved and loaded as one diffusers model.

:class:`MTColorAdapter` holds, for every ``BasicTransformerBlock`` of a
``UNet2DConditionModel``, one :class:`~restorer.models.mtcolor.instance.InstanceBranch`
and one :class:`~restorer.models.mtcolor.pmam.PMAM`, plus the shared
:class:`~restorer.models.mtcolor.instance.InstanceEncoder` and the projection of the
global prompt to the cross-attention width. :meth:`MTColorAdapter.attach` installs
attention processors on the U-Net (no fork of diffusers): ``attn1`` runs the usual
self-attention plus the instance branch, ``attn2`` the usual text cross-attention plus
PMAM. The processors are plain objects that refer to the adapter's modules, so the U-Net's
own state dict stays that of the base model (SD 1.5 weights load unchanged) and the
adapter round-trips by itself through ``save_pretrained`` / ``from_pretrained``
(``config.json`` + ``diffusion_pytorch_model.safetensors``).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import nn

from restorer.models.mtcolor.instance import InstanceBranch, InstanceEncoder
from restorer.models.mtcolor.pmam import PMAM
from restorer.models.mtcolor.state import MTColorState

_BASE = AttnProcessor2_0()


class SelfAttnProcessor:
    """``attn1``: the block's own self-attention + the gated instance branch."""

    def __init__(self, branch: InstanceBranch):
        self.branch = branch

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 mtcolor: MTColorState | None = None) -> torch.Tensor:
        out = _BASE(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if mtcolor is None or mtcolor.tokens is None:
            return out
        regions = mtcolor.regions(mtcolor.grid(hidden_states.shape[1]))
        return out + self.branch(hidden_states, mtcolor.tokens, regions)


class CrossAttnProcessor:
    """``attn2``: the block's text cross-attention + PMAM to the control features."""

    def __init__(self, pmam: PMAM):
        self.pmam = pmam

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 mtcolor: MTColorState | None = None) -> torch.Tensor:
        out = _BASE(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if mtcolor is None:
            return out
        size = mtcolor.grid(hidden_states.shape[1])
        control = mtcolor.control_at(size)
        if control is None:
            return out
        return out + self.pmam(hidden_states, control, mtcolor.regions(size))


def transformer_blocks(unet: nn.Module) -> list[tuple[str, int, int]]:
    """(name, width, heads) of every BasicTransformerBlock with a cross-attention, in module order."""
    found = []
    for name, module in unet.named_modules():
        if isinstance(module, BasicTransformerBlock) and module.attn2 is not None:
            found.append((name, module.attn1.query_dim, module.attn1.heads))
    return found


class MTColorAdapter(ModelMixin, ConfigMixin):
    """Instance encoder + per-block instance branches and PMAMs + prompt projection."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, blocks: list[list[Any]], text_dim: int = 768, token_dim: int = 768,
                 prompt_dim: int | None = None, cross_attention_dim: int = 768, mask_size: int = 64,
                 key_source: str = "control"):
        super().__init__()
        self.encoder = InstanceEncoder(text_dim, token_dim, mask_size)
        self.branches = nn.ModuleDict()
        self.pmams = nn.ModuleDict()
        for name, dim, heads in blocks:
            key = _key(name)
            self.branches[key] = InstanceBranch(dim, token_dim, heads)
            self.pmams[key] = PMAM(dim, dim, heads, key_source)  # ControlNet mirrors the U-Net's widths
        self.prompt_proj = nn.Identity() if prompt_dim is None else nn.Linear(prompt_dim, cross_attention_dim)

    @classmethod
    def for_unet(cls, unet: nn.Module, **kwargs: Any) -> "MTColorAdapter":
        """An adapter shaped for ``unet``; kwargs go to the config."""
        blocks = [[n, d, h] for n, d, h in transformer_blocks(unet)]
        return cls(blocks=blocks, cross_attention_dim=unet.config.cross_attention_dim, **kwargs)

    def attach(self, unet: nn.Module) -> None:
        """Install the processors on ``unet``'s transformer blocks (raises on a shape mismatch)."""
        names = [n for n, _, _ in transformer_blocks(unet)]
        if names != [b[0] for b in self.config.blocks]:
            raise ValueError("the MT-Color adapter was built for a different U-Net layout")
        for name in names:
            block = unet.get_submodule(name)
            block.attn1.set_processor(SelfAttnProcessor(self.branches[_key(name)]))
            block.attn2.set_processor(CrossAttnProcessor(self.pmams[_key(name)]))

    def set_dense(self, dense: bool) -> None:
        """Use the N x N reference attention (tests, bench) instead of the grouped one."""
        for module in [*self.branches.values(), *self.pmams.values()]:
            module.dense = dense

    def gates(self) -> list[nn.Parameter]:
        return [m.gate for m in [*self.branches.values(), *self.pmams.values()]]


def _key(name: str) -> str:
    return name.replace(".", "__")
