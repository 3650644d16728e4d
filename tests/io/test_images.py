"""Photo I/O: formats, bit depths, luma kept, EXIF and ICC carried, errors."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from restorer.errors import InputError, OutputError
from restorer.io.color import recombine_rgb, rgb_to_luma
from restorer.io.images import _undo_orientation, output_suffix, read_image, write_image

H, W = 40, 56


@pytest.fixture(scope="module")
def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def exif() -> bytes:
    tags = Image.Exif()
    tags[274] = 6  # orientation: rotate 90 degrees to display
    tags[271] = "RestorerCam"
    tags.get_ifd(0x8769)[0x9003] = "1931:05:04 12:00:00"
    return tags.tobytes()


def _gray(depth: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    top = 2 ** depth - 1
    values = np.round((0.1 + 0.8 * xx / W + 0.05 * np.sin(yy / 3)) * top)
    return values.astype(np.uint16 if depth == 16 else np.uint8)


def _two_colour_chroma() -> np.ndarray:
    ab = np.zeros((H, W, 2), np.float32)
    ab[:, : W // 2] = (35.0, 25.0)
    ab[:, W // 2:] = (-25.0, -30.0)
    return ab


@pytest.mark.parametrize("suffix, lossy",
                         [(".png", False), (".jpg", True), (".tif", False), (".webp", False)])
def test_8bit_round_trip_keeps_luma_exif_icc(tmp_path, suffix, lossy, srgb_icc, exif):
    gray = _gray(8)
    src = tmp_path / f"in{suffix}"
    extra = {"lossless": True} if suffix == ".webp" else {"quality": 100} if suffix == ".jpg" else {}
    image = Image.fromarray(np.repeat(gray[..., None], 3, axis=2), "RGB")
    image.save(src, exif=exif, icc_profile=srgb_icc, **extra)
    photo = read_image(src)
    assert (photo.bit_depth, photo.is_color, photo.orientation) == (8, False, 6)
    assert photo.icc == srgb_icc and photo.exif is not None
    assert photo.luma.shape == (H, W)  # pixels as stored, not rotated
    if not lossy:
        assert np.abs(photo.luma * 255 - gray).max() < 1e-3
    out = write_image(tmp_path / f"out{suffix}", recombine_rgb(photo.luma, _two_colour_chroma()),
                      bit_depth=8, exif=photo.exif, icc=photo.icc)
    back = read_image(out)
    assert back.is_color and back.icc == srgb_icc and back.orientation == 6
    error = np.abs(back.luma - photo.luma) * 255
    if lossy:  # JPEG re-quantises its Y channel; 4:4:4 and quality 95 keep it close
        assert error.mean() < 0.5 and error.max() <= 3
    else:
        assert error.max() <= 1
    tags = Image.open(out).getexif()
    assert tags[271] == "RestorerCam" and tags.get_ifd(0x8769)[0x9003] == "1931:05:04 12:00:00"


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_round_trip(tmp_path, suffix, srgb_icc, exif):
    gray = _gray(16)
    src = tmp_path / f"in{suffix}"
    cv2.imwrite(str(src), gray)
    photo = read_image(src)
    assert photo.bit_depth == 16 and not photo.is_color
    assert np.abs(photo.luma * 65535 - gray).max() < 0.02
    rgb = recombine_rgb(photo.luma, _two_colour_chroma())
    out = write_image(tmp_path / f"out{suffix}", rgb, bit_depth=16, exif=exif, icc=srgb_icc)
    back = read_image(out)
    assert back.bit_depth == 16 and back.is_color and back.orientation == 6 and back.icc == srgb_icc
    assert np.abs(back.luma - photo.luma).max() * 65535 <= 1
    assert back.luma.shape == (H, W)


def test_16bit_rgb_tiff_is_read_at_16bit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 65536, (H, W, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "deep.tif", rgb, photometric="rgb")
    photo = read_image(tmp_path / "deep.tif")
    expected = rgb_to_luma(rgb.astype(np.float32) / 65535)
    assert photo.bit_depth == 16 and np.abs(photo.luma - expected).max() < 1e-6


@pytest.mark.parametrize("orientation", range(1, 9))
def test_undo_orientation_inverts_opencv_tiff_rotation(orientation):
    # OpenCV applies a TIFF's orientation even with IMREAD_IGNORE_ORIENTATION; we undo it.
    rgb = np.arange(6 * 10 * 3, dtype=np.uint16).reshape(6, 10, 3)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rgb, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    decoded = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
    restored = decoded if orientation == 1 else _undo_orientation(decoded, orientation)
    assert np.array_equal(restored, rgb)


def test_colour_toned_and_gray_detection(tmp_path):
    gray = _gray(8).astype(np.float32) / 255
    colour = recombine_rgb(gray, _two_colour_chroma())
    sepia = recombine_rgb(gray, np.broadcast_to(np.float32([6, 17]), (H, W, 2)).copy())
    for name, rgb, expected in (("c", colour, (True, False)), ("s", sepia, (False, True)),
                                ("g", np.repeat(gray[..., None], 3, 2), (False, False))):
        path = write_image(tmp_path / f"{name}.png", rgb)
        photo = read_image(path)
        assert (photo.is_color, photo.is_toned) == expected, name


def test_alpha_is_carried(tmp_path):
    gray = _gray(8)
    Image.fromarray(gray, "L").convert("LA").save(tmp_path / "a.png")
    photo = read_image(tmp_path / "a.png")
    assert photo.alpha is not None
    write_image(tmp_path / "b.png", recombine_rgb(photo.luma, _two_colour_chroma()), alpha=photo.alpha)
    assert Image.open(tmp_path / "b.png").mode == "RGBA"


def test_errors_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InputError, match=r"notes\.png"):
        read_image(tmp_path / "notes.png")
    good = tmp_path / "good.png"
    Image.fromarray(_gray(8)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:120])
    with pytest.raises(InputError, match="corrupt"):
        read_image(tmp_path / "cut.png")
    Image.fromarray(_gray(8)).save(tmp_path / "old.bmp")
    with pytest.raises(InputError, match="BMP") as err:
        read_image(tmp_path / "old.bmp")
    assert "\n" not in str(err.value)
    with pytest.raises(OutputError):
        write_image(tmp_path / "x.gif", np.zeros((4, 4, 3)))


def test_write_is_atomic_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(ValueError):
        write_image(target, np.zeros((4, 4)))  # wrong shape: nothing replaced
    assert target.read_bytes() == b"old"
    write_image(target, np.zeros((4, 4, 3)))
    assert read_image(target).luma.shape == (4, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_gray_icc_profile_is_not_put_in_rgb_output(tmp_path, srgb_icc):
    gray_profile = srgb_icc[:16] + b"GRAY" + srgb_icc[20:]
    write_image(tmp_path / "o.png", np.zeros((4, 4, 3)), icc=gray_profile)
    assert read_image(tmp_path / "o.png").icc is None


@pytest.mark.parametrize("suffix, depth, expected", [
    (".png", 16, ".png"), (".TIF", 16, ".tif"), (".tiff", 8, ".tiff"), (".jpg", 8, ".jpg"),
    (".JPEG", 8, ".jpeg"), (".webp", 8, ".webp"), (".jpg", 16, ".png"), (".bmp", 8, ".png"),
])
def test_output_suffix(suffix, depth, expected):
    assert output_suffix(suffix, depth) == expected


def test_path_type(tmp_path):
    assert isinstance(write_image(str(tmp_path / "p.png"), np.zeros((2, 2, 3))), Path)
