"""The anchors engine's cheap refusals: the weights folder and the feature packages, before any heavy import
(imports nothing but the standard library and :mod:`restorer.errors`, as :mod:`restorer.models.mtcolor.paths`)."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

from restorer.errors import WeightsError
from restorer.models.mtcolor.paths import FEATURE_PACKAGES, MANIFEST, RUNTIMES, require_onnxruntime, resolve

PART = "disco"
# the preset options and their defaults (restorer/presets/anchors.yaml; the engine's module docstring)
DEFAULTS = {"size": 256, "anchors": 8, "sample_top": 8, "kmeans_iterations": 10, "colour": "mode",
            "temperature": 0.38}
COLOUR_CHOICES = ("mode", "mean")
ONNX_FORMAT = "restorer-anchors-onnx/1"  # an exported folder's (restorer.models.anchors.onnx_runtime)


def check_options(options: dict) -> None:
    """Refuse an option the anchors engine does not read, or a colour choice it does not know."""
    from restorer.errors import InputError

    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise InputError(f"unknown anchors option(s): {', '.join(unknown)}",
                         hint=f"the anchors engine takes {', '.join(DEFAULTS)}")
    if options.get("colour", "mode") not in COLOUR_CHOICES:
        raise InputError(f"anchors option colour: {options['colour']!r} is not one of {', '.join(COLOUR_CHOICES)}",
                         hint="colour: mode (the most likely bin) or mean (the annealed mean)")


def check_paths(options: dict, weights: Path | None, base: Path | None = None, runtime: str = "torch") -> None:
    """The engine's cheap refusals (no torch): the weights folder and the feature packages."""
    if runtime not in RUNTIMES:
        raise WeightsError(f"unknown runtime {runtime!r}", hint=f"use {' or '.join(RUNTIMES)}")
    if runtime != "torch":
        exported = is_onnx_export(resolve(weights, "RESTORER_WEIGHTS"))
        require_onnxruntime(export=not exported)
        if exported:  # the graphs hold everything; no torch weights or feature packages needed
            return
    root = weights_folder(weights)
    if not (root / PART / "config.json").is_file():
        raise WeightsError("anchors weights: missing disco/config.json", path=root,
                           hint="pass --weights DIR (a folder with disco/), or set RESTORER_WEIGHTS; "
                                "train them with `restorer train --preset anchors`")
    for module, what, pip in FEATURE_PACKAGES:
        if find_spec(module) is None:
            raise WeightsError(f"{what} for the anchors preset are not installed", hint=f"pip install {pip}")


def is_onnx_export(folder: Path | None) -> bool:
    """Whether ``folder`` is an anchors ONNX export (its manifest names :data:`ONNX_FORMAT`)."""
    try:
        return folder is not None and json.loads((Path(folder) / MANIFEST).read_text()).get("format") == ONNX_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def weights_folder(weights: Path | None) -> Path:
    """``--weights`` or RESTORER_WEIGHTS, else the weights shipped in the package."""
    root = resolve(weights, "RESTORER_WEIGHTS")
    return root if root is not None else Path(__file__).resolve().parent.parent.parent / "weights" / "anchors"
