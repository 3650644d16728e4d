"""An honest development split: no series and no near-duplicate on both sides (issue 10 item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from restorer.training.dataset.build import build_dataset, load_rgb
from restorer.training.dataset.splits import (
    NEAR_DUPLICATE_BITS,
    assign_splits,
    in_validation,
    perceptual_hash,
    series_key,
)

POOL = Path(__file__).resolve().parents[3] / "shared" / "data" / "photos"
if not POOL.is_dir():
    POOL = Path("/work/shared/data/photos")


def _names(prefix: str, candidate: bool, n: int) -> list[str]:
    """``n`` file names that are (or are not) development candidates by their hash."""
    out, k = [], 0
    while len(out) < n:
        name = f"{prefix}{k}x.jpg"
        if in_validation(name, 0.1) == candidate:
            out.append(name)
        k += 1
    return out


def test_series_key_drops_the_trailing_number() -> None:
    assert series_key("gcompris-qt-data__fishes-fish12.jpg") == "gcompris-qt-data__fishes-fish"
    assert series_key("giraffe-2.jpg") == series_key("giraffe.jpg") == "giraffe"
    assert series_key("1984.jpg") == "1984"  # a name that is only a number stays itself
    assert series_key("a1b.png") == "a1b"


def _bits(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def test_perceptual_hash_finds_a_resized_recompressed_copy(tmp_path) -> None:
    src = POOL / "gcompris-qt-data__alpaca.jpg"
    with Image.open(src) as im:
        im.convert("RGB").resize((im.width // 3, im.height // 3), Image.BILINEAR).save(tmp_path / "copy.jpg",
                                                                                      quality=60)
    h = perceptual_hash(load_rgb(src, 256))
    assert _bits(h, perceptual_hash(load_rgb(tmp_path / "copy.jpg", 256))) <= NEAR_DUPLICATE_BITS // 2
    others = sorted(POOL.glob("gcompris-qt-data__*.jpg"))[:12]
    far = [_bits(h, perceptual_hash(load_rgb(p, 256))) for p in others if p != src]
    assert min(far) > NEAR_DUPLICATE_BITS, far


def test_a_group_is_development_only_if_every_member_is() -> None:
    cand = _names("c", True, 4)
    train = _names("t", False, 2)
    # one series: a candidate and a training photo
    sib_c = next(f"fish{k}.jpg" for k in range(1000) if in_validation(f"fish{k}.jpg", 0.1))
    sib_t = next(f"fish{k}.jpg" for k in range(1000) if not in_validation(f"fish{k}.jpg", 0.1))
    assert series_key(sib_c) == series_key(sib_t) == "fish" and not in_validation(sib_t, 0.1)
    names = cand + train + [sib_c, sib_t]
    hashes = list(range(len(names)))  # distinct (max_bits=0 below: only equal hashes are copies)...
    hashes[1] = hashes[len(cand)]  # ...except cand[1], an exact copy of train[0] under another name
    split, moved = assign_splits(names, hashes, 0.1, max_bits=0)
    assert split[cand[0]] == split[cand[2]] == split[cand[3]] == "val"
    assert split[cand[1]] == "train" and moved[cand[1]] == f"near-duplicate of {train[0]}"
    assert split[train[0]] == split[train[1]] == "train"
    assert split[sib_c] == split[sib_t] == "train"  # a series is on one side
    assert moved[sib_c] == f"series 'fish' with {sib_t}"


def test_small_photos_get_contiguous_labels() -> None:
    from restorer.training.dataset.segment import segment

    rng = np.random.default_rng(5)
    for seed_shape in [(48, 64), (20, 30), (9, 100)]:
        rgb = np.clip(rng.normal(0.5, 0.25, (*seed_shape, 3)), 0, 1).astype(np.float32)
        labels = segment(rgb)
        assert labels.shape == seed_shape
        assert set(np.unique(labels)) == set(range(int(labels.max()) + 1))  # every id names a region


def test_adding_photos_never_moves_one_into_development() -> None:
    rng = np.random.default_rng(0)
    names = [f"s{k % 7}-{k}.jpg" if k % 3 else f"lone{k}.jpg" for k in range(60)]
    hashes = [int(rng.integers(0, 2 ** 63)) for _ in names]
    before, _ = assign_splits(names[:40], hashes[:40], 0.3)
    after, _ = assign_splits(names, hashes, 0.3)
    assert any(v == "val" for v in before.values())
    assert all(after[n] == "train" for n, side in before.items() if side == "train")


def test_the_pools_resized_pyramid_and_its_series_siblings_leave_development() -> None:
    paths = sorted(POOL.glob("*.jpg"))
    assert len(paths) > 300
    names = [p.name for p in paths]
    split, moved = assign_splits(names, [perceptual_hash(load_rgb(p, 256)) for p in paths], 0.1)
    pyramid = "gcompris-qt-data__monuments-greatPyramid.jpg"
    assert in_validation(pyramid, 0.1) and split[pyramid] == "train"
    assert moved[pyramid] == "near-duplicate of gcompris-qt-data__egypt-greatPyramidOfGiza.jpg"
    dev = [n for n in names if split[n] == "val"]
    assert len(dev) >= 15
    keys = {series_key(n) for n in names if split[n] == "train"}
    assert not [n for n in dev if series_key(n) in keys]


def test_build_puts_a_copy_and_its_original_on_one_side(tmp_path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    cand = _names("scan", True, 1)[0]
    orig = _names("orig", False, 1)[0]
    rng = np.random.default_rng(5)
    img = np.clip(rng.normal(128, 60, (48, 64, 3)), 0, 255).astype(np.uint8)
    img[:24] = (200, 40, 40)
    Image.fromarray(img).save(photos / orig)
    Image.fromarray(img).resize((32, 24)).save(photos / cand)
    other = _names("other", True, 1)[0]
    Image.fromarray(np.clip(rng.normal(90, 40, (48, 64, 3)), 0, 255).astype(np.uint8)).save(photos / other)
    manifest = build_dataset(photos, tmp_path / "data", size=64, namer=lambda crop: "thing")
    recs = {json.loads(line)["source"]: json.loads(line)
            for line in (tmp_path / "data" / "dataset.jsonl").read_text().splitlines()}
    assert recs[cand]["split"] == recs[orig]["split"] == "train"
    assert recs[other]["split"] == "val"
    assert manifest["moved_to_train"] == {cand: f"near-duplicate of {orig}"}
    again = build_dataset(photos, tmp_path / "data", size=64, namer=lambda crop: "thing")  # resumed: same answer
    assert again == manifest


@pytest.mark.parametrize("fraction", [0.0])
def test_no_development_split_when_none_is_asked_for(fraction) -> None:
    split, moved = assign_splits(["a.jpg", "b.jpg"], [0, 2 ** 64 - 1], fraction)
    assert set(split.values()) == {"train"} and moved == {}


def test_three_splits_keep_groups_whole_and_only_shrink_into_train() -> None:
    from restorer.training.dataset.splits import split_candidate

    rng = np.random.default_rng(2)
    names = [f"s{k % 9}-{k}.jpg" if k % 4 == 0 else f"lone{k}x.jpg" for k in range(400)]
    hashes = [int(rng.integers(0, 2 ** 63)) for _ in names]
    split, moved = assign_splits(names, hashes, 0.2, 0.2)
    sides = {n: split_candidate(n, 0.2, 0.2) for n in names}
    assert {"train", "val", "test"} == set(split.values())
    for n in names:  # a photo is where its name asks, or in train
        assert split[n] in (sides[n], "train")
        assert (n in moved) == (split[n] != sides[n])
    for key in {series_key(n) for n in names}:  # a series is on one side
        assert len({split[n] for n in names if series_key(n) == key}) == 1
    # the shares are about what was asked (lone photos dominate; series go to train)
    lone = [n for n in names if n.startswith("lone")]
    assert 0.12 < sum(split[n] == "test" for n in lone) / len(lone) < 0.28


def test_no_test_split_keeps_the_development_split_as_it_was() -> None:
    paths = sorted(POOL.glob("*.jpg"))[:120]
    names = [p.name for p in paths]
    hashes = [perceptual_hash(load_rgb(p, 64)) for p in paths]
    two, _ = assign_splits(names, hashes, 0.1)
    three, _ = assign_splits(names, hashes, 0.1, 0.1)
    assert {n for n in names if two[n] == "val"} == {n for n in names if three[n] == "val"}
    assert all(two[n] == "train" for n in names if three[n] == "test")


def test_dataset_build_cli_reports_three_splits(tmp_path, restorer) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(8)
    for k in range(12):
        img = np.zeros((40, 48, 3), np.uint8)
        img[:20] = rng.integers(0, 255, 3)
        img[20:] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(photos / f"photo{k}x.png")
    proc = restorer("dataset", "build", photos, "-o", tmp_path / "d", "--size", "48", "--val-fraction", "0.3",
                    "--test-fraction", "0.3", timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["train"] + summary["val"] + summary["test"] == summary["count"] == 12
    bad = restorer("dataset", "build", photos, "-o", tmp_path / "e", "--val-fraction", "0.5", "--test-fraction", "0.5")
    assert bad.returncode == 2 and "too little" in bad.stderr


def test_dataset_build_takes_several_folders_and_notes_each_photos_folder(tmp_path, restorer, one_error) -> None:
    rng = np.random.default_rng(9)
    for folder, names in (("debian-wallpapers", ["sea", "hill"]), ("pypi-photos", ["cat"])):
        (tmp_path / folder).mkdir()
        for n in names:
            img = np.zeros((40, 48, 3), np.uint8)
            img[:20], img[20:] = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
            Image.fromarray(img).save(tmp_path / folder / f"{n}.png")
    proc = restorer("dataset", "build", tmp_path / "debian-wallpapers", tmp_path / "pypi-photos", "-o",
                    tmp_path / "d", "--size", "48", timeout=300)
    assert proc.returncode == 0, proc.stderr
    recs = {json.loads(line)["source"]: json.loads(line)
            for line in (tmp_path / "d" / "dataset.jsonl").read_text().splitlines()}
    want = {"sea.png": "debian-wallpapers", "hill.png": "debian-wallpapers", "cat.png": "pypi-photos"}
    assert {k: r["folder"] for k, r in recs.items()} == want
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "pypi-photos" / "sea.jpg")  # a second "sea"
    clash = restorer("dataset", "build", tmp_path / "debian-wallpapers", tmp_path / "pypi-photos", "-o",
                     tmp_path / "e", timeout=300)
    assert clash.returncode == 2
    assert "same name 'sea'" in one_error(clash) and not (tmp_path / "e").exists()


def test_a_series_the_manifest_declares_stays_on_one_side(tmp_path) -> None:
    """Photos of the same people under different names (data/extra's kphotoalbum): the MANIFEST.csv beside
    them says they are one series, and the build keeps them on one side."""
    photos = tmp_path / "photos"
    photos.mkdir()
    dev = _names("album-anne", True, 1)[0]
    rest = _names("album-bob", False, 2)
    rng = np.random.default_rng(7)
    for k, name in enumerate([dev, *rest]):
        img = np.clip(rng.normal(60 + 60 * k, 30, (48, 64, 3)), 0, 255).astype(np.uint8)
        img[: 8 * (k + 1)] = (40 * k, 200, 90)  # no two alike: no near-duplicate grouping
        Image.fromarray(img).save(photos / name)
    assert series_key(dev) != series_key(rest[0])  # by name alone they are not one series
    alone = build_dataset(photos, tmp_path / "d1", size=64, namer=lambda crop: "thing")
    assert alone["moved_to_train"] == {}
    (photos / "MANIFEST.csv").write_text("file,package,series\n" + "".join(f"{n},kphotoalbum,kphotoalbum\n"
                                                                           for n in [dev, *rest]))
    grouped = build_dataset(photos, tmp_path / "d2", size=64, namer=lambda crop: "thing")
    recs = [json.loads(line) for line in (tmp_path / "d2" / "dataset.jsonl").read_text().splitlines()]
    assert {r["split"] for r in recs} == {"train"}
    assert grouped["moved_to_train"] == {dev: f"series 'declared:kphotoalbum' with {rest[0]}"}
