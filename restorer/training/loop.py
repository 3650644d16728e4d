"""The training loop every trainer runs: AdamW steps with linear warm-up then cosine decay to 10 %, a log
row per step (:mod:`.log`), an optional held-out evaluation, a progress bar and checkpoints
(:mod:`.checkpoints`).

Determinism: everything random in step ``s`` comes from generators seeded by (seed, a trainer's salt, s)
(:func:`step_generator`, :func:`seeded`), so a run resumed from a checkpoint continues exactly as the
uninterrupted run.
"""

from __future__ import annotations

import csv
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch


def lr_at(step: int, cfg: Any) -> float:
    """``cfg.lr`` warmed up linearly over ``cfg.warmup`` steps, then cosine decay to 10 % at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def step_generator(seed: int, salt: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + salt + step)


@contextmanager
def seeded(seed: int, salt: int, step: int) -> Iterator[None]:
    """Torch's global generator seeded for one step (dropout masks), restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1_000_003 + salt + step)
        yield


@dataclass
class Loop:
    """What a trainer gives the loop.

    ``step(s)`` computes step ``s``'s loss and the trainer's own log columns (strings); ``evaluate(s)``,
    where given, scores the held-out photos after ``s`` steps (also at step 0 of a fresh run) and returns
    its log column; ``save(s)`` writes a checkpoint; ``status(losses)`` is the progress bar's text.
    """

    name: str
    header: list[str]
    step: Callable[[int], tuple[torch.Tensor, list[str]]]
    save: Callable[[int], None]
    status: Callable[[list[float], float], str]
    evaluate: Callable[[int], str] | None = None


def run(loop: Loop, opt: torch.optim.Optimizer, cfg: Any, start: int, stage_dir: Path, show: bool) -> dict[str, Any]:
    """Steps ``start`` to ``cfg.steps``; returns the summary's common part (``steps``, ``resumed_at``,
    ``seconds``) and the losses (``losses``)."""
    from restorer.console import progress

    t0, losses = time.perf_counter(), []
    with progress(show) as bar, (stage_dir / "log.csv").open("a", newline="") as fh:
        writer = csv.writer(fh)
        if start == 0:
            writer.writerow(loop.header)
            if loop.evaluate is not None:
                loop.evaluate(0)
        task = bar.add_task(loop.name, total=cfg.steps, completed=start) if bar else None
        for step in range(start, cfg.steps):
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            loss, columns = loop.step(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            last = step + 1 == cfg.steps
            if loop.evaluate is not None:
                columns = [*columns, loop.evaluate(step + 1) if (step + 1) % cfg.eval_every == 0 or last else ""]
            writer.writerow([step + 1, f"{losses[-1]:.6f}", f"{lr:.3e}", f"{time.perf_counter() - t0:.1f}", *columns])
            if bar:
                rate = (step + 1 - start) / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=1, description=loop.status(losses, rate))
            if (step + 1) % cfg.checkpoint_every == 0 or last:
                fh.flush()
                loop.save(step + 1)
    return {"steps": cfg.steps, "resumed_at": start, "seconds": round(time.perf_counter() - t0, 1),
            "losses": losses}


def final_loss(losses: list[float]) -> float | None:
    """The mean of the last 100 losses (the summary's ``final_loss``)."""
    return float(np.mean(losses[-100:])) if losses else None
