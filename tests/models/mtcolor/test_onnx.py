"""tiny on ONNX Runtime (``--runtime onnx``): the exported graphs answer as the torch modules do.

The references are the torch modules themselves, run here; the exported graphs run in onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from restorer.models import ort
from restorer.models.mtcolor import onnx_export as O

from .helpers import tiny_model


def _unet_inputs(model, h: int, w: int, instances: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    m = O.UNetGraph(model).model
    masks = torch.zeros(2, instances, h, w)
    for k in range(instances):
        masks[:, k, :, k * w // (instances + 1):(k + 1) * w // (instances + 1)] = 1
    return (torch.randn(2, m.unet.config.in_channels - 1, h, w, generator=g), torch.tensor([500, 20]),
            torch.rand(2, 1, h, w, generator=g) * 2 - 1,
            torch.randn(2, 1, m.unet.config.cross_attention_dim, generator=g),
            torch.randn(2, m.controlnet.config.conditioning_channels, h, w, generator=g),
            torch.randn(2, instances + 1, m.adapter.config.token_dim, generator=g), masks)


def _ort(path, args) -> np.ndarray:
    sess = ort.session(path, threads=1)
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})[0]


def test_unet_with_controlnet_and_instance_branch_matches_torch_at_two_sizes_and_instance_counts(tmp_path):
    model = tiny_model(seed=3)
    path = tmp_path / "unet.onnx"
    O.export_unet(model, path)
    graph = O.UNetGraph(model).eval()
    for (h, w), n in (((8, 8), 2), ((12, 16), 3)):
        args = _unet_inputs(model, h, w, n)
        with torch.no_grad():
            want = graph(*args).numpy()
        got = _ort(path, args)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4, ((h, w), n, np.abs(got - want).max())
        assert np.abs(want).mean() > 1e-2  # a real output, not zeros on both sides


def test_prior_matches_torch_at_two_grid_sizes(tmp_path):
    from restorer.models.mtcolor.tiny import SHIPPED, load_prior

    prior = load_prior(SHIPPED)
    path = tmp_path / "prior.onnx"
    O.export_prior(prior, path)
    graph = O.PriorGraph(prior).eval()
    from restorer.models.mtcolor.features import PYRAMIDS

    chans = {n: int(c) for n, c in (prior.config.pyramid or PYRAMIDS[prior.config.backbone])}
    for h, w in ((20, 32), (36, 28)):
        g = torch.Generator().manual_seed(h)
        strides = {"s8": 1, "s16": 2, "s32": 4}
        feats = tuple(torch.randn(1, chans[n], max(1, h // strides.get(n, 8)), max(1, w // strides.get(n, 8)),
                                  generator=g) for n in prior.names)
        args = (torch.rand(1, 1, h, w, generator=g) * 2 - 1, *feats)
        with torch.no_grad():
            want = graph(*args).numpy()
        got = _ort(path, args)
        assert got.shape == want.shape == (1, len(prior.centers), h, w)
        assert np.abs(got - want).max() < 1e-4, ((h, w), np.abs(got - want).max())


def test_a_photo_on_onnx_runtime_is_the_torch_photo_within_one_ab_unit(tmp_path, monkeypatch):
    import cv2

    from restorer.io.color import srgb_to_lab
    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.run import colorize_run

    monkeypatch.setenv("RESTORER_CACHE", str(tmp_path / "cache"))
    src = sorted((Path(__file__).parents[3].parent / "shared" / "data" / "photos").glob("*.jpg"))
    if src:
        rgb = cv2.cvtColor(cv2.imread(str(src[0])), cv2.COLOR_BGR2RGB)
    else:  # a clean clone outside this workspace: a textured picture of our own
        rng = np.random.default_rng(0)
        rgb = cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), (0, 0), 3)
    rgb = cv2.resize(rgb, (160, int(160 * rgb.shape[0] / rgb.shape[1])), interpolation=cv2.INTER_AREA)
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    out = {}
    for runtime in ("torch", "onnx"):
        dst = tmp_path / f"{runtime}.png"
        colorize_run([gray], dst, ColorizeOptions(preset="tiny", runtime=runtime, quiet=True, threads=2))
        out[runtime] = srgb_to_lab(cv2.cvtColor(cv2.imread(str(dst)), cv2.COLOR_BGR2RGB) / 255.0)
    diff = np.linalg.norm(out["onnx"][..., 1:] - out["torch"][..., 1:], axis=-1)
    assert diff.mean() < 1.0, diff.mean()
    assert np.linalg.norm(out["torch"][..., 1:], axis=-1).mean() > 3  # coloured, so the comparison means something
    assert any((tmp_path / "cache").rglob("manifest.json"))  # exported once into the cache


def test_without_onnxruntime_the_runtime_is_refused_in_one_line(tmp_path, monkeypatch, restorer, one_error):
    import cv2

    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((32, 32), 128, np.uint8))
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "onnxruntime.py").write_text("raise ImportError('blocked for the test')\n")
    (blocker / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'onnxruntime':\n"
        "            raise ImportError('no onnxruntime')\n"
        "sys.meta_path.insert(0, B())\n")
    monkeypatch.setenv("PYTHONPATH", f"{blocker}")
    proc = restorer("colorize", photo, "-o", tmp_path / "o.png", "--runtime", "onnx")
    assert proc.returncode == 2
    line = one_error(proc)
    assert 'pip install "restorer[onnx]"' in line
    assert not (tmp_path / "o.png").exists()
    proc = restorer("colorize", photo, "-o", tmp_path / "o.png", "--runtime", "onnx", "--preset", "stencil")
    assert proc.returncode == 2 and "tiny and anchors presets only" in one_error(proc)


def test_export_onnx_refuses_an_existing_folder(tmp_path, restorer, one_error):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    proc = restorer("export", "onnx", "--preset", "tiny", "-o", tmp_path / "out")
    assert proc.returncode == 2 and "--overwrite" in one_error(proc)
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
