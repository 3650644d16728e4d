"""Augmentation: the training views of a photo (crops, flips, scale and exposure jitter) and the batches of
tiny's stages (condition dropout and counter colours, :mod:`restorer.training.counter`).

The sizes are read from this module when a function runs (tests shrink ``GRID`` and ``VIEW`` here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

GRID = 32  # the a*b* grid of tiny's caches
VIEW = 256  # side of a training view
LABEL_SIZE = 64  # side of a view's instance labels
MAX_INSTANCES = 12


def _view_params(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int, bool]:
    side = max(8, int(round(min(h, w) * rng.uniform(0.6, 1.0))))
    return int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)), side, bool(rng.random() < 0.5)


def _view(rgb: np.ndarray, labels: np.ndarray, y: int, x: int, side: int, flip: bool):
    from PIL import Image

    crop, lab = rgb[y:y + side, x:x + side], labels[y:y + side, x:x + side]
    if flip:
        crop, lab = crop[:, ::-1], lab[:, ::-1]
    crop = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
    crop = F.interpolate(crop, size=(VIEW, VIEW), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    lab = np.asarray(Image.fromarray(np.ascontiguousarray(lab)).resize((LABEL_SIZE, LABEL_SIZE), Image.NEAREST))
    return crop, torch.from_numpy(lab.copy())


def augmented_views(rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator, views: int):
    """``views`` random square crops of 60-100 % of the short side (scale jitter) and flips of a photo:
    (crop (1, 3, VIEW, VIEW), its luma, labels (LABEL_SIZE, LABEL_SIZE))."""
    for _ in range(views):
        crop, lab = _view(rgb, labels, *_view_params(rng, *labels.shape))
        yield crop, 0.299 * crop[:, :1] + 0.587 * crop[:, 1:2] + 0.114 * crop[:, 2:], lab


def add_view(out: dict[str, list], crop: torch.Tensor, luma: torch.Tensor, record: int) -> None:
    """Append a view's gray (in [-1, 1]) and a*b* at the grid, float16, and its record index to ``out``."""
    from restorer.models.mtcolor.spaces import resize, rgb_to_ab

    out["gray"].append((resize(luma, (GRID, GRID)) * 2 - 1)[0].half())
    out["ab"].append(resize(rgb_to_ab(crop), (GRID, GRID))[0].half())
    out["record"].append(torch.tensor(record))


def jittered(luma: torch.Tensor, rng: np.random.Generator, amount: float) -> torch.Tensor:
    """Mild exposure and contrast jitter of a gray view (gain and contrast in 1 +- ``amount``), clipped to
    [0, 1]: a scan is often darker, brighter or flatter than the photo was. Hue is never touched (the
    colour target is the photo's own)."""
    if amount <= 0:
        return luma
    gain, contrast = rng.uniform(1 - amount, 1 + amount, size=2)
    mean = luma.mean()
    return (((luma - mean) * float(contrast) + mean) * float(gain)).clamp(0, 1)


@dataclass
class Batch:
    x0: torch.Tensor          # (B, 2, g, g) target a*b*/100
    gray: torch.Tensor        # (B, 1, g, g)
    control: torch.Tensor | None
    prompt: torch.Tensor      # (B, 384) global text embedding
    cover: torch.Tensor       # (B, R, g, g)
    small: torch.Tensor       # (B, R, 64, 64)
    text: torch.Tensor        # (B, R, 384)
    keep: torch.Tensor        # (B, R) bool


def make_batch(cache: dict[str, Any], cfg: Any, g: torch.Generator, *, counter: bool,
               control: bool, ab_scale: float = 100.0) -> Batch:
    """Sample and augment one batch of tiny's cache with generator ``g`` (:mod:`restorer.training.tiny`).

    ``cfg``: a :class:`restorer.training.tiny.TrainConfig` (batch, p_drop, p_drop_prompt, p_counter).
    """
    from restorer.models.colornames import COUNTER_COLORS, TRAINED_COLOURS
    from restorer.training.counter import counter_colour, palette_ab

    n = cache["gray"].shape[0]
    idx = torch.randint(0, n, (cfg.batch,), generator=g)
    rec = cache["record"][idx]
    onehot = F.one_hot(cache["labels"][idx].long(), MAX_INSTANCES).permute(0, 3, 1, 2).float()
    cover = F.avg_pool2d(onehot, LABEL_SIZE // GRID)
    ab = cache["ab"][idx].float()
    obj, col = cache["inst_obj"][rec], cache["inst_col"][rec].clone()
    present = (cover.flatten(2).amax(2) > 0) & (obj >= 0)
    keep = present & (torch.rand(cfg.batch, 1, generator=g) >= cfg.p_drop)
    drop_prompt = torch.rand(cfg.batch, generator=g) < cfg.p_drop_prompt
    if counter:
        counter_ids = torch.tensor([TRAINED_COLOURS.index(c) for c in COUNTER_COLORS])
        ab, col, changed = counter_colour(ab, cover, col, keep, palette_ab(), counter_ids, cfg.p_counter, g)
        drop_prompt = drop_prompt | changed
    prompt = torch.where(drop_prompt[:, None], cache["global_emb"][-1], cache["global_emb"][rec])
    text = cache["text_emb"][obj.clamp_min(0), col.clamp_min(0)]
    ctrl = None
    gray = cache["gray"][idx].float()
    if control and "feat" in cache:
        feat = F.interpolate(cache["feat"][idx].float(), size=(GRID, GRID), mode="bilinear", align_corners=False)
        ctrl = torch.cat([gray, feat], dim=1)
    elif control:
        ctrl = gray  # a preset with ``features: none``
    return Batch(ab / ab_scale, gray, ctrl, prompt, cover, onehot, text, keep)
