"""Colour names in free text -> CIELab.

The lexicon (``data/colornames.json``, about a thousand names from the XKCD colour survey and
CSS, see ``data/LICENSE-colornames.md``) maps names to CIELab (D65). :func:`parse_color` finds the
longest colour phrase in a text such as "the car is bright red"; a modifier ("dark", "pale",
"vivid", ...) in front of a name that the lexicon does not hold as a whole phrase adjusts the
name's lightness and chroma. :func:`parse_tone` reads a shot's global prompt for a tint
("sepia", "warm evening light").

Matching is case-insensitive; hyphens and slashes read as spaces ("sky-blue"), "grey" as "gray",
apostrophes are dropped ("robin's egg").
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from restorer.errors import InputError

if TYPE_CHECKING:
    import numpy as np

Lab = tuple[float, float, float]

# word -> (lightness shift, chroma factor). A shift s > 0 moves L* a fraction s of the way to 100,
# s < 0 a fraction |s| of the way to 0.
MODIFIERS: dict[str, tuple[float, float]] = {
    "dark": (-0.35, 1.0), "deep": (-0.25, 1.2), "light": (0.35, 0.75), "pale": (0.5, 0.45),
    "bright": (0.15, 1.3), "vivid": (0.0, 1.4), "dull": (-0.1, 0.6), "muted": (0.0, 0.55),
    "pastel": (0.45, 0.45), "dusty": (-0.05, 0.5), "faded": (0.2, 0.5), "rich": (-0.1, 1.2),
    "soft": (0.15, 0.7), "dim": (-0.3, 0.8), "medium": (0.0, 1.0), "strong": (0.0, 1.25),
    "intense": (0.0, 1.35), "saturated": (0.0, 1.4), "desaturated": (0.0, 0.5),
    "neon": (0.1, 1.5), "grayish": (0.0, 0.5), "washed": (0.25, 0.45),
}
# The colour words of tiny's training texts ("a {colour} {object}"; the dataset builder names each region with
# the nearest of them, :func:`name_color`): an instance text with another colour is read as the nearest of these
# (restorer.models.mtcolor.text.canonical_text).
TRAINED_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "gray", "white", "black",
                   "teal", "beige", "olive", "navy", "maroon", "tan", "sky blue", "dark green", "light blue",
                   "dark brown", "khaki")
# Vivid colours a counter-colour instance (training augmentation, eval binding) may be asked to take.
COUNTER_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "teal")
_INTENSIFIERS = {"very": 1.6, "slightly": 0.5}

# Global tints for shot prompts: phrase -> (a*, b*), low chroma on purpose.
TONES: dict[str, tuple[float, float]] = {
    "sepia": (6.0, 17.0), "sepia toned": (6.0, 17.0), "warm": (4.0, 10.0), "warmer": (5.0, 13.0),
    "golden": (4.0, 20.0), "golden hour": (6.0, 22.0), "amber": (8.0, 22.0),
    "sunset": (9.0, 18.0), "evening": (4.0, 10.0), "candlelight": (8.0, 22.0),
    "tungsten": (7.0, 20.0), "firelight": (10.0, 22.0), "vintage": (4.0, 10.0),
    "platinum": (2.0, 7.0), "palladium": (3.0, 9.0), "selenium": (4.0, 1.0),
    "cool": (-2.0, -8.0), "cooler": (-3.0, -10.0), "cold": (-3.0, -12.0), "icy": (-4.0, -10.0),
    "blue hour": (0.0, -14.0), "moonlight": (-2.0, -12.0), "moonlit": (-2.0, -12.0),
    "night": (-2.0, -12.0), "day for night": (-3.0, -16.0), "cyanotype": (-5.0, -20.0),
    "teal": (-10.0, -5.0), "teal orange": (3.0, 8.0), "teal and orange": (3.0, 8.0),
    "neutral": (0.0, 0.0),
}
_TINT_WORDS = {"tint", "tinted", "tone", "toned", "wash", "cast"}
_TINT_CHROMA = 12.0

_BASIC = {"red", "orange", "yellow", "green", "blue", "purple", "violet", "pink", "brown", "black",
          "white", "gray", "teal", "cyan", "magenta", "beige", "tan", "navy", "maroon", "olive",
          "gold", "silver", "turquoise", "lavender", "crimson", "scarlet", "cream"}
_STOPWORDS = {"a", "an", "the", "is", "are", "in", "on", "of", "with", "and", "his", "her", "its",
              "their", "this", "that", "wearing", "has", "very"}

_ALIASES = {"vermilion": "vermillion", "fuschia": "fuchsia"}

_WORD = re.compile(r"[A-Za-z']+")
_HEX = re.compile(r"#([0-9a-fA-F]{6})")


@dataclass(frozen=True)
class ColorMatch:
    """A colour phrase found in a text: its canonical name, CIELab and (start, end) in the text."""

    name: str
    lab: Lab
    span: tuple[int, int]


def normalize(word: str) -> str:
    """One word as the lexicon spells it: lower case, no apostrophes, "grey" as "gray"."""
    word = word.lower().replace("'", "")
    word = "gray" + word[4:] if word.startswith("grey") else word
    return _ALIASES.get(word, word)


@functools.lru_cache(maxsize=1)
def _lexicon() -> dict[str, Lab]:
    text = resources.files("restorer.models").joinpath("data/colornames.json").read_text("utf-8")
    return {name: (float(v[0]), float(v[1]), float(v[2])) for name, v in json.loads(text).items()}


@functools.lru_cache(maxsize=1)
def _longest_name() -> int:
    return max(len(name.split()) for name in _lexicon())


def all_names() -> list[str]:
    """Every colour name the lexicon knows, sorted (for ``restorer colors``)."""
    return sorted(_lexicon())


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(normalize(m.group()), m.start(), m.end()) for m in _WORD.finditer(text)]


def _apply_modifiers(lab: Lab, words: list[str]) -> Lab:
    lightness, a, b = lab
    boost = 1.0
    for word in words:
        if word in _INTENSIFIERS:
            boost = _INTENSIFIERS[word]
            continue
        shift, factor = MODIFIERS[word]
        shift, factor = shift * boost, factor ** boost
        lightness += shift * (100.0 - lightness) if shift > 0 else shift * lightness
        a, b = a * factor, b * factor
        boost = 1.0
    return (min(max(lightness, 0.0), 100.0), a, b)


def _name_at(words: list[str], i: int) -> int:
    """Length in words of the longest lexicon name starting at word i (0 if none)."""
    lexicon = _lexicon()
    for n in range(min(_longest_name(), len(words) - i), 0, -1):
        if " ".join(words[i:i + n]) in lexicon:
            return n
    return 0


def _modifiers_before(words: list[str], i: int) -> int:
    j = i
    while j > 0 and (words[j - 1] in MODIFIERS or
                     (words[j - 1] in _INTENSIFIERS and j < i and words[j] in MODIFIERS)):
        j -= 1
    return j


def _candidates(tokens: list[tuple[str, int, int]]) -> list[tuple[tuple, ColorMatch]]:
    words = [t[0] for t in tokens]
    found = []
    for i in range(len(words)):
        n = _name_at(words, i)
        if not n:
            continue
        name = " ".join(words[i:i + n])
        start = _modifiers_before(words, i)
        lab = tuple(round(v, 2) for v in _apply_modifiers(_lexicon()[name], words[start:i]))
        phrase = " ".join(words[start:i + n])
        basic = any(w in _BASIC for w in words[i:i + n])
        score = (i + n - start, basic, -start, start - i)  # last: a lexicon phrase beats modifiers
        found.append((score, ColorMatch(phrase, lab, (tokens[start][1], tokens[i + n - 1][2]))))
    return found


def _suggestions(text: str, limit: int = 6) -> list[str]:
    names = all_names()
    singles = sorted({w for name in names for w in name.split()} & set(names))
    picks: list[str] = []
    for word, _, _ in _tokens(text):
        if len(word) < 3 or word in _STOPWORDS:
            continue
        cutoff = 0.6 if len(word) > 3 else 0.75
        for pick in difflib.get_close_matches(word, singles, n=3, cutoff=cutoff):
            if pick not in picks:
                picks.append(pick)
    return picks[:limit] or ["red", "green", "blue", "yellow", "brown", "gray"]


def parse_color(text: str) -> ColorMatch:
    """Find the colour phrase of a text ("a dark green coat" -> "dark green"), or read a whole text that is an
    sRGB hex code ("#2f4f2f").

    The longest phrase wins (modifiers count); among equally long ones a basic colour term
    ("red", "blue") beats a noun that is also a colour name ("sky", "rust"), then the earlier one,
    then a phrase the lexicon holds whole ("dark green") over a modifier applied to a name.

    Raises:
        InputError: no colour name in the text; the message suggests the nearest names.
    """
    hexcode = _HEX.fullmatch(text.strip())
    if hexcode:  # "#2f4f2f": an sRGB colour given exactly
        import numpy as np

        from restorer.io.color import srgb_to_lab

        rgb = [int(hexcode.group(1)[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        lab = tuple(round(float(v), 2) for v in srgb_to_lab(np.asarray([rgb], np.float64))[0])
        return ColorMatch(text.strip().lower(), lab, (0, len(text)))
    found = _candidates(_tokens(text))
    if not found:
        raise InputError(f'no colour name in "{text}"',
                         hint=f"did you mean: {', '.join(_suggestions(text))}? (see `restorer colors`)")
    return max(found, key=lambda item: item[0])[1]


def _tint_from_name(words: list[str]) -> Lab | None:
    """ "green tint", "tinted blue", "a rose wash": a colour's hue at a low, fixed chroma."""
    for i, word in enumerate(words):
        if word not in _TINT_WORDS:
            continue
        for j in (i - 1, i + 1):
            if 0 <= j < len(words) and words[j] in _lexicon():
                _, a, b = _lexicon()[words[j]]
                chroma = (a * a + b * b) ** 0.5
                if chroma > 1e-6:
                    return (50.0, a / chroma * _TINT_CHROMA, b / chroma * _TINT_CHROMA)
    return None


