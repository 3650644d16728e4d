"""The tiny preset's model: the paper's modules at CPU width, with a grayscale-conditioned base.

Departures from the paper, all forced by having no pretrained generative prior and a
2-core CPU:

- the base U-Net is small (``block_out_channels`` (32, 64, 128), attention at 16² and 8²) and
  denoises a*b* chroma at a 32-cell grid, not SD's VAE latent (see ``spaces``);
- it sees the grayscale directly, concatenated to its input (3 channels in, 2 out), so the
  base alone can learn colorization (training stage 0) before ControlNet exists;
- ControlNet's condition is the grayscale plus frozen EfficientNet-Lite0 features, at the
  working grid (``conditioning_embedding_out_channels=(16,)``: no downsampling), standing
  in for the semantic knowledge SD's prior would bring;
- text is MiniLM (384-d sentence vectors) instead of CLIP: the global prompt becomes one
  cross-attention token through ``prompt_proj``.

Weights folder (``--weights`` / ``RESTORER_WEIGHTS``): ``unet/ controlnet/ adapter/`` in
diffusers format. Without either, the weights shipped in the package
(``restorer/weights/tiny/``, trained by ``restorer train``, see its RECIPE.md; stored in
float16 to halve the download, loaded as float32) are used; only when those are absent
too does tiny run from a seeded random initialisation, warning that its colours are
meaningless.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from restorer.models.mtcolor.features import CHANNELS
from restorer.models.mtcolor.model import MTColorModel

log = logging.getLogger(__name__)

UNET_DEFAULTS: dict[str, Any] = {
    "block_out_channels": [32, 64, 128],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "cross_attention_dim": 128,
    "attention_head_dim": 8,
    "norm_num_groups": 16,
}
SCHEDULER_DEFAULTS: dict[str, Any] = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
                                      "clip_sample": False, "set_alpha_to_one": True,
                                      "prediction_type": "epsilon"}


def build(opts: dict[str, Any]) -> MTColorModel:
    """Fresh modules from the options (``model``: U-Net overrides, ``features``, ``grid``)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from restorer.models.mtcolor.adapter import MTColorAdapter

    cfg = {**UNET_DEFAULTS, **opts.get("model", {}).get("unet", {})}
    unet = UNet2DConditionModel(sample_size=int(opts.get("grid", 32)), in_channels=3, out_channels=2, **cfg)
    cond_channels = 1 + (CHANNELS if opts.get("features", "efficientnet-lite0") != "none" else 0)
    controlnet = ControlNetModel.from_unet(unet, conditioning_channels=cond_channels,
                                           conditioning_embedding_out_channels=(16,))
    token_dim = int(opts.get("model", {}).get("token_dim", cfg["cross_attention_dim"]))
    adapter = MTColorAdapter.for_unet(unet, text_dim=384, token_dim=token_dim, prompt_dim=384)
    return MTColorModel(unet, controlnet, adapter)


SHIPPED = Path(__file__).resolve().parents[2] / "weights" / "tiny"


def shipped() -> Path | None:
    """The package's trained tiny weights, or None when they are not installed."""
    return SHIPPED if all((SHIPPED / p).is_dir() for p in ("unet", "controlnet", "adapter")) else None


def random_init(opts: dict[str, Any]) -> MTColorModel:
    """Seeded random modules (``init_seed``), with a warning: no trained tiny weights yet."""
    log.warning("tiny preset: no trained weights found (none shipped; pass --weights DIR or set RESTORER_WEIGHTS); "
                "running a seeded random initialisation, its colours are meaningless")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(opts.get("init_seed", 0)))
        return build(opts)


def load(root: Path, opts: dict[str, Any]) -> MTColorModel:
    """Trained tiny weights from ``root`` (unet/, controlnet/, adapter/)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from restorer.models.mtcolor.adapter import MTColorAdapter
    from restorer.models.mtcolor.loading import load_part, require

    require(root, ("unet", "controlnet", "adapter"), "tiny MT-Color weights", "--weights", "RESTORER_WEIGHTS")
    quiet = {"low_cpu_mem_usage": False}  # small models; without accelerate diffusers warns on each load otherwise
    unet = load_part(UNet2DConditionModel, root / "unet", "tiny U-Net weights", **quiet)
    controlnet = load_part(ControlNetModel, root / "controlnet", "tiny ControlNet weights", **quiet)
    adapter = load_part(MTColorAdapter, root / "adapter", "tiny adapter weights", **quiet)
    return MTColorModel(unet, controlnet, adapter)


def load_prior(root: Path) -> torch.nn.Module | None:
    """The colour prior in ``root/prior`` (:mod:`restorer.models.mtcolor.prior`), or None, said once, without one."""
    from restorer.models.mtcolor.loading import load_part
    from restorer.models.mtcolor.prior import ColourPrior

    if not (Path(root) / "prior").is_dir():
        log.warning("tiny preset: no colour prior in %s (prior/): without texts, colour comes from the diffusion "
                    "base alone and is faint; train one with 'restorer train --stage prior'", root)
        return None
    return load_part(ColourPrior, Path(root) / "prior", "tiny colour prior weights", low_cpu_mem_usage=False,
                     torch_dtype=torch.float32)


def save(model: MTColorModel, root: Path) -> None:
    """Write the three parts in diffusers format (config.json + safetensors each)."""
    model.unet.save_pretrained(root / "unet")
    model.controlnet.save_pretrained(root / "controlnet")
    model.adapter.save_pretrained(root / "adapter")


def multiple(unet: torch.nn.Module) -> int:
    """The latent size multiple the U-Net needs."""
    return 2 ** (len(unet.config.block_out_channels) - 1)


def scheduler_config(opts: dict[str, Any]) -> dict[str, Any]:
    return {**SCHEDULER_DEFAULTS, **opts.get("scheduler", {})}
