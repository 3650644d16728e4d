"""tiny on ONNX Runtime (``--runtime onnx``): export the three heavy graphs once, run them with ORT.

What is exported (``torch.onnx.export``, the TorchScript exporter: the dynamo one needs onnxscript;
opset ``OPSET``, each graph checked by ``onnx.checker.check_model``):

- ``features.onnx``: EfficientNet-Lite0 on the normalised picture (B, 3, H, W), H and W dynamic
  multiples of 32 -> the colour prior's pyramid (``s8 s16 s32 head``); ``prior_features.onnx`` the
  same for the prior's own backbone when it reads another (EfficientNet-Lite2);
- ``prior.onnx``: the colour prior head, (gray at the grid, pyramid) -> logits over the a*b* bins,
  the grid dynamic; the annealed mean stays in torch (it depends on the run's temperature);
- ``unet.onnx``: one noise prediction of U-Net + ControlNet + the instance branch and PMAM of
  every transformer block, with the instance masks and tokens as inputs: (z, t, gray, prompt,
  control image, tokens, masks) -> prediction; batch, grid, prompt length, token count and
  instance count dynamic. The region-restricted attention is the dense form (disallowed pairs
  at -inf before the softmax, :func:`restorer.models.mtcolor.regions.dense_attention`): the grouped
  form loops over the regions the masks hold, which a graph cannot; both give the same result.
  Region maps are made in the graph by average pooling of the masks (the grid of every level
  divides exactly: sizes are multiples of the U-Net's size multiple).

What stays in torch: the luma resize and normalisation in front of the features, the text encoder,
the instance token encoder and prompt projection (small MLPs, once per shot), the DDIM sampler.

Folders. An exported folder holds the three graphs, ``adapter/`` (the torch token encoder and
prompt projection), ``rendered_colours.json`` when the weights have one, and ``manifest.json``
(``MANIFEST``: format, opset, the weights' fingerprint, the prior's bins, the U-Net's size
multiple). ``--weights DIR`` pointing at such a folder uses it directly; otherwise the weights
(``--weights``, ``RESTORER_WEIGHTS`` or the shipped ones) are exported once into
``$RESTORER_CACHE/onnx/<key>/`` (default ``~/.cache/restorer/onnx/<key>/``), keyed by the weights'
:func:`restorer.jobs.tree_fingerprint`, written under a temporary name and renamed when complete.

Sessions: graph optimisation ``ORT_ENABLE_ALL``, ``intra_op_num_threads`` the run's ``--threads``
or the machine's cores; CUDAExecutionProvider first when onnxruntime-gpu has it (and the device is
not ``cpu``), else CPUExecutionProvider. Graphs run in float32 whatever ``--dtype`` says.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restorer.errors import InputError, OutputError, WeightsError
from restorer.models.mtcolor.paths import MANIFEST, is_exported, require_onnxruntime

__all__ = ["MANIFEST", "is_exported", "require_onnxruntime", "open_tiny_onnx", "export_tiny", "export_from_weights"]

log = logging.getLogger(__name__)

OPSET = 17
FORMAT = "restorer-tiny-onnx/1"
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------- export graphs

class FeaturesGraph(nn.Module):
    """EfficientNet-Lite0 on the normalised (B, 3, H, W) picture -> the pyramid's maps, in ``names`` order."""

    def __init__(self, net: nn.Module, taps: dict[str, int]):
        super().__init__()
        self.net, self.taps = net, taps
        self.names = [n for n in ("s8", "s16", "s32") if n in taps] + ["head"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        net, out = self.net, {}
        x = net._swish(net._bn0(net._conv_stem(x)))
        for i, block in enumerate(net._blocks):
            x = block(x)
            for name, tap in self.taps.items():
                if tap == i:
                    out[name] = x
        out["head"] = net._swish(net._bn1(net._conv_head(x)))
        return tuple(out[n] for n in self.names)


def feature_taps(net: nn.Module, size: int = 64) -> dict[str, int]:
    """The block whose output is the pyramid's map at 1/8, 1/16 and 1/32 (the last block at that stride)."""
    taps = {}
    with torch.no_grad():
        x = net._swish(net._bn0(net._conv_stem(torch.zeros(1, 3, size, size))))
        for i, block in enumerate(net._blocks):
            x = block(x)
            stride = size // x.shape[-1]
            if stride in (8, 16, 32):
                taps[f"s{stride}"] = i
    return taps


class PriorGraph(nn.Module):
    """The colour prior head with its pyramid as positional inputs."""

    def __init__(self, prior: nn.Module):
        super().__init__()
        self.prior = prior

    def forward(self, gray: torch.Tensor, *features: torch.Tensor) -> torch.Tensor:
        return self.prior(gray, dict(zip(self.prior.names, features, strict=True)))


class _Levels:
    """What the export processors read in one forward: per-level regions and control features, the tokens."""

    def __init__(self, regions: list[torch.Tensor], control: list[torch.Tensor], tokens: torch.Tensor):
        self.regions, self.control, self.tokens = regions, control, tokens


class _SelfAttn:
    def __init__(self, branch: nn.Module, level: int):
        self.branch, self.level = branch, level

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 mtcolor: _Levels | None = None):
        from restorer.models.mtcolor.adapter import _BASE

        out = _BASE(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        return out + self.branch(hidden_states, mtcolor.tokens, mtcolor.regions[self.level])


class _CrossAttn:
    def __init__(self, pmam: nn.Module, level: int):
        self.pmam, self.level = pmam, level

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 mtcolor: _Levels | None = None):
        from restorer.models.mtcolor.adapter import _BASE

        out = _BASE(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        return out + self.pmam(hidden_states, mtcolor.control[self.level], mtcolor.regions[self.level])


def block_level(name: str, levels: int) -> int:
    """The grid level (0: the latent grid, l: 1 / 2**l of it) a transformer block of the U-Net runs at."""
    parts = name.split(".")
    if parts[0] == "down_blocks":
        return int(parts[1])
    if parts[0] == "up_blocks":
        return levels - 1 - int(parts[1])
    if parts[0] == "mid_block":
        return levels - 1
    raise ValueError(f"unknown U-Net block {name!r}")


class UNetGraph(nn.Module):
    """One prediction of U-Net + ControlNet + adapter, masks in: a copy of the model with dense attention."""

    INPUTS = ("z", "t", "gray", "prompt", "control", "tokens", "masks")

    def __init__(self, model: nn.Module):
        super().__init__()
        from restorer.models.mtcolor.adapter import _key, transformer_blocks

        if model.controlnet is None:
            raise WeightsError("--runtime onnx needs tiny weights with a ControlNet (training stage 2)")
        model = copy.deepcopy(model).float().eval()
        model.adapter.set_dense(True)
        self.model = model
        self.levels = len(model.unet.config.block_out_channels)
        for name, _, _ in transformer_blocks(model.unet):
            block, level = model.unet.get_submodule(name), block_level(name, self.levels)
            block.attn1.set_processor(_SelfAttn(model.adapter.branches[_key(name)], level))
            block.attn2.set_processor(_CrossAttn(model.adapter.pmams[_key(name)], level))
        self.taps = self._control_taps()

    def _control_taps(self) -> list[int]:
        """Per level, which captured ControlNet feature (before its zero convolution) PMAM reads: the last one."""
        m = self.model
        size = 4 * 2 ** (self.levels - 1)
        ch = m.controlnet.config.conditioning_channels
        with torch.no_grad():
            m._captured = []
            m.controlnet(torch.zeros(1, m.unet.config.in_channels, size, size), torch.zeros(1, dtype=torch.long),
                         encoder_hidden_states=torch.zeros(1, 1, m.unet.config.cross_attention_dim),
                         controlnet_cond=torch.zeros(1, ch, size, size), return_dict=False)
            widths = [f.shape[-1] for f in m._captured]
            m._captured = []
        taps = []
        for level in range(self.levels):
            found = [i for i, w in enumerate(widths) if w == size // 2 ** level]
            if not found:
                raise WeightsError(f"the ControlNet has no feature at U-Net level {level}")
            taps.append(found[-1])
        return taps

    def forward(self, z, t, gray, prompt, control, tokens, masks):
        m = self.model
        sample = torch.cat([z, gray], dim=1)
        m._captured = []
        down, mid = m.controlnet(sample, t, encoder_hidden_states=prompt, controlnet_cond=control, return_dict=False)
        feats = [m._captured[i] for i in self.taps]
        m._captured = []
        regions = []
        for level in range(self.levels):
            cover = masks if level == 0 else F.avg_pool2d(masks, 2 ** level)
            inside = (cover.flatten(2) >= 0.5).long()  # (B, R, N)
            ids = torch.arange(1, masks.shape[1] + 1, device=masks.device).view(1, -1, 1)
            regions.append((inside * ids).amax(dim=1))
        state = _Levels(regions, feats, tokens)
        return m.unet(sample, t, encoder_hidden_states=prompt, down_block_additional_residuals=down,
                      mid_block_additional_residual=mid, cross_attention_kwargs={"mtcolor": state},
                      return_dict=False)[0]


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]]) -> None:
    import warnings

    import onnx

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, opset_version=OPSET,
                          dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(str(path))


