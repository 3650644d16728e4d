"""Colour core: conversions, the luma-keeping recombination, edge-aware upsampling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from restorer.io import color as C

# Colourspace tags as FFmpeg/PyAV and image headers spell them -> restorer.io.color's matrix names.
_TAG_TO_MATRIX = {
    "bt601": "bt601", "bt470bg": "bt601", "smpte170m": "bt601", "smpte240m": "bt601",
    "fcc": "bt601", "bt470m": "bt601", "ycgco": "bt601", "601": "bt601",
    "bt709": "bt709", "709": "bt709",
    "bt2020": "bt2020", "bt2020nc": "bt2020", "bt2020c": "bt2020", "bt2020_ncl": "bt2020",
    "bt2020_cl": "bt2020", "2020": "bt2020",
}


def matrix_for(tag: str | None, size: tuple[int, int] | None = None) -> str:
    """The Y'CbCr matrix of a colourspace tag, or by (height, width) when untagged (up to 576 lines and 1024
    wide: BT.601, else BT.709); an unknown tag counts as none. The names the tests give the matrices."""
    if tag:
        key = tag.strip().lower().replace("-", "").replace(".", "").replace(" ", "")
        if key in _TAG_TO_MATRIX:
            return _TAG_TO_MATRIX[key]
    if size is None:
        return "bt601"
    h, w = size
    return "bt709" if (h > 576 or w > 1024) else "bt601"


def desaturate_check(rgb: np.ndarray, y: np.ndarray, matrix: str = "bt601") -> float:
    """Largest |Y'(rgb) - y|: 0 (up to float rounding) when a recombination kept the luma."""
    return float(np.max(np.abs(C.rgb_to_luma(rgb, matrix) - np.asarray(y, dtype=np.float32))))


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_lab_round_trip_and_reference_values(rng):
    rgb = rng.random((32, 32, 3)).astype(np.float32)
    assert np.abs(C.lab_to_srgb(C.srgb_to_lab(rgb)) - rgb).max() < 1e-4
    white, red = C.srgb_to_lab(np.array([[1, 1, 1], [1, 0, 0]], np.float32))
    assert np.allclose(white, [100, 0, 0], atol=0.05)
    assert np.allclose(red, [53.24, 80.09, 67.20], atol=0.1)  # the well-known sRGB red


def test_ypbpr_round_trip_for_every_matrix(rng):
    rgb = rng.random((16, 16, 3)).astype(np.float32)
    for matrix in C.YCBCR_COEFFS:
        y, pb, pr = C.rgb_to_ypbpr(rgb, matrix)
        assert np.abs(C.ypbpr_to_rgb(y, pb, pr, matrix) - rgb).max() < 1e-5
        assert np.abs(pb).max() <= 0.5 and np.abs(pr).max() <= 0.5


@pytest.mark.parametrize("tag, size, expected", [
    ("bt709", None, "bt709"), ("smpte170m", None, "bt601"), ("bt470bg", None, "bt601"),
    ("BT2020NC", None, "bt2020"), (None, (480, 720), "bt601"), (None, (576, 720), "bt601"),
    (None, (720, 1280), "bt709"), ("unknown", (2160, 3840), "bt709"),
])
def test_matrix_for(tag, size, expected):
    assert matrix_for(tag, size) == expected


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
def test_recombine_keeps_luma_and_hue_of_in_gamut_colours(rng, matrix):
    rgb = (0.1 + 0.8 * rng.random((48, 48, 3))).astype(np.float32)  # clear of the gamut's faces
    lab = C.srgb_to_lab(rgb)
    y = C.rgb_to_luma(rgb, matrix)
    out = C.recombine_rgb(y, lab[..., 1:], matrix)
    assert desaturate_check(out, y, matrix) < 1e-5
    coloured = C.lab_chroma(lab) > 5
    hue_error = C.hue_difference_deg(C.lab_hue_deg(C.srgb_to_lab(out)), C.lab_hue_deg(lab))
    assert hue_error[coloured].max() < 2.0
    assert np.abs(out - rgb).max() < 0.02  # an in-gamut colour comes back as itself


def test_recombine_out_of_gamut_loses_chroma_only():
    ys = np.linspace(0.05, 0.95, 19, dtype=np.float32)[:, None].repeat(24, axis=1)
    hues = np.radians(np.arange(24) * 15.0)[None].repeat(19, axis=0)
    ab = np.stack([110 * np.cos(hues), 110 * np.sin(hues)], axis=-1).astype(np.float32)
    out = C.recombine_rgb(ys, ab)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert desaturate_check(out, ys) < 1e-5  # never darker nor brighter
    lab = C.srgb_to_lab(out)
    assert C.lab_chroma(lab).max() < 110.5  # chroma only ever reduced
    assert (C.lab_chroma(lab) < 100).mean() > 0.9  # and most of these were out of gamut
    visible = C.lab_chroma(lab) > 5
    hue_error = C.hue_difference_deg(C.lab_hue_deg(lab), C.lab_hue_deg(ab))
    assert hue_error[visible].max() < 3.0


