"""One noise prediction of the MT-Color model: U-Net + ControlNet + adapter.

The grayscale frame is ControlNet's condition (``controlnet_cond``). ControlNet's
residuals are added to the U-Net as usual, and its features *before* the zero
convolutions (captured with forward pre-hooks on ``controlnet_down_blocks``, no fork) are
what PMAM attends to: the last feature map at each grid, which has the width of the U-Net
blocks at that grid. Taking them before the zero convolutions keeps PMAM's values
informative while ControlNet's own residuals are still zero at the start of stage 2.

:class:`Conditions` is the batch of everything but the latent; it can be concatenated,
selected and cropped (multi-instance sampling crops instances, see ``sampler``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from restorer.models.mtcolor.adapter import MTColorAdapter
from restorer.models.mtcolor.state import MTColorState


@dataclass
class Conditions:
    """Batched conditions; spatial fields are at the latent grid except ``control_image``.

    prompt: (B, L, D) cross-attention states; masks: (B, R, h, w) float coverage;
    tokens: (B, R + 1, Dt) or None; control_image: (B, C, s*h, s*w) or None;
    gray: (B, 1, h, w) concatenated to the U-Net input (tiny) or None (sd15).
    """

    prompt: torch.Tensor
    masks: torch.Tensor
    tokens: torch.Tensor | None = None
    control_image: torch.Tensor | None = None
    gray: torch.Tensor | None = None

    def fields(self) -> dict[str, torch.Tensor | None]:
        return {k: getattr(self, k) for k in ("prompt", "masks", "tokens", "control_image", "gray")}

    @staticmethod
    def cat(items: list["Conditions"]) -> "Conditions":
        """Concatenate along the batch; mask/token counts must agree."""
        first = items[0].fields()
        return Conditions(**{k: None if v is None else torch.cat([c.fields()[k] for c in items])
                             for k, v in first.items()})

    def crop(self, y: int, x: int, h: int, w: int) -> "Conditions":
        """The conditions of the latent box (y, x, h, w)."""
        s = None if self.control_image is None else self.control_image.shape[-1] // self.masks.shape[-1]
        return replace(
            self,
            masks=self.masks[..., y:y + h, x:x + w],
            gray=None if self.gray is None else self.gray[..., y:y + h, x:x + w],
            control_image=None if s is None else self.control_image[..., s * y:s * (y + h), s * x:s * (x + w)])


class MTColorModel(nn.Module):
    """eps(z, t, conditions) for the MT-Color model. ``controlnet`` may be None (stage 0/1)."""

    def __init__(self, unet: nn.Module, controlnet: nn.Module | None, adapter: MTColorAdapter):
        super().__init__()
        self.unet, self.controlnet, self.adapter = unet, controlnet, adapter
        adapter.attach(unet)
        self._captured: list[torch.Tensor] = []
        if controlnet is not None:
            for block in controlnet.controlnet_down_blocks:
                block.register_forward_pre_hook(self._capture)

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """The modules training stage ``stage`` updates (Sec. IV-A; stage 0 is tiny's base).

        0: the base U-Net and the global prompt projection; 1: the instance mask and text
        guidance module (encoder + gated branches); 2: ControlNet and PMAM.
        """
        if stage == 0:
            return [self.unet, self.adapter.prompt_proj]
        if stage == 1:
            return [self.adapter.encoder, self.adapter.branches]
        if stage == 2:
            return [m for m in (self.controlnet, self.adapter.pmams) if m is not None]
        raise ValueError(f"training stage must be 0, 1 or 2, not {stage}")

    def _capture(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self._captured.append(args[0])

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: Conditions) -> torch.Tensor:
        sample = z if cond.gray is None else torch.cat([z, cond.gray.to(z.dtype)], dim=1)
        t = t.expand(z.shape[0]) if t.ndim else t.repeat(z.shape[0])
        down, mid, control = self._control(sample, t, cond)
        state = MTColorState(masks=cond.masks, tokens=cond.tokens, control=control,
                             latent_size=tuple(z.shape[-2:]))
        return self.unet(sample, t, encoder_hidden_states=cond.prompt, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid, cross_attention_kwargs={"mtcolor": state},
                         return_dict=False)[0]

    def _control(self, sample: torch.Tensor, t: torch.Tensor, cond: Conditions):
        if self.controlnet is None or cond.control_image is None:
            return None, None, {}
        self._captured = []
        down, mid = self.controlnet(sample, t, encoder_hidden_states=cond.prompt,
                                    controlnet_cond=cond.control_image.to(sample.dtype), return_dict=False)
        control = {tuple(f.shape[-2:]): f for f in self._captured}  # later (deeper) wins per grid
        self._captured = []
        return down, mid, control


def guided_eps(model: MTColorModel, z: torch.Tensor, t: torch.Tensor, cond: Conditions,
               uncond: Conditions, guidance: float) -> torch.Tensor:
    """Classifier-free guidance in one forward: eps_u + g (eps_c - eps_u); g = 1 skips eps_u."""
    if guidance == 1.0:
        return model(z, t, cond)
    eps_u, eps_c = model(torch.cat([z, z]), t, Conditions.cat([uncond, cond])).chunk(2)
    return eps_u + guidance * (eps_c - eps_u)
