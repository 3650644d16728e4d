"""``restorer train --export DIR``: trained weights copied as the package ships them."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch


def export_weights(src: Path, dst: Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Copy tiny's trained weights (``unet/ controlnet/ adapter/``) to ``dst`` in ``dtype`` (float16 halves
    the shipped size; :func:`restorer.models.mtcolor.tiny.load` reads them back as float32)."""
    from restorer.models.mtcolor import tiny

    model = tiny.load(Path(src), {}).to(dtype)
    dst = Path(dst)
    for part in ("unet", "controlnet", "adapter"):
        shutil.rmtree(dst / part, ignore_errors=True)
    tiny.save(model, dst)
    return dst


def export_prior(src: Path, dst: Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Copy trained prior weights to ``dst/prior`` in ``dtype`` (loaded back as float32)."""
    from restorer.models.mtcolor.prior import ColourPrior

    return _export_pretrained(ColourPrior, src, Path(dst) / "prior", torch_dtype=dtype)


def export_anchors(src: Path, dst: Path) -> Path:
    """Copy trained weights to ``dst/disco`` (float32: the model is small, and the export loads bit-identically)."""
    from restorer.models.anchors.model import DiscoModel

    return _export_pretrained(DiscoModel, src, Path(dst) / "disco")


def _export_pretrained(cls, src: Path, target: Path, **kwargs) -> Path:
    model = cls.from_pretrained(Path(src), local_files_only=True, low_cpu_mem_usage=False, **kwargs)
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(target)
    return target
