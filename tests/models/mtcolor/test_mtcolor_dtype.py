"""Every device and dtype: tiny in float16 and bfloat16 stays near float32 with instances, and every module and
tensor of an opened engine lives on the engine's device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from restorer.errors import InputError
from restorer.models.engine import FrameInput, InstanceText, ShotContext
from restorer.models.mtcolor import tiny
from restorer.models.mtcolor.engine import MTColorEngine, open_mtcolor, resolve_dtype
from restorer.presets import load_preset, open_engine

from .test_mtcolor_loading import tiny_sd  # noqa: F401 - the fixture

torch.set_num_threads(1)
FILM = Path(__file__).resolve().parents[2] / "data" / "carphone_pristine.mp4"
STEPS = 4


@pytest.fixture(scope="module")
def frame() -> FrameInput:
    """A real frame (the carphone clip's first, 176x144) and one instance over the driver."""
    import av

    with av.open(str(FILM)) as box:
        gray = next(box.decode(video=0)).to_ndarray(format="gray")
    luma = gray.astype(np.float32) / 255
    masks = np.zeros((1, *luma.shape), bool)
    masks[0, 30:130, 40:120] = True
    return FrameInput(0, luma, masks)


CTX = ShotContext(seed=5, prompt=None, instances=(InstanceText("man", "a man in a red shirt"),))


def _tiny(weights: str, dtype: str, monkeypatch) -> MTColorEngine:
    monkeypatch.delenv("RESTORER_WEIGHTS", raising=False)
    if weights == "random":
        monkeypatch.setattr(tiny, "shipped", lambda: None)
    elif tiny.shipped() is None:
        pytest.skip("no shipped tiny weights in this checkout")
    return open_mtcolor(dict(load_preset("tiny").options), device="cpu", weights=None, base=None,
                        overrides={"steps": STEPS}, dtype=dtype)


def _ab(engine: MTColorEngine, frame: FrameInput) -> np.ndarray:
    return next(iter(engine.shot(CTX, [frame])))


_REFERENCE: dict[str, np.ndarray] = {}


def _reference(weights: str, frame: FrameInput, monkeypatch) -> np.ndarray:
    """The float32 chroma, computed once per weights."""
    if weights not in _REFERENCE:
        _REFERENCE[weights] = _ab(_tiny(weights, "float32", monkeypatch), frame)
    return _REFERENCE[weights]


@pytest.mark.parametrize("weights", ["random", "shipped"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_tiny_in_half_precision_with_an_instance_stays_near_float32(frame, weights, dtype, monkeypatch) -> None:
    reference = _reference(weights, frame, monkeypatch)
    engine = _tiny(weights, dtype, monkeypatch)
    assert engine.dtype == getattr(torch, dtype)
    assert all(p.dtype == engine.dtype for p in engine.model.parameters())
    ab = _ab(engine, frame)
    assert ab.dtype == np.float32 and np.isfinite(ab).all()
    assert np.abs(ab - reference).max() < 3.0


def _placed(obj, seen: set[int], found: list[tuple[str, torch.Tensor]], where: str) -> None:
    """Every tensor reachable from ``obj`` through our objects, modules (parameters and buffers), lists, dicts."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        found.append((where, obj))
    elif isinstance(obj, torch.nn.Module):
        found.extend((f"{where}.{n}", t) for n, t in [*obj.named_parameters(), *obj.named_buffers()])
        for name, value in vars(obj).items():  # plain attributes (e.g. a module kept outside _modules)
            if not name.startswith("_") and not isinstance(value, torch.nn.Module):
                _placed(value, seen, found, f"{where}.{name}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _placed(v, seen, found, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _placed(v, seen, found, f"{where}[{i}]")
    elif type(obj).__module__.startswith("restorer") and hasattr(obj, "__dict__"):
        for name, value in vars(obj).items():
            _placed(value, seen, found, f"{where}.{name}")


def _modules(obj, seen: set[int], found: list[torch.nn.Module]) -> None:
    """The top-level modules reachable from ``obj`` through our own objects."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        found.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _modules(v, seen, found)
    elif type(obj).__module__.startswith("restorer") and hasattr(obj, "__dict__"):
        for name, value in vars(obj).items():
            if name != "modules":
                _modules(value, seen, found)


def _check_device(engine: MTColorEngine, device: str) -> None:
    found: list[tuple[str, torch.Tensor]] = []
    _placed(engine, set(), found, "engine")
    assert found
    wrong = [(w, t.device) for w, t in found if t.device.type != device]
    assert not wrong, wrong[:5]
    modules: list[torch.nn.Module] = []
    _modules(engine, set(), modules)
    registered = {id(m) for m in engine.modules.modules()}
    assert modules and all(id(m) in registered for m in modules), [type(m).__name__ for m in modules
                                                                     if id(m) not in registered]


@pytest.mark.parametrize("weights", ["random", "shipped"])
def test_every_parameter_and_buffer_of_an_opened_tiny_is_on_its_device(weights, monkeypatch) -> None:
    """Opened on the meta device (the CPU stands in for CUDA): a module left on the CPU (the EfficientNet features
    were) is found."""
    monkeypatch.delenv("RESTORER_WEIGHTS", raising=False)
    if weights == "random":
        monkeypatch.setattr(tiny, "shipped", lambda: None)
    elif tiny.shipped() is None:
        pytest.skip("no shipped tiny weights in this checkout")
    opened = open_mtcolor(dict(load_preset("tiny").options), device="meta", weights=None, base=None, overrides={})
    assert {"model", "features", "text"} <= set(opened.modules)
    _check_device(opened, "meta")
    engine = open_mtcolor(dict(load_preset("tiny").options), device="cpu", weights=None, base=None, overrides={})
    _check_device(engine, "cpu")
    engine.to("meta", torch.float16)  # one call moves everything
    _check_device(engine, "meta")
    assert all(p.dtype == torch.float16 for p in engine.model.parameters())
    assert all(p.dtype == torch.float16 for p in engine.text.model.parameters())


def test_sd15_in_float16_colours_a_frame_with_an_instance(tiny_sd, monkeypatch) -> None:  # noqa: F811
    """instance masks were cast to float32 before a float16 convolution: sd15 in float16 crashed here."""
    from .test_mtcolor_loading import OPTIONS, _run

    base, ours, _ = tiny_sd
    monkeypatch.delenv("RESTORER_SD15_CONFIG", raising=False)
    ref = _run(open_mtcolor(OPTIONS, device="cpu", weights=ours, base=base, overrides={}, dtype="float32"))
    engine = open_mtcolor(OPTIONS, device="cpu", weights=ours, base=base, overrides={}, dtype="float16")
    assert engine.dtype == torch.float16 and engine.space.vae.dtype == torch.float16
    ab = _run(engine)
    assert np.isfinite(ab).all() and np.abs(ab - ref).max() < 3.0
    meta = open_mtcolor(OPTIONS, device="meta", weights=ours, base=base, overrides={})
    assert {"model", "vae", "text"} <= set(meta.modules)
    _check_device(meta, "meta")


def test_dtype_names() -> None:
    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("auto", "cuda:0") == torch.float16
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16 and resolve_dtype(None, "cpu") == torch.float32
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_dtype("float8", "cpu")


def test_stencil_accepts_and_ignores_a_dtype() -> None:
    assert open_engine(load_preset("stencil"), device="cpu", dtype="float16").name == "stencil"
