"""Multi-instance sampling: alpha = 0 is plain DDIM, determinism, batched == one-by-one, Eq. 8."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restorer.models.engine import FrameInput, InstanceText, ShotContext
from restorer.models.mtcolor import tiny
from restorer.models.mtcolor.engine import MTColorEngine, sampling_options
from restorer.models.mtcolor.model import guided_eps
from restorer.models.mtcolor.sampler import SamplingOptions, Schedule, fuse, run_instances, sample
from restorer.models.mtcolor.spaces import TinySpace

from .helpers import conditions, instance_masks, tiny_model

torch.set_num_threads(1)
SCHED = tiny.scheduler_config({})


class FakeText:
    dim = 12

    def prompt(self, text: str) -> torch.Tensor:
        return torch.randn(1, 1, 12, generator=torch.Generator().manual_seed(len(text)))

    def pooled(self, texts: list[str]) -> torch.Tensor:
        return torch.stack([torch.randn(12, generator=torch.Generator().manual_seed(len(t))) for t in texts]) \
            if texts else torch.zeros(0, 12)


def _engine(**opts) -> MTColorEngine:
    model = tiny_model()
    return MTColorEngine(model, TinySpace(grid=8, multiple=2), FakeText(), SCHED,
                         sampling_options({"steps": 2, **opts}, 2), "cpu", torch.float32)


def _shot(seed: int = 7, n: int = 2):
    ctx = ShotContext(seed=seed, prompt="old street", instances=tuple(
        InstanceText(f"i{k}", "a red car" + "!" * k) for k in range(n)))
    masks = np.zeros((n, 32, 32), bool)
    for k in range(n):
        masks[k, 4:20, 8 * k + 2:8 * k + 10] = True
    luma = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    return ctx, [FrameInput(i, luma, masks) for i in range(2)]


def test_alpha_zero_equals_plain_ddim() -> None:
    from diffusers import DDIMScheduler

    model = tiny_model()
    masks = instance_masks(8, 2)
    cond, uncond = conditions(model, masks), conditions(model, masks, keep=False)
    eps = lambda z, t: guided_eps(model, z, t, cond, uncond, 3.0)  # noqa: E731
    z_T = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    opts = SamplingOptions(steps=3, guidance=3.0, alpha=0.0)
    with torch.no_grad():
        ours = sample(eps, None, z_T, masks, Schedule.ddim(SCHED, 3), opts, seed=1)
        sched = DDIMScheduler.from_config(SCHED)
        sched.set_timesteps(3)
        z = z_T
        for t in sched.timesteps:
            z = sched.step(eps(z, t), t, z, eta=0.0).prev_sample
    assert (ours - z).abs().max() < 1e-5


def test_seeded_determinism_and_shared_noise_across_frames() -> None:
    eng = _engine(eta=0.5, alpha=0.5)
    ctx, frames = _shot()
    with torch.no_grad():
        a = list(eng.shot(ctx, frames))
        b = list(eng.shot(ctx, frames))
        c = list(eng.shot(_shot(seed=8)[0], frames))
    assert a[0].shape == (8, 8, 2) and a[0].dtype == np.float32
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(a[0], a[1])  # same luma, same shot noise -> same chroma
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_batched_instances_equal_one_by_one(eta: float) -> None:
    eng = _engine(eta=eta, crop=False)
    ctx, frames = _shot(n=3)
    texts = eng.embed(ctx)
    luma = torch.from_numpy(frames[0].luma)[None, None]
    gray, control = eng.space.prepare(luma, (8, 8))
    cover, small, present = eng._masks(frames[0].masks, (8, 8))
    enc = eng.model.adapter.encoder
    from restorer.models.mtcolor.model import Conditions

    tokens = enc(texts.instances[None], small[None], present[None])
    nulls = enc(texts.instances[None], small[None], torch.zeros_like(present)[None])
    cond = Conditions(texts.prompt, cover[None], tokens, control, gray)
    uncond = Conditions(texts.empty, cover[None], nulls, control, gray)
    z_T = eng.initial_noise((8, 8), 5)
    schedule = Schedule.ddim(SCHED, 2)
    with torch.no_grad():
        batched = run_instances(eng._instance_eps(cond, uncond, cover, [0, 1, 2]), z_T, cover, schedule,
                                range(2), eng.opts, 5, [0, 1, 2])
        for i in range(3):
            single = run_instances(eng._instance_eps(cond, uncond, cover, [i]), z_T, cover[i:i + 1], schedule,
                                   range(2), eng.opts, 5, [i])
            assert (batched[i] - single[0]).abs().max() < 1e-5


def test_fusion_formulas_on_hand_built_latents() -> None:
    z_g = torch.full((1, 2, 2), 2.0)
    z_i = torch.stack([torch.full((1, 2, 2), 3.0), torch.full((1, 2, 2), 5.0)])
    masks = torch.tensor([[[1.0, 0.5], [0.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    beta = 0.2
    literal = fuse(z_g, z_i, masks, beta, "literal")
    # pixel (0,0): instance 0 only; (0,1): half instance 0, half background; (1,0): background;
    # (1,1): both, instance 1 on top.
    expected = torch.tensor([[3.0, 0.5 * 3 + beta * 0.5 * 2], [beta * 2, 5.0]])
    assert torch.allclose(literal[0], expected)
    vp = fuse(z_g, z_i, masks, beta, "vp")
    norm = torch.tensor([[1.0, (0.25 + beta ** 2 * 0.25) ** 0.5], [beta, 1.0]])
    assert torch.allclose(vp[0], expected / norm)
    assert torch.allclose(vp[0, 1, 0], torch.tensor(2.0))  # background keeps its scale
    convex = fuse(z_g, z_i, masks, beta, "convex")
    weights = torch.tensor([[1.0, 0.5 + beta * 0.5], [beta, 1.0]])
    assert torch.allclose(convex[0], expected / weights)
    with pytest.raises(ValueError):
        fuse(z_g, z_i, masks, beta, "other")


def test_fractional_masks_that_tile_the_cell_leave_nothing_to_the_background() -> None:
    """Two instances sharing a border cell half and half: the cell is theirs alone (by coverage,
    not by a product of (1 - m) that would hand a quarter to the global sample)."""
    from restorer.models.mtcolor.sampler import partition

    masks = torch.tensor([[[1.0, 0.5, 0.0]], [[0.0, 0.5, 1.0]]])
    visible, rest = partition(masks)
    assert torch.allclose(rest, torch.zeros(1, 3))
    assert torch.allclose(visible, masks)
    z_g = torch.full((1, 1, 3), 100.0)
    z_i = torch.stack([torch.full((1, 1, 3), 1.0), torch.full((1, 1, 3), 3.0)])
    assert torch.allclose(fuse(z_g, z_i, masks, 0.2, "convex")[0, 0], torch.tensor([1.0, 2.0, 3.0]))
    over = torch.tensor([[[1.0, 1.0]], [[1.0, 0.25]]])  # overlap: the later instance on top
    visible, rest = partition(over)
    assert torch.allclose(visible, torch.tensor([[[0.0, 0.75]], [[1.0, 0.25]]])) and not rest.any()


def test_instances_that_tile_the_frame_skip_the_global_sample() -> None:
    """alpha = 1 with masks covering every cell: the global sample would get no weight, so it is
    never computed; with a cell left uncovered it is."""
    calls = []

    def global_eps(z, t):
        calls.append(int(t))
        return torch.zeros_like(z)

    instance_eps = lambda z, t: torch.zeros_like(z)  # noqa: E731
    z_T = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    tiles = torch.zeros(2, 4, 4)
    tiles[0, :, :2], tiles[1, :, 2:] = 1, 1
    opts = SamplingOptions(steps=3, alpha=1.0, crop=False)
    schedule = Schedule.ddim(SCHED, 3)
    sample(global_eps, instance_eps, z_T, tiles, schedule, opts, seed=0)
    assert calls == []
    tiles[1, 0, 3] = 0
    sample(global_eps, instance_eps, z_T, tiles, schedule, opts, seed=0)
    assert len(calls) == 3


def test_nothing_to_guide_costs_one_forward_per_step() -> None:
    """No prompt and no instance: the conditional and unconditional halves of classifier-free
    guidance are identical, so each step runs the model once, and the result is unchanged."""
    eng = _engine(guidance=3.0)
    luma = np.random.default_rng(1).random((32, 32), dtype=np.float32)
    frame = FrameInput(0, luma, np.zeros((0, 32, 32), bool))
    ctx = ShotContext(seed=3, prompt=None, instances=())
    batches = []
    hook = eng.model.unet.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    with torch.no_grad():
        fast = list(eng.shot(ctx, [frame]))[0]
    hook.remove()
    assert batches == [1, 1]  # 2 steps, one row each
    eng.embed = lambda c: _with_prompt_flag(MTColorEngine.embed(eng, c))
    with torch.no_grad():
        full = list(eng.shot(ctx, [frame]))[0]  # forced through both halves
    assert np.abs(fast - full).max() < 1e-3  # a*b* units (float rounding of batch 1 vs 2)


def _with_prompt_flag(texts):
    texts.has_prompt = True
    return texts


def test_crops_batch_and_frame_without_instances() -> None:
    """Instances denoised on boxes smaller than the frame: the boxes are where the masks say, the
    model sees them batched at box size, and batched equals one by one; a frame in which none of
    the shot's instances is present comes out as the same shot without instances."""
    from restorer.models.mtcolor.model import Conditions
    from restorer.models.mtcolor.sampler import crop_boxes

    eng = MTColorEngine(tiny_model(), TinySpace(grid=16, multiple=2), FakeText(), SCHED,
                        sampling_options({"steps": 2, "alpha": 0.5, "crop": True, "guidance": 3.0}, 2), "cpu",
                        torch.float32)
    ctx = ShotContext(seed=7, prompt="old street", instances=(InstanceText("a", "a red car"),
                                                               InstanceText("b", "a blue coat")))
    luma = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    masks = np.zeros((2, 64, 64), bool)  # 4 px per latent cell: cells 2..4 and rows 10..12 x cols 9..11
    masks[0, 8:20, 8:20] = True
    masks[1, 40:52, 36:48] = True
    cover, small, present = eng._masks(masks, (16, 16))
    # span 3 cells + 2 margin each side = 7, rounded up to the U-Net's multiple: 8x8 boxes, centred
    # on the span and kept inside the 16x16 frame
    assert crop_boxes(cover, 2, 2) == [(0, 0, 8, 8), (7, 6, 8, 8)]

    shapes = []
    hook = eng.model.unet.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    with torch.no_grad():
        out = list(eng.shot(ctx, [FrameInput(0, luma, masks), FrameInput(1, luma, np.zeros_like(masks))]))
    hook.remove()
    # frame 0: step 1 global (cond + uncond), step 1 both instances on their boxes, step 2 global;
    # frame 1 has no instance present: two global steps
    assert shapes == [(2, 3, 16, 16), (4, 3, 8, 8), (2, 3, 16, 16), (2, 3, 16, 16), (2, 3, 16, 16)]
    assert len(out) == 2
    for o in out:
        assert o.shape == (16, 16, 2) and o.dtype == np.float32 and np.isfinite(o).all()

    # batched crops == each instance alone on its own (same) box
    texts = eng.embed(ctx)
    gray, control = eng.space.prepare(torch.from_numpy(luma)[None, None], (16, 16))
    enc = eng.model.adapter.encoder
    tokens = enc(texts.instances[None], small[None], present[None])
    nulls = enc(texts.instances[None], small[None], torch.zeros_like(present)[None])
    cond = Conditions(texts.prompt, cover[None], tokens, control, gray)
    uncond = Conditions(texts.empty, cover[None], nulls, control, gray)
    z_T = eng.initial_noise((16, 16), 7)
    schedule = Schedule.ddim(SCHED, 2)
    with torch.no_grad():
        batched = run_instances(eng._instance_eps(cond, uncond, cover, [0, 1]), z_T, cover, schedule, range(1),
                                eng.opts, 7, [0, 1])
        for i in range(2):
            single = run_instances(eng._instance_eps(cond, uncond, cover, [i]), z_T, cover[i:i + 1], schedule,
                                   range(1), eng.opts, 7, [i])
            assert (batched[i] - single[0]).abs().max() < 1e-5
            y, x, h, w = crop_boxes(cover, 2, 2)[i]
            outside = torch.ones(16, 16, dtype=torch.bool)
            outside[y:y + h, x:x + w] = False
            assert torch.equal(batched[i][:, outside], z_T[0][:, outside])  # outside its box: untouched
            assert (batched[i][:, ~outside] - z_T[0][:, ~outside]).abs().max() > 1e-2

    # no instance present == no instance in the shot (a*b* units; float rounding of 3 tokens vs 1)
    with torch.no_grad():
        (alone,) = list(eng.shot(ShotContext(seed=7, prompt="old street", instances=()),
                                 [FrameInput(0, luma, np.zeros((0, 64, 64), bool))]))
    assert np.abs(out[1] - alone).max() < 5e-3
    assert np.abs(out[0] - alone).max() > 1.0  # while the instances' texts do change frame 0


