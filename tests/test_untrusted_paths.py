"""Paths inside untrusted files stay inside those files' folders (issue 10, item 1).

A shots file arrives beside a photo in a watched drop folder, written by someone else. Its ``mask:``
paths must be relative and resolve (symlinks followed) to a regular file in the shots file's folder;
anything else is one line naming ``file:line`` and exit 2, before anything reads, hashes or
fingerprints the path. The same rule holds for a preset YAML's path options (relative to the preset
file) and for a dataset record's image and mask (inside the dataset folder).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from media import make_clip
from PIL import Image

from restorer.errors import InputError, ShotsError
from restorer.jobs import input_fingerprint, notes_fingerprint
from restorer.shots.load import load_shots
from restorer.shots.resolve import resolve_shots

W, H = 64, 48
FAST = ("--preset", "stencil", "--tracker", "static", "--quiet")
FIX = "copy the mask beside the shots file"
MASK_LINE = 8  # the line of `mask:` in shots_text()


def shots_text(mask: str, frames: str = "") -> str:
    return ("version: 1\nshots:\n" + (f"  - frames: {frames}\n    instances:\n" if frames else "  - instances:\n")
            + "      - name: car\n        text: a red car\n        prompts:\n          - frame: 0\n"
            + f"            mask: {json.dumps(mask)}\n")


def save_mask(path: Path, size: tuple[int, int] = (W, H), x0: int = 10) -> Path:
    m = np.zeros((size[1], size[0]), np.uint8)
    m[10:30, x0:x0 + 30] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m).save(path)
    return path


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Path]:
    """``inbox/`` (the shots file's folder) and ``outside/`` beside it, holding a perfectly good mask."""
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    save_mask(outside / "x.png", x0=20)  # a good mask, but not the one inside
    (outside / "secret.txt").write_text("not yours\n")
    (inbox / "masks").mkdir()
    os.symlink(outside / "x.png", inbox / "link.png")
    return {"inbox": inbox, "outside": outside}


def bad_masks(place: dict[str, Path]) -> dict[str, str]:
    return {
        "parent": "../outside/x.png",
        "absolute": str(place["outside"] / "x.png"),
        "root": "/",
        "folder": "masks",
        "outside-folder": "../outside",
        "symlink-out": "link.png",
        "missing": "masks/none.png",
    }


BAD = ["parent", "absolute", "root", "folder", "outside-folder", "symlink-out", "missing"]


# --------------------------------------------------------------------------- the shots file


@pytest.mark.parametrize("case", BAD)
def test_a_mask_outside_the_shots_folder_is_one_error_at_its_line(place, case) -> None:
    mask = bad_masks(place)[case]
    path = place["inbox"] / "shots.yaml"
    path.write_text(shots_text(mask))
    with pytest.raises(ShotsError) as info:
        resolve_shots(load_shots(path), frame_count=1, size=(H, W))
    msg = str(info.value)
    assert msg.startswith(f"{path}:{MASK_LINE}: "), msg
    assert (mask if case == "missing" else repr(mask)) in msg and FIX in msg and "\n" not in msg, msg


@pytest.mark.parametrize("case", [c for c in BAD if c != "missing"])
def test_the_path_is_refused_when_loading_before_anything_reads_it(place, case) -> None:
    path = place["inbox"] / "shots.yaml"
    path.write_text(shots_text(bad_masks(place)[case]))
    with pytest.raises(ShotsError, match=FIX):
        load_shots(path)


def test_good_relative_masks_still_work(place) -> None:
    save_mask(place["inbox"] / "masks" / "car.png")
    os.symlink("masks/car.png", place["inbox"] / "inner-link.png")  # a link that stays inside is fine
    for name in ("masks/car.png", "./masks/car.png", "masks/../masks/car.png", "inner-link.png"):
        path = place["inbox"] / "shots.yaml"
        path.write_text(shots_text(name))
        (shot,) = resolve_shots(load_shots(path), frame_count=1, size=(H, W))
        assert shot.instances[0].prompts[0].mask.sum() == 20 * 30, name


def test_the_fingerprint_hashes_only_validated_mask_files(place) -> None:
    save_mask(place["inbox"] / "masks" / "car.png")
    text = "version: 1\nshots:\n  - instances:\n" + "".join(
        f"      - name: i{k}\n        text: a red car\n        prompts:\n          - frame: 0\n"
        f"            mask: {json.dumps(m)}\n"
        for k, m in enumerate(["masks/car.png", "../outside/x.png", str(place["outside"] / "x.png"),
                               "../outside", "link.png", "masks"]))
    path = place["inbox"] / "shots.yaml"
    path.write_text(text)
    fp = notes_fingerprint(path)
    assert fp["masks"]["masks/car.png"] == input_fingerprint(place["inbox"] / "masks" / "car.png")
    outside_hash = input_fingerprint(place["outside"] / "x.png")["sha256_ends"]
    shown = json.dumps(fp)
    assert outside_hash not in shown
    for name, value in fp["masks"].items():
        if name != "masks/car.png":
            assert not isinstance(value, dict) and len(str(value)) < 20, (name, value)  # no hash, no folder digest


def test_the_fingerprint_never_walks_the_root(place) -> None:
    path = place["inbox"] / "shots.yaml"
    path.write_text(shots_text("/"))
    assert notes_fingerprint(path)["masks"]["/"] != "missing"
    assert not isinstance(notes_fingerprint(path)["masks"]["/"], dict)


# --------------------------------------------------------------------------- through the CLI


def photo(folder: Path) -> Path:
    path = folder / "photo.png"
    Image.fromarray(np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1))).save(path)
    return path


