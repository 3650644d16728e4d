"""anchors on ONNX Runtime (``--runtime onnx``): a frame's two halves as two graphs.

The anchors are chosen between them in torch, as on the torch runtime: k-means on the locator's features,
each anchor's colour (most likely or sampled), the user's edits.

- ``encode.onnx``: (x, the normalised picture at the working size (B, 3, H, W); gray, the pixel level
  (B, 1, H/2, W/2) in [-1, 1]) -> association, tokens, bin logits, locator features, projected 1/8 features
  (:meth:`~restorer.models.anchors.model.DiscoModel.encode` after EfficientNet-Lite0); H, W any multiples of 32.
- ``generate.onnx``: (gray, association, s8, tokens, anchors (B, N) as 0/1, their colours (B, N, 2)) -> the
  pixels' a*b* (:meth:`~restorer.models.anchors.model.DiscoModel.generate`); the primitive count dynamic.

``restorer export onnx --preset anchors -o DIR`` writes a folder (the graphs and ``manifest.json``) that
``--weights DIR`` runs; without one, the weights in use are exported once into the cache
(:func:`restorer.models.ort.cache_root`), keyed by their fingerprint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from restorer.fs import atomic_folder
from restorer.models.anchors.paths import ONNX_FORMAT as FORMAT
from restorer.models.anchors.paths import is_onnx_export, weights_folder
from restorer.models.ort import (
    MANIFEST,
    FeaturesGraph,
    cache_key,
    cache_root,
    export_graph,
    feature_taps,
    read_manifest,
    run,
    session,
    traceable,
    writable_cache,
)

log = logging.getLogger(__name__)

EXPORT_COMMAND = "restorer export onnx --preset anchors -o DIR"
ENCODE_OUT = ["assoc", "tokens", "logits", "feats", "s8"]
GENERATE_IN = ["gray", "assoc", "s8", "tokens", "anchors", "table"]


class EncodeGraph(nn.Module):
    """EfficientNet-Lite0's pyramid of ``x``, then the model's :meth:`encode` of ``gray``."""

    def __init__(self, features: nn.Module, model: nn.Module):
        super().__init__()
        net = features.net.float().eval()
        self.features, self.model = FeaturesGraph(net, feature_taps(net)), model

    def forward(self, x: torch.Tensor, gray: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.encode(gray, dict(zip(self.features.names, self.features(x), strict=True)))


class GenerateGraph(nn.Module):
    """The model's :meth:`generate`, anchors given as 0/1."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, gray, assoc, s8, tokens, anchors, table) -> torch.Tensor:
        return self.model.generate(gray, assoc, s8, tokens, anchors > 0.5, table)


