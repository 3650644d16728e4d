"""Which trainer ``restorer train --preset X`` runs: the preset's engine names it in :data:`TRAINERS`.

A trainer (:class:`Trainer`) maps each ``--stage`` it takes (None: it trains in one stage) to a
:class:`Stage`: how to run it from the command line's values (:class:`TrainRequest`) and how ``--export``
copies its weights. Light on purpose: the CLI reads the stage names without importing torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from restorer.errors import InputError

# engine -> (its trainer, "module:attribute"; the --stage names it takes, none: one stage)
TRAINERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mtcolor": ("restorer.training.tiny:TRAINER", ("0", "1", "2", "prior")),
    "anchors": ("restorer.training.anchors:TRAINER", ()),
}
STAGES = tuple(dict.fromkeys(s for _, stages in TRAINERS.values() for s in stages))  # the CLI's --stage choices


@dataclass(frozen=True)
class TrainRequest:
    """``restorer train``'s values; None where the user gave none (each stage has its own defaults)."""

    preset: str
    data: Path
    out: Path
    stage: str | None
    steps: int
    resume: bool = False
    init: Path | None = None
    batch: int | None = None
    lr: float | None = None
    warmup: int | None = None
    views: int | None = None
    checkpoint_every: int = 250
    rebalance: float = 0.5
    seed: int = 0
    backbone: str = "efficientnet-lite0"
    context: int = 0
    global_context: bool = False
    dropout: float = 0.3
    jitter: float = 0.0
    progress: bool = True


@dataclass(frozen=True)
class Stage:
    run: Callable[[TrainRequest], dict[str, Any]]  # returns the summary, with the ``final`` weights folder
    export: Callable[[Path, Path], Path]  # (final, --export folder) -> what was written


@dataclass(frozen=True)
class Trainer:
    what: str  # for messages: "the tiny preset"
    stages: dict[str | None, Stage]
    check: Callable[[str], None] = lambda preset: None  # refuses a preset it cannot train, before any cache


def trainer_for(preset: str) -> Trainer:
    """The trainer of the preset's engine.

    Raises:
        InputError: the engine has no trainer.
    """
    from restorer.presets import load_preset

    chosen = load_preset(preset)
    if chosen.engine not in TRAINERS:
        raise InputError(f"preset {chosen.name!r} is {chosen.engine}, and restorer train has no trainer for it",
                         hint=f"train --preset tiny or --preset anchors (a preset whose engine is one of: "
                              f"{', '.join(TRAINERS)})")
    module, attribute = TRAINERS[chosen.engine][0].split(":")
    return getattr(importlib.import_module(module), attribute)


def stage_of(trainer: Trainer, stage: str | None, preset: str) -> Stage:
    """The trainer's stage ``stage`` (None: its only stage).

    Raises:
        InputError: a stage the trainer does not have, or none given where it has several.
    """
    names = [s for s in trainer.stages if s is not None]
    if stage in trainer.stages:
        return trainer.stages[stage]
    if not names:
        raise InputError(f"--stage {stage} is not a stage of {trainer.what}: it trains in one stage",
                         hint=f"leave --stage out with --preset {preset}")
    choices = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
    if stage is None:
        raise InputError(f"--stage is required for {trainer.what}", hint=f"give --stage {choices}")
    raise InputError(f"--stage {stage} is not a stage of {trainer.what}", hint=f"give --stage {choices}")
