"""The model a tiny stage trains: the preset's options, the starting weights and the trained parameters.

``MTColorModel.stage_modules(stage)`` says which modules a stage trains; every other parameter has
``requires_grad=False`` and is not in the optimizer, so it stays bit-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from restorer.errors import InputError
from restorer.training import augment


def preset_options(preset: str | Path) -> dict[str, Any]:
    """The options of a preset tiny's trainer can train: MT-Color's tiny backbone at the cache's grid.

    Raises:
        InputError: another engine or backbone (sd15 is not trained on the CPU here), or another grid.
    """
    from restorer.presets import load_preset

    chosen = load_preset(str(preset))
    opts = dict(chosen.options)
    if chosen.engine != "mtcolor" or opts.get("backbone") != "tiny":
        what = chosen.engine if chosen.engine != "mtcolor" else f"mtcolor with backbone {opts.get('backbone')}"
        raise InputError(f"restorer train trains MT-Color's tiny backbone; preset {chosen.name!r} is {what}",
                         hint="train --preset tiny (or a preset YAML with engine: mtcolor and backbone: tiny)")
    if int(opts.get("grid", augment.GRID)) != augment.GRID:
        raise InputError(f"preset {chosen.name!r} asks for grid {opts['grid']}; the training caches are built "
                         f"at grid {augment.GRID}", hint=f"set grid: {augment.GRID} in the preset to train it")
    return opts


def build_model(opts: dict[str, Any], stage: int, out: Path, init: Path | None, seed: int):
    """The model a stage starts from: fresh (stage 0), or the previous stage's final weights."""
    from restorer.models.mtcolor import tiny

    if stage == 0 and init is None:
        torch.manual_seed(seed)
        return tiny.build(opts)
    src = init or out / f"stage{stage - 1}" / "final"
    if not (src / "unet").exists():
        raise InputError(f"stage {stage} starts from stage {stage - 1}'s weights, which are missing", path=src,
                         hint=f"run 'restorer train ... --stage {stage - 1}' first, or pass --init DIR")
    model = tiny.load(src, opts)
    if stage == 2 and init is None:
        model = _fresh_controlnet(model, opts, seed)
    return model


def _fresh_controlnet(model, opts: dict[str, Any], seed: int):
    """ControlNet initialised from the trained U-Net's encoder, zero convolutions at zero."""
    from diffusers import ControlNetModel

    from restorer.models.mtcolor.features import CHANNELS
    from restorer.models.mtcolor.model import MTColorModel

    torch.manual_seed(seed)
    cond = 1 + (CHANNELS if opts.get("features", "efficientnet-lite0") != "none" else 0)
    controlnet = ControlNetModel.from_unet(model.unet, conditioning_channels=cond,
                                           conditioning_embedding_out_channels=(16,))
    return MTColorModel(model.unet, controlnet, model.adapter)


def trainable(model, stage: int) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze everything but the stage's modules; returns the trained (name, parameter) pairs."""
    model.requires_grad_(False)
    for module in model.stage_modules(stage):
        module.requires_grad_(True)
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]
