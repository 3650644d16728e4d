"""Colour names in free text."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from restorer.errors import InputError
from restorer.io.color import hue_difference_deg, lab_chroma, lab_hue_deg
from restorer.models.colornames import all_names, parse_color, parse_tone


@pytest.mark.parametrize("text, name", [
    ("a dark green coat", "dark green"),
    ("the car is bright red", "bright red"),
    ("A SKY-BLUE dress", "sky blue"),
    ("grey horse", "gray"),
    ("a grey-green jacket", "gray green"),
    ("robin's egg blue wall", "robins egg blue"),
    ("a red car under a blue sky", "red"),  # equal length: the basic term, then the first
    ("the sky", "sky"),
    ("vivid vermilion flag", "vivid vermillion"),
])
def test_parse_color_finds_the_phrase(text, name):
    assert parse_color(text).name == name


def test_span_points_into_the_text():
    text = "the car is Bright Red, shining"
    match = parse_color(text)
    assert text[slice(*match.span)] == "Bright Red"


def test_modifier_on_a_name_without_that_phrase_adjusts_lightness_and_chroma():
    base = parse_color("crimson").lab
    assert "pale crimson" not in all_names()
    pale, deep = parse_color("pale crimson").lab, parse_color("a very dark crimson").lab
    assert pale[0] > base[0] and lab_chroma(pale[1:]) < lab_chroma(base[1:])
    assert deep[0] < base[0]
    for lab in (pale, deep):
        assert hue_difference_deg(lab_hue_deg(lab[1:]), lab_hue_deg(base[1:])) < 0.1  # values rounded to 0.01


def test_lexicon_names_are_lab_and_include_modifier_phrases():
    names = all_names()
    assert len(names) > 500 and names == sorted(names)
    assert {"dark green", "light blue", "pale pink", "bright red", "navy", "tomato"} <= set(names)
    red = parse_color("red").lab
    assert red[0] == pytest.approx(47.8, abs=1) and red[1] > 60  # xkcd's red, in Lab
    raw = json.loads(resources.files("restorer.models").joinpath("data/colornames.json").read_text())
    assert all(len(v) == 3 and 0 <= v[0] <= 100.5 for v in raw.values())


def test_unknown_colour_names_the_text_and_suggests():
    with pytest.raises(InputError) as err:
        parse_color("a glorp car")
    message = str(err.value)
    assert 'no colour name in "a glorp car"' in message
    assert "did you mean" in message and "restorer colors" in message
    assert "\n" not in message
    with pytest.raises(InputError, match="purple"):
        parse_color("a purpel car")


@pytest.mark.parametrize("prompt, hue_range", [
    ("sepia", (45, 90)), ("warm evening light", (45, 90)), ("golden hour", (60, 95)),
    ("a cold night", (240, 300)), ("a faint green tint", (100, 160)),
])
def test_parse_tone(prompt, hue_range):
    lab = parse_tone(prompt)
    assert lab is not None
    assert 0 < lab_chroma(lab[1:]) <= 25  # a tint, not a colour
    assert hue_range[0] <= lab_hue_deg(lab[1:]) <= hue_range[1]


@pytest.mark.parametrize("prompt", [None, "", "a man walks down the street"])
def test_parse_tone_none(prompt):
    assert parse_tone(prompt) is None
