"""A resumed job reuses earlier work only while everything the result depends on is unchanged: the
shots file, the mask PNGs it names, and the weights, not just their paths."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from restorer.jobs import notes_fingerprint, tree_fingerprint
from restorer.pipelines.options import ColorizeOptions


def _mask(path, x0: int) -> None:
    m = np.zeros((32, 32), np.uint8)
    m[:, x0:x0 + 8] = 255
    Image.fromarray(m).save(path)


def test_editing_a_mask_png_changes_the_notes_fingerprint(tmp_path) -> None:
    (tmp_path / "masks").mkdir()
    _mask(tmp_path / "masks" / "car.png", 0)
    notes = tmp_path / "shots.yaml"
    notes.write_text("version: 1\nshots:\n  - instances:\n      - name: car\n        text: a red car\n"
                     "        prompts:\n          - frame: 0\n            mask: masks/car.png\n")
    first = notes_fingerprint(notes)
    assert notes_fingerprint(notes) == first
    _mask(tmp_path / "masks" / "car.png", 16)  # same name, the car drawn elsewhere
    os.utime(tmp_path / "masks" / "car.png", ns=(1, 1))  # even with an old timestamp: its content differs
    assert notes_fingerprint(notes) != first
    assert notes_fingerprint(tmp_path / "none.yaml") is None


def test_retrained_weights_change_the_job_settings(tmp_path) -> None:
    weights = tmp_path / "w"
    (weights / "unet").mkdir(parents=True)
    (weights / "unet" / "model.safetensors").write_bytes(b"a" * 100)
    opts = ColorizeOptions(preset="tiny", weights=weights,
                           preset_config={"engine": "mtcolor", "options": {"backbone": "tiny"}})
    before = opts.result_settings()
    assert opts.result_settings() == before
    (weights / "unet" / "model.safetensors").write_bytes(b"b" * 120)
    assert opts.result_settings() != before
    assert tree_fingerprint(tmp_path / "gone") == "missing"
    stencil = ColorizeOptions(preset="stencil", weights=weights, preset_config={"engine": "stencil"})
    assert "weights" not in stencil.result_settings()["assets"]  # the stencil engine loads none
