"""What the SAM2 video model needs around it, without torchvision.

transformers' ``Sam2VideoProcessor`` is built from image and video processors that import
torchvision, and a PyPI torchvision drags a CUDA build of torch into a CPU install. The
tracker needs little of them: a frame resized and normalised, its prompts scaled to the
model's input size, and masks resized back. The prompt bookkeeping is upstream's own
(:class:`Sam2VideoProcessor`'s methods work without its image processors); the pixels
and masks are done here with torch, as upstream does them (bilinear with antialiasing,
ImageNet mean and std, threshold 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _image_settings(folder: Path) -> dict:
    """The image processor's settings from whichever processor file the checkpoint has."""
    for name in PROCESSOR_FILES:
        path = folder / name
        if path.is_file():
            cfg = json.loads(path.read_text())
            return cfg.get("image_processor", cfg)
    raise FileNotFoundError(folder / PROCESSOR_FILES[0])


def sam2_inputs(folder: Path, image_size: int):
    """The processor for a SAM2 checkpoint folder (sizes, mean and std from its processor file)."""
    from transformers.models.sam2_video.processing_sam2_video import Sam2VideoProcessor

    class Sam2Inputs(Sam2VideoProcessor):
        def __init__(self, size: int, mean, std, point_pad_value: int = -10):
            # upstream's __init__ wants its image processors; the prompt methods need only these
            self.target_size, self.point_pad_value = size, point_pad_value
            self.mean, self.std = tuple(mean), tuple(std)

        def pixels(self, luma: np.ndarray, device, dtype):
            """One gray frame (H, W) uint8 as the model's (3, S, S) input."""
            import torch
            import torch.nn.functional as F

            x = torch.from_numpy(np.ascontiguousarray(luma)).to(torch.float32)[None, None] / 255.0
            x = F.interpolate(x, size=(self.target_size, self.target_size), mode="bilinear",
                              align_corners=False, antialias=True)[0].expand(3, -1, -1)
            mean = torch.tensor(self.mean).view(3, 1, 1)
            std = torch.tensor(self.std).view(3, 1, 1)
            return ((x - mean) / std).to(device, dtype=dtype)

        def post_process_masks(self, masks, original_sizes, mask_threshold=0.0, binarize=True, **_):
            import torch.nn.functional as F

            out = []
            for m, size in zip(masks, original_sizes, strict=True):
                m = F.interpolate(m.float(), tuple(size), mode="bilinear", align_corners=False)
                out.append(m > mask_threshold if binarize else m)
            return out

    cfg = _image_settings(folder)
    size = cfg.get("size", {}).get("height", image_size)
    return Sam2Inputs(int(size), cfg.get("image_mean", _MEAN), cfg.get("image_std", _STD))