@pytest.mark.parametrize("case", ["parent", "absolute", "root", "symlink-out", "missing"])
def test_colorizing_a_photo_with_a_bad_sidecar_leaves_nothing(place, tmp_path, restorer, one_error, case) -> None:
    mask = bad_masks(place)[case]
    src = photo(place["inbox"])
    sidecar = place["inbox"] / "photo.shots.yaml"
    sidecar.write_text(shots_text(mask))
    out = tmp_path / "out"
    out.mkdir()
    proc = restorer("colorize", src, "-o", out / "photo_color.png", *FAST)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = one_error(proc)
    assert f"{sidecar}:{MASK_LINE}:" in line and FIX in line, line
    assert list(out.iterdir()) == [], "no output, no job folder"
    assert sorted(p.name for p in place["inbox"].iterdir()) == ["link.png", "masks", "photo.png",
                                                                 "photo.shots.yaml"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=16, size=(W, H))


@pytest.mark.parametrize("case", ["parent", "outside-folder", "symlink-out"])
def test_a_film_with_a_bad_shots_file_writes_no_outside_hash_to_any_manifest(place, tmp_path, clip, monkeypatch,
                                                                            case) -> None:
    from restorer import jobs
    from restorer.cli import main

    written: list[str] = []
    real = jobs.write_json_atomic

    def spy(path, data):
        written.append(json.dumps(data, default=str))
        return real(path, data)

    monkeypatch.setattr(jobs, "write_json_atomic", spy)
    shots = place["inbox"] / "film.shots.yaml"
    shots.write_text(shots_text(bad_masks(place)[case], frames="[0, 15]"))
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(main, ["colorize", str(clip), "--shots", str(shots), "-o", str(out / "o.mkv"),
                                       *FAST])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("restorer: error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert f"{shots}:{MASK_LINE + 1}:" in lines[0] and FIX in lines[0], lines[0]  # + the frames: line
    assert list(out.iterdir()) == [], "no output, no job folder"
    outside_hash = input_fingerprint(place["outside"] / "x.png")["sha256_ends"]
    assert not any(outside_hash in w for w in written)
    assert not any('"../outside": "' in w and '"missing"' not in w for w in written)


# --------------------------------------------------------------------------- dataset records


def dataset(root: Path, records: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def record(name: str, image: str, masks: str) -> dict:
    return {"name": name, "split": "train", "image": image, "masks": masks, "instances": [], "global": "a photo"}


def good_record_files(root: Path, stem: str) -> None:
    Image.new("RGB", (8, 8), "red").save(_mk(root / "images" / f"{stem}.png"))
    Image.new("L", (8, 8), 0).save(_mk(root / "masks" / f"{stem}.png"))


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("field,value", [("image", "../outside/x.png"), ("masks", "/etc/passwd"),
                                         ("image", "/"), ("masks", "link.png")])
def test_a_dataset_record_cannot_name_files_outside_its_folder(tmp_path, field, value) -> None:
    from restorer.training.dataset.records import load_record, read_dataset

    root = tmp_path / "data"
    save_mask(tmp_path / "outside" / "x.png")
    good_record_files(root, "a")
    os.symlink(tmp_path / "outside" / "x.png", root / "link.png")
    bad = record("b", "images/a.png", "masks/a.png")
    bad[field] = value
    dataset(root, [record("a", "images/a.png", "masks/a.png"), bad])
    with pytest.raises(InputError) as info:
        read_dataset(root)
    msg = str(info.value)
    assert msg.startswith(f"{root / 'dataset.jsonl'}:2: ") and repr(value) in msg and "\n" not in msg, msg
    with pytest.raises(InputError, match="dataset folder"):  # a record that never went through read_dataset
        load_record(root, bad)


def test_good_dataset_records_still_load(tmp_path) -> None:
    from restorer.training.dataset.records import load_record, read_dataset

    root = tmp_path / "data"
    good_record_files(root, "a")
    dataset(root, [record("a", "images/a.png", "masks/a.png")])
    (rec,) = read_dataset(root)
    rgb, labels = load_record(root, rec)
    assert rgb.shape == (8, 8, 3) and labels.shape == (8, 8)


# --------------------------------------------------------------------------- preset YAMLs


def preset_yaml(path: Path, base_config: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("name: mine\nengine: mtcolor\ndescription: my sd15\noptions:\n  backbone: sd15\n"
                    f"  base_config: {json.dumps(base_config)}\n")
    return path


@pytest.mark.parametrize("value", ["../elsewhere", "/", "configs/../../elsewhere", "cfg.txt"])
def test_a_preset_path_option_stays_beside_the_preset(tmp_path, value) -> None:
    from restorer.presets import load_preset

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "cfg.txt").write_text("a file, not a config folder\n")
    path = preset_yaml(tmp_path / "presets" / "mine.yaml", value)
    with pytest.raises(InputError) as info:
        load_preset(str(path))
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "base_config" in msg and repr(value) in msg, msg


def test_a_preset_path_option_is_read_relative_to_the_preset_not_the_cwd(tmp_path, monkeypatch) -> None:
    from restorer.presets import load_preset

    (tmp_path / "presets" / "configs").mkdir(parents=True)
    path = preset_yaml(tmp_path / "presets" / "mine.yaml", "configs")
    (tmp_path / "elsewhere" / "configs").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "elsewhere")
    preset = load_preset(str(path))
    assert Path(preset.options["base_config"]) == (tmp_path / "presets" / "configs").resolve()
