"""The anchors engine (DISCO at CPU size): superpixels, the locator, sampling, edits, seeds, instances.

Tiny random models built from configs (no weights): every property checked here is structural, not learned.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from restorer.models.anchors.engine import AnchorEdit, AnchorsEngine, anchor_colours, apply_edits
from restorer.models.anchors.locator import kmeans, locate
from restorer.models.anchors.model import DiscoModel
from restorer.models.anchors.superpixels import OFFSETS, associate, hard_labels, sp_diffuse, sp_pool
from restorer.models.engine import FrameInput, InstanceText, ShotContext

torch.set_num_threads(1)

BINS = [[a, b] for a in range(-45, 50, 10) for b in range(-45, 50, 10)]  # 100 bins of 10 units


class FakeFeatures(torch.nn.Module):
    """EfficientNet-Lite0's pyramid shapes from fixed random filters of the luma (no weights to load)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        for name, ch in (("s8", 40), ("s16", 112), ("s32", 320), ("head", 1280)):
            self.register_buffer(name, torch.randn(ch, 1, 3, 3, generator=g))

    def pyramid(self, luma: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: torch.tanh(F.conv2d(F.avg_pool2d(luma, 32 if name == "head" else int(name[1:])),
                                          getattr(self, name), padding=1)) for name in ("s8", "s16", "s32", "head")}


def engine(seed: int = 0, **kwargs) -> AnchorsEngine:
    torch.manual_seed(seed)
    model = DiscoModel(bins=BINS, dim=32, heads=2, layers=1, ff=64, proj=8)
    with torch.no_grad():  # a bins head that prefers different bins in different places
        model.bins_head.weight.normal_(0, 2.0)
    return AnchorsEngine(model, FakeFeatures(), size=kwargs.pop("size", 128), **kwargs)


