"""tiny's graphs for ONNX Runtime (``restorer export onnx --preset tiny``); :mod:`.onnx_runtime` runs them.

Exported with :func:`restorer.models.ort.export_graph` (opset ``OPSET``, each graph checked):

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

A folder holds the graphs, ``adapter/`` (the torch token encoder and prompt projection),
``rendered_colours.json`` when the weights have one, and ``manifest.json`` (format, opset, the
weights' fingerprint, the prior's bins, the U-Net's size multiple); it is written whole or not at all.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from restorer.errors import WeightsError
from restorer.fs import atomic_folder
from restorer.models.mtcolor.paths import MANIFEST, require_onnxruntime
from restorer.models.ort import OPSET, export_features, export_graph

FORMAT = "restorer-tiny-onnx/1"


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
    export_graph(graph, (torch.rand(1, 1, h, w) * 2 - 1, *feats), path, ["gray", *names], ["logits"], dyn)


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
    export_graph(graph, args, path, list(UNetGraph.INPUTS), ["pred"], dyn)
    return multiple


def export_tiny(model: nn.Module, prior: nn.Module | None, features: nn.Module | None, out: Path, *,
                fingerprint: Any = None, rendered: Path | None = None) -> Path:
    """Export tiny's graphs and the torch parts the engine still runs into ``out``, whole or not at all."""
    out = Path(out)
    with atomic_folder(out) as tmp:
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
    return out


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
