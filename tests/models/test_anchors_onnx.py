"""anchors on ONNX Runtime (``--runtime onnx``): the two exported graphs answer as the torch model does.

The references are the torch model's own ``encode`` and ``generate`` (and the torch engine), run here; the
exported graphs run in onnxruntime. The shipped weights are exported (a real model, not a random one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorer.models import ort
from restorer.models.anchors.engine import AnchorEdit, open_anchors
from restorer.models.anchors.onnx_runtime import export_from_weights
from restorer.models.anchors.paths import weights_folder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export_from_weights(weights_folder(None), tmp_path_factory.mktemp("onnx") / "anchors")


@pytest.fixture(scope="module")
def engines(exported):
    return open_anchors({}, device="cpu"), open_anchors({}, device="cpu", weights=exported, runtime="onnx", threads=1)


def _picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 0.25 + 0.5 * (x > w / 2) + 0.15 * np.sin(y / 7.0)
    return np.clip(base + cv2.GaussianBlur(rng.normal(0, 0.1, (h, w)), (0, 0), 2), 0, 1).astype(np.float32)


def test_both_graphs_match_torch_within_1e4_on_random_inputs_at_two_aspect_ratios(exported, engines):
    torch_engine, _ = engines
    model, features = torch_engine.model, torch_engine.features
    encode, generate = ort.session(exported / "encode.onnx", 1), ort.session(exported / "generate.onnx", 1)
    for h, w in ((256, 192), (160, 256)):
        g = torch.Generator().manual_seed(h)
        small = torch.rand(1, 1, h, w, generator=g)
        gray = torch.rand(1, 1, h // 2, w // 2, generator=g) * 2 - 1
        with torch.no_grad():
            want = model.encode(gray, features.pyramid(small))
        x = features._input(small)
        got = ort.run(encode, x, gray)
        for name, a, b in zip(("assoc", "tokens", "logits", "feats", "s8"), want, got, strict=True):
            assert a.shape == b.shape, name
            assert (a - b).abs().max() < 1e-4, (name, (h, w), float((a - b).abs().max()))
        assoc, tokens, _, _, s8 = want
        n = tokens.shape[1]
        anchors = torch.zeros(1, n, dtype=torch.bool)
        anchors[0, torch.randperm(n, generator=g)[:8]] = True
        table = torch.randn(1, n, 2, generator=g) * 40
        with torch.no_grad():
            ab = model.generate(gray, assoc, s8, tokens, anchors, table)
        got_ab = ort.run(generate, gray, assoc, s8, tokens, anchors.float(), table)[0]
        assert got_ab.shape == ab.shape == (1, 2, h // 2, w // 2)
        assert (ab - got_ab).abs().max() < 1e-4, float((ab - got_ab).abs().max())
        assert ab.abs().mean() > 1.0  # a real colour, not zeros on both sides


def test_a_frame_automatic_sampled_and_edited_is_the_torch_frame_within_1e3(engines):
    torch_engine, onnx_engine = engines
    luma = _picture(120, 200)
    edit = [AnchorEdit(30, 40, (60.0, 50.0))]
    for kwargs in ({}, {"seed": 4}, {"edits": edit}):
        a, anchors_a = torch_engine.colorize(luma, **kwargs)
        b, anchors_b = onnx_engine.colorize(luma, **kwargs)
        assert anchors_a.index.tolist() == anchors_b.index.tolist(), kwargs  # the same anchors were chosen
        assert np.abs(a - b).max() < 1e-3, (kwargs, np.abs(a - b).max())


def test_colorize_cli_on_an_export_equals_torch_and_export_refuses_an_existing_folder(tmp_path, restorer, one_error,
                                                                                     monkeypatch):
    gray = (_picture(96, 128) * 255).astype(np.uint8)
    photo = tmp_path / "p.png"
    Image.fromarray(gray).save(photo)
    folder = tmp_path / "anchors-onnx"
    proc = restorer("export", "onnx", "--preset", "anchors", "-o", folder)
    assert proc.returncode == 0, proc.stderr
    assert (folder / "manifest.json").is_file()
    proc = restorer("export", "onnx", "--preset", "anchors", "-o", folder)
    assert proc.returncode == 2 and "--overwrite" in one_error(proc)
    outs = {}
    for runtime, extra in (("torch", []), ("onnx", ["--weights", folder])):
        out = tmp_path / f"{runtime}.png"
        proc = restorer("colorize", photo, "-o", out, "--preset", "anchors", "--runtime", runtime, *extra, "--quiet")
        assert proc.returncode == 0, proc.stderr
        outs[runtime] = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    assert np.abs(outs["torch"] - outs["onnx"]).max() <= 1  # one code value of rounding at most
    assert np.abs(outs["torch"][..., 0] - outs["torch"][..., 2]).mean() > 2  # coloured: the comparison means something


def test_without_an_export_the_weights_are_exported_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORER_CACHE", str(tmp_path / "cache"))
    engine = open_anchors({}, device="cpu", runtime="onnx", threads=1)
    manifests = list((tmp_path / "cache").rglob("manifest.json"))
    assert len(manifests) == 1
    stamp = manifests[0].stat().st_mtime_ns
    open_anchors({}, device="cpu", runtime="onnx", threads=1)  # the second run reuses it
    assert manifests[0].stat().st_mtime_ns == stamp
    assert engine.runtime == "onnx" and engine.features is None


def test_an_anchors_export_given_to_tiny_says_which_preset_runs_it(exported):
    from restorer.errors import WeightsError
    from restorer.models.mtcolor.onnx_runtime import read_manifest

    with pytest.raises(WeightsError) as exc:
        read_manifest(exported)
    assert "--preset anchors" in str(exc.value) and str(exported) in str(exc.value)
