"""Refusals come at once: every missing-file or missing-weights refusal happens before torch, diffusers or
transformers are imported (a property of the import graph, not a timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "diffusers", "transformers")
PROBE = """
import json, sys
from restorer.errors import RestorerError
result = {"error": None}
try:
    exec(sys.argv[1])
except RestorerError as exc:
    result = {"error": type(exc).__name__, "message": str(exc), "exit_code": exc.exit_code}
result["heavy"] = [m for m in %r if m in sys.modules]
print(json.dumps(result))
""" % (HEAVY,)


def _probe(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter; its RestorerError (if any) and which heavy modules got imported."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("RESTORER_")}
    full.update(env)
    proc = subprocess.run([sys.executable, "-c", PROBE, code], capture_output=True, text=True, env=full, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sd15_base(root: Path) -> Path:
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (root / part).mkdir(parents=True)
    return root


def test_sd15_without_a_base_is_refused_before_torch() -> None:
    out = _probe("from restorer.presets import preflight\npreflight('sd15')")
    assert out["error"] == "WeightsError" and out["exit_code"] == 2
    assert "--base" in out["message"] and "RESTORER_SD15" in out["message"]
    assert out["heavy"] == []


def test_sd15_with_a_missing_base_folder_or_file_is_refused_before_torch(tmp_path) -> None:
    for missing in (tmp_path / "nowhere", tmp_path / "sd15.safetensors"):
        out = _probe(f"from restorer.presets import preflight\npreflight('sd15', base={str(missing)!r})")
        assert out["error"] == "WeightsError" and str(missing) in out["message"] and "does not exist" in out["message"]
        assert out["heavy"] == []
    out = _probe("from restorer.presets import preflight\npreflight('sd15')", RESTORER_SD15=str(tmp_path / "env"))
    assert out["error"] == "WeightsError" and str(tmp_path / "env") in out["message"] and out["heavy"] == []


def test_sd15_with_a_missing_weights_folder_is_refused_before_torch(tmp_path) -> None:
    base = _sd15_base(tmp_path / "base")
    code = (f"from restorer.presets import preflight\n"
            f"preflight('sd15', base={str(base)!r}, weights={str(tmp_path / 'ours')!r})")
    out = _probe(code)
    assert out["error"] == "WeightsError" and str(tmp_path / "ours") in out["message"]
    assert "--weights" in out["message"] and out["heavy"] == []
    (tmp_path / "ours" / "controlnet").mkdir(parents=True)
    out = _probe(code)
    assert "missing adapter" in out["message"] and out["heavy"] == []


def test_tiny_with_a_missing_weights_folder_is_refused_before_torch(tmp_path) -> None:
    out = _probe(f"from restorer.presets import preflight\npreflight('tiny', weights={str(tmp_path / 'w')!r})")
    assert out["error"] == "WeightsError" and str(tmp_path / "w") in out["message"] and out["heavy"] == []
    (tmp_path / "w" / "unet").mkdir(parents=True)
    out = _probe("from restorer.presets import preflight\npreflight('tiny')", RESTORER_WEIGHTS=str(tmp_path / "w"))
    assert "missing controlnet, adapter" in out["message"]
    assert out["heavy"] == []


def test_present_paths_pass_without_torch(tmp_path) -> None:
    base = _sd15_base(tmp_path / "base")
    for part in ("controlnet", "adapter"):
        (tmp_path / "ours" / part).mkdir(parents=True)
    out = _probe(f"from restorer.presets import preflight\n"
                 f"preflight('sd15', base={str(base)!r}, weights={str(tmp_path / 'ours')!r})\n"
                 f"preflight('tiny')\npreflight('stencil')")
    assert out == {"error": None, "heavy": []}


def test_open_engine_refuses_before_its_heavy_imports() -> None:
    out = _probe("from restorer.presets import load_preset, open_engine\n"
                 "open_engine(load_preset('sd15'), device='cpu', dtype='auto')")
    assert out["error"] == "WeightsError" and "--base" in out["message"] and out["heavy"] == []


def test_a_missing_sam2_folder_is_refused_before_torch(tmp_path) -> None:
    out = _probe(f"from restorer.models.tracking.sam2 import check_sam2_folder\n"
                 f"check_sam2_folder({str(tmp_path / 'sam2')!r})")
    assert out["error"] == "WeightsError" and str(tmp_path / "sam2") in out["message"]
    assert "--sam2" in out["message"] and out["heavy"] == []
    (tmp_path / "sam2").mkdir()
    (tmp_path / "sam2" / "config.json").write_text("{}")
    out = _probe(f"from restorer.models.tracking.sam2 import check_sam2_folder\n"
                 f"check_sam2_folder({str(tmp_path / 'sam2')!r})")
    assert "model.safetensors" in out["message"] and out["heavy"] == []


@pytest.mark.parametrize("flags", [["--preset", "sd15"], ["--weights", "{missing}"], ["--sam2", "{missing}"]])
def test_the_cli_refuses_missing_weights_in_one_line(tmp_path, restorer, one_error, flags) -> None:
    from PIL import Image

    photo = tmp_path / "old.png"
    Image.new("L", (32, 24), 90).save(photo)
    args = [f.format(missing=tmp_path / "missing") for f in flags]
    proc = restorer("colorize", photo, "-o", tmp_path / "out.png", *args, env={"RESTORER_SD15": "",
                                                                             "RESTORER_WEIGHTS": ""})
    assert proc.returncode == 2, proc.stderr
    line = one_error(proc)
    assert ("--base" in line) if "sd15" in args else str(tmp_path / "missing") in line
    assert not (tmp_path / "out.png").exists()


def test_a_preset_naming_an_engine_that_does_not_exist_is_one_line(tmp_path, restorer, one_error) -> None:
    """The schema's engine names are the registry's: an engine no module implements is refused by name."""
    from PIL import Image

    from restorer.presets import ENGINES, Preset

    assert set(Preset.model_fields["engine"].annotation.__args__) == set(ENGINES)
    photo = tmp_path / "old.png"
    Image.new("L", (32, 24), 90).save(photo)
    preset = tmp_path / "mine.yaml"
    preset.write_text("name: mine\nengine: deoldify\ndescription: a GAN colorizer\n")
    proc = restorer("colorize", photo, "-o", tmp_path / "out.png", "--preset", preset)
    assert proc.returncode == 2, proc.stderr
    line = one_error(proc)
    assert str(preset) in line and "'stencil', 'mtcolor' or 'anchors'" in line
    assert not (tmp_path / "out.png").exists()
