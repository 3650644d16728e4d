"""Strict weight loading: a checkpoint that does not fit its model is refused, never half-loaded.

diffusers' and transformers' ``from_pretrained`` leave a tensor the checkpoint lacks at its
random initialisation and skip a tensor the model lacks, with only a library warning; a
tensor of the wrong shape raises a multi-line error. Every part we load (tiny's U-Net,
ControlNet, adapter and colour prior; sd15's U-Net, VAE and text encoder; SAM2) goes through
:func:`from_pretrained_strict`, which asks the library what it did (``output_loading_info``,
after its own key conversions, so e.g. diffusers' renaming of old VAE attention keys still
works) and raises one :class:`~restorer.errors.WeightsError` (exit code 2) naming the part,
the folder and the first offending keys. :func:`compare_shapes` does the same check for a
state dict we load ourselves (the single-file SD 1.5 checkpoint).

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from restorer.errors import WeightsError

SHOWN = 3  # offending keys named per kind


def _names(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def _shape(s: Any) -> str:
    return "x".join(str(int(d)) for d in s) or "scalar"


def refuse_mismatch(part: str, where: str | Path, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                    mismatched: Iterable[tuple[str, Any, Any]] = ()) -> None:
    """Raise the one WeightsError for ``part`` at ``where`` when any list is non-empty.

    ``mismatched``: (key, shape in the checkpoint, shape in the model).
    """
    missing, unexpected = sorted(set(missing)), sorted(set(unexpected))
    mismatched = sorted({(k, tuple(a), tuple(b)) for k, a, b in mismatched})
    if not (missing or unexpected or mismatched):
        return
    said = []
    if missing:
        said.append(f"{len(missing)} missing: {_names(missing)}")
    if unexpected:
        said.append(f"{len(unexpected)} unexpected: {_names(unexpected)}")
    if mismatched:
        shown = ", ".join(f"{k} ({_shape(a)} in the file, {_shape(b)} in the model)" for k, a, b in mismatched[:SHOWN])
        more = f" (+{len(mismatched) - SHOWN} more)" if len(mismatched) > SHOWN else ""
        said.append(f"{len(mismatched)} of the wrong shape: {shown}{more}")
    raise WeightsError(f"{part} do not fit the model: tensors {'; '.join(said)}", path=where,
                       hint="the weights were saved for another model or configuration; check that they "
                            "match this preset")


def compare_shapes(part: str, where: str | Path, expected: Mapping[str, Any], found: Mapping[str, Any]) -> None:
    """Refuse unless ``found`` (key -> tensor or shape) has exactly ``expected``'s keys and shapes."""
    def shape(v: Any) -> tuple[int, ...]:
        return tuple(getattr(v, "shape", v))

    mismatched = [(k, shape(found[k]), shape(expected[k])) for k in expected.keys() & found.keys()
                  if shape(found[k]) != shape(expected[k])]
    refuse_mismatch(part, where, expected.keys() - found.keys(), found.keys() - expected.keys(), mismatched)


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """The libraries' "newly initialized ... you should probably TRAIN" warnings off: we refuse instead."""
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def from_pretrained_strict(cls: Any, folder: str | Path, part: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(folder)`` (diffusers or transformers), never downloading, refusing any
    missing, unexpected or mis-shaped tensor; any other failure is a WeightsError too."""
    folder = Path(folder)
    try:
        with _quiet_libraries():
            model, info = cls.from_pretrained(folder, local_files_only=True, output_loading_info=True,
                                              ignore_mismatched_sizes=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever the library raises, these weights are unusable
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "no message"
        raise WeightsError(f"cannot load {part} from it ({type(exc).__name__}: {first})", path=folder,
                           hint="check that the weights match this preset") from exc
    refuse_mismatch(part, folder, info.get("missing_keys", ()), info.get("unexpected_keys", ()),
                    info.get("mismatched_keys", ()))
    errors = [e for e in info.get("error_msgs", ()) if str(e).strip()]
    if errors:
        first = str(errors[0]).strip().splitlines()[0][:200]
        raise WeightsError(f"cannot load {part} from it ({first})", path=folder,
                           hint="check that the weights match this preset")
    return model
