"""Instance texts are read in the words tiny was trained on ("a {colour} {object}", 22 colours)."""

from __future__ import annotations

import numpy as np
import pytest

from restorer.models.colornames import TRAINED_COLOURS, all_names, parse_color
from restorer.models.mtcolor.text import CanonicalText, canonical_text


@pytest.mark.parametrize("text, want", [
    ("the umbrella should be bright crimson", "a red umbrella"),
    ("make the coat emerald", "a green coat"),
    ("cobalt door", "a blue door"),
    ("a car painted scarlet", "a red car"),
    ("a cream wall", "a beige wall"),
    ("turquoise sea", "a teal sea"),
])
def test_unseen_colours_and_phrasings_become_the_training_form(text, want) -> None:
    assert canonical_text(text, TRAINED_COLOURS) == want


@pytest.mark.parametrize("text", ["a red car", "a dark green coat", "a man in a hat", "A Sky Blue Kite",
                                  "a red golden retriever", "a blue orange", "a teal white shark"])
def test_texts_already_in_the_training_form_or_without_colour_stay(text) -> None:
    assert canonical_text(text, TRAINED_COLOURS) == text


def _hue(lab) -> float:
    return float(np.degrees(np.arctan2(lab[2], lab[1])) % 360)


def test_every_vivid_lexicon_colour_keeps_its_hue() -> None:
    """Over the whole lexicon: a vivid colour is read as a trained word within 30 degrees of its hue
    whenever one exists (hue from the lexicon's CIELab, computed here)."""
    trained = {w: parse_color(w).lab for w in TRAINED_COLOURS}
    vivid = {w: lab for w, lab in trained.items() if np.hypot(*lab[1:]) >= 20}
    checked = 0
    for name in all_names():
        lab = parse_color(name).lab
        if name in TRAINED_COLOURS or np.hypot(*lab[1:]) < 35 or any(name.startswith(f"{w} ") for w in TRAINED_COLOURS):
            continue  # a trained word first ("blue blue") is the training form already
        gaps = {w: min(abs(_hue(lab) - _hue(v)), 360 - abs(_hue(lab) - _hue(v))) for w, v in vivid.items()}
        word = canonical_text(f"a {name} box", TRAINED_COLOURS)[2:-4]
        assert word in TRAINED_COLOURS, (name, word)
        if min(gaps.values()) <= 30:
            assert gaps[word] <= 30, (name, word, gaps[word])
        checked += 1
    assert checked > 300


def test_the_encoder_sees_the_canonical_text() -> None:
    seen = []

    class Recording:
        dim = 3

        def pooled(self, texts):
            seen.extend(texts)
            return np.zeros((len(texts), 3))

        def prompt(self, text):
            seen.append(("prompt", text))

    enc = CanonicalText(Recording(), TRAINED_COLOURS)
    enc.pooled(["the umbrella should be bright crimson", "a red car"])
    enc.prompt("a crimson evening")  # the global prompt is not an instance text: unchanged
    assert seen == ["a red umbrella", "a red car", ("prompt", "a crimson evening")]


def test_the_tiny_preset_reads_texts_canonically() -> None:
    from restorer.presets import load_preset

    assert load_preset("tiny").options["canonical_texts"] is True


def test_rendered_colours_pick_the_word_the_model_paints_nearest() -> None:
    # a model whose "green" comes out yellow-green and whose "teal" comes out green
    rendered = {"green": {"hue": 100.0, "chroma": 50.0}, "teal": {"hue": 150.0, "chroma": 40.0},
                "red": {"hue": 40.0, "chroma": 60.0}, "navy": {"hue": 280.0, "chroma": 10.0}}
    assert canonical_text("make the coat emerald", TRAINED_COLOURS, rendered) == "a teal coat"  # emerald: 147 deg
    assert canonical_text("make the coat emerald", TRAINED_COLOURS) == "a green coat"  # by the lexicon alone
    # a word the model barely colours (navy, chroma 10) is never chosen for a vivid request
    assert canonical_text("cobalt door", TRAINED_COLOURS, rendered) != "a navy door"
    assert canonical_text("a red car", TRAINED_COLOURS, rendered) == "a red car"


def test_the_shipped_weights_carry_their_rendered_colours() -> None:
    import json

    from restorer.models.mtcolor.tiny import SHIPPED

    table = json.loads((SHIPPED / "rendered_colours.json").read_text())["words"]
    vivid = [w for w in TRAINED_COLOURS if np.hypot(*parse_color(w).lab[1:]) >= 20]
    assert sorted(table) == sorted(vivid)
    assert all(0 <= v["hue"] < 360 and v["chroma"] > 0 and v["photos"] >= 10 for v in table.values())