def test_recombine_at_8_bit_keeps_luma_within_rounding(rng):
    y8 = rng.integers(0, 256, (32, 32)).astype(np.float32)
    ab = (rng.random((32, 32, 2)) * 160 - 80).astype(np.float32)
    out = np.round(C.recombine_rgb(y8 / 255, ab) * 255)
    assert np.abs(C.rgb_to_luma(out) - y8).max() <= 0.5 + 1e-3


def test_recombine_pbpr_matches_rgb(rng):
    y = rng.random((16, 16)).astype(np.float32)
    ab = (rng.random((16, 16, 2)) * 120 - 60).astype(np.float32)
    pb, pr = C.recombine_pbpr(y, ab, "bt709")
    assert np.abs(pb).max() <= 0.5 and np.abs(pr).max() <= 0.5
    rgb = C.ypbpr_to_rgb(y, pb, pr, "bt709")
    assert rgb.min() > -1e-4 and rgb.max() < 1 + 1e-4
    assert np.abs(rgb - C.recombine_rgb(y, ab, "bt709")).max() < 1e-4


def test_neutral_chroma_gives_gray():
    y = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    out = C.recombine_rgb(y, np.zeros((8, 8, 2), np.float32))
    assert np.abs(out - y[..., None]).max() < 1e-6


def _edge_scene(small: int, big: int = 1024, edge: int = 517):
    """A luma step at column ``edge`` and its chroma step, blurred, at the engine's size."""
    y = np.full((big, big), 0.3, np.float32)
    y[:, edge:] = 0.6
    ab = np.zeros((big, big, 2), np.float32)
    ab[:, edge:] = (40.0, -20.0)
    ab_small = cv2.GaussianBlur(cv2.resize(ab, (small, small), interpolation=cv2.INTER_AREA), (0, 0), 1.5)
    return y, ab_small, edge


@pytest.mark.parametrize("small", [256, 64])
def test_upsample_puts_chroma_edge_on_luma_edge(small):
    y, ab_small, edge = _edge_scene(small)
    up = C.upsample_chroma(ab_small, y)
    assert up.shape == (1024, 1024, 2)
    row = up[512, :, 0]
    assert row[edge + 2] - row[edge - 3] > 0.65 * 40  # most of the step within 2 px of the edge
    assert row[edge] - row[edge - 1] > 0.45 * 40  # and the jump sits on the luma edge itself
    naive = cv2.resize(ab_small, (1024, 1024), interpolation=cv2.INTER_LINEAR)[512, :, 0]
    assert row[edge + 2] - row[edge - 3] > 2 * (naive[edge + 2] - naive[edge - 3])


def test_upsample_flat_chroma_stays_flat(rng):
    guide = rng.random((200, 300)).astype(np.float32)
    up = C.upsample_chroma(np.full((50, 75, 2), (12.0, -7.0), np.float32), guide)
    assert np.allclose(up, (12.0, -7.0), atol=1e-3)


def test_upsample_by_regions_stops_colour_at_the_mask_edge_and_keeps_other_regions(rng):
    """Instance masks at full resolution: colour ends on the mask's edge even where the luma has no
    edge there, and changing one region's chroma leaves every pixel of the others untouched."""
    H = W = 512
    y = np.full((H, W), 0.5, np.float32) + rng.normal(0, 0.01, (H, W)).astype(np.float32)
    regions = np.zeros((H, W), np.uint8)
    regions[:, 203:] = 1  # an edge 203 px in: inside a 16-px working cell, not on a cell border
    small = np.zeros((32, 32, 2), np.float32)
    small[:, :13] = (30.0, 10.0)
    small[:, 13:] = (-20.0, 40.0)
    up = C.upsample_chroma(small, y, regions=regions)
    assert np.allclose(up[:, :203], (30.0, 10.0), atol=0.5)
    assert np.allclose(up[:, 203:], (-20.0, 40.0), atol=0.5)
    plain = C.upsample_chroma(small, y)
    assert np.abs(plain[:, 190:203] - (30.0, 10.0)).max() > 5  # without regions the colours blur across
    changed = small.copy()
    changed[:, 13:] = (60.0, -30.0)  # region 1's cells (column 12 is shared, mostly region 0's)
    up2 = C.upsample_chroma(changed, y, regions=regions)
    assert np.array_equal(up2[:, :203], up[:, :203])
    assert np.allclose(up2[:, 203:], (60.0, -30.0), atol=0.5)
