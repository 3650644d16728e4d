"""The ``anchors`` engine (preset ``anchors``): DISCO's global colour anchors behind the engine contract.

Per frame (:meth:`AnchorsEngine.colorize`): the gray at the working size (long side ``size``, 256; sides
multiples of 32), EfficientNet-Lite0's pyramid of it, the gray at half that size (the model's pixel level,
where the chroma comes out), the soft superpixels and their tokens; the colour
modeler's distribution for every primitive; the anchor locator's ``anchors`` (8) primitives, clustered on
the modeler's features; each anchor's colour; the generator spreads them by its affinity; the refinement
brings them to pixels. The pipeline upsamples the a*b* under the full-resolution luma, as for every engine.

Anchor colours:

* automatic (no ``--seed`` chosen, ``ShotContext.sample`` False): each anchor takes its most likely bin
  (``colour: mode``) or the annealed mean of its distribution (``colour: mean`` at ``temperature``; the preset's);
* sampled (``--seed N``, ``--variants``): each anchor's bin is drawn from the modeler's distribution,
  restricted to its ``sample_top`` most likely bins and renormalised, with a generator seeded by the shot's
  seed: the same seed gives the same picture, another seed another plausible one;
* edited (``anchors:`` of a shot in shots.yaml): the user's colour replaces the colour of the anchor under the
  point. The primitive the pixel belongs to most becomes an anchor if it is not one.

Instance texts: inside an instance's mask the instance's named colour wins, laid over as the stencil engine
does (:mod:`restorer.models.stencil`); outside every mask the anchors' colour stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from restorer.models.anchors.locator import locate
from restorer.models.anchors.paths import DEFAULTS, check_options
from restorer.models.engine import FrameInput, ShotContext, check_chroma, with_background

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class AnchorEdit:
    """A user's anchor: a point (x, y) in pixels of the full frame and the colour's a*b* there."""

    x: float
    y: float
    ab: tuple[float, float]


@dataclass
class Anchors:
    """What a frame's anchors were: the primitives (row-major cell indices), their a*b*, and the grid."""

    index: torch.Tensor
    ab: torch.Tensor
    grid: tuple[int, int]


