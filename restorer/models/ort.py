"""What every engine on ONNX Runtime shares: exporting a graph, opening a session, the export cache.

An engine's exported folder holds its graphs and a ``manifest.json`` naming its format; engines put
their exports of the weights in use under :func:`cache_root` (``$RESTORER_CACHE/onnx``), keyed by
:func:`cache_key`, and write them with :func:`restorer.fs.atomic_folder`.
Sessions: graph optimisation ``ORT_ENABLE_ALL``, ``intra_op_num_threads`` the run's ``--threads`` or
the machine's cores; CUDAExecutionProvider first when onnxruntime-gpu has it (and the device is not
``cpu``), else CPUExecutionProvider.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restorer.errors import OutputError, WeightsError

OPSET = 17
MANIFEST = "manifest.json"


def export_graph(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
                 dynamic: dict[str, dict[int, str]]) -> None:
    """``torch.onnx.export`` (the TorchScript exporter: the dynamo one needs onnxscript), then the checker."""
    import warnings

    import onnx

    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # nn.TransformerEncoderLayer's fused kernel has no ONNX op
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, opset_version=OPSET,
                              dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    onnx.checker.check_model(str(path))


class _TracedAttention(nn.Module):
    """nn.MultiheadAttention (batch first, self-attention, no masks) with shapes left to the graph.

    The exporter bakes the traced sequence length into nn.MultiheadAttention's reshapes; this one reshapes
    with -1, so an exported Transformer takes any token count. Same weights, same result."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        if not mha.batch_first or mha.in_proj_weight is None:
            raise ValueError("only batch-first attention with packed in-projection is supported")
        self.heads, self.in_proj_weight, self.in_proj_bias, self.out_proj = (mha.num_heads, mha.in_proj_weight,
                                                                             mha.in_proj_bias, mha.out_proj)
        # what nn.TransformerEncoder reads of its layers' attention
        self.batch_first, self.num_heads, self._qkv_same_embed_dim = True, mha.num_heads, True

    def forward(self, query, key, value, attn_mask=None, key_padding_mask=None, need_weights=False, is_causal=False):
        if attn_mask is not None or key_padding_mask is not None:
            raise ValueError("masks are not supported")
        b, _, d = query.shape
        q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, -1, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, d)
        return self.out_proj(out), None


def traceable(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose self-attention layers export with a dynamic token count."""
    module = copy.deepcopy(module).float().eval()
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, name, _TracedAttention(child))
    return module


def providers(device: str | None = None) -> list[str]:
    """CUDA first when onnxruntime has it (and the run is not on the CPU), then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = [] if str(device or "").startswith("cpu") else [p for p in ("CUDAExecutionProvider",) if p in available]
    return chosen + ["CPUExecutionProvider"]


def session(path: Path, threads: int | None = None, device: str | None = None):
    """An inference session on ``path`` (see the module docstring)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    so.log_severity_level = 3
    # no busy-waiting between runs: torch works between the graphs (the sampler, k-means) on the same cores
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=providers(device))


def as_numpy(x: torch.Tensor) -> np.ndarray:
    """A tensor as the contiguous float32 array a session takes."""
    return np.ascontiguousarray(x.detach().float().cpu().numpy())


def run(sess, *args: torch.Tensor) -> list[torch.Tensor]:
    """Run ``sess`` on tensors given in its inputs' order (int64 where the graph takes int64, else float32);
    its outputs back as tensors on the first input's device."""
    feed = {i.name: (a.detach().cpu().numpy().astype(np.int64) if i.type == "tensor(int64)" else as_numpy(a))
            for i, a in zip(sess.get_inputs(), args, strict=True)}
    device = args[0].device
    return [torch.from_numpy(o).to(device) for o in sess.run(None, feed)]


def cache_root() -> Path:
    """Where exports of the weights in use are kept: ``$RESTORER_CACHE/onnx`` (default ``~/.cache/restorer``)."""
    base = os.environ.get("RESTORER_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "restorer") / "onnx"


def cache_key(what: dict[str, Any]) -> str:
    """A short stable key of what an export depends on (the weights' fingerprint, format, opset, torch)."""
    what = {**what, "opset": OPSET, "torch": torch.__version__}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


def writable_cache(folder: Path) -> None:
    """Make the cache's parent, or refuse with the one line that says how to choose another."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write the ONNX cache: {exc.strerror or exc}", path=folder.parent,
                          hint="set RESTORER_CACHE to a writable folder, or run `restorer export onnx`") from None


def read_manifest(folder: Path, fmt: str, what: str, export_command: str) -> dict[str, Any]:
    """An exported folder's manifest, checked: its format is ``fmt`` and every graph it names is there."""
    hint = f"export again with `{export_command} --overwrite`"
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"unreadable ONNX manifest: {exc}", path=Path(folder) / MANIFEST, hint=hint) from None
    if manifest.get("format") != fmt:
        other = str(manifest.get("format", "")).removeprefix("restorer-").split("-onnx")[0]
        if other and other != fmt.removeprefix("restorer-").split("-onnx")[0]:
            hint = f"it is the {other} preset's export: run it with --preset {other}, or export {what.split()[-1]}'s"
        raise WeightsError(f"not {what} ONNX export (format {manifest.get('format')!r})", path=folder, hint=hint)
    missing = [g for g in manifest.get("graphs", {}).values() if not (Path(folder) / g).is_file()]
    if missing:
        raise WeightsError(f"ONNX export incomplete: missing {', '.join(missing)}", path=folder, hint=hint)
    return manifest


# ----------------------------------------------------------------------------------------------- EfficientNet

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


def export_features(features: nn.Module, path: Path) -> list[str]:
    """EfficientNet-Lite0 -> ``path``; returns the names of its outputs."""
    net = copy.deepcopy(features.net).float().eval()  # Lite0's activations are ReLU6: no set_swish (it makes swish)
    graph = FeaturesGraph(net, feature_taps(net)).eval()
    dyn = {"x": {0: "batch", 2: "height", 3: "width"}}
    dyn.update({n: {0: "batch", 2: f"{n}_h", 3: f"{n}_w"} for n in graph.names})
    export_graph(graph, (torch.rand(1, 3, 256, 192),), path, ["x"], graph.names, dyn)
    return graph.names
