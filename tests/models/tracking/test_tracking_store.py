"""MaskStore, prompt regions, previews and the tracker choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from restorer.errors import WeightsError
from restorer.models.tracking import MaskStore, Prompt, contact_sheet, draw_preview, open_tracker
from restorer.shots.regions import prompt_region


def _masks(rng, n=2, size=(9, 13)):
    return rng.random((n, *size)) > 0.5


def test_mask_store_round_trip_and_completion(tmp_path):
    rng = np.random.default_rng(0)
    store = MaskStore(tmp_path, ["a", "b"], (9, 13), 10, 12, key="k1")
    frames = {t: _masks(rng) for t in range(10, 13)}
    for t, m in frames.items():
        store.put(t, m)
    assert not store.complete
    store.finish()
    again = MaskStore(tmp_path, ["a", "b"], (9, 13), 10, 12, key="k1")
    assert again.complete
    for t, m in frames.items():
        assert np.array_equal(again.get(t), m) and again.get(t).dtype == bool
    other = MaskStore(tmp_path, ["a", "b"], (9, 13), 10, 12, key="k2")  # other prompts
    assert not other.complete and not list(tmp_path.glob("*.mask"))


def test_mask_store_refuses_incomplete_and_wrong_shapes(tmp_path):
    store = MaskStore(tmp_path, ["a"], (4, 4), 0, 1)
    store.put(0, np.zeros((1, 4, 4), bool))
    with pytest.raises(RuntimeError, match="never written"):
        store.finish()
    with pytest.raises(ValueError):
        store.put(1, np.zeros((2, 4, 4), bool))
    with pytest.raises(IndexError):
        store.put(5, np.zeros((1, 4, 4), bool))
    assert not (tmp_path / "complete.json").exists()
    assert json.loads((tmp_path / "meta.json").read_text())["names"] == ["a"]


def test_mask_store_exports_pngs(tmp_path):
    import cv2

    store = MaskStore(tmp_path / "s", ["red car", "sky"], (6, 8), 3, 4)
    m = np.zeros((2, 6, 8), bool)
    m[0, 1:3, 2:5] = True
    store.put(3, m)
    store.put(4, m)
    out = store.export_png(tmp_path / "png")
    png = cv2.imread(str(out / "00_red_car" / "00000003.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and np.array_equal(png > 0, m[0])
    assert len(list((out / "01_sky").glob("*.png"))) == 2


def test_prompt_regions():
    box = prompt_region(Prompt(0, box=(2, 1, 6, 4)), (8, 10))
    assert box.sum() == 12 and box[1:4, 2:6].all()
    pts = prompt_region(Prompt(0, points=((20, 20),), negative=()), (40, 40))
    assert pts[20, 20] and not pts[0, 0]
    carved = prompt_region(Prompt(0, box=(0, 0, 40, 40), negative=((20, 20),)), (40, 40))
    assert not carved[20, 20] and carved[0, 0]
    with pytest.raises(ValueError):
        Prompt(0)


def test_preview_and_contact_sheet():
    luma = np.full((48, 64), 128, np.uint8)
    masks = np.zeros((2, 48, 64), bool)
    masks[0, 10:30, 10:30] = True
    masks[1, 20:40, 35:60] = True
    img = draw_preview(luma, masks, ["face", "car"])
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert (img != 128).any(axis=2).sum() > 40  # outlines drawn in colour
    assert not np.array_equal(img[10, 20], img[20, 47])  # distinct colours
    sheet = contact_sheet([img, img[:20], img], ["f1", "f2", "f3"], columns=2)
    assert sheet.ndim == 3 and sheet.shape[1] > 2 * 64 and sheet.shape[0] > 2 * 48


def test_missing_sam2_folder_says_where_what_and_the_flag(tmp_path):
    with pytest.raises(WeightsError) as err:
        open_tracker("sam2", tmp_path / "nope")
    msg = str(err.value)
    assert "nope" in msg and "--sam2" in msg and "\n" not in msg
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="model.safetensors"):
        open_tracker(None, tmp_path / "half")
    with pytest.raises(WeightsError, match="--sam2"):
        open_tracker("sam2")
    assert open_tracker(None).name == "flow"


def test_the_store_writes_through_restorer_fs_the_one_home_for_safe_writes():
    from pathlib import Path

    import restorer.jobs
    from restorer.models.tracking import store

    source = Path(store.__file__).read_text()
    assert "from restorer.fs import fsync_file, open_atomic" in source and "restorer.jobs" not in source
    assert not hasattr(restorer.jobs, "fsync_file") and not hasattr(restorer.jobs, "open_atomic")  # no re-export
