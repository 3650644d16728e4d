"""The dataset builder on small synthetic photos: masks cover the image, texts name the colours, reruns agree.

With ``--sam2`` the masks come from a tiny random SAM2 model (plumbing, not accuracy).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorer.errors import InputError, WeightsError
from restorer.models.colornames import TRAINED_COLOURS, parse_color
from restorer.training.dataset.build import build_dataset
from restorer.training.dataset.records import dataset_contact_sheet, load_record, read_dataset
from restorer.training.dataset.segment import sam2_labels, segment
from restorer.training.dataset.splits import in_validation

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


def _painted(rec: dict) -> np.ndarray:
    """The colour name each stored pixel was painted with in :func:`_photo` (the stored photo is scaled)."""
    h, w = rec["size"]
    yy, xx = np.mgrid[0:h, 0:w] * (96 / h)
    truth = np.empty((h, w), object)
    if "bands" in rec["source"]:
        truth[:] = "red"
        truth[yy < 64] = "green"
        truth[yy < 32] = "blue"
    else:
        truth[:] = "yellow"
        truth[(yy >= 20) & (yy < 76) & (xx >= 30) & (xx < 100)] = "blue"
    return truth.astype(str)


def _nearest_name(rgb_pixels: np.ndarray) -> str:
    """The lexicon's name nearest to the pixels' mean CIELab (scikit-image's), L* difference halved."""
    from skimage.color import rgb2lab

    lab = rgb2lab(rgb_pixels.reshape(-1, 1, 3).astype(np.float64))[:, 0].mean(0)
    dist = {n: float((((np.asarray(parse_color(n).lab) - lab) * np.array([0.5, 1, 1])) ** 2).sum())
            for n in TRAINED_COLOURS}
    best, second = sorted(dist.values())[:2]
    assert second - best > 0.5, "too close to call between two names"
    return min(dist, key=dist.get)


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
    for rec in read_dataset(built):
        rgb, labels = load_record(built, rec)
        painted = _painted(rec)
        big = set()
        for inst in rec["instances"]:
            m = labels == inst["id"]
            named = parse_color(inst["text"]).name
            assert named == inst["color"] == _nearest_name(rgb[m])
            assert inst["text"] == f"a {named} thing"
            if m.mean() >= 0.1:  # a main region (not a sliver along a blurred edge): the colour it was painted
                colours, counts = np.unique(painted[m], return_counts=True)
                assert counts.max() >= 0.98 * m.sum(), (rec["source"], inst)
                assert named == colours[counts.argmax()], (rec["source"], inst)
                big.add(named)
        assert big == set(np.unique(painted)), rec["source"]  # each painted colour has its main region
        assert rec["global"].startswith("a ") and " photo of " in rec["global"]


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
    ids, area = np.unique(labels, return_counts=True)
    assert labels.dtype == np.uint8 and labels.shape == (64, 64)
    # noise has no edge worth keeping: the greedy merge goes down to the minimum of 3 regions, each
    # at least min_area (2 %) of the picture
    assert list(ids) == [0, 1, 2]
    assert area.min() >= 0.02 * labels.size
    # flat regions far apart in colour are kept, however many (up to the maximum of 12)
    flat = np.zeros((64, 64, 3), np.float32)
    for k in range(4):
        for j in range(4):
            flat[16 * k:16 * (k + 1), 16 * j:16 * (j + 1)] = ((k * 4 + j) * 37 % 256 / 255, k / 3, j / 3)
    assert len(np.unique(segment(flat))) == 12


def test_contact_sheet_and_errors(built, tmp_path) -> None:
    png = tmp_path / "sheet.png"
    dataset_contact_sheet(built, png)
    sheet = np.asarray(Image.open(png).convert("RGB"))
    records = read_dataset(built)
    # rows of (cell + 8) px for each of the 3 records; photo | masks | texts: 2 cells + 420 px of text
    assert sheet.shape == ((160 + 8) * 3, 2 * 160 + 420, 3)
    for i, rec in enumerate(records):
        rgb, labels = load_record(built, rec)
        h, w = labels.shape  # 72x96 fits a 160 px cell: pasted as it is
        y = i * 168 + 4
        assert np.array_equal(sheet[y:y + h, 4:4 + w], (rgb * 255).round().astype(np.uint8))
        masks = sheet[y:y + h, 168:168 + w].reshape(-1, 3)
        colours = [np.unique(masks[labels.ravel() == k], axis=0) for k in range(len(rec["instances"]))]
        assert all(len(c) == 1 for c in colours)  # one flat colour per instance
        assert len({tuple(c[0]) for c in colours}) == len(colours)  # a different one for each
    with pytest.raises(InputError, match="no images"):
        build_dataset([], tmp_path / "o")
    with pytest.raises(InputError, match="dataset.jsonl"):
        read_dataset(tmp_path)


# --- SAM2 masks -----------------------------------------------------------------------------------

def _check_partition_and_texts(root: Path) -> None:
    for rec in read_dataset(root):
        rgb, labels = load_record(root, rec)
        ids = [inst["id"] for inst in rec["instances"]]
        assert labels.shape == rgb.shape[:2] and ids == list(range(len(ids))) and 2 <= len(ids) <= 12
        assert set(np.unique(labels)) == set(ids)
        for inst in rec["instances"]:
            assert inst["color"] == _nearest_name(rgb[labels == inst["id"]])
            assert inst["text"] == f"a {inst['color']} {inst['object']}"
            assert parse_color(inst["text"]).name == inst["color"]


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory) -> Path:
    from sam2_tiny import save_tiny_sam2

    return save_tiny_sam2(tmp_path_factory.mktemp("sam2"))


