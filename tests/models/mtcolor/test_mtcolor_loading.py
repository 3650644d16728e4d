"""Loading through the sd15 code path, real-size parameter counts on the meta device, clear errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from restorer.errors import WeightsError
from restorer.models.engine import FrameInput, InstanceText, ShotContext
from restorer.models.mtcolor import tiny
from restorer.models.mtcolor.engine import MTColorEngine, open_mtcolor, sampling_options
from restorer.models.mtcolor.loading import SD15_UNET_CONFIG, save_single_file

from .helpers import UNET, tiny_model

torch.set_num_threads(1)
OPTIONS = {"backbone": "sd15", "steps": 2, "size": 64, "guidance": 2.0, "alpha": 0.5}


def _tokenizer(tmp):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (tmp / "vocab.json").write_text(json.dumps(vocab))
    (tmp / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab_file=str(tmp / "vocab.json"), merges_file=str(tmp / "merges.txt"), model_max_length=16)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    """A tiny random SD 1.5-shaped model saved in the public release's folder layout, plus our weights."""
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from restorer.models.mtcolor.adapter import MTColorAdapter

    root = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**UNET, "in_channels": 4, "out_channels": 4}).eval()
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(8,) * 4, latent_channels=4, norm_num_groups=8, layers_per_block=1).eval()
    text = CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, vocab_size=60, max_position_embeddings=16)).eval()
    base, ours = root / "base", root / "ours"
    unet.save_pretrained(base / "unet")
    vae.save_pretrained(base / "vae")
    text.save_pretrained(base / "text_encoder")
    _tokenizer(root).save_pretrained(base / "tokenizer")
    DDIMScheduler(clip_sample=False).save_pretrained(base / "scheduler")
    controlnet = ControlNetModel.from_unet(unet)
    adapter = MTColorAdapter.for_unet(unet, text_dim=16, token_dim=16, mask_size=16)
    for g in adapter.gates():
        torch.nn.init.constant_(g, 0.3)
    controlnet.save_pretrained(ours / "controlnet")
    adapter.save_pretrained(ours / "adapter")
    single = root / "single"
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):  # configs only, no weights
        (single / part).mkdir(parents=True)
        for f in (base / part).iterdir():
            if not f.name.endswith(".safetensors"):
                (single / part / f.name).write_bytes(f.read_bytes())
    save_single_file({"unet": unet, "vae": vae, "text_encoder": text}, single / "sd15.safetensors")
    return base, ours, single / "sd15.safetensors"


def _run(engine):
    ctx = ShotContext(seed=3, prompt="a street", instances=(InstanceText("car", "a red car"),))
    masks = np.zeros((1, 64, 64), bool)
    masks[0, 8:40, 8:40] = True
    luma = np.random.default_rng(1).random((64, 64), dtype=np.float32)
    with torch.no_grad():
        return next(iter(engine.shot(ctx, [FrameInput(0, luma, masks)])))


