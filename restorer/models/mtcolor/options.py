"""The options an MT-Color preset may set (``options:`` in its YAML), checked when the preset loads.

Light on purpose (no torch): :func:`restorer.presets.load_preset` runs :func:`check_options`, so a typo in a
preset is refused in one line naming the file before anything loads. The meaning of each option: the
module docstring of :mod:`restorer.models.mtcolor.engine`.
"""

from __future__ import annotations

from typing import Any

from restorer.errors import InputError

SAMPLING = ("steps", "guidance", "eta", "alpha", "beta", "fusion", "crop", "margin", "center_noise", "prior_strength")
TINY = ("grid", "ab_scale", "features", "prior", "prior_temperature", "prior_saturation", "prior_flip",
        "prompt_strength", "canonical_texts", "init_seed", "model", "scheduler")
SD15 = ("size", "base_config")
OPTIONS = frozenset(("backbone", *SAMPLING, *TINY, *SD15))


def check_options(options: dict[str, Any]) -> None:
    """Refuse an option MT-Color does not read.

    Raises:
        InputError: the unknown names, and the names it takes.
    """
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise InputError(f"unknown mtcolor option(s): {', '.join(unknown)}",
                         hint=f"the mtcolor engine takes {', '.join(sorted(OPTIONS))}")