@pytest.fixture(scope="module")
def sam2_built(photos, tiny_sam2, tmp_path_factory) -> Path:
    """Built in this process with the real object namer, like the CLI (which must give the same files)."""
    out = tmp_path_factory.mktemp("ds_sam2") / "d"
    build_dataset(photos, out, size=96, val_fraction=0.4, sam2=tiny_sam2)
    return out


def test_sam2_labels_paint_smaller_masks_on_top_and_fill_the_rest() -> None:
    rgb = np.empty((192, 256, 3), np.float32)  # flat colours, above the 128 px of the merge decision
    rgb[:] = np.array(YELLOW) / 255
    rgb[40:152, 60:200] = np.array(BLUE) / 255
    box, frame, dot = (np.zeros((192, 256), bool) for _ in range(3))
    box[40:152, 60:200] = True
    frame[20:172, 40:220] = True  # the box and a yellow ring around it
    dot[4, 4] = True  # smaller than a pixel at 128 px: it goes to what surrounds it
    labels = sam2_labels(rgb, [dot, box, frame])
    assert labels.dtype == np.uint8 and sorted(np.unique(labels)) == [0, 1, 2]
    ring = frame & ~box
    assert len(np.unique(labels[box])) == len(np.unique(labels[ring])) == len(np.unique(labels[~frame])) == 1
    assert len({labels[box][0], labels[ring][0], labels[~frame][0]}) == 3  # the yellow ring is its own region


