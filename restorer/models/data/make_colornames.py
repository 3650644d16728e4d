"""Regenerate ``colornames.json``: colour name -> CIELab (D65) [L*, a*, b*].

Recipe (run from the repository root; matplotlib is needed here only, never at run time):

    pip install --target /tmp/mplpkg matplotlib
    PYTHONPATH=/tmp/mplpkg python restorer/models/data/make_colornames.py

Sources, both shipped inside matplotlib (``matplotlib._color_data``):

* the XKCD colour survey names (949 names, CC0 public domain; https://xkcd.com/color/rgb/);
* the CSS Color Module Level 4 named colours (148 names; W3C, freely usable names and values).

Normalisation, mirrored by :func:`restorer.models.colornames.normalize`: lower case, "grey" spelled
"gray", "/" and "-" read as spaces, apostrophes dropped ("robin's egg" -> "robins egg"). Where the
two sources share a name the XKCD survey's value wins (it is what people mean by the word); names
that only differ by the grey/gray spelling are averaged in Lab. A handful of crude XKCD names
(see ``_CRUDE``) are left out so they never appear in ``restorer colors``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from restorer.io.color import srgb_to_lab

_CRUDE = {"shit", "poo", "poop", "puke", "vomit", "barf", "snot", "booger", "diarrhea"}


def normalize(name: str) -> str:
    name = name.lower().replace("'", "").replace("/", " ").replace("-", " ")
    name = re.sub(r"\bgrey", "gray", name)
    return " ".join(name.split())


def _hex_to_lab(value: str) -> np.ndarray:
    rgb = np.array([int(value[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32) / 255.0
    return srgb_to_lab(rgb)


# Words restorers use for people that neither survey names; sRGB values of average tones.
_OURS = {"skin": "#d8a98a", "skin tone": "#d8a98a", "flesh": "#d8a98a", "complexion": "#d8a98a"}


def build() -> dict[str, list[float]]:
    from matplotlib._color_data import CSS4_COLORS, XKCD_COLORS

    groups: dict[str, list[np.ndarray]] = {}
    for key, value in XKCD_COLORS.items():
        name = normalize(key.removeprefix("xkcd:"))
        if _CRUDE.isdisjoint(name.split()):
            groups.setdefault(name, []).append(_hex_to_lab(value))
    for key, value in CSS4_COLORS.items():
        name = normalize(key)
        if name not in groups:
            groups[name] = [_hex_to_lab(value)]
    for name, value in _OURS.items():
        groups.setdefault(name, [_hex_to_lab(value)])
    return {name: [round(float(v), 2) for v in np.mean(labs, axis=0)]
            for name, labs in sorted(groups.items())}


def main() -> None:
    out = Path(__file__).with_name("colornames.json")
    table = build()
    lines = [f"{json.dumps(name)}: {json.dumps(lab)}" for name, lab in table.items()]
    out.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    print(f"wrote {len(table)} names to {out}")


if __name__ == "__main__":
    main()
