"""Weights load strictly: a saved part with a missing, an unexpected or a mis-shaped tensor is refused,
naming the part, the folder and the key; a saved and reloaded model is bit-identical."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from restorer.errors import WeightsError
from restorer.models.mtcolor import tiny
from restorer.models.mtcolor.prior import ColourPrior

from .helpers import tiny_model

torch.set_num_threads(1)
FILE = "diffusion_pytorch_model.safetensors"
PARTS = {"unet": "U-Net", "controlnet": "ControlNet", "adapter": "adapter", "prior": "colour prior"}


def _prior() -> ColourPrior:
    torch.manual_seed(1)
    return ColourPrior(bins=[[-5.0, 5.0], [5.0, -5.0], [15.0, 15.0]]).eval()


def _save(root: Path) -> tuple:
    model, prior = tiny_model(), _prior()
    tiny.save(model, root)
    prior.save_pretrained(root / "prior")
    return model, prior


def _load(root: Path, part: str):
    return tiny.load_prior(root) if part == "prior" else tiny.load(root, {})


def _edit(path: Path, fn) -> str:
    state = load_file(path)
    key = sorted(k for k in state if state[k].ndim >= 1)[3]
    fn(state, key)
    save_file(state, path)
    return key


@pytest.mark.parametrize("part", list(PARTS))
def test_a_missing_and_an_unexpected_tensor_are_refused(tmp_path, part) -> None:
    _save(tmp_path)

    def drop_and_add(state, key):
        del state[key]
        state["bogus.weight"] = torch.zeros(2)

    key = _edit(tmp_path / part / FILE, drop_and_add)
    with pytest.raises(WeightsError) as exc:
        _load(tmp_path, part)
    msg = str(exc.value)
    assert exc.value.exit_code == 2 and "\n" not in msg
    assert PARTS[part] in msg and str(tmp_path / part) in msg
    assert key in msg and "missing" in msg and "bogus.weight" in msg and "unexpected" in msg


@pytest.mark.parametrize("part", list(PARTS))
def test_a_mis_shaped_tensor_is_refused(tmp_path, part) -> None:
    _save(tmp_path)
    key = _edit(tmp_path / part / FILE, lambda state, key: state.__setitem__(key, torch.zeros(3, 3)))
    with pytest.raises(WeightsError) as exc:
        _load(tmp_path, part)
    msg = str(exc.value)
    assert exc.value.exit_code == 2 and PARTS[part] in msg and str(tmp_path / part) in msg
    assert key in msg and "3x3" in msg and "wrong shape" in msg


def test_saved_and_reloaded_tiny_is_bit_identical(tmp_path) -> None:
    model, prior = _save(tmp_path)
    loaded, loaded_prior = tiny.load(tmp_path, {}), tiny.load_prior(tmp_path)
    pairs = [(getattr(model, p), getattr(loaded, p)) for p in ("unet", "controlnet", "adapter")]
    for a, b in [*pairs, (prior, loaded_prior)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb)
        for k in sa:
            assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def test_shipped_tiny_reloads_bit_identical(tmp_path) -> None:
    root = tiny.shipped()
    if root is None:
        pytest.skip("no shipped tiny weights in this checkout")
    model = tiny.load(root, {})
    tiny.save(model, tmp_path)
    again = tiny.load(tmp_path, {})
    for p in ("unet", "controlnet", "adapter"):
        sa, sb = getattr(model, p).state_dict(), getattr(again, p).state_dict()
        assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa), p


def test_sd15_single_file_with_a_stray_or_missing_tensor_is_refused(tmp_path) -> None:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from restorer.models.mtcolor.loading import load_sd15_single, save_single_file

    from .helpers import UNET
    from .test_mtcolor_loading import _tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**UNET, "in_channels": 4, "out_channels": 4})
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8,) * 2, latent_channels=4, norm_num_groups=8, layers_per_block=1)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, vocab_size=60, max_position_embeddings=16))
    unet.save_config(tmp_path / "unet")
    vae.save_config(tmp_path / "vae")
    text.config.save_pretrained(tmp_path / "text_encoder")
    _tokenizer(tmp_path).save_pretrained(tmp_path / "tokenizer")
    DDIMScheduler(clip_sample=False).save_config(tmp_path / "scheduler")
    single = tmp_path / "sd15.safetensors"
    save_single_file({"unet": unet, "vae": vae, "text_encoder": text}, single)
    assert load_sd15_single(single, tmp_path, torch.float32)["unet"] is not None
    state = load_file(single)
    key = sorted(k for k in state if k.startswith("vae."))[2]
    del state[key]
    save_file(state, single)
    with pytest.raises(WeightsError, match="vae") as exc:
        load_sd15_single(single, tmp_path, torch.float32)
    assert key[len("vae."):] in str(exc.value) and str(single) in str(exc.value)
    save_file({**load_file(single), "stray.weight": torch.zeros(1)}, single)
    with pytest.raises(WeightsError, match="stray.weight"):
        load_sd15_single(single, tmp_path, torch.float32)


def test_sam2_with_a_missing_an_unexpected_and_a_mis_shaped_tensor_is_refused(tmp_path) -> None:
    from sam2_tiny import save_tiny_sam2

    from restorer.models.tracking.sam2 import Sam2Tracker

    folder = save_tiny_sam2(tmp_path / "sam2")
    state = load_file(folder / "model.safetensors")
    key = sorted(state)[3]
    del state[key]
    state["bogus.weight"] = torch.zeros(2)
    reshaped = sorted(state)[7]
    state[reshaped] = torch.zeros(3, 3)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError) as exc:
        Sam2Tracker.from_pretrained(folder, device="cpu")
    msg = str(exc.value)
    assert exc.value.exit_code == 2 and "SAM2" in msg and str(folder) in msg
    assert key in msg and "bogus.weight" in msg and f"{reshaped} (3x3 in the file" in msg
