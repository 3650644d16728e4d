"""The engine contract (:mod:`restorer.models.engine`), checked the same way for every engine: stencil,
MT-Color (a tiny random model) and anchors (a tiny random DISCO).

What the pipelines rely on: one (h, w, 2) float32 chroma per frame, in order, whatever the aspect ratio;
the same chroma for the same seed and inputs, whether a shot is processed whole or resumed from any frame;
a shot with zero instances works; an instance text that names no colour is refused before the first frame
(engines that read colour names); ``automatic`` (the temporal stage's fill) gives the same contract.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restorer.models.engine import FrameInput, InstanceText, ShotContext, check_chroma

torch.set_num_threads(1)


def _stencil():
    from restorer.models.stencil import StencilEngine

    return StencilEngine(max_side=64)


def _mtcolor():
    from restorer.models.mtcolor import tiny
    from restorer.models.mtcolor.engine import MTColorEngine, sampling_options
    from restorer.models.mtcolor.spaces import TinySpace
    from tests.models.mtcolor.helpers import tiny_model
    from tests.models.mtcolor.test_mtcolor_sampler import FakeText

    return MTColorEngine(tiny_model(), TinySpace(grid=8, multiple=2), FakeText(), tiny.scheduler_config({}),
                         sampling_options({"steps": 2}, 2), "cpu", torch.float32)


def _anchors():
    from tests.models.test_anchors import engine

    return engine(size=64)


ENGINES = {"stencil": _stencil, "mtcolor": _mtcolor, "anchors": _anchors}
NAMES_COLOURS = {"stencil", "anchors"}  # engines that read a colour name from each instance text


def _frames(shape=(40, 56), n=4, instances=1):
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        luma = rng.random(shape, dtype=np.float32)
        masks = np.zeros((instances, *shape), bool)
        if instances:
            masks[0, 5 + i:25 + i, 10:30] = True
        out.append(FrameInput(10 + i, luma, masks))
    return out


def _ctx(instances=1, seed=5, sample=False):
    return ShotContext(seed=seed, prompt=None, instances=tuple(InstanceText("car", "a red car")
                                                               for _ in range(instances)),
                       shot_start=10, shot_end=13, sample=sample)


@pytest.fixture(params=sorted(ENGINES))
def eng(request):
    return request.param, ENGINES[request.param]()


@pytest.mark.parametrize("shape", [(40, 56), (57, 31)])
def test_one_chroma_per_frame_of_the_right_kind(eng, shape):
    _, engine = eng
    frames = _frames(shape)
    out = list(engine.shot(_ctx(), frames))
    assert len(out) == len(frames)
    for ab in out:
        assert ab.ndim == 3 and ab.shape[2] == 2 and ab.dtype == np.float32
        assert np.isfinite(ab).all() and np.abs(ab).max() < 130
        check_chroma(ab, "test")


@pytest.mark.parametrize("sample", [False, True])
def test_same_seed_same_chroma_whole_or_resumed_from_any_frame(eng, sample):
    _, engine = eng
    frames = _frames()
    whole = list(engine.shot(_ctx(sample=sample), frames))
    for cut in range(1, len(frames)):
        resumed = list(engine.shot(_ctx(sample=sample), frames[cut:]))
        for a, b in zip(whole[cut:], resumed, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_shot_without_instances(eng):
    _, engine = eng
    frames = _frames(instances=0)
    out = list(engine.shot(_ctx(instances=0), frames))
    assert len(out) == len(frames)


def test_a_text_without_a_colour_is_refused_before_the_first_frame(eng):
    from restorer.errors import InputError

    name, engine = eng
    if name not in NAMES_COLOURS:
        pytest.skip("MT-Color reads free text; any text is a valid instance text")
    ctx = ShotContext(seed=0, prompt=None, instances=(InstanceText("coat", "a coat"),))
    seen = []

    def frames():
        seen.append(1)
        yield from _frames()

    with pytest.raises(InputError, match="coat"):
        list(engine.shot(ctx, frames()))
    assert not seen


def test_automatic_colour_keeps_the_contract(eng):
    _, engine = eng
    if not getattr(engine, "has_automatic", False):
        pytest.skip("no cheap automatic colour")
    frame = _frames(instances=0)[0]
    a, b = engine.automatic(frame), engine.automatic(frame)
    assert a.ndim == 3 and a.shape[2] == 2 and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_a_photo_is_a_one_frame_film(eng):
    """The photo core (:func:`restorer.pipelines.photo.colorize_frame`) gives what the film path gives its frame:
    that frame's chroma from the shot, upsampled under the luma and recombined, the luma kept."""
    from restorer.io.color import rgb_to_luma
    from restorer.pipelines.photo import chroma_rgb, colorize_frame

    _, engine = eng
    frames = _frames()
    film = list(engine.shot(_ctx(), frames))
    first = frames[0]
    photo = colorize_frame(engine, _ctx(), first.luma, first.masks)
    np.testing.assert_array_equal(photo, chroma_rgb(first.luma, film[0], first.masks))
    assert photo.shape == (*first.luma.shape, 3) and photo.dtype == np.float32
    inside = (photo > 0.02).all(-1) & (photo < 0.98).all(-1)  # out-of-gamut pixels are desaturated, never shifted
    assert np.abs(rgb_to_luma(photo) - first.luma)[inside].max() < 2e-3


def test_a_background_layer_travels_with_the_engines_chroma_and_nothing_computed_from_it():
    from restorer.models.engine import background_of, check_chroma, with_background

    ab, layer = np.ones((4, 6, 2), np.float64), np.zeros((4, 6, 2))
    out = check_chroma(with_background(ab, layer), "e")
    assert out.dtype == np.float32 and np.array_equal(out, ab) and np.array_equal(background_of(out), layer)
    assert background_of(out[:2]) is None and background_of(out + 1) is None  # not the engine's output any more
    assert background_of(check_chroma(ab, "e")) is None
    with pytest.raises(RuntimeError, match="background layer of shape"):
        check_chroma(with_background(ab, np.zeros((2, 3, 2))), "e")
