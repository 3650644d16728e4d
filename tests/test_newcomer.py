"""What a new user trips on first (issue 16): refusals before any model loads, options that say
what they do, the frame size that boxes need, masks saved for photos, the notes file named."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest
from PIL import Image

import restorer.presets
from restorer.errors import InputError, OutputError
from restorer.pipelines.options import ColorizeOptions
from restorer.pipelines.run import colorize_run

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "carphone.mp4"


@pytest.fixture
def no_engine(monkeypatch):
    """Fails the test if a model engine is opened: the refusal must come before."""
    def refuse(*a, **k):
        raise AssertionError("the engine was opened before a cheap check refused the run")

    monkeypatch.setattr(restorer.presets, "open_engine", refuse)


def _photo(path: Path, size=(40, 32)) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("preset", ["tiny", "stencil"])
def test_existing_photo_output_is_refused_before_the_model(tmp_path, no_engine, preset) -> None:
    src = _photo(tmp_path / "old.png")
    out = tmp_path / "old_color.png"
    out.write_bytes(b"the user's earlier result")
    with pytest.raises(OutputError, match="output exists"):
        colorize_run([src], out, ColorizeOptions(preset=preset))
    assert out.read_bytes() == b"the user's earlier result"


def test_existing_outputs_in_a_folder_are_refused_before_the_model(tmp_path, no_engine) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    _photo(scans / "a.png"), _photo(scans / "b.png")
    out = tmp_path / "color"
    out.mkdir()
    (out / "b.png").write_bytes(b"kept")
    with pytest.raises(OutputError, match="output exists"):
        colorize_run([scans], out, ColorizeOptions())
    assert (out / "b.png").read_bytes() == b"kept" and not (out / "a.png").exists()


def test_existing_film_output_is_refused_before_the_model(tmp_path, no_engine) -> None:
    out = tmp_path / "film_color.mp4"
    out.write_bytes(b"earlier")
    with pytest.raises(OutputError, match="output exists"):
        colorize_run([SAMPLE], out, ColorizeOptions())
    assert out.read_bytes() == b"earlier"


def test_an_empty_photo_is_called_empty_before_the_model(tmp_path, no_engine) -> None:
    empty = tmp_path / "scan.png"
    empty.touch()
    with pytest.raises(InputError, match=r"empty \(0 bytes\)"):
        colorize_run([empty], tmp_path / "out.png", ColorizeOptions())
    assert not (tmp_path / "out.png").exists()


def test_an_empty_photo_in_a_batch_is_named_empty(tmp_path) -> None:
    from restorer.io.images import read_image

    empty = tmp_path / "scan.png"
    empty.touch()
    with pytest.raises(InputError, match=r"scan.png: is empty \(0 bytes\)"):
        read_image(empty)


def test_a_broken_sidecar_of_a_photo_is_refused_before_the_model(tmp_path, no_engine) -> None:
    src = _photo(tmp_path / "old.png")
    (tmp_path / "old.shots.yaml").write_text("version: 1\nshots: [[[\n")
    with pytest.raises(InputError, match="old.shots.yaml"):
        colorize_run([src], tmp_path / "out.png", ColorizeOptions())


def test_the_cli_refusals_are_one_line_and_exit_2(tmp_path, restorer, one_error) -> None:
    src = _photo(tmp_path / "old.png")
    (tmp_path / "out.png").write_bytes(b"x")
    (tmp_path / "empty.png").touch()
    for args, words in [((src, "-o", tmp_path / "out.png"), "output exists"),
                        ((tmp_path / "empty.png", "-o", tmp_path / "e.png"), "is empty"),
                        ((SAMPLE, "-o", tmp_path / "out.png", "--sam2", tmp_path / "nowhere"), "SAM2")]:
        proc = restorer("colorize", *args)
        assert proc.returncode == 2, proc.stderr
        assert words in one_error(proc)


def test_unknown_colour_name_is_an_error(restorer, one_error) -> None:
    proc = restorer("colors", "UNKNOWNCOLOUR")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "UNKNOWNCOLOUR" in one_error(proc)
    found = restorer("colors", "forest")
    assert found.returncode == 0 and "forest green" in found.stdout.splitlines()


def test_every_option_of_every_command_says_what_it_does() -> None:
    from restorer.cli import main

    missing = []

    def walk(cmd: click.Command, path: str) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")
        missing.extend(f"{path} {p.opts[-1]}" for p in cmd.params if isinstance(p, click.Option) and not p.help)

    walk(main, "restorer")
    assert missing == []
    assert {"--threads", "--dtype"} <= {o for p in main.commands["colorize"].params for o in p.opts}


def test_shots_init_gives_the_frame_size_boxes_are_in(tmp_path, restorer) -> None:
    import av

    with av.open(str(SAMPLE)) as c:
        w, h = c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height
    out = tmp_path / "film.shots.yaml"
    proc = restorer("shots", "init", SAMPLE, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert f"{w}x{h} pixels" in proc.stdout
    text = out.read_text()
    assert f"{w}x{h} pixels" in text.splitlines()[0]
    assert f"x from 0 (left) to {w - 1}, y from 0 (top) to {h - 1}" in text


def _box_sidecar(photo: Path, box: list[int]) -> None:
    photo.with_name(photo.stem + ".shots.yaml").write_text(json.dumps({"version": 1, "shots": [{"instances": [
        {"name": "the coat", "text": "a dark green coat", "prompts": [{"frame": 0, "box": box}]}]}]}))


def test_save_masks_writes_a_photos_instance_masks(tmp_path, caplog) -> None:
    src = _photo(tmp_path / "old.png", size=(40, 32))
    _box_sidecar(src, [5, 4, 20, 30])
    masks = tmp_path / "masks"
    with caplog.at_level("INFO"):
        colorize_run([src], tmp_path / "out.png", ColorizeOptions(preset="stencil", save_masks=masks, quiet=True))
    saved = np.asarray(Image.open(masks / "out" / "00_the_coat.png"))
    expected = np.zeros((32, 40), np.uint8)
    expected[4:30, 5:20] = 255  # x0, y0, x1, y1 with x1, y1 exclusive
    assert saved.shape == expected.shape
    assert np.array_equal(saved, expected), np.argwhere(saved != expected)[:5]
    assert any("old.shots.yaml" in r.getMessage() and "beside" in r.getMessage() for r in caplog.records)


def test_a_film_names_the_shots_file_it_used(tmp_path, caplog) -> None:
    with caplog.at_level("INFO"):
        report = colorize_run([SAMPLE], tmp_path / "out.mp4",
                              ColorizeOptions(preset="stencil", quiet=True, chunk_frames=8,
                                              overrides={}, report=tmp_path / "r.json"))
    sidecar = SAMPLE.with_name("carphone.shots.yaml")
    assert report["shots_file"] == str(sidecar)
    assert json.loads((tmp_path / "r.json").read_text())["shots_file"] == str(sidecar)
    assert any(str(sidecar) in r.getMessage() for r in caplog.records)


def test_threads_sets_torchs_thread_count(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        target = 1 if before != 1 else 2
        colorize_run([_photo(tmp_path / "p.png")], tmp_path / "o.png",
                     ColorizeOptions(preset="stencil", threads=target, quiet=True))
        assert torch.get_num_threads() == target
    finally:
        torch.set_num_threads(before)


def test_library_options_default_to_the_clis_preset_and_fingerprint_their_weights(tmp_path) -> None:
    from restorer.cli import colorize

    cli_default = next(p for p in colorize.params if p.name == "preset").default or restorer.presets.DEFAULT_PRESET
    assert ColorizeOptions().preset == cli_default == "tiny"
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, byte in ((a, b"1"), (b, b"2")):
        folder.mkdir()
        (folder / "unet.safetensors").write_bytes(byte * 64)
    # a pipeline built from options alone (colorize_run never filled preset_config)
    fa = ColorizeOptions(weights=a).result_settings()
    fb = ColorizeOptions(weights=b).result_settings()
    assert fa["preset_config"]["name"] == "tiny"
    assert fa != fb  # other weights: a resumed job starts over
    assert ColorizeOptions().result_settings() != ColorizeOptions(preset="stencil").result_settings()


def test_dtype_float16_colours_a_photo_with_an_instance_on_the_cpu(tmp_path, restorer) -> None:
    from restorer.io.color import srgb_to_lab

    src = _photo(tmp_path / "old.png", size=(64, 48))
    _box_sidecar(src, [8, 8, 40, 40])
    outs = {}
    for dtype in ("float32", "float16"):
        out = tmp_path / f"out_{dtype}.png"
        proc = restorer("colorize", src, "-o", out, "--dtype", dtype, "--device", "cpu", "--steps", "4",
                        "--box-refine", "off", "--quiet", timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs[dtype] = srgb_to_lab(np.asarray(Image.open(out).convert("RGB"), np.float32) / 255)[..., 1:]
    inside = outs["float32"][8:40, 8:40]
    assert np.hypot(*inside.mean((0, 1))) > 3  # the instance is coloured ...
    assert np.abs(outs["float16"] - outs["float32"]).mean() < 3  # ... and half precision agrees
