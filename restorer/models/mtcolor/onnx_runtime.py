"""tiny on ONNX Runtime (``--runtime onnx``): the graphs of :mod:`.onnx_export` in ORT sessions.

What stays in torch: the luma resize and normalisation in front of the features, the text encoder,
the instance token encoder and prompt projection (small MLPs, once per shot), the DDIM sampler.
``--weights DIR`` pointing at an exported folder uses it directly; otherwise the weights
(``--weights``, ``RESTORER_WEIGHTS`` or the shipped ones) are exported once into
``$RESTORER_CACHE/onnx/<key>/`` (:func:`restorer.models.ort.cache_root`), keyed by the weights'
:func:`restorer.jobs.tree_fingerprint`. Sessions: :func:`restorer.models.ort.session`. Graphs run in
float32 whatever ``--dtype`` says.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from restorer.errors import InputError, WeightsError
from restorer.models.mtcolor.onnx_export import FORMAT, export_from_weights
from restorer.models.mtcolor.paths import MANIFEST, is_exported, require_onnxruntime
from restorer.models.ort import cache_key as _key
from restorer.models.ort import cache_root, run, session, writable_cache
from restorer.models.ort import read_manifest as _read_manifest

__all__ = ["MANIFEST", "is_exported", "require_onnxruntime", "open_tiny_onnx", "export_from_weights"]

log = logging.getLogger(__name__)

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_EXPORT = "restorer export onnx --preset tiny -o DIR"


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, checked (its graphs and ``adapter/`` are there)."""
    manifest = _read_manifest(folder, FORMAT, "a tiny", _EXPORT)
    if not (Path(folder) / "adapter").is_dir():
        raise WeightsError("ONNX export incomplete: missing adapter/", path=folder,
                           hint=f"export again with `{_EXPORT} --overwrite`")
    return manifest


class _Session(nn.Module):
    """A module that runs an ORT session; torch in, torch out (on the inputs' device and dtype)."""

    def __init__(self, sess):
        super().__init__()
        self.sess = sess

    def run(self, *args: torch.Tensor) -> list[torch.Tensor]:
        return [o.to(args[0].dtype) for o in run(self.sess, *args)]


