"""Presets: YAML files validated by pydantic, shipped as package data.

A preset names an engine and its options. ``restorer colorize --preset NAME`` takes a
shipped one; ``--preset path/to/mine.yaml`` takes a user's own.
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from restorer.errors import InputError

DEFAULT_PRESET = "tiny"

# engine name -> "module:factory"; a factory takes (options, *, device, dtype, weights, base, overrides)
ENGINES: dict[str, str] = {
    "stencil": "restorer.models.stencil:open_stencil",
    "mtcolor": "restorer.models.mtcolor.engine:open_mtcolor",
    "anchors": "restorer.models.anchors.engine:open_anchors",
}
EngineName = Literal[tuple(ENGINES)]  # the preset schema's engine names come from the registry


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    engine: EngineName  # type: ignore[valid-type]
    description: str
    needs: str = "nothing"
    runs_on: str = "cpu"
    options: dict[str, Any] = {}


def shipped() -> list[str]:
    """Names of the presets shipped in the package."""
    files = resources.files(__package__).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> Preset:
    """A shipped preset by name, or a user's YAML file by path.

    Options that name a path (``base_config``, a folder) follow the rule of every path inside a file
    (:func:`restorer.shots.paths.contained_path`): relative to the preset file, resolving (symlinks
    followed) inside its folder, never read from the current folder or from anywhere else. They come
    back resolved, as absolute paths. A folder elsewhere is named on the command line or in the
    environment instead (``RESTORER_SD15_CONFIG``).

    Raises:
        InputError: unknown name, unreadable file, invalid content or a path option outside the folder.
    """
    path = Path(name_or_path)
    folder = path.parent
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise InputError("preset file not found", path=path,
                             hint=f"give an existing YAML file or one of: {', '.join(shipped())}")
        text, where = path.read_text(encoding="utf-8"), str(path)
    elif name_or_path in shipped():
        text = resources.files(__package__).joinpath(f"{name_or_path}.yaml").read_text(encoding="utf-8")
        where = f"preset {name_or_path}"
        folder = Path(str(resources.files(__package__)))
    else:
        raise InputError(f"unknown preset {name_or_path!r}",
                         hint=f"use one of: {', '.join(shipped())}, or a path to a preset YAML file")
    try:
        preset = Preset.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise InputError(f"invalid preset: {' '.join(first[:3])}", path=where,
                         hint="see `restorer presets` for the shipped examples") from None
    check_options(preset, where)
    from restorer.shots.paths import UnsafePath, contained_path

    for key in ("base_config",):  # the options that name a path, each a folder
        if preset.options.get(key) is not None:
            try:
                preset.options[key] = str(contained_path(folder, preset.options[key], kind="dir",
                                                         what="the preset file's folder", must_exist=False))
            except UnsafePath as exc:
                raise InputError(f"option {key} {preset.options[key]!r} {exc.problem}", path=where,
                                 hint="put the folder beside the preset file and name it relatively, "
                                      "or set RESTORER_SD15_CONFIG instead") from None
    return preset


# engine name -> "module:function" that refuses an option the engine does not read, (options) -> None raising
# InputError; the module imports no torch
OPTION_CHECKS: dict[str, str] = {
    "mtcolor": "restorer.models.mtcolor.options:check_options",
    "stencil": "restorer.models.stencil:check_options",
    "anchors": "restorer.models.anchors.paths:check_options",
}


def check_options(preset: Preset, where: str) -> None:
    """The engine's check of the preset's options, its refusal naming the preset file.

    Raises:
        InputError: an option the engine does not read (a typo), in one line naming ``where``.
    """
    check = OPTION_CHECKS.get(preset.engine)
    if check is None:
        return
    module_name, function = check.split(":")
    try:
        getattr(importlib.import_module(module_name), function)(dict(preset.options))
    except InputError as exc:
        raise InputError(exc.problem, path=where, hint=exc.hint) from None


# engine name -> "module:function" of its cheap path checks, (options, weights, base) -> None; the module
# imports no torch, diffusers or transformers (an engine without one has nothing to check)
ONNX_ENGINES = ("mtcolor", "anchors")  # engines with an ONNX Runtime path (mtcolor: its tiny backbone only)
PATH_CHECKS: dict[str, str] = {
    "mtcolor": "restorer.models.mtcolor.paths:check_paths",
    "anchors": "restorer.models.anchors.paths:check_paths",
}


def preflight(preset: Preset | str, *, weights: Path | None = None, base: Path | None = None,
              runtime: str = "torch") -> None:
    """The engine's refusals that need no model: missing weights, base, packages; under a second, no torch.

    ``runtime`` other than torch (``onnx``: ONNX Runtime) runs the tiny and anchors presets only, and needs its
    package.

    Raises:
        WeightsError: what is missing, where it looked and the flag that supplies it.
        InputError: an unknown preset (when given by name).
    """
    if isinstance(preset, str):
        preset = load_preset(preset)
    if runtime != "torch" and preset.engine not in ONNX_ENGINES:
        from restorer.errors import WeightsError

        raise WeightsError(f"--runtime {runtime} runs the tiny and anchors presets only, not {preset.name!r}",
                           hint="use --preset tiny or anchors, or --runtime torch")
    check = PATH_CHECKS.get(preset.engine)
    if check is None:
        return
    module_name, function = check.split(":")
    extra = {"runtime": runtime} if runtime != "torch" else {}
    getattr(importlib.import_module(module_name), function)(dict(preset.options), weights, base, **extra)


def open_engine(preset: Preset, *, device: str = "cpu", dtype: str = "auto", weights: Path | None = None,
                base: Path | None = None, overrides: dict[str, Any] | None = None, runtime: str = "torch",
                threads: int | None = None):
    """Build the preset's engine once for a run (weights load here).

    ``dtype``: auto (float16 on CUDA, float32 on the CPU), float32, float16 or bfloat16; engines
    without a model (stencil) ignore it.
    """
    preflight(preset, weights=weights, base=base, runtime=runtime)  # refused before the heavy imports
    module_name, factory = ENGINES[preset.engine].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("restorer"):
            raise InputError(f"preset {preset.name!r} needs the {preset.engine} engine, "
                             "which this version does not include",
                             hint="choose another preset (`restorer presets`)") from None
        raise
    extra = {"runtime": runtime, "threads": threads} if runtime != "torch" else {}  # ONNX_ENGINES' only
    return getattr(module, factory)(dict(preset.options), device=device, dtype=dtype, weights=weights, base=base,
                                    overrides=dict(overrides or {}), **extra)