def export_anchors(model: nn.Module, features: nn.Module, out: Path, *, fingerprint: Any = None) -> Path:
    """Export the two graphs of ``model`` (a DiscoModel) and its ``features`` into ``out``, whole or not at all."""
    h, w = 256, 192  # an example of each dynamic size (any multiples of 32 run)
    x = torch.randn(1, 3, h, w)
    gray = torch.rand(1, 1, h // 2, w // 2) * 2 - 1
    with torch.no_grad():
        assoc, tokens, _, _, s8 = EncodeGraph(features, model.float().eval())(x, gray)
    model = traceable(model)
    encode = EncodeGraph(features, model).eval()
    n = tokens.shape[1]
    anchors = torch.zeros(1, n)
    anchors[0, :: max(1, n // 8)] = 1
    table = torch.randn(1, n, 2) * 30
    pixel = {0: "batch", 2: "height", 3: "width"}
    prim = {0: "batch", 1: "primitives"}
    s8_axes = {0: "batch", 2: "s8_h", 3: "s8_w"}
    with atomic_folder(Path(out)) as tmp:
        export_graph(encode, (x, gray), tmp / "encode.onnx", ["x", "gray"], ENCODE_OUT,
                     {"x": {0: "batch", 2: "x_h", 3: "x_w"}, "gray": pixel, "assoc": pixel, "tokens": prim,
                      "logits": prim, "feats": prim, "s8": s8_axes})
        export_graph(GenerateGraph(model).eval(), (gray, assoc, s8, tokens, anchors, table), tmp / "generate.onnx",
                     GENERATE_IN, ["ab"], {"gray": pixel, "assoc": pixel, "s8": s8_axes, "tokens": prim,
                                           "anchors": prim, "table": prim, "ab": pixel})
        manifest = {"format": FORMAT, "weights": fingerprint, "torch": torch.__version__,
                    "graphs": {"encode": "encode.onnx", "generate": "generate.onnx"},
                    "bins": model.centers.tolist(), "cell": int(model.config.cell),
                    "input_size": int(features.input_size)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return Path(out)


class OrtEncoder(nn.Module):
    """Stands in for :class:`~restorer.models.anchors.engine.TorchEncoder`: ``(small luma, gray) -> encode``."""

    def __init__(self, sess, input_size: int):
        super().__init__()
        from restorer.models.mtcolor.features import _MEAN, _STD

        self.sess, self.input_size = sess, int(input_size)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, small: torch.Tensor, gray: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from restorer.models.mtcolor.features import EfficientNetFeatures

        return tuple(run(self.sess, EfficientNetFeatures._input(self, small).float(), gray.float()))


class OrtDisco:
    """Stands in for the DiscoModel where the engine calls it: ``generate``, ``bin_colour``, the cells."""

    def __init__(self, sess, bins: list[list[float]], cell: int):
        self.sess = sess
        self.centers = torch.tensor(bins, dtype=torch.float32)
        self.config = SimpleNamespace(cell=int(cell))
        self.pixel_cell = int(cell) // 2

    @torch.no_grad()
    def generate(self, gray, assoc, s8, tokens, anchors, table) -> torch.Tensor:
        return run(self.sess, gray, assoc, s8, tokens, anchors.float(), table)[0]

    def bin_colour(self, index: torch.Tensor) -> torch.Tensor:
        return self.centers.to(index.device)[index]


def onnx_folder(weights: Path | None) -> Path:
    """The exported folder for this run: ``weights`` itself when it is an export, else the cache."""
    from restorer.jobs import tree_fingerprint
    from restorer.models.mtcolor.paths import resolve

    given = resolve(weights, "RESTORER_WEIGHTS")
    if is_onnx_export(given):
        return Path(given)
    root = weights_folder(weights)
    fingerprint = tree_fingerprint(root / "disco")
    folder = cache_root() / f"anchors-{cache_key({'weights': fingerprint, 'format': FORMAT})}"
    if is_onnx_export(folder):
        return folder
    log.info("exporting anchors to ONNX once into %s", folder)
    writable_cache(folder)
    return export_from_weights(root, folder)


def export_from_weights(root: Path, out: Path) -> Path:
    """Load the DiscoModel in ``root``/disco and its features, and export them into ``out``."""
    from restorer.jobs import tree_fingerprint
    from restorer.models.anchors.model import DiscoModel
    from restorer.models.mtcolor.features import EfficientNetFeatures
    from restorer.models.strict import from_pretrained_strict

    model = from_pretrained_strict(DiscoModel, Path(root) / "disco", "anchors weights", low_cpu_mem_usage=False)
    features = EfficientNetFeatures(backbone=model.config.backbone)
    return export_anchors(model, features, out, fingerprint=tree_fingerprint(Path(root) / "disco"))


def open_anchors_onnx(weights: Path | None, device: str, threads: int | None, options: dict[str, Any]):
    """The anchors engine with both halves of a frame on ONNX Runtime."""
    from restorer.models.anchors.engine import AnchorsEngine

    folder = onnx_folder(weights)
    manifest = read_manifest(folder, FORMAT, "an anchors", EXPORT_COMMAND)
    model = OrtDisco(session(folder / "generate.onnx", threads, device), manifest["bins"], manifest["cell"])
    encoder = OrtEncoder(session(folder / "encode.onnx", threads, device), options["size"])
    return AnchorsEngine(model, None, device="cpu", encoder=encoder, runtime="onnx", **options)
