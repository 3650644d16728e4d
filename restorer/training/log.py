"""The training log every trainer writes (``log.csv``: step, loss, lr, seconds, then the trainer's own
columns) and its loss plot (``loss.png``; PIL: matplotlib is not a dependency)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows after ``step`` (a resumed run rewrites them); step 0 empties the log."""
    if not path.exists():
        return
    rows = list(csv.reader(path.open()))
    keep = [r for r in rows[1:] if int(r[0]) <= step] if step else []
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        if step:
            writer.writerow(rows[0])
            writer.writerows(keep)


def read_log(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, losses, learning rates) of a log."""
    rows = list(csv.reader(Path(path).open()))[1:]
    arr = np.array([[float(v) for v in r[:3]] for r in rows]) if rows else np.zeros((0, 3))
    return arr[:, 0], arr[:, 1], arr[:, 2]


def draw_loss_plot(csv_paths: Path | list[Path], png: Path, *, title: str = "training loss",
                   size: tuple[int, int] = (900, 420)) -> None:
    """Loss (raw, faint; moving average of 50, solid) and learning rate (dashed, right axis) per step, and
    the held-out points of a log with a ``heldout_ce`` column.

    Several CSVs (stages) are drawn one after the other along the step axis, separated by lines.
    """
    from PIL import Image, ImageDraw

    paths = [csv_paths] if isinstance(csv_paths, (str, Path)) else list(csv_paths)
    logs = [read_log(p) for p in paths]
    steps = np.concatenate([s + sum(len(x[0]) for x in logs[:i]) for i, (s, _, _) in enumerate(logs)]) \
        if logs else np.zeros(0)
    loss = np.concatenate([x[1] for x in logs]) if logs else np.zeros(0)
    lr = np.concatenate([x[2] for x in logs]) if logs else np.zeros(0)
    w, h = size
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    left, right, top, bottom = 60, w - 70, 30, h - 40
    d.rectangle([left, top, right, bottom], outline="black")
    d.text((left, 8), title, fill="black")
    held = [_held_out_points(p) for p in paths]
    held_steps = np.concatenate([h[0] + sum(len(x[0]) for x in logs[:i]) for i, h in enumerate(held)]) \
        if held else np.zeros(0)
    held_ce = np.concatenate([h[1] for h in held]) if held else np.zeros(0)
    if len(loss):
        _curves(d, steps, loss, lr, (left, right, top, bottom), (held_steps, held_ce))
        bounds = np.cumsum([len(x[0]) for x in logs])[:-1]
        for b in bounds:
            x = left + (right - left) * b / max(steps.max(), 1)
            d.line([(x, top), (x, bottom)], fill=(150, 150, 150))
    im.save(png)


def _held_out_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a log's ``heldout_ce`` column where it has one (the colour prior's log)."""
    rows = list(csv.DictReader(Path(path).open()))
    pts = [(float(r["step"]), float(r["heldout_ce"])) for r in rows if r.get("heldout_ce")]
    return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (np.zeros(0), np.zeros(0))


def _curves(d, steps, loss, lr, box, held=None) -> None:
    left, right, top, bottom = box
    held = held if held is not None else (np.zeros(0), np.zeros(0))
    loss = np.log10(np.maximum(loss, 1e-8))  # log scale: the loss spans decades
    lo, hi = float(np.percentile(loss, 1)), float(np.percentile(loss, 99.5))
    hi = hi if hi > lo else lo + 1e-6
    sx = lambda s: left + (right - left) * (s - steps.min()) / max(steps.max() - steps.min(), 1)  # noqa: E731
    sy = lambda v, a, b: bottom - (bottom - top) * (np.clip(v, a, b) - a) / (b - a)  # noqa: E731
    d.line(list(zip(sx(steps), sy(loss, lo, hi), strict=True)), fill=(190, 200, 235))
    k = min(50, len(loss))
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")  # of log10 loss
    d.line(list(zip(sx(steps[k - 1:]), sy(smooth, lo, hi), strict=True)), fill=(20, 60, 200), width=2)
    lr_hi = float(lr.max()) or 1.0
    pts = list(zip(sx(steps), sy(lr, 0.0, lr_hi), strict=True))
    for i in range(0, len(pts) - 1, 2):
        d.line([pts[i], pts[i + 1]], fill=(220, 90, 30))
    for frac in (0.0, 0.5, 1.0):
        y = bottom - (bottom - top) * frac
        d.text((4, y - 6), f"{10 ** (lo + (hi - lo) * frac):.3g}", fill=(20, 60, 200))
        d.text((right + 4, y - 6), f"{lr_hi * frac:.1e}", fill=(220, 90, 30))
    d.text((left, bottom + 6), f"step {int(steps.min())}", fill="black")
    d.text((right - 90, bottom + 6), f"step {int(steps.max())}", fill="black")
    legend = "loss, log scale (blue: moving average of 50)   lr (orange)"
    if len(held[0]):
        for x, y in zip(sx(held[0]), sy(np.log10(np.maximum(held[1], 1e-8)), lo, hi), strict=True):
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(30, 150, 60))
        legend += "   held-out photos (green)"
    d.text((left + 150, 8), legend, fill="black")
