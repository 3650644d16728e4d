"""Checkpoints, shared by every trainer: ``STAGE_DIR/checkpoint-NNNNNN/`` holds the weights, AdamW's moments
(``optimizer.safetensors``) and ``state.json`` (the step, the settings and the trainer's extras); the last
two are kept. ``--resume`` continues from the latest one, exactly, and only with the same settings.

Trainers with early stopping (the prior, anchors) also keep ``best/`` (the weights of the best held-out
score, copied into each checkpoint) and finish with ``final/`` = ``best/``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from restorer.errors import InputError

log = logging.getLogger(__name__)

KEEP = 2  # checkpoints kept per stage


def save_checkpoint(model, opt: torch.optim.Optimizer, params: list, step: int, folder: Path,
                    cfg: Any, save: Callable[[Any, Path], None] | None = None,
                    extra: dict[str, Any] | None = None, add: Callable[[Path], None] | None = None) -> None:
    """Weights (``save``, default :func:`restorer.models.mtcolor.tiny.save`), AdamW's state and the step
    (with ``extra`` in ``state.json``; ``add`` writes more files), written as one folder
    (:func:`restorer.fs.atomic_folder`)."""
    from safetensors.torch import save_file

    from restorer.fs import atomic_folder
    from restorer.models.mtcolor import tiny

    with atomic_folder(folder) as tmp:
        (save or tiny.save)(model, tmp)
        state = {}
        for i, (_, p) in enumerate(params):
            s = opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq", "step"):
                if key in s:
                    state[f"{i}.{key}"] = torch.as_tensor(s[key]).detach().clone().contiguous()
        save_file(state, tmp / "optimizer.safetensors")
        (tmp / "state.json").write_text(json.dumps({"step": step, "config": asdict(cfg), **(extra or {})},
                                                   indent=1) + "\n")
        if add is not None:
            add(tmp)


def checkpoint(model, opt: torch.optim.Optimizer, params: list, step: int, stage_dir: Path, cfg: Any,
               **kwargs: Any) -> None:
    """:func:`save_checkpoint` as ``stage_dir/checkpoint-STEP``; older ones beyond :data:`KEEP` go."""
    save_checkpoint(model, opt, params, step, stage_dir / f"checkpoint-{step:06d}", cfg, **kwargs)
    for old in sorted(stage_dir.glob("checkpoint-*[0-9]"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_with_best(model, opt: torch.optim.Optimizer, step: int, stage_dir: Path, cfg: Any,
                         best: dict) -> None:
    """A checkpoint of a diffusers-style model trained with early stopping: ``best`` and ``best/`` with it."""
    checkpoint(model, opt, list(model.named_parameters()), step, stage_dir, cfg,
               save=lambda m, d: m.save_pretrained(d), extra={"best": best},
               add=lambda tmp: shutil.copytree(stage_dir / "best", tmp / "best"))


def load_optimizer(opt: torch.optim.Optimizer, params: list, folder: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(folder / "optimizer.safetensors")
    for i, (_, p) in enumerate(params):
        if f"{i}.step" in state:
            opt.state[p] = {k: state[f"{i}.{k}"].clone() for k in ("step", "exp_avg", "exp_avg_sq")}


def latest_checkpoint(stage_dir: Path) -> Path | None:
    found = sorted(stage_dir.glob("checkpoint-*[0-9]"))
    return found[-1] if found else None


def resume_point(stage_dir: Path, resume: bool, cfg: Any, what: str) -> Path | None:
    """The checkpoint to continue from: the latest with ``resume`` (its settings must be ``cfg``, compared as
    JSON: tuples are lists there), else None, and a fresh start drops the old log.

    Raises:
        InputError: the checkpoint was made with other settings.
    """
    from restorer.training.log import truncate_log

    ckpt = latest_checkpoint(stage_dir) if resume else None
    if resume and ckpt is None:
        log.info("no checkpoint in %s: starting %s from the beginning", stage_dir, what)
    if ckpt is None:
        truncate_log(stage_dir / "log.csv", 0)
        return None
    if json.loads((ckpt / "state.json").read_text())["config"] != json.loads(json.dumps(asdict(cfg))):
        raise InputError("the checkpoint was made with other training settings", path=ckpt,
                         hint="resume with the same --steps and options, or start a new --out")
    return ckpt


def resume_from(ckpt: Path, opt: torch.optim.Optimizer, params: list, what: str) -> dict[str, Any]:
    """AdamW's moments and the log of a checkpoint (the weights are the trainer's to load); returns its
    ``state.json``."""
    from restorer.training.log import truncate_log

    state = json.loads((ckpt / "state.json").read_text())
    load_optimizer(opt, params, ckpt)
    truncate_log(ckpt.parent / "log.csv", state["step"])
    log.info("resuming %s at step %d from %s", what, state["step"], ckpt)
    return state


def fresh_or_resumed(stage_dir: Path, resume: bool, model, opt, cfg: Any, best: dict, what: str) -> tuple[int, dict]:
    """Early stopping: the step to start at and the best so far, from the latest checkpoint with ``resume``
    (weights, AdamW's moments, ``best/``, the log), else (0, ``best``)."""
    from safetensors.torch import load_file

    ckpt = resume_point(stage_dir, resume, cfg, what)
    if ckpt is None:
        return 0, best
    model.load_state_dict(load_file(ckpt / "diffusion_pytorch_model.safetensors"), strict=True)
    state = resume_from(ckpt, opt, list(model.named_parameters()), what)
    shutil.rmtree(stage_dir / "best", ignore_errors=True)
    shutil.copytree(ckpt / "best", stage_dir / "best")
    return state["step"], state["best"]


def keep_if_best(model, stage_dir: Path, best: dict, score: float, step: int, key: str, **more: Any) -> dict:
    """The best so far after a held-out ``score`` at ``step`` (lower is better; ``best[key]`` is the best
    score, ``best["last"]`` the latest); a new best saves the model as ``best/``."""
    from restorer.fs import atomic_folder

    best = {**best, "last": score}
    if score < best[key]:
        with atomic_folder(stage_dir / "best") as tmp:
            model.save_pretrained(tmp)
        best = {**best, key: score, "step": step, **more}
    return best


def finish(stage_dir: Path, title: str) -> Path:
    """``final/`` = ``best/`` (the early-stopped weights), and the loss plot; returns ``final/``."""
    from restorer.training.log import draw_loss_plot

    final = stage_dir / "final"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(stage_dir / "best", final)
    draw_loss_plot(stage_dir / "log.csv", stage_dir / "loss.png", title=title)
    return final
