"""tiny's colour prior: decoding by hand, the soft targets, and how the sampler and engine start from it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from restorer.models.mtcolor.prior import ColourPrior, bins_for, soft_encode
from restorer.models.mtcolor.sampler import SamplingOptions, Schedule, sample

SCHED = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "clip_sample": False,
         "set_alpha_to_one": True, "prediction_type": "epsilon"}
SMALL = [["s8", 3], ["head", 5]]


def _prior(bins=((0.0, 0.0), (40.0, 0.0), (0.0, -40.0))) -> ColourPrior:
    torch.manual_seed(0)
    return ColourPrior(bins=[list(b) for b in bins], pyramid=SMALL, proj=4, hidden=8).eval()


def test_annealed_mean_by_hand() -> None:
    prior = _prior()
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3])).view(1, 3, 1, 1)
    mean = prior.decode(logits, 1.0)[0, :, 0, 0]
    assert torch.allclose(mean, torch.tensor([0.5 * 40, 0.3 * -40]), atol=1e-4)
    # T = 0.5 squares the probabilities before normalising: 0.04, 0.25, 0.09
    sharp = prior.decode(logits, 0.5)[0, :, 0, 0]
    assert torch.allclose(sharp, torch.tensor([0.25 / 0.38 * 40, 0.09 / 0.38 * -40]), atol=1e-4)
    # a tiny temperature gives the mode
    assert torch.allclose(prior.decode(logits, 0.01)[0, :, 0, 0], torch.tensor([40.0, 0.0]), atol=1e-3)


def test_bins_and_soft_targets() -> None:
    ab = torch.tensor([[3.0, -4.0], [52.0, 18.0]]).T.reshape(1, 2, 1, 2)
    assert bins_for(ab) == [[5.0, -5.0], [55.0, 15.0]]
    centers = torch.tensor([[5.0, -5.0], [55.0, 15.0], [95.0, 95.0]])
    target = soft_encode(ab, centers, k=2)
    assert target.shape == (1, 3, 1, 2)
    assert torch.allclose(target.sum(1), torch.ones(1, 1, 2))
    assert target[0, :, 0, 0].argmax() == 0 and target[0, :, 0, 1].argmax() == 1
    assert float(target[0, 2].max()) == 0.0  # beyond the k nearest: nothing


def test_projecting_before_the_resize_is_the_same_as_after() -> None:
    prior = _prior()
    gray = torch.rand(1, 1, 16, 12) * 2 - 1
    feats = {"s8": torch.randn(1, 3, 8, 6), "head": torch.randn(1, 5, 2, 2)}
    resized = {k: F.interpolate(v, size=(16, 12), mode="bilinear", align_corners=False) for k, v in feats.items()}
    with torch.no_grad():
        assert torch.allclose(prior(gray, feats), prior(gray, resized), atol=1e-5)


def _eps(z, t):
    return 0.3 * z + 0.01 * float(t) / 1000


def test_sampler_strength_zero_returns_the_prior_and_leaves_instances_alone() -> None:
    schedule = Schedule.ddim(SCHED, 6)
    z_T = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    x0 = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    opts = SamplingOptions(steps=6, alpha=1.0, prior_strength=0.0)
    none = torch.zeros(0, 8, 8)
    assert torch.equal(sample(_eps, None, z_T, none, schedule, opts, 0, x0_prior=x0), x0)
    # strength s: the prior noised with z_T to the level of step 6 - round(6 s) (diffusers' add_noise),
    # then the last round(6 s) steps of plain DDIM (diffusers' own step); s = 1/3 tells 6 - 2 from 2;
    # s = 1 still starts from the prior, noised to the first timestep's level
    sched = DDIMScheduler.from_config(SCHED)
    sched.set_timesteps(6)
    for strength, start in ((0.5, 3), (1 / 3, 4), (1.0, 0)):
        ours = sample(_eps, None, z_T, none, schedule, SamplingOptions(steps=6, prior_strength=strength), 0,
                      x0_prior=x0)
        t0 = sched.timesteps[start]
        z = sched.add_noise(x0, z_T, t0.view(1))
        for t in sched.timesteps[start:]:
            z = sched.step(_eps(z, t), t, z, eta=0.0).prev_sample
        assert (ours - z).abs().max() < 1e-5, strength
        assert (ours - x0).abs().max() > 0.1  # the steps did move it off the prior
    # one instance on the left half: its cells come from its own run, with or without a prior
    masks = torch.zeros(1, 8, 8)
    masks[:, :, :4] = 1

    def inst(z, t):
        return -0.2 * z

    with_prior = sample(_eps, inst, z_T, masks, schedule, opts, 0, [0], x0_prior=x0)
    without = sample(_eps, inst, z_T, masks, schedule, opts, 0, [0])
    assert torch.equal(with_prior[..., :4], without[..., :4])
    assert torch.allclose(with_prior[..., 4:], x0[..., 4:], atol=1e-6)


def test_engine_without_texts_gives_the_prior_at_strength_zero(monkeypatch) -> None:
    from restorer.models.engine import FrameInput, ShotContext
    from restorer.models.mtcolor import engine as E
    from restorer.models.mtcolor import tiny
    from restorer.models.mtcolor.features import EfficientNetFeatures
    from restorer.presets import load_preset

    bins = [[0.0, 0.0], [40.0, 30.0], [-30.0, -20.0]]
    opts = {**load_preset("tiny").options, "prior_strength": 0.0, "steps": 10, "prior_temperature": 0.5,
            "prompt_strength": 0.3, "prior_flip": False, "prior_saturation": 1.0}  # the decoding by hand below
    torch.manual_seed(0)
    prior = ColourPrior(bins=bins)
    with torch.no_grad():
        prior.out[-1].bias.copy_(torch.tensor([0.0, 1.0, 0.0]))  # leans to (40, 30) everywhere
        prior.out[-1].weight.mul_(4)  # and follows the picture visibly
    monkeypatch.setattr(tiny, "load_prior", lambda root: prior)
    engine = E.open_mtcolor(opts, device="cpu", weights=None, base=None, overrides={})
    assert engine.prior is prior
    unet_calls = []
    engine.model.unet.register_forward_pre_hook(lambda m, args: unet_calls.append((int(args[1][0]), args[0])))
    luma = np.tile(np.linspace(0.1, 0.9, 64, dtype=np.float32), (48, 1))
    luma[10:30, 20:40] = 0.5
    no_masks = np.zeros((0, 48, 64), bool)

    def run(prompt: str | None) -> np.ndarray:
        ctx = ShotContext(seed=0, prompt=prompt, instances=(), size=luma.shape)
        (ab,) = list(engine.shot(ctx, [FrameInput(0, luma, no_masks)]))
        return ab

    # the prior's annealed mean on this picture, its inputs built here: the luma at the 24x32 grid
    # (antialiased bilinear) in [-1, 1], and the features of a separate EfficientNet-Lite0
    ab = run(None)
    assert ab.shape == (24, 32, 2) and unet_calls == []  # strength 0: not one diffusion step
    t = torch.from_numpy(luma)[None, None]
    gray = F.interpolate(t, size=(24, 32), mode="bilinear", align_corners=False, antialias=True) * 2 - 1
    with torch.no_grad():
        logits = prior(gray, EfficientNetFeatures().pyramid(t))[0]
    want = torch.einsum("qhw,qc->hwc", torch.softmax(logits / 0.5, dim=0), torch.tensor(bins)).numpy()
    assert np.abs(ab - want).max() < 1e-3
    assert want[..., 0].std() > 2  # the prior did see the picture: not one colour everywhere
    assert ab[..., 0].mean() > 15 and ab[..., 1].mean() > 10  # the prior's colour, not gray
    # the cheap automatic colour the temporal stage fills with is the same prior, without the sampler
    assert engine.has_automatic
    assert np.abs(engine.automatic(FrameInput(0, luma, no_masks)) - want).max() < 1e-3
    assert unet_calls == []

    # logits that ignore the picture (last layer's weights zeroed): bias / T = (0, 2, 0) everywhere
    with torch.no_grad():
        prior.out[-1].weight.zero_()
    p = np.exp([0.0, 2.0, 0.0]) / np.exp([0.0, 2.0, 0.0]).sum()
    const = p @ np.array(bins)
    ab = run(None)
    assert np.abs(ab - const).max() < 1e-3, (ab.reshape(-1, 2)[0], const)
    assert unet_calls == []

    # a global prompt gets the last round(0.3 * 10) = 3 steps, with guidance (batch of 2), from the prior
    # noised with the shot's centred z_T to the level of step 7
    prompted = run("a blue evening")
    sched = DDIMScheduler.from_config(tiny.scheduler_config(opts))
    sched.set_timesteps(10)
    assert [c[0] for c in unet_calls] == [int(x) for x in sched.timesteps[7:]]
    assert all(c[1].shape[0] == 2 for c in unet_calls)
    z_T = torch.randn((1, 2, 24, 32), generator=torch.Generator().manual_seed(0))
    z_T = z_T - z_T.mean(dim=(-2, -1), keepdim=True)
    a = float(sched.alphas_cumprod[sched.timesteps[7]])
    x0 = torch.from_numpy(const).float().view(1, 2, 1, 1) / opts["ab_scale"]
    first = unet_calls[0][1][:1, :2]  # the latent channels (the gray is concatenated after them)
    assert (first - (a ** 0.5 * x0 + (1 - a) ** 0.5 * z_T)).abs().max() < 1e-5
    assert np.isfinite(prompted).all() and np.abs(prompted - const).mean() > 1.0


def test_rebalancing_weights_by_hand() -> None:
    from restorer.models.mtcolor.prior import rebalancing

    centers = torch.tensor([[0.0, 0.0], [50.0, 0.0]])
    ab = torch.zeros(1, 2, 1, 4)
    ab[0, 0, 0, 3] = 50.0  # three cells in bin 0, one in bin 1: p = (0.75, 0.25)
    w = rebalancing(ab, centers, 0.5)
    raw = torch.tensor([1 / (0.5 * 0.75 + 0.25), 1 / (0.5 * 0.25 + 0.25)])
    assert torch.allclose(w, raw / (0.75 * raw[0] + 0.25 * raw[1]))
    assert float(w[1]) > float(w[0])  # the rare colour weighs more
    assert rebalancing(ab, centers, 1.0) is None


def test_control_from_the_pyramid_equals_the_plain_features() -> None:
    from restorer.models.mtcolor.features import EfficientNetFeatures
    from restorer.models.mtcolor.spaces import TinySpace

    space = TinySpace(features=EfficientNetFeatures())
    luma = torch.rand(1, 1, 72, 96)
    plain = space.prepare(luma, (24, 32))
    shared = space.prepare(luma, (24, 32), space.features.pyramid(luma))
    assert torch.allclose(plain[1], shared[1], atol=1e-5) and torch.equal(plain[0], shared[0])


def test_context_blocks_let_a_cell_see_the_far_side_of_the_picture() -> None:
    """Without context a cell's logits depend on a few cells around it; the dilated blocks and the scene
    feature make the far side of the picture matter."""
    def far_effect(**kw) -> float:
        torch.manual_seed(0)
        prior = ColourPrior(bins=[[0.0, 0.0], [40.0, 0.0]], pyramid=[["s8", 3], ["head", 5]], proj=4, hidden=8,
                            **kw).eval()
        gray = torch.zeros(1, 1, 32, 32)
        feats = {"s8": torch.zeros(1, 3, 32, 32), "head": torch.zeros(1, 5, 32, 32)}
        changed = {k: v.clone() for k, v in feats.items()}
        changed["s8"][..., 16:, 16:] = 3.0  # the bottom-right quarter only
        changed["head"][..., 16:, 16:] = 3.0
        with torch.no_grad():
            return float((prior(gray, feats) - prior(gray, changed))[..., :4, :4].abs().max())

    assert far_effect() == 0.0  # three 3x3 layers: the top-left corner cannot see 12 cells away
    assert far_effect(context=4) > 1e-6  # exactly 0 above: any change is the far side seen
    assert far_effect(global_context=True) > 1e-6


def _engine_with(monkeypatch, prior, **overrides):
    from restorer.models.mtcolor import engine as E
    from restorer.models.mtcolor import tiny
    from restorer.presets import load_preset

    opts = {**load_preset("tiny").options, "prior_strength": 0.0, "prior_temperature": 0.5, "prior_flip": False,
            "prior_saturation": 1.0, **overrides}
    monkeypatch.setattr(tiny, "load_prior", lambda root: prior)
    return E.open_mtcolor(opts, device="cpu", weights=None, base=None, overrides={})


def _lopsided_prior(backbone: str = "efficientnet-lite0") -> ColourPrior:
    torch.manual_seed(0)
    prior = ColourPrior(bins=[[0.0, 0.0], [40.0, 30.0], [-30.0, -20.0]], backbone=backbone)
    with torch.no_grad():
        prior.out[-1].weight.mul_(6)  # follows the picture strongly
    return prior


def test_flip_averaging_makes_the_automatic_colour_mirror_symmetric(monkeypatch) -> None:
    from restorer.models.engine import FrameInput

    luma = np.random.default_rng(0).random((48, 64)).astype(np.float32)
    luma[:, :20] *= 0.3  # dark on the left: a picture that is not its own mirror image
    no_masks = np.zeros((0, 48, 64), bool)
    plain = _engine_with(monkeypatch, _lopsided_prior())
    flipped = _engine_with(monkeypatch, _lopsided_prior(), prior_flip=True)

    def auto(engine, image):
        return engine.automatic(FrameInput(0, np.ascontiguousarray(image), no_masks))

    one, mirror = auto(flipped, luma), auto(flipped, luma[:, ::-1])
    assert np.abs(one - mirror[:, ::-1]).max() < 1e-3  # the mirror image gets the mirrored colour
    a, b = auto(plain, luma), auto(plain, luma[:, ::-1])
    assert np.abs(a - b[:, ::-1]).max() > 0.5  # without averaging it does not: the test can tell


def test_a_prior_on_lite2_reads_lite2_while_controlnet_keeps_lite0(monkeypatch) -> None:
    from restorer.models.engine import FrameInput
    from restorer.models.mtcolor.features import EfficientNetFeatures

    prior = _lopsided_prior("efficientnet-lite2")
    engine = _engine_with(monkeypatch, prior)
    assert engine.prior_features.backbone == "efficientnet-lite2"
    assert engine.space.features.backbone == "efficientnet-lite0"
    luma = np.tile(np.linspace(0.1, 0.9, 64, dtype=np.float32), (48, 1))
    ab = engine.automatic(FrameInput(0, luma, np.zeros((0, 48, 64), bool)))
    t = torch.from_numpy(luma)[None, None]
    gray = F.interpolate(t, size=(24, 32), mode="bilinear", align_corners=False, antialias=True) * 2 - 1
    with torch.no_grad():
        logits = prior(gray, EfficientNetFeatures(backbone="efficientnet-lite2").pyramid(t))[0]
    want = torch.einsum("qhw,qc->hwc", torch.softmax(logits / 0.5, dim=0), prior.centers).numpy()
    assert np.abs(ab - want).max() < 1e-3
    assert _engine_with(monkeypatch, _lopsided_prior()).prior_features is None  # same backbone: computed once


def test_saturation_scales_the_annealed_mean(monkeypatch) -> None:
    from restorer.models.engine import FrameInput

    luma = np.tile(np.linspace(0.1, 0.9, 64, dtype=np.float32), (48, 1))
    frame = FrameInput(0, luma, np.zeros((0, 48, 64), bool))
    plain = _engine_with(monkeypatch, _lopsided_prior(), prior_saturation=1.0).automatic(frame)
    bold = _engine_with(monkeypatch, _lopsided_prior(), prior_saturation=1.5).automatic(frame)
    assert np.abs(plain).max() > 5  # coloured, so the scaling shows
    assert np.abs(bold - 1.5 * plain).max() < 1e-3  # hue kept, chroma times 1.5