def parse_tone(prompt: str | None) -> Lab | None:
    """The global tint a shot prompt names ("sepia", "warm evening light"), or None.

    Returns:
        (L*, a*, b*) with L* = 50 as a placeholder: only a*, b* are meant to be used; the first
        tone phrase in the prompt wins (the longest at its position). A colour name next to
        "tint"/"tone"/"cast" ("a green tint") gives that colour's hue at low chroma.
    """
    if not prompt:
        return None
    words = [t[0] for t in _tokens(prompt)]
    longest = max(len(p.split()) for p in TONES)
    for i in range(len(words)):
        for n in range(min(longest, len(words) - i), 0, -1):
            phrase = " ".join(words[i:i + n])
            if phrase in TONES:
                return (50.0, *TONES[phrase])
    return _tint_from_name(words)


def palette_lab() -> dict[str, np.ndarray]:
    """CIELab of each of :data:`TRAINED_COLOURS`."""
    import numpy as np

    return {n: np.array(parse_color(n).lab, dtype=np.float64) for n in TRAINED_COLOURS}


def name_color(lab: np.ndarray, palette: dict[str, np.ndarray] | None = None) -> str:
    """The palette name nearest to a CIELab colour (L* at half weight: luma comes from the source)."""
    import numpy as np

    palette = palette or palette_lab()
    w = np.array([0.5, 1.0, 1.0])
    return min(palette, key=lambda n: float((((palette[n] - lab) * w) ** 2).sum()))
