"""Eval metrics against values computed by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from restorer.pipelines import evaluate as ev


def test_psnr_by_hand() -> None:
    gt = np.zeros((2, 2, 3))
    pred = gt.copy()
    pred[0, 0, 0] = 255  # one error of 255 among 12 values: MSE = 255² / 12
    assert ev.psnr(pred, gt) == pytest.approx(10 * math.log10(12))
    assert ev.psnr(gt, gt) == math.inf


def test_ciede2000_matches_sharma_table() -> None:
    # Sharma, Wu, Dalal (2005), Table 1: pairs 1, 2, 7, 17, 25, 31 (not trivial: hue wrap, tiny chroma)
    pairs = [((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
             ((50, 3.1571, -77.2803), (50, 0, -82.7485), 2.8615),
             ((50, 0, 0), (50, -1, 2), 2.3669),
             ((50, 2.5, 0), (73, 25, -18), 27.1492),
             ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
             ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082)]
    for a, b, want in pairs:
        assert float(ev.ciede2000(np.array(a), np.array(b))) == pytest.approx(want, abs=1e-4)
        assert float(ev.ciede2000(np.array(b), np.array(a))) == pytest.approx(want, abs=1e-4)


def test_colourfulness_by_hand() -> None:
    img = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.float64)
    # rg = (255, 0), yb = (127.5, -255): sd_rg = 127.5, sd_yb = 191.25, mu_rg = 127.5, mu_yb = -63.75
    want = math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, -63.75)
    assert ev.colourfulness(img) == pytest.approx(want)
    assert ev.colourfulness(np.full((3, 3, 3), 90.0)) == 0.0


def test_luma_deviation_and_ssim_by_hand() -> None:
    gt = np.full((8, 8, 3), 100.0)
    pred = gt.copy()
    pred[..., 1] += 5  # Y' changes by 0.587 * 5
    assert ev.luma_deviation(pred, gt) == pytest.approx(0.587 * 5)
    rng = np.random.default_rng(0)
    img = rng.random((16, 16, 3)) * 255
    assert ev.ssim(img, img) == pytest.approx(1.0)
    # flat images: variances vanish, SSIM = (2 mu_x mu_y + C1) / (mu_x² + mu_y² + C1), C1 = (0.01 * 255)²
    c1 = (0.01 * 255) ** 2
    flat = np.full((16, 16, 3), 110.0)
    want = (2 * 110 * 100 + c1) / (110 ** 2 + 100 ** 2 + c1)
    assert ev.ssim(flat, np.full((16, 16, 3), 100.0)) == pytest.approx(want)
    m = ev.image_metrics(gt, gt)
    assert m["ciede2000"] == 0.0 and m["luma_deviation"] == 0.0


def test_summary_ratio() -> None:
    rows = [{"colourfulness_pred": 10.0, "colourfulness_gt": 40.0, "psnr": math.inf},
            {"colourfulness_pred": 20.0, "colourfulness_gt": 20.0, "psnr": 30.0}]
    s = ev.summarize(rows)
    assert s["colourfulness_ratio"] == pytest.approx(15 / 30) and s["psnr"] == 30.0 and s["count"] == 2


def test_js_divergence_and_cdc_by_hand() -> None:
    assert ev.js_divergence([1, 0], [0, 1]) == pytest.approx(math.log(2))
    assert ev.js_divergence([1, 1], [1, 1]) == 0.0
    # p = (1/2, 1/2, 0), q = (0, 1/2, 1/2): m = (1/4, 1/2, 1/4), JS = 1/2 ln 2
    assert ev.js_divergence([1, 1, 0], [0, 1, 1]) == pytest.approx(0.5 * math.log(2))
    black, white = np.zeros((2, 2, 3)), np.full((2, 2, 3), 255.0)
    assert ev.cdc([black, black, black]) == 0.0
    # alternating frames: d = 1 always differs (ln 2), d = 2 never (0), d = 4 has no pair in 3 frames
    assert ev.cdc([black, white, black]) == pytest.approx((math.log(2) + 0) / 2)


def test_warp_error_of_a_still_film_is_zero_and_of_a_flicker_is_its_square() -> None:
    rng = np.random.default_rng(1)
    base = np.repeat((rng.random((24, 24, 1)) * 200 + 20), 3, axis=2)
    gt = [base, base, base]
    assert ev.warp_error(gt, gt) == pytest.approx(0.0, abs=1e-4)  # flow of a still: ~0, bilinear warp
    flicker = [base, base + 51.0, base]  # every pixel changes by 0.2 in each channel between frames
    assert ev.warp_error(flicker, gt) == pytest.approx(3 * 0.2 ** 2, abs=1e-4)
    out = ev.film_metrics(flicker, gt)
    assert out["frames"] == 3 and out["cdc_gt"] == 0.0 and out["warp_error_gt"] == pytest.approx(0.0, abs=1e-4)


def test_binding_and_leakage_by_hand() -> None:
    from restorer.io.color import lab_to_srgb

    mask = np.zeros((40, 40), bool)
    mask[5:15, 5:15] = True
    gray = np.full((40, 40, 3), 128.0)
    red = gray.copy()
    red[mask] = np.clip(lab_to_srgb(np.array([50.0, 60.0, 40.0])), 0, 1) * 255
    assert ev.bound(red, mask, (48.0, 74.0, 62.0))          # hue of red, chroma well above 15
    assert not ev.bound(red, mask, (36.7, 45.3, -82.5))     # blue: hue far away
    assert not ev.bound(gray, mask, (48.0, 74.0, 62.0))     # gray: no chroma
    assert ev.leakage(gray, red, mask) == 0.0               # the change stays inside the mask
    away = red.copy()
    away[30:, 30:] = red[10, 10]                            # a red patch far from the mask
    patch = np.zeros((40, 40), bool)
    patch[30:, 30:] = True
    out = ev.outside(mask)
    assert out[30:, 30:].all() and not out[mask].any()
    d = np.hypot(*(ev.mean_ab(red, mask) - ev.mean_ab(gray, mask)))
    assert ev.leakage(red, away, mask) == pytest.approx(d * patch[out].sum() / out.sum(), rel=1e-3)


def test_counter_colour_is_far_in_hue() -> None:
    from restorer.io.color import hue_difference_deg, lab_hue_deg
    from restorer.pipelines.dataset import palette_lab

    pal = palette_lab()
    for truth in ([50, 60, 40], [60, -50, 40], [40, 20, -60]):
        name = ev.counter_color(truth)
        assert hue_difference_deg(lab_hue_deg(np.array(truth[1:])), lab_hue_deg(pal[name][1:])) >= 90


def test_folders_are_matched_by_name(tmp_path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    img = np.zeros((4, 4, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / "p" / "a.png")
    Image.fromarray(img + 10).save(tmp_path / "g" / "a.png")
    out = ev.evaluate_paths(tmp_path / "p", tmp_path / "g")
    assert out["count"] == 1 and out["psnr"] == pytest.approx(10 * math.log10(255 ** 2 / 100))
    assert out["luma_deviation"] == pytest.approx(10.0)


def test_split_evaluation_end_to_end_has_no_leakage_and_draws_its_sheets(tmp_path) -> None:
    """`restorer eval --split` on a small dataset with the shipped tiny weights (2 steps for speed):
    every number is there, recolouring one instance moves nothing outside its dilated mask (the
    dataset's masks tile the photo, so instance sampling and mask-aware upsampling isolate it
    exactly), and the contact and binding sheets have one row per photo and per request."""
    from restorer.pipelines.dataset import build_dataset

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i, (top, bottom) in enumerate([((40, 90, 200), (60, 150, 40)), ((210, 40, 40), (230, 210, 60))]):
        img = np.zeros((96, 128, 3), np.float32)
        img[:48], img[48:] = top, bottom
        img[:, :40] *= 0.7
        img += rng.normal(0, 3, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(photos / f"p{i}.png")
    data = tmp_path / "data"
    build_dataset(photos, data, size=128, val_fraction=0.0, namer=lambda crop: "thing")
    save = tmp_path / "eval"
    result = ev.evaluate_split(data, split="train", per_image=1, save=save, overrides={"steps": 2})
    assert result["images"] == 2 and result["binding_instances"] == 2
    assert 0.0 <= result["binding"] <= 1.0
    assert result["leakage"] == 0.0
    for key in ("ciede2000", "colourfulness_pred", "luma_deviation"):
        assert np.isfinite(result["automatic"][key])
    assert result["automatic"]["luma_deviation"] < 1.0
    ev.contact_sheet(save, tmp_path / "c.png", cell=50)
    ev.binding_sheet(save, tmp_path / "b.png", cell=50)
    assert Image.open(tmp_path / "c.png").height == 20 + 2 * (50 + 6)
    assert Image.open(tmp_path / "b.png").height == 20 + 2 * (50 + 20) + 4