class OrtFeatures(_Session):
    """Stands in for :class:`~restorer.models.mtcolor.features.EfficientNetFeatures` (``pyramid``, ``forward``)."""

    def __init__(self, sess, outputs: list[str], input_size: int = 256):
        super().__init__(sess)
        self.outputs, self.input_size = outputs, input_size
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def _input(self, gray: torch.Tensor) -> torch.Tensor:
        from restorer.models.mtcolor.features import EfficientNetFeatures

        return EfficientNetFeatures._input(self, gray).float()

    @torch.no_grad()
    def pyramid(self, gray: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.outputs, self.run(self._input(gray)), strict=True))

    @torch.no_grad()
    def forward(self, gray: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        head = self.pyramid(gray)["head"]
        return F.interpolate(head, size=grid, mode="bilinear", align_corners=False)


class OrtPrior(_Session):
    """Stands in for :class:`~restorer.models.mtcolor.prior.ColourPrior` (``forward``, ``decode``)."""

    def __init__(self, sess, names: list[str], bins: list[list[float]]):
        super().__init__(sess)
        self.names = list(names)
        self.register_buffer("centers", torch.tensor(bins, dtype=torch.float32), persistent=False)

    @torch.no_grad()
    def forward(self, gray: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.run(gray, *[features[n] for n in self.names])[0]

    def decode(self, logits: torch.Tensor, temperature: float) -> torch.Tensor:
        from restorer.models.mtcolor.prior import ColourPrior

        return ColourPrior.decode(self, logits, temperature)


class OrtModel(_Session):
    """Stands in for :class:`~restorer.models.mtcolor.model.MTColorModel`: ``model(z, t, cond)`` and ``adapter``."""

    def __init__(self, sess, adapter: nn.Module):
        super().__init__(sess)
        self.adapter = adapter
        self.controlnet = True  # the graph has one (stage 2)

    @torch.no_grad()
    def forward(self, z: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        b = z.shape[0]
        t = t.expand(b) if t.ndim else t.reshape(1).repeat(b)
        masks = cond.masks
        if masks.shape[1] == 0:  # the graph takes one mask at least: an empty one is the background
            masks = masks.new_zeros(b, 1, *masks.shape[-2:])
        if cond.tokens is None or cond.control_image is None or cond.gray is None:
            raise InputError("--runtime onnx: the tiny graph needs tokens, a control image and the gray")
        return self.run(z, t, cond.gray, cond.prompt, cond.control_image, cond.tokens, masks)[0]


def cache_key(root: Path | None, opts: dict[str, Any]) -> str:
    """The cache key of tiny's export of ``root`` (None: a random initialisation from ``opts``)."""
    from restorer.jobs import tree_fingerprint

    what = {"weights": tree_fingerprint(root) if root is not None else None,
            "random": None if root is not None else {k: opts.get(k) for k in ("model", "grid", "init_seed")},
            "features": opts.get("features", "efficientnet-lite0"), "prior": bool(opts.get("prior", True)),
            "format": FORMAT}
    return _key(what)


def onnx_folder(opts: dict[str, Any], weights: Path | None) -> Path:
    """The exported folder for this run: ``weights`` itself when exported, else the cache (exported on first use)."""
    from restorer.models.mtcolor import tiny
    from restorer.models.mtcolor.loading import resolve

    given = resolve(weights, "RESTORER_WEIGHTS")
    if is_exported(given):
        return Path(given)
    root = given or tiny.shipped()
    folder = cache_root() / cache_key(root, opts)
    if is_exported(folder):
        return folder
    log.info("exporting tiny to ONNX once into %s", folder)
    writable_cache(folder)
    return export_from_weights(root, opts, folder)


def open_tiny_onnx(opts: dict[str, Any], device: str, weights: Path | None, dtype: torch.dtype,
                   threads: int | None = None):
    """The tiny engine with its features, prior and U-Net on ONNX Runtime (see the module docstring)."""
    from restorer.models.mtcolor.adapter import MTColorAdapter
    from restorer.models.mtcolor.engine import MTColorEngine, sampling_options, tiny_knobs
    from restorer.models.mtcolor.loading import load_part
    from restorer.models.mtcolor.spaces import AB_SCALE, TinySpace
    from restorer.models.mtcolor.text import MiniLMText
    from restorer.models.mtcolor.tiny import scheduler_config

    require_onnxruntime()
    folder = onnx_folder(opts, weights)
    manifest = read_manifest(folder)
    adapter = load_part(MTColorAdapter, folder / "adapter", "tiny adapter weights", low_cpu_mem_usage=False)
    model = OrtModel(session(folder / "unet.onnx", threads, device), adapter)
    use_features = opts.get("features", "efficientnet-lite0") != "none"
    features = None
    if use_features:
        if "features" not in manifest["graphs"]:
            raise WeightsError("this ONNX export has no features graph but the preset uses them", path=folder,
                               hint="export again with `restorer export onnx --preset tiny`")
        info = manifest["features"]
        features = OrtFeatures(session(folder / "features.onnx", threads, device), info["outputs"],
                               int(info.get("input_size", 256)))
    prior = prior_features = None
    if features is not None and opts.get("prior", True) and "prior" in manifest["graphs"]:
        prior = OrtPrior(session(folder / "prior.onnx", threads, device), manifest["prior"]["names"],
                         manifest["prior"]["bins"])
        if "prior_features" in manifest["graphs"]:
            info = manifest["prior_features"]
            prior_features = OrtFeatures(session(folder / "prior_features.onnx", threads, device), info["outputs"],
                                         int(info.get("input_size", 256)))
    text = MiniLMText("cpu")
    if opts.get("canonical_texts", False):
        from restorer.models.colornames import TRAINED_COLOURS
        from restorer.models.mtcolor.text import CanonicalText

        calibration = folder / "rendered_colours.json"
        rendered = json.loads(calibration.read_text())["words"] if calibration.is_file() else None
        text = CanonicalText(text, TRAINED_COLOURS, rendered)
    multiple = int(manifest["multiple"])
    space = TinySpace(grid=int(opts.get("grid", 32)), multiple=multiple, features=features,
                      ab_scale=float(opts.get("ab_scale", AB_SCALE)))
    # ORT runs float32; the torch parts left (text, token encoder) follow the device in float32 too
    engine = MTColorEngine(model, space, text, scheduler_config(opts), sampling_options(opts, multiple),
                           device, torch.float32, prior=prior, prior_features=prior_features, **tiny_knobs(opts))
    engine.runtime = "onnx"
    return engine