def picture(h: int = 96, w: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((0.3 + 0.4 * (x > w // 2) + 0.2 * np.sin(y / 7.0)) % 1.0).astype(np.float32)


# -- superpixels ----------------------------------------------------------------------------------------
def test_pooling_with_every_pixel_in_its_own_cell_is_the_cell_mean_and_diffusion_inverts_it():
    x = torch.rand(1, 3, 32, 48)
    assoc = torch.zeros(1, 9, 32, 48)
    assoc[:, OFFSETS.index((0, 0))] = 1
    pooled = sp_pool(assoc, x, 8)
    torch.testing.assert_close(pooled, F.avg_pool2d(x, 8))
    torch.testing.assert_close(sp_diffuse(assoc, pooled, 8), F.interpolate(F.avg_pool2d(x, 8), scale_factor=8))


def test_a_pixel_given_to_the_right_neighbour_is_pooled_there():
    x = torch.rand(1, 1, 16, 32)
    assoc = torch.zeros(1, 9, 16, 32)
    assoc[:, OFFSETS.index((0, 1))] = 1  # every pixel belongs to the cell on its right
    pooled = sp_pool(assoc, x, 16)
    assert float(pooled[0, 0, 0, 0]) == 0  # the first cell receives nothing
    assert abs(float(pooled[0, 0, 0, 1]) - float(x[..., :16].mean())) < 1e-6
    assert hard_labels(assoc, 16)[0, 0, 0] == 1


def test_association_never_points_outside_the_grid():
    assoc = associate(torch.randn(2, 9, 32, 32), 16)
    torch.testing.assert_close(assoc.sum(1), torch.ones(2, 32, 32))
    assert float(assoc[:, OFFSETS.index((-1, -1)), :16, :].max()) == 0  # the top row has no row above
    assert float(assoc[:, OFFSETS.index((0, 1)), :, 16:].max()) == 0  # the right column has no right neighbour


# -- the anchor locator ---------------------------------------------------------------------------------
def test_locator_picks_one_primitive_per_cluster_nearest_its_centre():
    # a hand-made 6x6 feature map: three blobs of primitives, each around a centre, with one exact centre member
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    owner = torch.arange(36) % 3
    x = centres[owner] + torch.randn(36, 2, generator=g) * 0.8
    exact = [5, 7, 9]  # primitives of clusters 2, 1, 0 sit exactly at their centre's mean position
    for i in exact:
        x[i] = x[owner == owner[i]].mean(0)
    picked = locate(x, 3)
    assert len(picked) == 3
    assert sorted(owner[picked].tolist()) == [0, 1, 2]  # one per cluster
    labels, _ = kmeans(x, 3)
    for p in picked.tolist():
        members = (labels == labels[p]).nonzero().flatten()
        mean = x[members].mean(0)
        assert int(members[(x[members] - mean).norm(dim=1).argmin()]) == p


def test_locator_is_deterministic_and_never_asks_for_more_anchors_than_primitives():
    x = torch.randn(50, 8)
    assert torch.equal(locate(x, 8), locate(x.clone(), 8))
    assert len(locate(torch.randn(3, 8), 8)) == 3


# -- anchor colours -------------------------------------------------------------------------------------
def test_a_one_hot_distribution_gives_that_bins_colour_sampled_or_not():
    model = DiscoModel(bins=BINS, dim=32, heads=2, layers=1, ff=64, proj=8)
    logits = torch.full((2, len(BINS)), -1e4)
    logits[0, 17], logits[1, 80] = 0, 0
    expected = torch.tensor([BINS[17], BINS[80]], dtype=torch.float32)
    torch.testing.assert_close(anchor_colours(model, logits, None, 8), expected)
    for seed in range(5):
        torch.testing.assert_close(anchor_colours(model, logits, seed, 8), expected)


def test_sampling_follows_the_modelers_probabilities():
    model = DiscoModel(bins=BINS, dim=32, heads=2, layers=1, ff=64, proj=8)
    logits = torch.full((1, len(BINS)), -1e4)
    logits[0, 3], logits[0, 60] = np.log(0.7), np.log(0.3)
    draws = [tuple(anchor_colours(model, logits, seed, 8)[0].tolist()) for seed in range(1000)]
    share = sum(d == tuple(map(float, BINS[3])) for d in draws) / len(draws)
    assert 0.65 < share < 0.75  # 0.7 within about 3.5 standard errors
    assert set(draws) == {tuple(map(float, BINS[3])), tuple(map(float, BINS[60]))}
    # unsampled: the most likely bin
    assert tuple(anchor_colours(model, logits, None, 8)[0].tolist()) == tuple(map(float, BINS[3]))


def test_the_annealed_mean_is_the_mean_of_the_bins_under_the_sharpened_distribution():
    model = DiscoModel(bins=BINS, dim=32, heads=2, layers=1, ff=64, proj=8)
    logits = torch.full((1, len(BINS)), -1e4)
    logits[0, 3], logits[0, 60] = np.log(0.7), np.log(0.3)
    t = 0.5  # p ** (1 / T), renormalised: 0.49 / 0.58 and 0.09 / 0.58
    w = np.array([0.7 ** 2, 0.3 ** 2]) / (0.7 ** 2 + 0.3 ** 2)
    expected = w[0] * np.array(BINS[3], float) + w[1] * np.array(BINS[60], float)
    got = anchor_colours(model, logits, None, 8, temperature=t)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # a seed still samples a bin, whatever the temperature
    assert tuple(anchor_colours(model, logits, 1, 8, temperature=t)[0].tolist()) in {
        tuple(map(float, BINS[3])), tuple(map(float, BINS[60]))}


def test_an_unknown_colour_choice_is_refused():
    from restorer.errors import InputError

    model = DiscoModel(bins=BINS, dim=32, heads=2, layers=1, ff=64, proj=8)
    with pytest.raises(InputError, match="colour"):
        AnchorsEngine(model, FakeFeatures(), colour="median")


# -- the generator's affinity and edits -----------------------------------------------------------------
def test_an_edited_anchor_reaches_the_primitives_tied_to_it_and_not_the_others():
    # a built affinity: primitives 0-3 tied to anchor 0, primitives 4-7 to anchor 4
    aff = torch.zeros(1, 8, 8)
    aff[0, :4, 0] = 1
    aff[0, 4:, 4] = 1
    colours = torch.zeros(1, 8, 2)
    colours[0, 0], colours[0, 4] = torch.tensor([10.0, 0]), torch.tensor([0, -30.0])
    before = DiscoModel.spread(aff, colours)
    colours[0, 0] = torch.tensor([-40.0, 45.0])  # the user edits anchor 0: dark green
    after = DiscoModel.spread(aff, colours)
    torch.testing.assert_close(after[0, :4], torch.tensor([[-40.0, 45.0]] * 4))
    torch.testing.assert_close(after[0, 4:], before[0, 4:])


def test_the_generators_colour_is_linear_in_the_anchors_through_an_affinity_of_the_picture():
    eng = engine()
    luma = picture()
    _, auto = eng.colorize(luma)
    model = eng.model
    with torch.no_grad():
        from restorer.models.mtcolor.spaces import resize

        full = torch.from_numpy(luma)[None, None]
        size = eng.working_size(*luma.shape)
        gray = resize(full, (size[0] // 2, size[1] // 2)) * 2 - 1
        pyramid = eng.features.pyramid(resize(full, size))
        assoc = model.associate(gray)
        tokens = model.tokens(gray, pyramid, assoc)
        mask = torch.zeros(1, tokens.shape[1], dtype=torch.bool)
        mask[0, auto.index] = True
        aff = model.affinity(tokens, mask)
    assert torch.allclose(aff.sum(-1), torch.ones(1, tokens.shape[1]))
    assert float(aff[0][:, ~mask[0]].abs().max()) == 0  # only anchors are attended to
    table = torch.zeros(1, tokens.shape[1], 2)
    table[0, auto.index] = auto.ab
    base = model.spread(aff, table)
    table[0, auto.index[0]] += torch.tensor([30.0, -20.0])
    moved = model.spread(aff, table) - base
    torch.testing.assert_close(moved[0], aff[0, :, auto.index[0], None] * torch.tensor([30.0, -20.0]))
    assert torch.allclose(model.spread(aff, table)[0, auto.index[0]], table[0, auto.index[0]])  # exact at itself


def test_an_edit_on_a_point_makes_the_primitive_under_it_an_anchor_of_that_colour():
    cell = 8
    assoc = torch.zeros(1, 9, 32, 32)
    assoc[:, OFFSETS.index((0, 0))] = 1
    index, ab = torch.tensor([0, 5]), torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # a point at (x, y) = (100, 20) of a 128x128 frame is pixel (25, 5) of the 32x32 grid: cell (0, 3) = 3
    new_index, new_ab = apply_edits(assoc, cell, index, ab, [AnchorEdit(100, 20, (-40.0, 45.0))], (128, 128))
    assert new_index.tolist() == [0, 5, 3]
    torch.testing.assert_close(new_ab[-1], torch.tensor([-40.0, 45.0]))
    # a point on an existing anchor replaces its colour
    same_index, same_ab = apply_edits(assoc, cell, index, ab, [AnchorEdit(2, 2, (9.0, 9.0))], (128, 128))
    assert same_index.tolist() == [0, 5]
    torch.testing.assert_close(same_ab[0], torch.tensor([9.0, 9.0]))


def test_an_edit_moves_the_picture_near_the_point_towards_the_users_colour():
    eng = engine()
    luma = picture()
    auto, _ = eng.colorize(luma)
    green = (-40.0, 45.0)
    edited, anchors = eng.colorize(luma, edits=[AnchorEdit(20, 20, green)])
    h, w = auto.shape[:2]
    y, x = int(20 * h / 96), int(20 * w / 128)
    before = np.linalg.norm(auto[y, x] - green)
    after = np.linalg.norm(edited[y, x] - green)
    assert after < before
    assert any(np.allclose(c, green) for c in anchors.ab.numpy())


# -- seeds, determinism, instances, the contract ----------------------------------------------------------
def test_same_seed_same_picture_another_seed_another():
    eng = engine()
    luma = picture()
    auto1, _ = eng.colorize(luma)
    auto2, _ = eng.colorize(luma)
    np.testing.assert_array_equal(auto1, auto2)  # automatic: no randomness at all
    s1, a1 = eng.colorize(luma, seed=1)
    s1b, _ = eng.colorize(luma, seed=1)
    s2, a2 = eng.colorize(luma, seed=2)
    np.testing.assert_array_equal(s1, s1b)
    assert not torch.equal(a1.ab, a2.ab)
    assert np.abs(s1 - s2).mean() > 0.5


def test_inside_an_instance_mask_the_instance_text_wins():
    eng = engine()
    luma = picture()
    mask = np.zeros((1, *luma.shape), bool)
    mask[0, 16:64, 16:64] = True
    ctx = ShotContext(seed=0, prompt=None, instances=(InstanceText("coat", "a dark green coat"),))
    (ab,) = list(eng.shot(ctx, [FrameInput(0, luma, mask)]))
    (free,) = list(eng.shot(ShotContext(seed=0, prompt=None, instances=()), [FrameInput(0, luma, mask[:0])]))
    from restorer.models.colornames import parse_color

    green = parse_color("dark green").lab[1:]
    h, w = ab.shape[:2]
    inside = ab[int(24 * h / 96):int(56 * h / 96), int(24 * w / 128):int(56 * w / 128)]
    np.testing.assert_allclose(inside, np.broadcast_to(green, inside.shape), atol=1e-4)
    outside = (slice(int(72 * h / 96), h), slice(int(80 * w / 128), w))
    np.testing.assert_array_equal(ab[outside], free[outside])


def test_an_instance_text_without_a_colour_fails_before_any_frame():
    from restorer.errors import InputError

    eng = engine()
    with pytest.raises(InputError, match="coat"):
        eng.validate(ShotContext(seed=0, prompt=None, instances=(InstanceText("coat", "a coat"),)))


@pytest.mark.parametrize("shape", [(96, 128), (128, 72), (33, 250)])
def test_any_aspect_ratio_gives_chroma_at_half_the_working_size(shape):
    eng = engine(size=128)
    ab, anchors = eng.colorize(picture(*shape))
    h, w = eng.working_size(*shape)
    assert ab.shape == (h // 2, w // 2, 2) and ab.dtype == np.float32
    assert anchors.grid == (h // 16, w // 16) and 1 <= len(anchors.index) <= 8
