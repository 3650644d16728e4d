"""Eval metrics against values computed by hand on small arrays."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

from restorer import metrics
from restorer.pipelines import evaluate as ev


def test_psnr_by_hand() -> None:
    gt = np.zeros((2, 2, 3))
    pred = gt.copy()
    pred[0, 0, 0] = 255  # one error of 255 among 12 values: MSE = 255² / 12
    assert metrics.psnr(pred, gt) == pytest.approx(10 * math.log10(12))
    assert metrics.psnr(gt, gt) == math.inf


def test_ciede2000_matches_sharma_table() -> None:
    # Sharma, Wu, Dalal (2005), Table 1: pairs 1, 2, 7, 17, 25, 31 (not trivial: hue wrap, tiny chroma)
    pairs = [((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
             ((50, 3.1571, -77.2803), (50, 0, -82.7485), 2.8615),
             ((50, 0, 0), (50, -1, 2), 2.3669),
             ((50, 2.5, 0), (73, 25, -18), 27.1492),
             ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
             ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082)]
    for a, b, want in pairs:
        assert float(metrics.ciede2000(np.array(a), np.array(b))) == pytest.approx(want, abs=1e-4)
        assert float(metrics.ciede2000(np.array(b), np.array(a))) == pytest.approx(want, abs=1e-4)


def test_ciede2000_matches_scikit_image_over_the_whole_lab_range() -> None:
    # an independent implementation, on pairs spanning every hue quadrant, near-gray and vivid chroma
    rng = np.random.default_rng(5)
    lo, hi = [0, -100, -100], [100, 100, 100]
    a, b = rng.uniform(lo, hi, (2000, 3)), rng.uniform(lo, hi, (2000, 3))
    a[:500, 1:] *= 0.02  # near-gray against anything: the G factor and the hue mean at tiny chroma
    np.testing.assert_allclose(metrics.ciede2000(a, b), deltaE_ciede2000(a, b), rtol=0, atol=1e-9)
    np.testing.assert_allclose(metrics.ciede2000(a.reshape(40, 50, 3), b.reshape(40, 50, 3)),
                               deltaE_ciede2000(a, b).reshape(40, 50), rtol=0, atol=1e-9)


def test_colourfulness_by_hand() -> None:
    img = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.float64)
    # rg = (255, 0), yb = (127.5, -255): sd_rg = 127.5, sd_yb = 191.25, mu_rg = 127.5, mu_yb = -63.75
    want = math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, -63.75)
    assert metrics.colourfulness(img) == pytest.approx(want)
    assert metrics.colourfulness(np.full((3, 3, 3), 90.0)) == 0.0


def test_luma_deviation_and_ssim_by_hand() -> None:
    gt = np.full((8, 8, 3), 100.0)
    pred = gt.copy()
    pred[..., 1] += 5  # Y' changes by 0.587 * 5
    assert metrics.luma_deviation(pred, gt) == pytest.approx(0.587 * 5)
    # a 7x7 image is one 7x7 uniform window: SSIM is Wang et al.'s formula over all 49 pixels
    # (population moments), per channel, averaged over channels
    rng = np.random.default_rng(0)
    x = rng.random((7, 7, 3)) * 255
    y = np.clip(0.6 * x + 40 + rng.normal(0, 20, x.shape), 0, 255)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    want = []
    for c in range(3):
        a, b = x[..., c].ravel(), y[..., c].ravel()
        cov = np.mean((a - a.mean()) * (b - b.mean()))
        want.append((2 * a.mean() * b.mean() + c1) * (2 * cov + c2)
                    / ((a.mean() ** 2 + b.mean() ** 2 + c1) * (a.var() + b.var() + c2)))
    assert 0.2 < np.mean(want) < 0.95  # a real partial similarity, not a degenerate case
    assert metrics.ssim(y, x) == pytest.approx(float(np.mean(want)), rel=1e-9)
    # flat images: variances vanish, SSIM = (2 mu_x mu_y + C1) / (mu_x² + mu_y² + C1), C1 = (0.01 * 255)²
    c1 = (0.01 * 255) ** 2
    flat = np.full((16, 16, 3), 110.0)
    want = (2 * 110 * 100 + c1) / (110 ** 2 + 100 ** 2 + c1)
    assert metrics.ssim(flat, np.full((16, 16, 3), 100.0)) == pytest.approx(want)


def test_image_metrics_of_a_known_pair() -> None:
    # gray 128 everywhere; the prediction paints exactly a quarter of the pixels one colour
    gt = np.full((8, 8, 3), 128.0)
    pred = gt.copy()
    colour = np.array([200.0, 60.0, 30.0])
    pred[:4, :4] = colour
    m = metrics.image_metrics(pred, gt)
    de = float(deltaE_ciede2000(rgb2lab(colour / 255), rgb2lab(gt[0, 0] / 255)))
    assert de > 20
    assert m["ciede2000"] == pytest.approx(de / 4, rel=1e-4)
    y = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    assert m["luma_deviation"] == pytest.approx(abs(y - 128) / 4)
    mse = np.sum((colour - 128) ** 2) / 3 / 4  # per value: a quarter of the pixels carry the error
    assert m["psnr"] == pytest.approx(10 * math.log10(255 ** 2 / mse))
    assert m["colourfulness_gt"] == 0.0
    # rg = R - G and yb = (R + G)/2 - B are 140 and 100 on a quarter of the pixels, 0 elsewhere
    sd, mu = math.sqrt(0.25 * 0.75), 0.25
    want = math.hypot(140 * sd, 100 * sd) + 0.3 * math.hypot(140 * mu, 100 * mu)
    assert m["colourfulness_pred"] == pytest.approx(want)


def test_summary_ratio() -> None:
    rows = [{"colourfulness_pred": 10.0, "colourfulness_gt": 40.0, "psnr": math.inf},
            {"colourfulness_pred": 20.0, "colourfulness_gt": 20.0, "psnr": 30.0}]
    s = metrics.summarize(rows)
    assert s["colourfulness_ratio"] == pytest.approx(15 / 30) and s["psnr"] == 30.0 and s["count"] == 2


def test_js_divergence_and_cdc_by_hand() -> None:
    assert metrics.js_divergence([1, 0], [0, 1]) == pytest.approx(math.log(2))
    assert metrics.js_divergence([1, 1], [1, 1]) == 0.0
    # p = (1/2, 1/2, 0), q = (0, 1/2, 1/2): m = (1/4, 1/2, 1/4), JS = 1/2 ln 2
    assert metrics.js_divergence([1, 1, 0], [0, 1, 1]) == pytest.approx(0.5 * math.log(2))
    black, white = np.zeros((2, 2, 3)), np.full((2, 2, 3), 255.0)
    assert metrics.cdc([black, black, black]) == 0.0
    # alternating frames: d = 1 always differs (ln 2), d = 2 never (0), d = 4 has no pair in 3 frames
    assert metrics.cdc([black, white, black]) == pytest.approx((math.log(2) + 0) / 2)
    # two still shots, a cut at frame 2: across it every gap differs; within the shots nothing changes
    shots = [black, black, white, white, white]
    assert metrics.cdc(shots) == pytest.approx((math.log(2) * 1 / 4 + math.log(2) * 2 / 3 + math.log(2)) / 3)
    assert metrics.cdc(shots, cuts=(2,)) == 0.0
    out = metrics.film_metrics(shots, shots, cuts=(2,))
    assert out["cdc_gt"] > 0 and out["cdc_within_shots_gt"] == 0.0 and out["cuts"] == [2]


def test_warp_error_of_a_still_film_is_zero_and_of_a_flicker_is_its_square() -> None:
    rng = np.random.default_rng(1)
    base = np.repeat((rng.random((24, 24, 1)) * 200 + 20), 3, axis=2)
    gt = [base, base, base]
    assert metrics.warp_error(gt, gt) == pytest.approx(0.0, abs=1e-4)  # flow of a still: ~0, bilinear warp
    flicker = [base, base + 51.0, base]  # every pixel changes by 0.2 in each channel between frames
    assert metrics.warp_error(flicker, gt) == pytest.approx(3 * 0.2 ** 2, abs=1e-4)
    out = metrics.film_metrics(flicker, gt)
    assert out["frames"] == 3 and out["cdc_gt"] == 0.0 and out["warp_error_gt"] == pytest.approx(0.0, abs=1e-4)


def test_binding_by_hand_at_its_thresholds() -> None:
    """Mean a*b* inside the mask: hue within 25 degrees of the request, chroma at least 15."""
    gray = np.full((40, 40, 3), 128.0)
    mask = np.zeros((40, 40), bool)
    mask[5:15, 5:25] = True  # 200 pixels

    def painted(share: float, lab) -> np.ndarray:
        img = gray.copy()
        ys, xs = np.nonzero(mask)
        k = int(round(share * len(ys)))
        img[ys[:k], xs[:k]] = np.clip(lab2rgb(np.array(lab, np.float64)), 0, 1) * 255
        return img

    # a vivid colour on exactly 25 % of the mask's pixels, gray on the rest
    vivid = (50.0, 60.0, 40.0)
    c_full = float(np.hypot(*rgb2lab(painted(1.0, vivid)[7, 7] / 255)[1:]))
    assert 0.25 * c_full > 15 > 0.20 * c_full  # 25 % of it passes the chroma floor, 20 % does not
    hue = math.degrees(math.atan2(40.0, 60.0))

    def request(offset_deg: float) -> tuple[float, float, float]:
        h = math.radians(hue + offset_deg)
        return (50.0, 70 * math.cos(h), 70 * math.sin(h))

    assert metrics.bound(painted(0.25, vivid), mask, request(0))
    assert not metrics.bound(painted(0.20, vivid), mask, request(0))
    assert metrics.bound(painted(1.0, vivid), mask, request(23))
    assert metrics.bound(painted(1.0, vivid), mask, request(-23))
    assert not metrics.bound(painted(1.0, vivid), mask, request(28))
    assert not metrics.bound(painted(1.0, vivid), mask, request(-28))
    assert not metrics.bound(painted(1.0, vivid), mask, request(180))
    assert not metrics.bound(gray, mask, request(0))
    # pixels outside the mask do not count: the same colour everywhere but inside it
    outside_only = np.where(mask[..., None], gray, painted(1.0, vivid)[7, 7])
    assert not metrics.bound(outside_only, mask, request(0))
    np.testing.assert_allclose(metrics.mean_ab(painted(0.25, vivid), mask),
                               0.25 * rgb2lab(painted(1.0, vivid)[7, 7] / 255)[1:], atol=0.01)


def test_leakage_by_hand() -> None:
    """Mean |delta a*b*| outside the mask dilated by 5 % of the diagonal: on 40x40, round(2.83) = 3 px.

    The mask is a full-width band (rows 5..14), so its dilation is rows 2..17 whatever the disk's
    shape: 24 rows x 40 = 960 pixels are outside."""
    mask = np.zeros((40, 40), bool)
    mask[5:15] = True
    out = metrics.outside(mask)
    assert out.sum() == 960 and out[:2].all() and out[18:].all() and not out[2:18].any()
    base = np.full((40, 40, 3), 128.0)
    colour = np.array([30.0, 90.0, 200.0])
    d = float(np.hypot(*(rgb2lab(colour / 255) - rgb2lab(base[0, 0] / 255))[1:]))
    assert d > 40

    def changed(rows: slice) -> np.ndarray:
        img = base.copy()
        img[rows] = colour
        return img

    assert metrics.leakage(base, base, mask) == 0.0
    assert metrics.leakage(base, changed(slice(5, 15)), mask) == 0.0       # inside the mask
    assert metrics.leakage(base, changed(slice(2, 18)), mask) == 0.0       # inside its 3 px ring too
    assert metrics.leakage(base, changed(slice(18, 19)), mask) == pytest.approx(d * 40 / 960, rel=1e-3)
    assert metrics.leakage(base, changed(slice(30, 40)), mask) == pytest.approx(d * 400 / 960, rel=1e-3)
    assert metrics.leakage(changed(slice(30, 40)), base, mask) == pytest.approx(d * 400 / 960, rel=1e-3)
    everything = np.broadcast_to(colour, base.shape)
    assert metrics.leakage(base, everything, mask) == pytest.approx(d, rel=1e-3)
    assert metrics.leakage(base, base, np.ones((40, 40), bool)) == 0.0     # nothing is outside


def test_counter_colour_is_far_in_hue() -> None:
    from restorer.io.color import hue_difference_deg, lab_hue_deg
    from restorer.models.colornames import palette_lab

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
    from restorer.models.colornames import palette_lab
    from restorer.training.dataset.build import build_dataset
    from restorer.training.dataset.records import load_record, read_dataset

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
    records = {rec["name"]: rec for rec in read_dataset(data, "train")}
    assert sorted(records) == ["p0", "p1"]

    # every automatic number, recomputed from the saved prediction and ground truth with
    # scikit-image's Lab and CIEDE2000 and the formulas written out here
    def rgb(folder: str, name: str) -> np.ndarray:
        return np.asarray(Image.open(save / folder / f"{name}.png").convert("RGB"), np.float64)

    def by_hand(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        def m(img):
            rg, yb = img[..., 0] - img[..., 1], (img[..., 0] + img[..., 1]) / 2 - img[..., 2]
            return math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
        weights = np.array([0.299, 0.587, 0.114])
        return {"ciede2000": float(deltaE_ciede2000(rgb2lab(pred / 255), rgb2lab(gt / 255)).mean()),
                "colourfulness_pred": m(pred), "colourfulness_gt": m(gt),
                "luma_deviation": float(np.abs((pred - gt) @ weights).mean()),
                "psnr": 10 * math.log10(255 ** 2 / np.mean((pred - gt) ** 2))}

    for key, folder in (("automatic", "auto"), ("gray_baseline", "gray")):
        rows = [by_hand(rgb(folder, n), rgb("gt", n)) for n in sorted(records)]
        for metric in rows[0]:
            want = float(np.mean([r[metric] for r in rows]))
            assert result[key][metric] == pytest.approx(want, rel=2e-3, abs=1e-3), (key, metric)
        assert result[key]["count"] == 2
    assert result["gray_baseline"]["colourfulness_pred"] == 0.0
    assert result["automatic"]["colourfulness_pred"] > 10  # the tiny model did colour the photos
    assert result["automatic"]["luma_deviation"] < 1.0      # recombined with the photo's own luma

    # binding: the share of requests whose instance, in its saved image, has a mean a*b* within
    # 25 degrees of hue and at least 15 of chroma of the requested colour
    pal = palette_lab()
    bound = []
    for png in sorted((save / "instances").glob("*.png")):
        name, rest = png.stem.split("__")
        inst, colour = rest.split("_", 1)
        _, labels = load_record(data, records[name])
        ab = rgb2lab(np.asarray(Image.open(png).convert("RGB"), np.float64) / 255)[labels == int(inst)][:, 1:].mean(0)
        want = math.degrees(math.atan2(pal[colour][2], pal[colour][1]))
        off = abs((math.degrees(math.atan2(ab[1], ab[0])) - want + 180) % 360 - 180)
        bound.append(off <= 25 and math.hypot(*ab) >= 15)
    assert len(bound) == 2
    assert result["binding"] == pytest.approx(sum(bound) / 2)

    # leakage 0: outside each dilated mask the recoloured output equals the one before, while
    # inside the mask the new text did change the colour (else 0 would say nothing)
    assert result["leakage"] == 0.0
    for png in sorted((save / "instances").glob("*.png")):
        name, rest = png.stem.split("__")
        _, labels = load_record(data, records[name])
        mask = labels == int(rest.split("_")[0])
        before = rgb2lab(rgb("texts", name) / 255)[..., 1:]
        after = rgb2lab(np.asarray(Image.open(png).convert("RGB"), np.float64) / 255)[..., 1:]
        moved = np.hypot(*np.moveaxis(after - before, -1, 0))
        assert moved[mask].mean() > 10, png.name
        assert moved[metrics.outside(mask)].max() == 0.0, png.name
    ev.contact_sheet(save, tmp_path / "c.png", cell=50)
    ev.binding_sheet(save, tmp_path / "b.png", cell=50)
    assert Image.open(tmp_path / "c.png").height == 20 + 2 * (50 + 6)
    assert Image.open(tmp_path / "b.png").height == 20 + 2 * (50 + 20) + 4


def test_eval_scores_what_the_photo_pipeline_gives(tmp_path) -> None:
    """`restorer eval` colours a photo with the photo pipeline's core: its score for a real photo (the first
    frame of the carphone film) is the metric of the array entry's output, pipe(photo)."""
    import av

    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.photo import PhotoColorizationPipeline
    from restorer.presets import load_preset, open_engine
    from restorer.training.dataset.build import build_dataset
    from restorer.training.dataset.records import load_record, read_dataset

    photos = tmp_path / "photos"
    photos.mkdir()
    with av.open(str(Path(__file__).parents[1] / "data" / "carphone_pristine.mp4")) as film:
        Image.fromarray(next(film.decode(video=0)).to_ndarray(format="rgb24")).save(photos / "carphone.png")
    data = tmp_path / "data"
    build_dataset(photos, data, size=128, val_fraction=0.0, test_fraction=0.0, namer=lambda crop: "thing")
    result = ev.evaluate_split(data, split="train", per_image=0, overrides={"steps": 2})
    (rec,) = read_dataset(data, "train")
    rgb, _ = load_record(data, rec)
    pipe = PhotoColorizationPipeline(open_engine(load_preset("tiny"), device="cpu", overrides={"steps": 2}),
                                     ColorizeOptions(device="cpu"))
    out = pipe(np.round(rgb * 255).astype(np.uint8))
    assert result["raw"]["automatic"] == [metrics.image_metrics(out.astype(np.float64), rgb.astype(np.float64) * 255)]
    assert result["automatic"]["colourfulness_pred"] > 1  # coloured, not the gray picture
