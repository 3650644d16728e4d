"""Colourization metrics: pure functions on arrays (``restorer eval`` runs them over files and dataset splits).

Per image (sRGB, 8-bit code values 0..255 unless said otherwise):

- PSNR over RGB (peak 255); SSIM (scikit-image, Gaussian window as Wang et al., over RGB);
- mean CIEDE2000 (CIE 2000 colour difference, Sharma et al.'s formulation) in CIELab (D65);
- colourfulness (Hasler & Süsstrunk 2003): ``sqrt(sd_rg² + sd_yb²) + 0.3 sqrt(mu_rg² + mu_yb²)``
  with ``rg = R - G``, ``yb = (R + G) / 2 - B``; for prediction and ground truth and their ratio;
- luma deviation: mean |Y'_pred - Y'_gt| (BT.601) in code values;
- paired bootstrap intervals of per-image differences (:func:`paired_bootstrap`).

Films, in addition (TCVC's definitions): CDC, the Jensen-Shannon divergence (natural log) of
per-channel 256-bin histograms between frames t and t + d, averaged over channels, t and
d in (1, 2, 4); warp error, with the ground truth's optical flow (Farneback) t -> t+1 and
t+1 -> t, pixels whose forward-backward round trip misses by more than
``0.01 |f|² + 0.5`` px counted occluded, the mean squared RGB difference (in [0, 1]²) between
frame t and frame t+1 warped back, over the visible pixels; for prediction and ground truth.

Instances: colour binding (:func:`bound`) is whether an instance's mean a*b* inside its mask has a hue
within 25° of the requested colour and a chroma of at least 15; leakage (:func:`leakage`) is the mean
|Δa*b*| outside the instance's mask dilated by 5 % of the image diagonal between two outputs, and
:func:`border_band` the ring just outside the mask where colour bleeds.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from restorer.errors import InputError

log = logging.getLogger(__name__)

HUE_TOLERANCE = 25.0
MIN_CHROMA = 15.0
BAND_FRACTION = 0.02  # the border band: up to 2 % of the image diagonal outside the mask


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


def cdc(frames: list[np.ndarray], gaps: tuple[int, ...] = (1, 2, 4), cuts: tuple[int, ...] = ()) -> float:
    """TCVC's colour distribution consistency of a list of (H, W, 3) uint8-range frames.

    ``cuts``: first frames of shots; a pair of frames with a cut between them is left out (CDC within
    shots: across a cut the histogram changes with the content, not by flicker)."""
    hists = [[np.bincount(np.clip(f[..., c], 0, 255).astype(np.int64).ravel(), minlength=256)
              for c in range(3)] for f in frames]
    per_gap = []
    for d in gaps:
        vals = [np.mean([js_divergence(hists[t][c], hists[t + d][c]) for c in range(3)])
                for t in range(len(frames) - d) if not any(t < k <= t + d for k in cuts)]
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


def film_metrics(pred: list[np.ndarray], gt: list[np.ndarray], cuts: tuple[int, ...] = ()) -> dict[str, Any]:
    """Per-frame metrics averaged, CDC and warp error of both films; with ``cuts`` (the truth's shot
    boundaries) also CDC within shots."""
    n = min(len(pred), len(gt))
    if n == 0:
        raise InputError("no frames to compare")
    if len(pred) != len(gt):
        log.warning("prediction has %d frames, ground truth %d: comparing the first %d", len(pred), len(gt), n)
    pred, gt = pred[:n], gt[:n]
    out = summarize([image_metrics(p, g) for p, g in zip(pred, gt, strict=True)])
    out.update({"cdc_pred": cdc(pred), "cdc_gt": cdc(gt), "warp_error_pred": warp_error(pred, gt),
                "warp_error_gt": warp_error(gt, gt), "frames": n})
    if cuts:
        out.update({"cuts": list(cuts), "cdc_within_shots_pred": cdc(pred, cuts=cuts),
                    "cdc_within_shots_gt": cdc(gt, cuts=cuts)})
    return out


def evaluate(pred: np.ndarray | list[np.ndarray], gt: np.ndarray | list[np.ndarray]) -> dict[str, Any]:
    """Metrics of one image pair ((H, W, 3) arrays, 0..255) or of two films (lists of frames)."""
    if isinstance(pred, list):
        return film_metrics(pred, gt)
    return summarize([image_metrics(_as255(pred), _as255(gt))])


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


def border_band(mask: np.ndarray, fraction: float = BAND_FRACTION) -> np.ndarray:
    """The pixels just outside ``mask``: within ``fraction`` of the image diagonal of it, not in it."""
    import cv2

    r = max(2, int(round(fraction * float(np.hypot(*mask.shape)))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