class AnchorsEngine:
    """Engine protocol implementation (restorer.models.engine.Engine); see the module docstring."""

    name = "anchors"
    has_automatic = True

    def __init__(self, model: Any, features: Any, *, size: int = 256, anchors: int = 8, sample_top: int = 8,
                 kmeans_iterations: int = 10, colour: str = "mode", temperature: float = 0.38, device: str = "cpu",
                 encoder: Any = None, runtime: str = "torch"):
        """``model``: the DiscoModel, or its ONNX Runtime stand-in (``generate``, ``bin_colour``, ``pixel_cell``,
        ``config.cell``); ``encoder``: ``(small luma, gray) -> model.encode's outputs``, by default the torch
        ``features`` and ``model``."""
        self.size, self.n_anchors, self.sample_top = int(size), int(anchors), int(sample_top)
        self.kmeans_iterations = int(kmeans_iterations)
        check_options({"colour": colour})
        self.colour, self.temperature = colour, float(temperature)
        self.device, self.runtime = str(device), runtime
        self.model, self.features = model, features
        if isinstance(model, torch.nn.Module):
            self.model.eval().to(self.device).float()
        if features is not None:
            self.features.eval().to(self.device).float()
        self.encoder = encoder or TorchEncoder(model, features)

    # -- the contract ---------------------------------------------------------------------------------
    def validate(self, ctx: ShotContext) -> None:
        """Instance texts must name a colour (the engine lays it inside the mask)."""
        self._instance_colours(ctx)

    def shot(self, ctx: ShotContext, frames: Iterable[FrameInput]) -> Iterator[np.ndarray]:
        colours = self._instance_colours(ctx)
        return self._frames(ctx, colours, frames)

    def _frames(self, ctx: ShotContext, colours: np.ndarray, frames: Iterable[FrameInput]) -> Iterator[np.ndarray]:
        for frame in frames:
            ab, _ = self.colorize(frame.luma, seed=ctx.seed if ctx.sample else None,
                                  edits=frame.extra.get("anchors", ctx.anchors))
            yield check_chroma(self._lay_instances(ab, frame.masks, colours), self.name)

    def automatic(self, frame: FrameInput) -> np.ndarray:
        """The automatic colour of a frame (what the temporal stage fills unexplained pixels with)."""
        return check_chroma(self.colorize(frame.luma)[0], self.name)

    def close(self) -> None:
        self.model = self.features = self.encoder = None

    # -- one frame ------------------------------------------------------------------------------------
    def working_size(self, height: int, width: int) -> tuple[int, int]:
        s = self.size / max(height, width)
        return max(32, round(height * s / 32) * 32), max(32, round(width * s / 32) * 32)

    @torch.no_grad()
    def colorize(self, luma: np.ndarray, *, seed: int | None = None, edits: Iterable[AnchorEdit] = (),
                 colours: torch.Tensor | None = None) -> tuple[np.ndarray, Anchors]:
        """(H, W) luma in [0, 1] -> ((h, w, 2) a*b* at the working size, the anchors used).

        ``seed`` None: each anchor's most likely colour; an int: sampled (see the module docstring).
        ``colours`` (K, 2): replace the automatic anchors' colours (tests, the anchor-editing sheet)."""
        from restorer.models.mtcolor.spaces import resize

        model = self.model
        full = torch.from_numpy(np.ascontiguousarray(luma, dtype=np.float32))[None, None].to(self.device)
        size = self.working_size(*luma.shape)
        small = resize(full, size)
        gray = resize(full, (size[0] // 2, size[1] // 2)) * 2 - 1  # the model's pixel level
        assoc, tokens, logits, feats, s8 = self.encoder(small, gray)
        index = locate(F.normalize(feats[0], dim=-1), self.n_anchors, self.kmeans_iterations)
        ab = anchor_colours(model, logits[0, index], seed, self.sample_top,
                            temperature=self.temperature if self.colour == "mean" else None)
        if colours is not None:
            ab = torch.as_tensor(colours, dtype=torch.float32, device=ab.device)[:len(index)]
        index, ab = apply_edits(assoc, model.pixel_cell, index, ab, edits, luma.shape)
        n = tokens.shape[1]
        mask = torch.zeros(1, n, dtype=torch.bool, device=tokens.device)
        mask[0, index] = True
        table = torch.zeros(1, n, 2, device=tokens.device)
        table[0, index] = ab.to(table.device)
        pixels = model.generate(gray, assoc, s8, tokens, mask, table)
        cell = model.config.cell
        grid = (size[0] // cell, size[1] // cell)
        return pixels[0].permute(1, 2, 0).float().cpu().numpy(), Anchors(index.cpu(), ab.cpu(), grid)

    # -- instances ------------------------------------------------------------------------------------
    @staticmethod
    def _instance_colours(ctx: ShotContext) -> np.ndarray:
        from restorer.models.stencil import instance_colours

        return instance_colours(ctx)

    @staticmethod
    def _lay_instances(ab: np.ndarray, masks: np.ndarray, colours: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks)
        if masks.shape[0] != len(colours):
            raise RuntimeError(f"{masks.shape[0]} masks for {len(colours)} instances")
        h, w = ab.shape[:2]
        background = ab
        for mask, colour in zip(masks, colours, strict=True):
            if mask.any():
                cover = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
                ab = ab + cover[..., None] * (colour - ab)
        # the anchors' picture itself is the frame without its instances
        return ab if ab is background else with_background(ab, background)


class TorchEncoder:
    """The first half of a frame in torch: EfficientNet's pyramid of the small luma, then ``model.encode``."""

    def __init__(self, model: Any, features: Any):
        self.model, self.features = model, features

    def __call__(self, small: torch.Tensor, gray: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pyramid = {k: v.float() for k, v in self.features.pyramid(small).items()}
        return self.model.encode(gray, pyramid)


def anchor_colours(model: Any, logits: torch.Tensor, seed: int | None, top: int,
                   temperature: float | None = None) -> torch.Tensor:
    """(K, Q) logits of the anchors -> (K, 2) a*b*.

    ``seed`` None: the most likely bin's centre, or with a ``temperature`` the annealed mean (Zhang et al.: the
    mean of the bins under the distribution sharpened by 1/T). An int: a bin drawn from the distribution
    restricted to its ``top`` most likely bins, with a generator seeded by ``seed``."""
    if seed is None:
        if temperature is None:
            return model.bin_colour(logits.argmax(-1))
        p = F.softmax(logits.float() / float(temperature), dim=-1)
        return p @ model.centers.to(p.device)
    p = F.softmax(logits.float(), dim=-1)
    top = max(1, min(int(top), p.shape[-1]))
    values, bins = p.topk(top, dim=-1)
    g = torch.Generator().manual_seed(int(seed))
    pick = torch.multinomial(values.cpu() / values.sum(-1, keepdim=True).cpu(), 1, generator=g)[:, 0]
    return model.bin_colour(bins.gather(1, pick.to(bins.device)[:, None])[:, 0])


def apply_edits(assoc: torch.Tensor, cell: int, index: torch.Tensor, ab: torch.Tensor, edits: Iterable[AnchorEdit],
                frame_shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The anchors after the user's edits: the primitive each point belongs to most takes the edit's colour,
    becoming an anchor if it is not one. Points are (x, y) pixels of the full frame."""
    from restorer.models.anchors.superpixels import hard_labels

    edits = list(edits)
    if not edits:
        return index, ab
    labels = hard_labels(assoc, cell)[0]
    h, w = labels.shape
    index, ab = index.tolist(), [tuple(map(float, c)) for c in ab.tolist()]
    for edit in edits:
        px = min(w - 1, max(0, int(edit.x * w / frame_shape[1])))
        py = min(h - 1, max(0, int(edit.y * h / frame_shape[0])))
        primitive = int(labels[py, px])
        if primitive in index:
            ab[index.index(primitive)] = tuple(edit.ab)
        else:
            index.append(primitive)
            ab.append(tuple(edit.ab))
    return torch.tensor(index, dtype=torch.long), torch.tensor(ab, dtype=torch.float32)


def open_anchors(options: dict | None = None, *, device: str | None = None, weights: Path | None = None,
                 dtype: Any = "auto", runtime: str = "torch", threads: int | None = None,
                 **_unused: Any) -> AnchorsEngine:
    """Build the engine from a preset's options (``size``, ``anchors``, ``sample_top``, ``kmeans_iterations``,
    ``colour``: mode or mean, ``temperature`` of the mean).

    Runs in float32 whatever ``dtype`` says (the model is small; k-means and the bins want float32).
    ``runtime`` onnx: both halves of a frame on ONNX Runtime with ``threads`` intra-op threads
    (:mod:`restorer.models.anchors.onnx_runtime`).

    Raises:
        WeightsError: the weights or a package missing, or the weights do not match the model.
        InputError: an unknown option.
    """
    from restorer.devices import resolve_device
    from restorer.models.anchors.model import DiscoModel
    from restorer.models.anchors.paths import check_paths, weights_folder
    from restorer.models.mtcolor.features import EfficientNetFeatures
    from restorer.models.strict import from_pretrained_strict

    options = dict(options or {})
    check_options(options)
    check_paths(options, weights, runtime=runtime)
    if runtime == "onnx":
        from restorer.models.anchors.onnx_runtime import open_anchors_onnx

        return open_anchors_onnx(weights, str(device or "cpu"), threads, {**DEFAULTS, **options})
    root = weights_folder(weights)
    model = from_pretrained_strict(DiscoModel, root / "disco", "anchors weights", low_cpu_mem_usage=False)
    device = resolve_device(device)
    features = EfficientNetFeatures(input_size=int(options.get("size", DEFAULTS["size"])),
                                    backbone=model.config.backbone)
    return AnchorsEngine(model, features, device=device, **{**DEFAULTS, **options})