def export_features(features: nn.Module, path: Path) -> list[str]:
    """EfficientNet-Lite0 -> ``path``; returns the names of its outputs."""
    net = copy.deepcopy(features.net).float().eval()  # Lite0's activations are ReLU6: no set_swish (it makes swish)
    graph = FeaturesGraph(net, feature_taps(net)).eval()
    dyn = {"x": {0: "batch", 2: "height", 3: "width"}}
    dyn.update({n: {0: "batch", 2: f"{n}_h", 3: f"{n}_w"} for n in graph.names})
    _export(graph, (torch.rand(1, 3, 256, 192),), path, ["x"], graph.names, dyn)
    return graph.names


def export_prior(prior: nn.Module, path: Path, feature_channels: dict[str, int] | None = None) -> None:
    graph = PriorGraph(copy.deepcopy(prior).float().eval()).eval()
    from restorer.models.mtcolor.features import PYRAMIDS
    from restorer.models.mtcolor.prior import prior_backbone

    names = list(prior.names)
    chans = feature_channels or {n: int(c) for n, c in (prior.config.pyramid or PYRAMIDS[prior_backbone(prior)])}
    h, w = 24, 32
    strides = {"s8": 1, "s16": 2, "s32": 4}  # the example's maps: any sizes do, the head resizes them
    feats = tuple(torch.randn(1, chans[n], max(1, h // strides.get(n, 8)), max(1, w // strides.get(n, 8)))
                  for n in names)
    dyn = {"gray": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    dyn.update({n: {0: "batch", 2: f"{n}_h", 3: f"{n}_w"} for n in names})
    _export(graph, (torch.rand(1, 1, h, w) * 2 - 1, *feats), path, ["gray", *names], ["logits"], dyn)


def export_unet(model: nn.Module, path: Path) -> int:
    """U-Net + ControlNet + adapter -> ``path``; returns the U-Net's size multiple."""
    graph = UNetGraph(model).eval()
    m = graph.model
    multiple = 2 ** (graph.levels - 1)
    b, h, w, r = 2, 4 * multiple, 3 * multiple, 2
    ch = m.controlnet.config.conditioning_channels
    masks = torch.zeros(b, r, h, w)
    masks[:, 0, : h // 2] = 1
    masks[:, 1, :, : w // 2] = 1
    args = (torch.randn(b, m.unet.config.in_channels - 1, h, w), torch.full((b,), 500, dtype=torch.long),
            torch.rand(b, 1, h, w) * 2 - 1, torch.randn(b, 1, m.unet.config.cross_attention_dim),
            torch.randn(b, ch, h, w), torch.randn(b, r + 1, m.adapter.config.token_dim), masks)
    dyn = {"z": {0: "batch", 2: "height", 3: "width"}, "t": {0: "batch"},
           "gray": {0: "batch", 2: "height", 3: "width"}, "prompt": {0: "batch", 1: "prompt_len"},
           "control": {0: "batch", 2: "height", 3: "width"}, "tokens": {0: "batch", 1: "tokens"},
           "masks": {0: "batch", 1: "instances", 2: "height", 3: "width"},
           "pred": {0: "batch", 2: "height", 3: "width"}}
    _export(graph, args, path, list(UNetGraph.INPUTS), ["pred"], dyn)
    return multiple


def export_tiny(model: nn.Module, prior: nn.Module | None, features: nn.Module | None, out: Path, *,
                fingerprint: Any = None, rendered: Path | None = None) -> Path:
    """Export tiny's graphs and the torch parts the engine still runs into the new folder ``out``.

    Written into a temporary folder beside ``out`` and renamed when complete.
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest: dict[str, Any] = {"format": FORMAT, "opset": OPSET, "weights": fingerprint,
                                    "torch": torch.__version__, "graphs": {}}
        manifest["multiple"] = export_unet(model, tmp / "unet.onnx")
        manifest["graphs"]["unet"] = "unet.onnx"
        model.adapter.save_pretrained(tmp / "adapter")
        if features is not None:
            manifest["features"] = {"outputs": export_features(features, tmp / "features.onnx"),
                                    "input_size": int(features.input_size)}
            manifest["graphs"]["features"] = "features.onnx"
        if prior is not None and features is not None:
            export_prior(prior, tmp / "prior.onnx")
            manifest["graphs"]["prior"] = "prior.onnx"
            manifest["prior"] = {"names": list(prior.names), "bins": prior.centers.tolist()}
            from restorer.models.mtcolor.prior import prior_backbone

            backbone = prior_backbone(prior)
            if backbone != getattr(features, "backbone", "efficientnet-lite0"):  # the prior reads its own features
                from restorer.models.mtcolor.features import EfficientNetFeatures

                own = EfficientNetFeatures(input_size=int(features.input_size), backbone=backbone)
                manifest["prior_features"] = {"outputs": export_features(own, tmp / "prior_features.onnx"),
                                              "input_size": int(own.input_size), "backbone": backbone}
                manifest["graphs"]["prior_features"] = "prior_features.onnx"
        if rendered is not None and Path(rendered).is_file():
            shutil.copy2(rendered, tmp / "rendered_colours.json")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"unreadable ONNX manifest: {exc}", path=Path(folder) / MANIFEST,
                           hint="export again with `restorer export onnx --preset tiny -o DIR --overwrite`") from None
    if manifest.get("format") != FORMAT:
        raise WeightsError(f"not a tiny ONNX export (format {manifest.get('format')!r})", path=folder,
                           hint="export again with `restorer export onnx --preset tiny -o DIR --overwrite`")
    missing = [g for g in manifest["graphs"].values() if not (Path(folder) / g).is_file()]
    if missing or not (Path(folder) / "adapter").is_dir():
        raise WeightsError(f"ONNX export incomplete: missing {', '.join(missing) or 'adapter/'}", path=folder,
                           hint="export again with --overwrite")
    return manifest


# ----------------------------------------------------------------------------------------------- sessions

def providers(device: str | None = None) -> list[str]:
    """CUDA first when onnxruntime has it (and the run is not on the CPU), then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = [] if str(device or "").startswith("cpu") else [p for p in ("CUDAExecutionProvider",) if p in available]
    return chosen + ["CPUExecutionProvider"]


def session(path: Path, threads: int | None = None, device: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=providers(device))


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().float().cpu().numpy())


class _Session(nn.Module):
    """A module that runs an ORT session; torch in, torch out (on the inputs' device and dtype)."""

    def __init__(self, sess):
        super().__init__()
        self.sess = sess
        self.input_names = [i.name for i in sess.get_inputs()]

    def run(self, *args: torch.Tensor) -> list[torch.Tensor]:
        feed = {}
        for name, a in zip(self.input_names, args, strict=True):
            feed[name] = a.detach().cpu().numpy().astype(np.int64) if name == "t" else _np(a)
        ref = args[0]
        return [torch.from_numpy(o).to(ref.device, ref.dtype) for o in self.sess.run(None, feed)]


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


# ----------------------------------------------------------------------------------------------- the engine

def cache_root() -> Path:
    base = os.environ.get("RESTORER_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "restorer") / "onnx"


def cache_key(root: Path | None, opts: dict[str, Any]) -> str:
    from restorer.jobs import tree_fingerprint

    what = {"weights": tree_fingerprint(root) if root is not None else None,
            "random": None if root is not None else {k: opts.get(k) for k in ("model", "grid", "init_seed")},
            "features": opts.get("features", "efficientnet-lite0"), "prior": bool(opts.get("prior", True)),
            "opset": OPSET, "format": FORMAT, "torch": torch.__version__}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


def export_from_weights(root: Path | None, opts: dict[str, Any], out: Path) -> Path:
    """Load tiny's torch modules from ``root`` (None: the shipped ones, else a random initialisation) and export."""
    from restorer.jobs import tree_fingerprint
    from restorer.models.mtcolor import tiny
    from restorer.models.mtcolor.features import EfficientNetFeatures

    require_onnxruntime(export=True)
    root = root if root is not None else tiny.shipped()
    features = EfficientNetFeatures() if opts.get("features", "efficientnet-lite0") != "none" else None
    model = tiny.load(root, opts) if root is not None else tiny.random_init(opts)
    prior = tiny.load_prior(root) if root is not None and features is not None and opts.get("prior", True) else None
    rendered = Path(root) / "rendered_colours.json" if root is not None else None
    return export_tiny(model.eval(), prior, features, out, fingerprint=tree_fingerprint(root) if root else None,
                       rendered=rendered)


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
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write the ONNX cache: {exc.strerror or exc}", path=folder.parent,
                          hint="set RESTORER_CACHE to a writable folder, or run `restorer export onnx`") from None
    return export_from_weights(root, opts, folder)


def open_tiny_onnx(opts: dict[str, Any], device: str, weights: Path | None, dtype: torch.dtype,
                   threads: int | None = None):
    """The tiny engine with its features, prior and U-Net on ONNX Runtime (see the module docstring)."""
    from restorer.models.mtcolor.adapter import MTColorAdapter
    from restorer.models.mtcolor.engine import MTColorEngine, sampling_options
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
                           device, torch.float32, prior=prior,
                           prior_temperature=float(opts.get("prior_temperature", 0.4)),
                           prompt_strength=float(opts.get("prompt_strength", 0.3)), prior_features=prior_features,
                           prior_flip=bool(opts.get("prior_flip", False)),
                           prior_saturation=float(opts.get("prior_saturation", 1.0)))
    engine.runtime = "onnx"
    return engine
