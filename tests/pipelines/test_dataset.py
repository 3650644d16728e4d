"""The dataset builder on small synthetic photos: masks cover the image, texts name the colours, reruns agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorer.errors import InputError
from restorer.models.colornames import parse_color
from restorer.pipelines.dataset import (
    build_dataset,
    dataset_contact_sheet,
    in_validation,
    load_record,
    name_color,
    palette_lab,
    read_dataset,
    segment,
)

torch.set_num_threads(1)

RED, GREEN, BLUE, YELLOW = (200, 30, 30), (40, 160, 50), (30, 60, 200), (235, 215, 40)


def _photo(path: Path, seed: int, layout: str) -> None:
    """A 96x128 photo of flat colour regions with a little noise (as JPEG, like the real pool)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((96, 128, 3), np.float32)
    if layout == "bands":
        img[:32], img[32:64], img[64:] = BLUE, GREEN, RED
    else:
        img[:] = YELLOW
        img[20:76, 30:100] = BLUE
    img += rng.normal(0, 3, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=95)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    _photo(root / "a_bands.jpg", 0, "bands")
    _photo(root / "b_box.jpg", 1, "box")
    _photo(root / "c_bands.jpg", 2, "bands")
    return root


def _namer(crop: np.ndarray) -> str:
    return "thing"


@pytest.fixture(scope="module")
def built(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "d"
    build_dataset(photos, out, size=96, val_fraction=0.4, namer=_namer)
    return out


def test_masks_cover_the_image_once(built) -> None:
    for rec in read_dataset(built):
        rgb, labels = load_record(built, rec)
        assert labels.shape == rgb.shape[:2] == tuple(rec["size"])
        ids = [inst["id"] for inst in rec["instances"]]
        assert ids == list(range(len(ids))) and 2 <= len(ids) <= 12
        assert set(np.unique(labels)) == set(ids)  # a partition: every pixel in exactly one instance


def test_texts_name_each_regions_colour(built) -> None:
    from restorer.io.color import srgb_to_lab

    pal = palette_lab()
    names = set()
    for rec in read_dataset(built):
        rgb, labels = load_record(built, rec)
        lab = srgb_to_lab(rgb)
        for inst in rec["instances"]:
            named = parse_color(inst["text"]).name
            assert named == inst["color"] == name_color(lab[labels == inst["id"]].mean(0), pal)
            assert inst["text"] == f"a {named} thing"
            names.add(named)
        assert rec["global"].startswith("a ") and " photo of " in rec["global"]
    assert {"red", "green", "blue", "yellow"} <= names


def test_second_run_gives_identical_files_and_resumes(photos, built, tmp_path) -> None:
    again = tmp_path / "again"
    build_dataset(photos, again, size=96, val_fraction=0.4, namer=_namer)
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (built / f).read_bytes() == (again / f).read_bytes(), f
    # resuming: a kept record is not rebuilt (the namer would say something else)
    build_dataset(photos, again, size=96, val_fraction=0.4, namer=lambda crop: "other")
    assert (built / "dataset.jsonl").read_bytes() == (again / "dataset.jsonl").read_bytes()


def test_validation_split_is_fixed_by_file_name(built) -> None:
    recs = read_dataset(built)
    assert [r["split"] == "val" for r in recs] == [in_validation(r["source"], 0.4) for r in recs]
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["train"] + manifest["val"] == manifest["count"] == 3
    assert len(manifest["inputs_sha256"]) == 64


def test_segment_merges_to_a_few_regions() -> None:
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(0.5, 0.2, (64, 64, 3)), 0, 1).astype(np.float32)  # pure noise
    labels = segment(img)
    assert 1 <= len(np.unique(labels)) <= 12


def test_contact_sheet_and_errors(built, tmp_path) -> None:
    png = tmp_path / "sheet.png"
    dataset_contact_sheet(built, png)
    assert Image.open(png).size[1] > 100
    with pytest.raises(InputError, match="no images"):
        build_dataset([], tmp_path / "o")
    with pytest.raises(InputError, match="dataset.jsonl"):
        read_dataset(tmp_path)
