"""Building and loading the MT-Color components; it never downloads.

Layouts (diffusers format: ``config.json`` + ``*.safetensors`` per folder):

- our weights (``--weights DIR`` / ``RESTORER_WEIGHTS``): ``controlnet/``, ``adapter/``; for
  tiny also ``unet/`` (tiny has no pretrained base).
- sd15 base (``--base PATH`` / ``RESTORER_SD15``): a folder in the layout of the public
  release, ``unet/ vae/ text_encoder/ tokenizer/ scheduler/``; or a single ``.safetensors``
  file. A single file needs the configs locally: they are read from the folder named by
  ``RESTORER_SD15_CONFIG`` (or the option ``base_config``), else from the file's own folder,
  which must hold ``unet/config.json vae/config.json text_encoder/config.json tokenizer/
  scheduler/`` (weights not needed there). The file's keys are either diffusers names
  prefixed by component (``unet.``, ``vae.``, ``text_encoder.``; what
  :func:`save_single_file` writes) or the original CompVis/LDM layout
  (``model.diffusion_model.``), which diffusers' single-file converters turn into the former
  with the same local configs; both then load with strict keys.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from restorer.errors import WeightsError
from restorer.models.mtcolor.paths import OUR_PARTS, SD15_PARTS, require, resolve  # noqa: F401 - also loading's API

log = logging.getLogger(__name__)

SD15_UNET_CONFIG: dict[str, Any] = {  # runwayml/stable-diffusion-v1-5 unet/config.json, the fields that differ
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "cross_attention_dim": 768,
    "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2, "attention_head_dim": 8,
}


def load_part(cls: Any, folder: Path, what: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(folder)`` with strict keys: a missing, unexpected or mis-shaped tensor, like any
    other failure, is a WeightsError naming ``what``, the folder and the first offending keys
    (:mod:`restorer.models.strict`)."""
    from restorer.models.strict import from_pretrained_strict

    return from_pretrained_strict(cls, folder, what, **kwargs)


def load_sd15_folder(root: Path, dtype: torch.dtype) -> dict[str, Any]:
    """unet, vae, text (CLIPText), scheduler config from a diffusers folder."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from restorer.models.mtcolor.text import CLIPText

    require(root, SD15_PARTS, "Stable Diffusion 1.5 base", "--base", "RESTORER_SD15")
    return {"unet": load_part(UNet2DConditionModel, root / "unet", "SD 1.5 U-Net weights", torch_dtype=dtype),
            "vae": load_part(AutoencoderKL, root / "vae", "SD 1.5 VAE weights", torch_dtype=dtype),
            "text": CLIPText.from_folder(root, dtype, "cpu"),
            "scheduler": dict(DDIMScheduler.load_config(root / "scheduler"))}


def load_sd15_single(path: Path, config_dir: Path, dtype: torch.dtype) -> dict[str, Any]:
    """The same parts from one ``.safetensors`` file (either key layout) and a local config folder."""
    from safetensors.torch import load_file

    require(config_dir, SD15_PARTS, "configs for the single-file SD 1.5 checkpoint", "RESTORER_SD15_CONFIG",
            "RESTORER_SD15_CONFIG")
    state = load_file(path)
    if any(k.startswith("model.diffusion_model.") for k in state):
        state = _prefixed_from_ldm(state, config_dir)
    return _load_prefixed(state, path, config_dir, dtype)


def _load_prefixed(state: dict[str, torch.Tensor], path: Path, config_dir: Path, dtype: torch.dtype) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from restorer.models.mtcolor.text import CLIPText
    from restorer.models.strict import compare_shapes, refuse_mismatch

    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_dir / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir / "vae"))
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(config_dir / "text_encoder"))
    prefixes = (("unet.", unet), ("vae.", vae), ("text_encoder.", text))
    stray = [k for k in state if not k.startswith(tuple(p for p, _ in prefixes))]
    refuse_mismatch("SD 1.5 single-file weights (keys without a unet./vae./text_encoder. prefix)", path,
                    unexpected=stray)
    for prefix, module in prefixes:
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        compare_shapes(f"SD 1.5 {prefix[:-1]} weights in the single file", path, module.state_dict(), part)
        try:
            module.load_state_dict(part, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"the {prefix[:-1]} weights in the single file do not match its config "
                               f"({str(exc).splitlines()[0][:200]})", path=path) from exc
    tokenizer = CLIPTokenizer.from_pretrained(config_dir / "tokenizer", local_files_only=True)
    return {"unet": unet.to(dtype), "vae": vae.to(dtype), "text": CLIPText(text.to(dtype).eval(), tokenizer),
            "scheduler": dict(DDIMScheduler.load_config(config_dir / "scheduler"))}


def _prefixed_from_ldm(state: dict[str, torch.Tensor], config_dir: Path) -> dict[str, torch.Tensor]:
    """An original-layout checkpoint's U-Net, VAE and text encoder under the prefixes :func:`save_single_file`
    writes, converted by diffusers' single-file converters with the local configs (what they do not convert,
    EMA copies and the noise schedule's buffers, is left out)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    parts = {"unet": convert_ldm_unet_checkpoint(state, UNet2DConditionModel.load_config(config_dir / "unet")),
             "vae": convert_ldm_vae_checkpoint(state, AutoencoderKL.load_config(config_dir / "vae")),
             "text_encoder": convert_ldm_clip_checkpoint(state)}
    parts["text_encoder"].pop("text_model.embeddings.position_ids", None)  # a fixed arange, not a weight
    return {f"{name}.{k}": v for name, part in parts.items() for k, v in part.items()}


def save_single_file(parts: dict[str, torch.nn.Module], path: Path) -> None:
    """Write unet/vae/text_encoder into one safetensors file with component prefixes."""
    from safetensors.torch import save_file

    state = {f"{name}.{k}": v.contiguous() for name, m in parts.items() for k, v in m.state_dict().items()}
    save_file(state, path)


def load_ours(root: Path, unet: torch.nn.Module, dtype: torch.dtype) -> tuple[Any, Any]:
    """(controlnet, adapter) from our weights folder, checked against ``unet``."""
    from diffusers import ControlNetModel

    from restorer.models.mtcolor.adapter import MTColorAdapter

    require(root, OUR_PARTS, "MT-Color weights (ControlNet, adapter)", "--weights", "RESTORER_WEIGHTS")
    controlnet = load_part(ControlNetModel, root / "controlnet", "MT-Color ControlNet weights", torch_dtype=dtype)
    adapter = load_part(MTColorAdapter, root / "adapter", "MT-Color adapter weights", torch_dtype=dtype)
    try:
        adapter.attach(unet)
    except ValueError as exc:
        raise WeightsError(f"MT-Color adapter does not fit this U-Net: {exc}", path=root / "adapter") from exc
    return controlnet, adapter
