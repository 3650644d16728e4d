"""PMAM and the instance branch: grouped == dense, isolation per block, zero-init, round trip."""

from __future__ import annotations

import pytest
import torch

from restorer.models.mtcolor.regions import dense_attention, grouped_attention, region_map
from restorer.models.mtcolor.state import MTColorState

from .helpers import conditions, instance_masks, tiny_model, tiny_unet

torch.set_num_threads(1)


def _qkv(b: int, n: int, seed: int, r: int = 0):
    g = torch.Generator().manual_seed(seed)
    qkv = [torch.randn(b, 2, n, 8, generator=g) for _ in range(3)]
    extra = [torch.randn(b, 2, r, 8, generator=g) for _ in range(2)] if r else [None, None]
    return qkv, extra


@pytest.mark.parametrize("case", ["random", "empty_regions", "single_region", "shared_rows"])
@pytest.mark.parametrize("with_tokens", [False, True])
def test_grouped_equals_dense(case: str, with_tokens: bool) -> None:
    b, n, r = 3, 96, 6
    g = torch.Generator().manual_seed(1)
    regions = torch.randint(0, r, (b, n), generator=g)
    if case == "empty_regions":
        regions = regions.clamp(max=2) * 2  # ids 1, 3, 5 never occur
    elif case == "single_region":
        regions = torch.zeros(b, n, dtype=torch.long)
    elif case == "shared_rows":
        regions[1] = regions[0]
    (q, k, v), (ek, ev) = _qkv(b, n, 2, r if with_tokens else 0)
    dense = dense_attention(q, k, v, regions, ek, ev)
    grouped = grouped_attention(q, k, v, regions, ek, ev)
    assert (dense - grouped).abs().max() < 1e-5


def test_region_map_resolves_overlaps_on_top() -> None:
    m = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    m[0, 0, :, :4] = True
    m[0, 1, :, 2:6] = True
    ids = region_map(m, (2, 4)).view(2, 4)
    assert ids[0].tolist() == [1, 2, 2, 0]


@pytest.mark.parametrize("dense", [False, True])
def test_isolation_per_block(dense: bool) -> None:
    """Changes inside region A (instance 0) leave every block's PMAM and branch outputs in B unchanged."""
    model = tiny_model()
    model.adapter.set_dense(dense)
    g = torch.Generator().manual_seed(3)
    for name, (dim, _heads) in {b[0]: (b[1], b[2]) for b in model.adapter.config.blocks}.items():
        size = (8, 8) if dim == 16 else (4, 4)
        masks = instance_masks(8, 2)
        regions = region_map(masks[None], size)
        in_a, in_b = regions[0] == 1, regions[0] != 1
        key = name.replace(".", "__")
        x = torch.randn(1, size[0] * size[1], dim, generator=g)
        control = torch.randn(1, dim, *size, generator=g)
        control2 = control.clone().flatten(2)
        control2[..., in_a] += torch.randn(control2[..., in_a].shape, generator=g)
        pmam = model.adapter.pmams[key]
        with torch.no_grad():
            a, b = pmam(x, control, regions), pmam(x, control2.view_as(control), regions)
        assert (a - b).abs().max() > 1e-3  # the change is seen inside A
        assert (a - b)[:, in_b].abs().max() < 1e-5
        tokens = torch.randn(1, 3, 16, generator=g)
        tokens2 = tokens.clone()
        tokens2[:, 1] += 1.0  # instance 0's text changes
        x2 = x.clone()
        x2[:, in_a] += 1.0
        branch = model.adapter.branches[key]
        with torch.no_grad():
            a = branch(x, tokens, regions)
            for b in (branch(x, tokens2, regions), branch(x2, tokens2, regions)):
                assert (a - b)[:, in_a].abs().max() > 1e-3
                assert (a - b)[:, in_b].abs().max() < 1e-5


def test_zero_init_equals_base_unet() -> None:
    model = tiny_model(gates=0.0)
    for module in [*model.adapter.branches.values(), *model.adapter.pmams.values()]:
        torch.nn.init.normal_(module.to_out.weight)  # only the gate keeps the branch silent
    base = tiny_unet()
    masks = instance_masks(8, 2)
    cond = conditions(model, masks)
    z, t = torch.randn(1, 2, 8, 8), torch.tensor([500])
    sample = torch.cat([z, cond.gray], dim=1)
    control = {(8, 8): torch.randn(1, 16, 8, 8), (4, 4): torch.randn(1, 32, 4, 4)}
    state = MTColorState(masks=cond.masks, tokens=cond.tokens, control=control, latent_size=(8, 8))
    with torch.no_grad():
        ours = model.unet(sample, t, cond.prompt, cross_attention_kwargs={"mtcolor": state}).sample
        ref = base(sample, t, cond.prompt).sample
    assert torch.equal(ours, ref)


def test_adapter_round_trip(tmp_path) -> None:
    from restorer.models.mtcolor.adapter import MTColorAdapter

    model = tiny_model()
    model.adapter.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "config.json").exists()
    assert (tmp_path / "adapter" / "diffusion_pytorch_model.safetensors").exists()
    loaded = MTColorAdapter.from_pretrained(tmp_path / "adapter")
    assert loaded.config.blocks == model.adapter.config.blocks
    for (k, a), (k2, b) in zip(model.adapter.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
