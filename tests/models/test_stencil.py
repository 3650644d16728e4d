"""The stencil engine, end to end through upsampling and recombination."""

from __future__ import annotations

import numpy as np
import pytest

from restorer.errors import InputError
from restorer.io.color import (
    hue_difference_deg,
    lab_chroma,
    lab_hue_deg,
    recombine_rgb,
    srgb_to_lab,
    upsample_chroma,
)
from restorer.models.colornames import parse_color, parse_tone
from restorer.models.engine import FrameInput, InstanceText, ShotContext, check_chroma
from restorer.models.stencil import StencilEngine, open_stencil, working_size

H, W = 360, 640


def _scene(index: int = 0) -> FrameInput:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    luma = 0.35 + 0.3 * (xx / W) + 0.05 * np.sin(yy / 9)  # mid grays, some texture
    masks = np.zeros((2, H, W), bool)
    masks[0, 60:300, 40:300] = True  # the coat
    masks[1, 100:250, 350:600] = True  # the car
    masks[1, 200:280, 250:400] = True  # overlaps the coat: the later instance is on top
    luma[masks[0]] -= 0.05
    return FrameInput(index=index, luma=luma.astype(np.float32), masks=masks)


def _ctx(prompt=None, coat="a dark green coat", car="the car is bright red") -> ShotContext:
    return ShotContext(seed=1, prompt=prompt, size=(H, W), source="film.mp4",
                       instances=(InstanceText("coat", coat), InstanceText("car", car)))


def _colour_frame(engine, ctx, frame):
    ab = check_chroma(next(engine.shot(ctx, [frame])), "stencil")
    return srgb_to_lab(recombine_rgb(frame.luma, upsample_chroma(ab, frame.luma))), ab


def _mean_hue(lab, region):
    return lab_hue_deg(lab[region][:, 1:].mean(axis=0))


def test_instances_take_their_named_hue_and_background_stays_neutral():
    engine = open_stencil({})
    frame = _scene()
    lab, ab = _colour_frame(engine, _ctx(), frame)
    assert ab.shape == (*working_size(H, W, 512), 2) and max(ab.shape[:2]) <= 512
    coat = frame.masks[0] & ~frame.masks[1]
    coat[:65] = coat[295:] = False  # keep off the soft edges
    car = frame.masks[1].copy()
    car[:, :355] = False
    for region, text in ((coat, "dark green"), (car, "bright red")):
        named = lab_hue_deg(np.array(parse_color(text).lab[1:]))
        assert hue_difference_deg(_mean_hue(lab, region), named) < 10, text
    background = ~frame.masks.any(axis=0)
    background[:, :30] = background[:, 610:] = False
    background[50:310] = False
    assert lab_chroma(lab[background]).max() < 2


def test_sepia_prompt_tints_the_background():
    frame = _scene()
    lab, _ = _colour_frame(open_stencil({}), _ctx(prompt="sepia, 1920s street"), frame)
    background = ~frame.masks.any(axis=0)
    background[40:320] = False
    sepia = lab_hue_deg(np.array(parse_tone("sepia")[1:]))
    assert hue_difference_deg(_mean_hue(lab, background), sepia) < 10
    assert 5 < lab_chroma(lab[background]).mean() < 25


def test_later_instance_is_on_top():
    engine = StencilEngine(max_side=640)  # working size = full size: no resampling in the way
    frame = _scene()
    ab = next(engine.shot(_ctx(), [frame]))
    red = parse_color("bright red").lab[1:]
    assert np.allclose(ab[240, 280], red, atol=1e-3)  # inside both masks


def test_unknown_colour_fails_at_shot_start_naming_instance():
    engine = open_stencil({})
    ctx = _ctx(car="a glorp car")
    with pytest.raises(InputError) as err:
        engine.validate(ctx)
    assert "car" in str(err.value) and "glorp" in str(err.value) and "film.mp4" in str(err.value)
    with pytest.raises(InputError):
        engine.shot(ctx, iter(()))  # before any frame is pulled


def test_deterministic_and_empty_masks():
    engine = open_stencil({"max_side": 256})
    frames = [_scene(0), _scene(1)]
    frames[1].masks[:] = False
    first = list(engine.shot(_ctx(), frames))
    second = list(engine.shot(_ctx(), frames))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert np.abs(first[1]).max() == 0  # no instance in frame, no prompt: neutral


def test_open_stencil_rejects_unknown_options():
    with pytest.raises(InputError, match="max_sid"):
        open_stencil({"max_sid": 3})
    with pytest.raises(InputError):
        open_stencil({"max_side": "big"})
