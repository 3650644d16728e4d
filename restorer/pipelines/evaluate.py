"""``restorer eval``: colorization metrics, as pure functions on arrays, and their runners.

Per image (sRGB, 8-bit code values 0..255 unless said otherwise):

- PSNR over RGB (peak 255); SSIM (scikit-image, Gaussian window as Wang et al., over RGB);
- mean CIEDE2000 (CIE 2000 colour difference, Sharma et al.'s formulation) in CIELab (D65);
- colourfulness (Hasler & Süsstrunk 2003): ``sqrt(sd_rg² + sd_yb²) + 0.3 sqrt(mu_rg² + mu_yb²)``
  with ``rg = R - G``, ``yb = (R + G) / 2 - B``; for prediction and ground truth and their ratio;
- luma deviation: mean |Y'_pred - Y'_gt| (BT.601) in code values.

Films, in addition (TCVC's definitions): CDC, the Jensen-Shannon divergence (natural log) of
per-channel 256-bin histograms between frames t and t + d, averaged over channels, t and
d in (1, 2, 4); warp error, with the ground truth's optical flow (Farneback) t -> t+1 and
t+1 -> t, pixels whose forward-backward round trip misses by more than
``0.01 |f|² + 0.5`` px counted occluded, the mean squared RGB difference (in [0, 1]²) between
frame t and frame t+1 warped back, over the visible pixels; for prediction and ground truth.

Instances (:func:`evaluate_split`): colour binding is the share of instances whose mean a*b*
inside the mask has a hue within 25° of the requested colour and a chroma of at least 15,
requested colours being vivid names at least 90° of hue away from the instance's true colour;
leakage is the mean |Δa*b*| outside the instance's mask dilated by 5 % of the image diagonal
when only that instance's text changes. Both are measured on the recombined RGB output.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from restorer.errors import InputError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}
HUE_TOLERANCE = 25.0
MIN_CHROMA = 15.0


# --- per-image metrics --------------------------------------------------------------------------

def _as255(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    return img * 255.0 if img.max(initial=0) <= 1.0 and img.dtype != np.uint8 else img


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) images in code values 0..255 (inf when equal)."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean SSIM over RGB (Wang et al.: Gaussian window sigma 1.5; a smaller uniform window below 11 px)."""
    from skimage.metrics import structural_similarity

    side = min(pred.shape[:2])
    window = {"gaussian_weights": True, "sigma": 1.5} if side >= 11 else {"win_size": max(1, side - 1 + side % 2)}
    if side < 3:
        window = {"win_size": 1}
    return float(structural_similarity(np.asarray(pred, np.float64), np.asarray(gt, np.float64),
                                       channel_axis=-1, data_range=255.0, use_sample_covariance=False, **window))


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference of (..., 3) CIELab arrays (kL = kC = kH = 1)."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar ** 7 / (c_bar ** 7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dL, dC = L2 - L1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dH = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    L_bar, c_bar_p = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(np.abs(h1p - h2p) > 180, np.where(h_sum < 360, h_sum + 360, h_sum - 360), h_sum) / 2
    h_bar = np.where(c1p * c2p == 0, h_sum, h_bar)
    t = (1 - 0.17 * np.cos(np.radians(h_bar - 30)) + 0.24 * np.cos(np.radians(2 * h_bar))
         + 0.32 * np.cos(np.radians(3 * h_bar + 6)) - 0.20 * np.cos(np.radians(4 * h_bar - 63)))
    d_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(c_bar_p ** 7 / (c_bar_p ** 7 + 25.0 ** 7))
    s_l = 1 + 0.015 * (L_bar - 50) ** 2 / np.sqrt(20 + (L_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    return np.sqrt((dL / s_l) ** 2 + (dC / s_c) ** 2 + (dH / s_h) ** 2 + r_t * (dC / s_c) * (dH / s_h))


def mean_ciede2000(pred: np.ndarray, gt: np.ndarray) -> float:
    from restorer.io.color import srgb_to_lab

    return float(ciede2000(srgb_to_lab(np.asarray(pred, np.float64) / 255),
                           srgb_to_lab(np.asarray(gt, np.float64) / 255)).mean())


def colourfulness(img: np.ndarray) -> float:
    """Hasler & Süsstrunk's M of an (H, W, 3) image in code values 0..255."""
    r, g, b = np.moveaxis(np.asarray(img, np.float64), -1, 0)
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def luma601(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, np.float64)
    return 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]


def luma_deviation(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.abs(luma601(pred) - luma601(gt)).mean())


def image_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Every per-image metric of two (H, W, 3) images in code values 0..255."""
    if pred.shape != gt.shape:
        raise InputError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    return {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt), "ciede2000": mean_ciede2000(pred, gt),
            "colourfulness_pred": colourfulness(pred), "colourfulness_gt": colourfulness(gt),
            "luma_deviation": luma_deviation(pred, gt)}


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means over images (finite PSNR only) and the colourfulness ratio of the means."""
    out = {}
    for key in rows[0]:
        vals = [r[key] for r in rows if np.isfinite(r[key])]
        out[key] = float(np.mean(vals)) if vals else float("inf")
    out["colourfulness_ratio"] = out["colourfulness_pred"] / max(out["colourfulness_gt"], 1e-9)
    out["count"] = len(rows)
    return out


def paired_bootstrap(ours: list[float], baseline: list[float], *, resamples: int = 10000, level: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """Mean of the per-image differences ``ours - baseline`` and its percentile bootstrap interval.

    The images are resampled with replacement (the pairs stay together), ``resamples`` times with a
    fixed seed, so a claim like "better than gray" comes with how sure it is: the interval excludes 0
    or it does not. Images whose value is not finite in either (PSNR of a perfect copy) are left out.
    """
    a, b = np.asarray(ours, np.float64), np.asarray(baseline, np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    if d.size == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "count": 0}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, (resamples, d.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(d.mean()), "low": float(low), "high": float(high), "count": int(d.size)}


PAIRED_KEYS = ("ciede2000", "psnr", "ssim", "colourfulness_pred")


def versus_gray(automatic: list[dict[str, float]], gray: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Paired differences against the gray picture per metric, with 95 % bootstrap intervals
    (CIEDE2000: negative is better; PSNR, SSIM, colourfulness: positive is better)."""
    return {k: paired_bootstrap([r[k] for r in automatic], [r[k] for r in gray]) for k in PAIRED_KEYS}


# --- films --------------------------------------------------------------------------------------

def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (natural log) of two histograms (normalised here)."""
    p = np.asarray(p, np.float64) / max(np.sum(p), 1e-12)
    q = np.asarray(q, np.float64) / max(np.sum(q), 1e-12)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def cdc(frames: list[np.ndarray], gaps: tuple[int, ...] = (1, 2, 4)) -> float:
    """TCVC's colour distribution consistency of a list of (H, W, 3) uint8-range frames."""
    hists = [[np.bincount(np.clip(f[..., c], 0, 255).astype(np.int64).ravel(), minlength=256)
              for c in range(3)] for f in frames]
    per_gap = []
    for d in gaps:
        vals = [np.mean([js_divergence(hists[t][c], hists[t + d][c]) for c in range(3)])
                for t in range(len(frames) - d)]
        if vals:
            per_gap.append(np.mean(vals))
    return float(np.mean(per_gap)) if per_gap else 0.0


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import cv2

    ga, gb = (cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for x in (a, b))
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def warp_error(pred: list[np.ndarray], gt: list[np.ndarray]) -> float:
    """Mean over t of the visible pixels' squared RGB error (in [0, 1]) of pred t vs pred t+1 warped back."""
    errs = []
    for t in range(len(gt) - 1):
        fwd, bwd = _flow(gt[t], gt[t + 1]), _flow(gt[t + 1], gt[t])
        round_trip = fwd + _warp(bwd, fwd)
        visible = (round_trip ** 2).sum(-1) <= 0.01 * ((fwd ** 2).sum(-1) + (_warp(bwd, fwd) ** 2).sum(-1)) + 0.5
        warped = _warp(np.asarray(pred[t + 1], np.float32) / 255, fwd)
        diff = ((np.asarray(pred[t], np.float32) / 255 - warped) ** 2).sum(-1)
        if visible.any():
            errs.append(float(diff[visible].mean()))
    return float(np.mean(errs)) if errs else 0.0


def film_metrics(pred: list[np.ndarray], gt: list[np.ndarray]) -> dict[str, Any]:
    n = min(len(pred), len(gt))
    if n == 0:
        raise InputError("no frames to compare")
    if len(pred) != len(gt):
        log.warning("prediction has %d frames, ground truth %d: comparing the first %d", len(pred), len(gt), n)
    pred, gt = pred[:n], gt[:n]
    out = summarize([image_metrics(p, g) for p, g in zip(pred, gt, strict=True)])
    out.update({"cdc_pred": cdc(pred), "cdc_gt": cdc(gt), "warp_error_pred": warp_error(pred, gt),
                "warp_error_gt": warp_error(gt, gt), "frames": n})
    return out


def read_film(path: Path) -> list[np.ndarray]:
    import av

    try:
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24").astype(np.float64) for f in container.decode(video=0)]
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"cannot decode film ({exc})", path=path) from exc


# --- folders and files --------------------------------------------------------------------------

def read_rgb255(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def evaluate(pred: np.ndarray | list[np.ndarray], gt: np.ndarray | list[np.ndarray]) -> dict[str, Any]:
    """Metrics of one image pair ((H, W, 3) arrays, 0..255) or of two films (lists of frames)."""
    if isinstance(pred, list):
        return film_metrics(pred, gt)
    return summarize([image_metrics(_as255(pred), _as255(gt))])


def evaluate_paths(pred: Path, gt: Path) -> dict[str, Any]:
    """PRED and GT: two films, two images, or two folders of images matched by file stem."""
    pred, gt = Path(pred), Path(gt)
    if pred.suffix.lower() in VIDEO_SUFFIXES:
        return film_metrics(read_film(pred), read_film(gt))
    if pred.is_file():
        return summarize([image_metrics(read_rgb255(pred), read_rgb255(gt))])
    from restorer.pipelines.dataset import IMAGE_SUFFIXES

    truth = {p.stem: p for p in gt.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = [(p, truth[p.stem]) for p in sorted(pred.iterdir())
             if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in truth]
    if not pairs:
        raise InputError("no prediction has a ground truth of the same name", path=pred,
                         hint="name each prediction like its ground-truth file (any image suffix)")
    return summarize([image_metrics(read_rgb255(p), read_rgb255(g)) for p, g in pairs])


# --- instance binding and leakage ---------------------------------------------------------------

def mean_ab(rgb255: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from restorer.io.color import srgb_to_lab

    return srgb_to_lab(np.asarray(rgb255, np.float64)[mask] / 255)[:, 1:].mean(0)


def bound(rgb255: np.ndarray, mask: np.ndarray, requested_lab: tuple[float, float, float]) -> bool:
    """The instance took the requested colour: hue within 25°, chroma at least 15."""
    from restorer.io.color import hue_difference_deg, lab_chroma, lab_hue_deg

    ab = mean_ab(rgb255, mask)
    want = np.asarray(requested_lab[1:], np.float64)
    return bool(hue_difference_deg(lab_hue_deg(ab), lab_hue_deg(want)) <= HUE_TOLERANCE
                and lab_chroma(ab) >= MIN_CHROMA)


def outside(mask: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Pixels outside ``mask`` dilated by ``fraction`` of the image diagonal."""
    import cv2

    r = max(1, int(round(fraction * float(np.hypot(*mask.shape)))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return ~cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def leakage(base: np.ndarray, changed: np.ndarray, mask: np.ndarray) -> float:
    """Mean |Δa*b*| between two outputs outside the dilated mask (0 if nothing is outside)."""
    return delta_ab(base, changed, outside(mask))


def delta_ab(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Mean |Δa*b*| of two RGB (0..255) outputs over ``where`` (0 where it is empty)."""
    from restorer.io.color import srgb_to_lab

    if not where.any():
        return 0.0
    d = srgb_to_lab(np.asarray(a, np.float64) / 255)[..., 1:] - srgb_to_lab(np.asarray(b, np.float64) / 255)[..., 1:]
    return float(np.hypot(d[..., 0], d[..., 1])[where].mean())


def counter_color(true_lab: list[float] | np.ndarray) -> str:
    """The requested colour for an instance: among the vivid names at least 90° of hue away from its
    true colour (any, for a near-gray truth), the one closest in L* (its luma is kept)."""
    from restorer.pipelines.dataset import COUNTER_COLORS, palette_lab

    pal = palette_lab()
    return far_colour(true_lab, {c: pal[c] for c in COUNTER_COLORS})


def far_colour(true_lab, candidates: dict[str, np.ndarray]) -> str:
    """Among ``candidates`` (name -> CIELab) those at least 90° of hue from the truth (all, for a
    near-gray truth), the one closest in L*; ties by name."""
    from restorer.io.color import hue_difference_deg, lab_chroma, lab_hue_deg

    lab = np.asarray(true_lab, np.float64)
    far = [c for c, v in candidates.items()
           if lab_chroma(lab[1:]) < 10 or hue_difference_deg(lab_hue_deg(lab[1:]), lab_hue_deg(v[1:])) >= 90]
    return min(far, key=lambda c: (abs(candidates[c][0] - lab[0]), c))


def evaluate_split(data: Path, *, preset: str = "tiny", weights: Path | None = None, save: Path | None = None,
                   split: str = "val", per_image: int = 3, min_area: float = 0.03, seed: int = 0,
                   limit: int | None = None, shard: tuple[int, int] = (0, 1),
                   overrides: dict[str, Any] | None = None, base: Path | None = None) -> dict[str, Any]:
    """Colorize a dataset split with a preset and measure it (see the module docstring).

    Automatic colorization has no texts and no masks; the instance runs give every instance
    its own text ("a gray area"), then change one instance at a time (the ``per_image``
    largest covering at least ``min_area``) to its counter colour. ``shard`` (k, n) takes
    every n-th photo from the k-th, for parallel processes; :func:`merge_results` joins them.
    """
    from restorer.pipelines.dataset import read_dataset
    from restorer.pipelines.options import shot_seed
    from restorer.presets import load_preset, open_engine

    records = read_dataset(data, split)[:limit][shard[0]::shard[1]]
    if not records:
        raise InputError(f"the dataset has no '{split}' photos", path=data)
    chosen = load_preset(preset)
    # the engine and the seed exactly as `restorer colorize` opens them for a photo (a one-frame shot at 0)
    engine = open_engine(chosen, device="cpu", weights=weights, base=base, overrides=overrides or {})
    raw = {"automatic": [], "gray": [], "binding": [], "leakage": [], "images": []}
    try:
        for rec in records:
            _one_record(engine, data, rec, raw, save, per_image, min_area, shot_seed(seed, 0))
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    result = merge_results([{"raw": raw}])
    result.update({"split": split, "preset": chosen.name, "engine": engine.name,
                   "weights": str(weights) if weights else "default",
                   "overrides": overrides or {}, "shard": list(shard), "raw": raw})
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        (save / f"per_image_{shard[0]}.json").write_text(json.dumps(raw["images"], indent=1) + "\n")
        (save / "dataset.json").write_text(json.dumps({"root": str(Path(data).resolve())}) + "\n")
    return result


# Colour words no training text holds (training uses PALETTE and COUNTER_COLORS), vivid (chroma > 45).
HARD_COLORS = ("crimson", "scarlet", "mustard", "amber", "emerald", "turquoise", "cobalt", "magenta", "lime",
               "fuchsia")
# Phrasings no training text has (training says "a {colour} {object}").
HARD_PHRASINGS = ("the {obj} should be bright {color}", "make the {obj} {color}", "{color} {obj}",
                  "a {obj} painted {color}")
BAND_FRACTION = 0.02  # the border band: up to 2 % of the image diagonal outside the mask


def hard_color(true_lab) -> str:
    """A colour word from :data:`HARD_COLORS` at least 90° of hue from the truth (any for a near-gray
    truth), the closest in L*; ties by name."""
    from restorer.models.colornames import parse_color

    return far_colour(true_lab, {c: np.asarray(parse_color(c).lab, np.float64) for c in HARD_COLORS})


def border_band(mask: np.ndarray, fraction: float = BAND_FRACTION) -> np.ndarray:
    """The pixels just outside ``mask``: within ``fraction`` of the image diagonal of it, not in it."""
    import cv2

    r = max(2, int(round(fraction * float(np.hypot(*mask.shape)))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask


def evaluate_hard(data: Path, *, preset: str = "tiny", weights: Path | None = None, split: str = "val",
                  objects: int = 2, min_area: float = 0.03, max_area: float = 0.4, seed: int = 0,
                  limit: int | None = None, shard: tuple[int, int] = (0, 1), save: Path | None = None,
                  overrides: dict[str, Any] | None = None, base: Path | None = None) -> dict[str, Any]:
    """Instance texts measured the hard way, as a user gives them.

    Per photo, up to ``objects`` regions covering ``min_area``..``max_area`` of it (objects, not the
    background) each get a text on an otherwise automatic photo, one at a time: a colour word no
    training text holds (:data:`HARD_COLORS`, >= 90° of hue from the truth), in a phrasing no training
    text has (:data:`HARD_PHRASINGS`, in turn). Binding as in :func:`bound`; leakage against the
    automatic output of the same photo, in the border band just outside the mask
    (:func:`border_band`, where colour bleeds) and beyond the 5 % margin (:func:`outside`).
    """
    from restorer.io.color import rgb_to_luma, srgb_to_lab
    from restorer.models.colornames import parse_color
    from restorer.pipelines.dataset import load_record, read_dataset
    from restorer.pipelines.options import shot_seed
    from restorer.presets import load_preset, open_engine

    records = read_dataset(data, split)[:limit][shard[0]::shard[1]]
    if not records:
        raise InputError(f"the dataset has no '{split}' photos", path=data)
    chosen = load_preset(preset)
    engine = open_engine(chosen, device="cpu", weights=weights, base=base, overrides=overrides or {})
    raw: dict[str, list] = {"hard_binding": [], "band_leakage": [], "far_leakage": [], "hard": []}
    k = 0
    try:
        for rec in records:
            rgb, labels = load_record(data, rec)
            luma = rgb_to_luma(rgb)
            auto = colorize(engine, luma, [], np.zeros((0, *luma.shape), bool), shot_seed(seed, 0))
            picked = object_regions(rec, min_area, max_area)[:objects]
            for inst in picked:
                color = hard_color(inst["lab"])
                obj = inst["object"] if inst["object"] != "area" else "thing"
                text = HARD_PHRASINGS[k % len(HARD_PHRASINGS)].format(obj=obj, color=color)
                k += 1
                m = labels == inst["id"]
                out = colorize(engine, luma, [text], m[None], shot_seed(seed, 0))
                ok = bound(out, m, tuple(parse_color(color).lab))
                band, far = delta_ab(auto, out, border_band(m)), delta_ab(auto, out, outside(m))
                raw["hard_binding"].append(ok)
                raw["band_leakage"].append(band)
                raw["far_leakage"].append(far)
                ab = srgb_to_lab(np.asarray(out, np.float64)[m] / 255)[:, 1:].mean(0)
                raw["hard"].append({"name": rec["name"], "id": inst["id"], "text": text, "bound": ok,
                                    "band_leakage": round(band, 3), "far_leakage": round(far, 3),
                                    "mean_ab": [round(float(v), 2) for v in ab]})
                if save is not None:
                    _save(save / "hard" / f"{rec['name']}__{inst['id']}_{color}.png", out)
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    result = merge_hard([{"raw": raw}])
    result.update({"split": split, "preset": chosen.name, "engine": engine.name, "shard": list(shard), "raw": raw})
    return result


def object_regions(rec: dict[str, Any], min_area: float = 0.03, max_area: float = 0.4) -> list[dict[str, Any]]:
    """A record's instances that may stand for objects (covering ``min_area``..``max_area`` of the
    photo, not the background), largest first."""
    return sorted((i for i in rec["instances"] if min_area <= i["area"] <= max_area), key=lambda i: -i["area"])


def merge_hard(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of one or more :func:`evaluate_hard` results."""
    raw = {key: [x for p in parts for x in p["raw"][key]]
           for key in ("hard_binding", "band_leakage", "far_leakage", "hard")}
    n = len(raw["hard_binding"])
    return {"hard_instances": n,
            "hard_binding": float(np.mean(raw["hard_binding"])) if n else None,
            "band_leakage": float(np.mean(raw["band_leakage"])) if n else None,
            "band_leakage_max": float(np.max(raw["band_leakage"])) if n else None,
            "far_leakage": float(np.mean(raw["far_leakage"])) if n else None}


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of one or more :func:`evaluate_split` results (their ``raw`` lists joined)."""
    raw = {k: [x for p in parts for x in p["raw"][k]] for k in ("automatic", "gray", "binding", "leakage", "images")}
    return {"images": len(raw["images"]), "automatic": summarize(raw["automatic"]),
            "gray_baseline": summarize(raw["gray"]),
            "versus_gray": versus_gray(raw["automatic"], raw["gray"]),
            "binding": float(np.mean(raw["binding"])) if raw["binding"] else None,
            "binding_instances": len(raw["binding"]),
            "leakage": float(np.mean(raw["leakage"])) if raw["leakage"] else None}


def _one_record(engine, data: Path, rec: dict[str, Any], raw: dict[str, list], save: Path | None,
                per_image: int, min_area: float, seed: int) -> None:
    from restorer.io.color import rgb_to_luma
    from restorer.pipelines.dataset import load_record, palette_lab

    pal = palette_lab()
    rgb, labels = load_record(data, rec)
    gt = rgb.astype(np.float64) * 255
    luma = rgb_to_luma(rgb)
    pred = colorize(engine, luma, [], np.zeros((0, *luma.shape), bool), seed)
    raw["automatic"].append(image_metrics(pred, gt))
    raw["gray"].append(image_metrics(colorize(None, luma, [], None, seed), gt))
    row = {"name": rec["name"], **{k: round(v, 4) for k, v in raw["automatic"][-1].items()}, "instances": []}
    masks = np.stack([labels == inst["id"] for inst in rec["instances"]])
    texts = [inst["text"] for inst in rec["instances"]]
    chosen = sorted((i for i in rec["instances"] if i["area"] >= min_area), key=lambda i: -i["area"])[:per_image]
    base = colorize(engine, luma, texts, masks, seed) if chosen else None
    for inst in chosen:
        want = counter_color(inst["lab"])
        changed = list(texts)
        changed[inst["id"]] = f"a {want} {inst['object']}"
        out = colorize(engine, luma, changed, masks, seed)
        m = masks[inst["id"]]
        raw["binding"].append(bound(out, m, tuple(pal[want])))
        raw["leakage"].append(leakage(base, out, m))
        row["instances"].append({"id": inst["id"], "text": changed[inst["id"]], "bound": raw["binding"][-1],
                                 "leakage": round(raw["leakage"][-1], 3),
                                 "mean_ab": [round(float(v), 2) for v in mean_ab(out, m)]})
        if save is not None:
            _save(save / "instances" / f"{rec['name']}__{inst['id']}_{want}.png", out)
    raw["images"].append(row)
    if save is not None:
        _save(save / "auto" / f"{rec['name']}.png", pred)
        _save(save / "gt" / f"{rec['name']}.png", gt)
        _save(save / "gray" / f"{rec['name']}.png", np.repeat(np.round(luma * 255)[..., None], 3, axis=2))
        if base is not None:
            _save(save / "texts" / f"{rec['name']}.png", base)


def colorize(engine, luma: np.ndarray, texts: list[str], masks: np.ndarray | None, seed: int) -> np.ndarray:
    """One photo through an engine, recombined with its own luma (RGB 0..255, quantised to 8 bits).

    ``engine`` None gives the do-nothing gray output (a*b* = 0)."""
    from restorer.io.color import recombine_rgb
    from restorer.models.engine import FrameInput, InstanceText, ShotContext
    from restorer.pipelines.frames import full_chroma

    if engine is None:
        ab = np.zeros((*luma.shape, 2), np.float32)
    else:
        instances = tuple(InstanceText(f"i{k}", t) for k, t in enumerate(texts))
        ctx = ShotContext(seed=seed, prompt=None, instances=instances, size=luma.shape)
        (ab,) = list(engine.shot(ctx, [FrameInput(0, luma, masks)]))
        ab = full_chroma(ab, luma, masks)
    rgb = recombine_rgb(luma, ab, "bt601")
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.float64)


def _save(path: Path, rgb255: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rgb255, 0, 255).astype(np.uint8)).save(path)


def binding_sheet(save: Path, png: Path, *, cell: int = 160, limit: int | None = None) -> None:
    """Rows of gray input | output with the dataset's own texts | output with one counter-coloured text,
    the request and its mask outlined, from an :func:`evaluate_split` ``save`` folder."""
    import cv2
    from PIL import Image, ImageDraw

    from restorer.pipelines.dataset import load_record, read_dataset

    rows = sorted((save / "instances").glob("*.png"))[:limit]
    data = json.loads((save / "dataset.json").read_text())["root"] if (save / "dataset.json").exists() else None
    records = {r["name"]: r for r in read_dataset(Path(data))} if data else {}
    sheet = Image.new("RGB", (3 * (cell + 6) + 6, 20 + len(rows) * (cell + 20) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for j, label in enumerate(("gray input", "own texts", "one text changed (outlined)")):
        draw.text((6 + j * (cell + 6), 4), label, fill="black")
    for i, path in enumerate(rows):
        name, rest = path.stem.rsplit("__", 1)
        inst, colour = rest.split("_", 1)
        y = 20 + i * (cell + 20)
        changed = np.asarray(Image.open(path).convert("RGB")).copy()
        rec = records.get(name)
        if rec is not None:
            _, labels = load_record(Path(data), rec)
            edge = cv2.morphologyEx((labels == int(inst)).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3)))
            changed[edge > 0] = (255, 255, 255)
        for j, im in enumerate((Image.open(save / "gray" / f"{name}.png"), Image.open(save / "texts" / f"{name}.png"),
                                Image.fromarray(changed))):
            im = im.convert("RGB")
            im.thumbnail((cell, cell), Image.LANCZOS)
            sheet.paste(im, (6 + j * (cell + 6), y + 16))
        draw.text((6, y + 2), f"{name[:40]}  instance {inst} -> '{colour}'", fill="black")
    sheet.save(png)


def contact_sheet(save: Path, png: Path, *, names: list[str] | None = None, cell: int = 200,
                  labels: tuple[str, ...] = ("gray input", "ours (no text)", "ground truth")) -> None:
    """Rows of gray input | automatic output | ground truth from an :func:`evaluate_split` ``save`` folder."""
    columns = list(zip(labels, (save / "gray", save / "auto", save / "gt"), strict=True))
    comparison_sheet(columns, png, names=names or sorted(p.stem for p in (save / "auto").glob("*.png")), cell=cell)


def comparison_sheet(columns: list[tuple[str, Path]], png: Path, *, names: list[str], cell: int = 200) -> None:
    """One row per name, one column per (label, folder of ``NAME.png``): e.g. gray | previous model |
    new model | truth from two :func:`evaluate_split` ``save`` folders."""
    from PIL import Image, ImageDraw

    sheet = Image.new("RGB", (len(columns) * (cell + 6) + 6, 20 + len(names) * (cell + 6)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (label, _) in enumerate(columns):
        draw.text((6 + j * (cell + 6), 4), label, fill="black")
    for i, name in enumerate(names):
        for j, (_, folder) in enumerate(columns):
            with Image.open(Path(folder) / f"{name}.png") as im:
                im = im.convert("RGB")
                im.thumbnail((cell, cell), Image.LANCZOS)
                sheet.paste(im, (6 + j * (cell + 6), 20 + i * (cell + 6)))
    sheet.save(png)