def test_sam2_labels_come_from_the_models_masks(photos, tiny_sam2, tmp_path, monkeypatch) -> None:
    from restorer.models.tracking.sam2 import Sam2Tracker

    made: list[list[np.ndarray]] = []
    generate = Sam2Tracker.generate_masks

    def spy(self, luma, **kwargs):
        made.append(generate(self, luma, **kwargs))
        return made[-1]

    monkeypatch.setattr(Sam2Tracker, "generate_masks", spy)
    out = tmp_path / "d"
    manifest = build_dataset(photos, out, size=96, val_fraction=0.4, namer=_namer, sam2=tiny_sam2, device="cpu",
                             limit=2)
    assert len(made) == 2 and all(len(m) >= 3 for m in made)
    for rec, masks in zip(read_dataset(out), made, strict=True):
        _, labels = load_record(out, rec)
        assert all(m.shape == labels.shape for m in masks)
        # the masks painted largest first (the smaller on top): every painted piece lies inside one
        # region (the merge joins whole pieces; at 72x96 nothing is lost to the 128 px decision)
        top = np.full(labels.shape, -1)
        for k, m in enumerate(sorted(masks, key=lambda m: -int(m.sum()))):
            top[m] = k
        pieces = [k for k in np.unique(top) if k >= 0]
        assert len(pieces) >= 3
        for k in pieces:
            assert len(np.unique(labels[top == k])) == 1, k
        # and the regions are SAM2's, not the colour segmentation's: this random model's masks cut
        # across the painted colours, so some region holds two of them in quantity
        painted = _painted(rec)
        mixed = [k for k in np.unique(labels)
                 if sorted(np.unique(painted[labels == k], return_counts=True)[1])[-2:][0] >= 0.2 * (labels == k).sum()]
        assert mixed
        assert rec["mask_source"] == manifest["mask_source"]
    assert manifest["mask_source"].startswith("sam2 ") and str(tiny_sam2.resolve()) in manifest["mask_source"]


def test_sam2_build_covers_each_photo_once_and_names_colours(sam2_built) -> None:
    _check_partition_and_texts(sam2_built)
    manifest = json.loads((sam2_built / "manifest.json").read_text())
    assert manifest["count"] == 3 and manifest["mask_source"].startswith("sam2 ")


def test_sam2_build_through_the_cli_gives_the_same_files(photos, tiny_sam2, sam2_built, restorer,
                                                         tmp_path) -> None:
    again = tmp_path / "again"
    proc = restorer("dataset", "build", photos, "-o", again, "--size", "96", "--val-fraction", "0.4",
                    "--sam2", tiny_sam2, timeout=300)
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.relative_to(sam2_built) for p in sam2_built.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (sam2_built / f).read_bytes() == (again / f).read_bytes(), f


def test_resuming_with_another_mask_source_is_refused(photos, built, tiny_sam2, sam2_built, restorer,
                                                      one_error) -> None:
    before = {p: p.read_bytes() for p in sorted(built.rglob("*")) if p.is_file()}
    proc = restorer("dataset", "build", photos, "-o", built, "--size", "96", "--val-fraction", "0.4",
                    "--sam2", tiny_sam2, timeout=300)
    assert proc.returncode == 2
    assert "masks came from felzenszwalb" in one_error(proc)
    assert before == {p: p.read_bytes() for p in sorted(built.rglob("*")) if p.is_file()}
    with pytest.raises(InputError, match="masks came from sam2 .* from felzenszwalb"):
        build_dataset(photos, sam2_built, size=96, val_fraction=0.4, namer=_namer)


def test_a_bad_sam2_folder_is_one_error(photos, tmp_path, restorer, one_error) -> None:
    out = tmp_path / "d"
    proc = restorer("dataset", "build", photos, "-o", out, "--sam2", tmp_path / "nope")
    assert proc.returncode == 2
    line = one_error(proc)
    assert "nope: SAM2 weights folder does not exist" in line and "--sam2 DIR" in line
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    proc = restorer("dataset", "build", photos, "-o", out, "--sam2", half)
    assert proc.returncode == 2
    assert "half: not a SAM2 weights folder (model.safetensors, processor_config.json or preprocessor_config.json " \
           "missing)" in one_error(proc)
    assert not out.exists()
    with pytest.raises(WeightsError, match="not a SAM2 weights folder"):
        build_dataset(photos, out, sam2=half)


def test_imagenet_names_are_in_the_classifiers_order() -> None:
    """Known ILSVRC-2012 indices (the order every ImageNet classifier outputs), without torchvision."""
    from restorer.models.mtcolor.features import _load_lite0
    from restorer.training.dataset.texts import imagenet_classes

    names = imagenet_classes()
    assert len(names) == 1000
    assert (names[0], names[1], names[207], names[985]) == ("tench", "goldfish", "golden retriever", "daisy")
    assert _load_lite0()._fc.out_features == len(names)