@pytest.mark.parametrize("tile", [True, False])
def test_changing_one_instance_text_leaves_the_rest_of_the_picture_alone(tile: bool) -> None:
    """What a user relies on when recolouring one object: with alpha = 1 no pixel outside that
    object's mask changes, neither the other instances nor the background (full resolution,
    after the mask-aware upsampling)."""
    from restorer.pipelines.frames import full_chroma

    eng = _engine(alpha=1.0, guidance=3.0, steps=3)
    luma = np.random.default_rng(2).random((64, 64), dtype=np.float32)
    masks = np.zeros((3, 64, 64), bool)
    masks[0, 5:30, 3:29] = True  # edges inside working cells (8 px here)
    masks[1, 30:, :] = True
    masks[2] = ~(masks[0] | masks[1])
    if not tile:
        masks[2, :16, 45:] = False  # a corner left to the global sample
    out = []
    for first in ("a red car", "a light blue car"):
        ctx = ShotContext(seed=4, prompt=None, instances=(
            InstanceText("car", first), InstanceText("road", "a grey road"), InstanceText("wall", "a green wall")))
        with torch.no_grad():
            (ab,) = list(eng.shot(ctx, [FrameInput(0, luma, masks)]))
        out.append(full_chroma(ab, luma, masks))
    assert not np.array_equal(out[0][masks[0]], out[1][masks[0]])
    assert np.array_equal(out[0][~masks[0]], out[1][~masks[0]])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_centred_noise_ignores_the_noise_mean(alpha: float) -> None:
    """center_noise: a sample depends on its initial noise but not on the noise's per-channel mean
    (the global sample's over the frame, each instance's over its box), which otherwise comes out
    as a colour cast shared by every picture of a seed."""
    model = tiny_model()
    masks = instance_masks(8, 2)
    cond, uncond = conditions(model, masks), conditions(model, masks, keep=False)
    eps = lambda z, t: guided_eps(model, z, t, cond, uncond, 3.0)  # noqa: E731
    rows = lambda z, t: torch.cat([eps(z[i:i + 1], t) for i in range(z.shape[0])])  # noqa: E731
    z_T = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([0.7, -0.4]).view(1, 2, 1, 1)
    schedule = Schedule.ddim(SCHED, 3)
    outs = {}
    for center in (True, False):
        opts = SamplingOptions(steps=3, alpha=alpha, crop=False, center_noise=center)
        with torch.no_grad():
            outs[center] = [sample(eps, rows, z, masks, schedule, opts, seed=1) for z in (z_T, z_T + shift)]
    assert (outs[True][0] - outs[True][1]).abs().max() < 1e-5
    assert (outs[False][0] - outs[False][1]).abs().max() > 1e-3