def test_sd15_folder_and_single_file_reproduce(tiny_sd, monkeypatch) -> None:
    base, ours, single = tiny_sd
    monkeypatch.delenv("RESTORER_SD15_CONFIG", raising=False)
    a = _run(open_mtcolor(OPTIONS, device="cpu", weights=ours, base=base, overrides={"steps": 2}))
    b = _run(open_mtcolor(OPTIONS, device="cpu", weights=ours, base=single, overrides={}))
    monkeypatch.setenv("RESTORER_SD15", str(base))
    monkeypatch.setenv("RESTORER_WEIGHTS", str(ours))
    c = _run(open_mtcolor(OPTIONS, device="cpu", weights=None, base=None, overrides={}))
    assert a.shape == (64, 64, 2) and np.isfinite(a).all()
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_an_original_layout_single_file_loads_as_the_folder(tiny_sd) -> None:
    """SD 1.5 as most people have it (the CompVis/LDM keys: model.diffusion_model., first_stage_model.,
    cond_stage_model.), with its configs beside it in the documented layout (no model_index.json)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import load_file, save_file
    from transformers import CLIPTextModel

    from restorer.models.mtcolor.loading import load_sd15_single

    from .helpers import ldm_layout

    base, _, single = tiny_sd
    unet, vae = UNet2DConditionModel.from_pretrained(base / "unet"), AutoencoderKL.from_pretrained(base / "vae")
    text = CLIPTextModel.from_pretrained(base / "text_encoder")
    ldm = single.parent / "sd15_ldm.safetensors"
    extras = {"model_ema.decay": torch.tensor(0.9999), "alphas_cumprod": torch.ones(1000),  # as SD 1.5's file has
              "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(16)[None]}
    save_file({**ldm_layout(unet, vae, text), **extras}, ldm)
    parts = load_sd15_single(ldm, single.parent, torch.float32)
    for got, ref in ((parts["unet"], unet), (parts["vae"], vae), (parts["text"].encoder, text)):
        a, b = got.state_dict(), ref.state_dict()
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in b)
    state = load_file(ldm)
    key = sorted(k for k in state if k.startswith("first_stage_model.decoder."))[0]
    del state[key]
    save_file(state, ldm)
    with pytest.raises(WeightsError, match="vae") as exc:  # a missing tensor is refused as in the other layout
        load_sd15_single(ldm, single.parent, torch.float32)
    assert str(ldm) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_weights_say_what_where_and_how(tiny_sd, tmp_path, monkeypatch) -> None:
    base, ours, _ = tiny_sd
    monkeypatch.delenv("RESTORER_SD15", raising=False)
    monkeypatch.delenv("RESTORER_WEIGHTS", raising=False)
    with pytest.raises(WeightsError) as exc:
        open_mtcolor(OPTIONS, device="cpu", weights=ours, base=None, overrides={})
    assert exc.value.exit_code == 2 and "--base" in str(exc.value) and "RESTORER_SD15" in str(exc.value)
    with pytest.raises(WeightsError) as exc:
        open_mtcolor(OPTIONS, device="cpu", weights=tmp_path, base=base, overrides={})
    msg = str(exc.value)
    assert str(tmp_path) in msg and "controlnet, adapter" in msg and "--weights" in msg and "\n" not in msg
    (tmp_path / "unet").mkdir()
    with pytest.raises(WeightsError, match="missing vae, text_encoder, tokenizer, scheduler"):
        open_mtcolor(OPTIONS, device="cpu", weights=ours, base=tmp_path, overrides={})


def test_real_size_sd15_on_meta_device() -> None:
    from diffusers import ControlNetModel, UNet2DConditionModel

    from restorer.models.mtcolor.adapter import MTColorAdapter

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        controlnet = ControlNetModel(**{k: v for k, v in SD15_UNET_CONFIG.items()
                                        if k not in ("sample_size", "out_channels")})
        adapter = MTColorAdapter.for_unet(unet, text_dim=768, token_dim=768)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(unet) == 859_520_964  # the public SD 1.5 U-Net
    assert count(controlnet) == 361_279_120  # SD 1.5 ControlNet shape (diffusers 0.42, 4-channel sample)
    # SD 1.5 has a transformer block at widths 320, 320, 640, 640, 1280, 1280 (down), 1280 (mid),
    # 3 x 1280, 3 x 640, 3 x 320 (up), 8 heads each: one branch and one PMAM per block
    assert Counter((width, heads) for _, width, heads in adapter.config.blocks) == {
        (320, 8): 5, (640, 8): 5, (1280, 8): 6}
    assert count(adapter) == adapter_params([320] * 5 + [640] * 5 + [1280] * 6, text_dim=768, token_dim=768,
                                            mask_size=64)


def adapter_params(widths: list[int], *, text_dim: int, token_dim: int, mask_size: int) -> int:
    """The adapter's parameter count, from the architecture the papers describe, layer by layer."""
    def linear(i: int, o: int, bias: bool = True) -> int:
        return i * o + (o if bias else 0)

    def conv(i: int, o: int, k: int) -> int:
        return i * o * k * k + o

    total = 0
    for d in widths:
        # instance branch: token projection, LayerNorm, q k v (no bias), output, gate
        total += linear(token_dim, d) + 2 * d + 3 * linear(d, d, bias=False) + linear(d, d) + 1
        # PMAM: q, k, v from the control features of the same width (no bias), output, gate
        total += 3 * linear(d, d, bias=False) + linear(d, d) + 1
    # instance encoder: mask MLP (3 convolutions down to 1x1), token MLP (3 linear layers), null token
    total += conv(1, 16, 4) + conv(16, 32, 4) + conv(32, 64, mask_size // 16)
    total += linear(text_dim + 64, 256) + linear(256, 256) + linear(256, token_dim) + token_dim
    return total


def test_tiny_round_trip_reproduces(tmp_path) -> None:
    from restorer.models.mtcolor.spaces import TinySpace

    from .test_mtcolor_sampler import SCHED, FakeText, _shot

    model = tiny_model()
    tiny.save(model, tmp_path)
    loaded = tiny.load(tmp_path, {})
    # every tensor, parameter or buffer, comes back bit for bit, with the same shape and layout
    for part in ("unet", "controlnet", "adapter"):
        a, b = getattr(model, part).state_dict(), getattr(loaded, part).state_dict()
        assert list(a) == list(b), part
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].stride() == b[key].stride(), (part, key)
            assert torch.equal(a[key], b[key]), (part, key)

    def chroma(m) -> np.ndarray:
        eng = MTColorEngine(m, TinySpace(grid=8, multiple=2), FakeText(), SCHED,
                            sampling_options({"steps": 2}, 2), "cpu", torch.float32)
        ctx, frames = _shot()
        with torch.no_grad():
            return next(iter(eng.shot(ctx, frames)))

    original, as_loaded = chroma(model), chroma(loaded)
    assert np.array_equal(original, chroma(model))  # the computation itself is deterministic
    # diffusers leaves the loaded parameters inside the safetensors buffer, at offsets that are not
    # 64-byte aligned (the adapter's only 4-byte aligned), so BLAS takes other kernels and sums in
    # another order: ~4e-7 per forward, amplified to ~4e-4 a*b* by 2 guided steps. In fresh (aligned)
    # allocations the same bits give the same chroma exactly: the round trip lost nothing.
    assert np.abs(as_loaded - original).max() < 1e-3
    with torch.no_grad():
        for t in [*loaded.parameters(), *loaded.buffers()]:
            t.data = t.data.clone()
    assert np.array_equal(chroma(loaded), original)
