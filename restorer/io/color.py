"""Colour science for recombination: sRGB, CIE XYZ/Lab (D65), Y'CbCr, edge-aware chroma upsampling.

Everything here is a pure, vectorised function on float32 arrays; nothing reads or writes files.

The project's one rule lives in :func:`recombine_rgb` and :func:`recombine_pbpr`: the source
luma Y' is kept exactly and a colour that would leave the RGB gamut at that luma is desaturated,
never made darker or brighter.

How: for a pixel (Y', a*, b*) the colour written is Y' + d, where d is a zero-luma R'G'B' offset
(so the output's Y' is the source's whatever d is). d is read from a table over (Y', a*, b*),
built once per matrix in about half a second: at each entry L* is solved so that the sRGB of
(L*, a*, b*) has exactly that Y', and if that colour is out of gamut its C*ab is first reduced at
constant CIELab hue until it fits. A final per-pixel scale of d towards gray catches what the
table's interpolation leaves outside [0, 1]. In-gamut colours come back as themselves (hue within
a fraction of a degree), out-of-gamut ones keep hue and luma and lose chroma only.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

# Linear sRGB (D65) -> XYZ, IEC 61966-2-1.
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375],
     [0.2126729, 0.7151522, 0.0721750],
     [0.0193339, 0.1191920, 0.9503041]],
    dtype=np.float64,
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
WHITE_D65 = _RGB_TO_XYZ.sum(axis=1)  # XYZ of RGB (1, 1, 1): (0.9505, 1.0, 1.089)

_EPS = 216.0 / 24389.0
_KAPPA = 24389.0 / 27.0

# (Kr, Kb) of the Y'CbCr matrices; Kg = 1 - Kr - Kb.
YCBCR_COEFFS: dict[str, tuple[float, float]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
}


# --- transfer functions and Lab ---------------------------------------------------------------

def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values -> linear light. Odd-symmetric, so out-of-gamut negatives keep their sign."""
    v = np.asarray(v, dtype=np.float32)
    a = np.abs(v)
    lin = np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)
    return (np.sign(v) * lin).astype(np.float32)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB encoding (odd-symmetric; values are not clipped)."""
    v = np.asarray(v, dtype=np.float32)
    a = np.abs(v)
    enc = np.where(a <= 0.0031308, a * 12.92, 1.055 * a ** (1.0 / 2.4) - 0.055)
    return (np.sign(v) * enc).astype(np.float32)


def _matmul(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    return (np.asarray(x, dtype=np.float32) @ m.T.astype(np.float32)).astype(np.float32)


def linear_rgb_to_xyz(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) linear sRGB -> (..., 3) XYZ with Y of white = 1."""
    return _matmul(rgb, _RGB_TO_XYZ)


def xyz_to_linear_rgb(xyz: np.ndarray) -> np.ndarray:
    """(..., 3) XYZ -> (..., 3) linear sRGB, unclipped."""
    return _matmul(xyz, _XYZ_TO_RGB)


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > _EPS, np.cbrt(t), (_KAPPA * t + 16.0) / 116.0)


def _lab_finv(f: np.ndarray) -> np.ndarray:
    return np.where(f ** 3 > _EPS, f ** 3, (116.0 * f - 16.0) / _KAPPA)


def xyz_to_lab(xyz: np.ndarray) -> np.ndarray:
    """(..., 3) XYZ -> (..., 3) CIELab (D65), L* in [0, 100]."""
    f = _lab_f(np.asarray(xyz, dtype=np.float32) / WHITE_D65.astype(np.float32))
    lab = np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                    200.0 * (f[..., 1] - f[..., 2])], axis=-1)
    return lab.astype(np.float32)


def lab_to_xyz(lab: np.ndarray) -> np.ndarray:
    """(..., 3) CIELab (D65) -> (..., 3) XYZ."""
    lab = np.asarray(lab, dtype=np.float32)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    return (_lab_finv(f) * WHITE_D65.astype(np.float32)).astype(np.float32)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in [0, 1] -> (..., 3) CIELab (D65)."""
    return xyz_to_lab(linear_rgb_to_xyz(srgb_to_linear(rgb)))


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """(..., 3) CIELab (D65) -> (..., 3) sRGB, *unclipped* (out-of-gamut values leave [0, 1])."""
    return linear_to_srgb(xyz_to_linear_rgb(lab_to_xyz(lab)))


def gray_to_lightness(y: np.ndarray) -> np.ndarray:
    """L* of the sRGB gray (y, y, y)."""
    lin = srgb_to_linear(np.clip(y, 0.0, 1.0))
    return (116.0 * _lab_f(lin) - 16.0).astype(np.float32)


def lab_chroma(ab: np.ndarray) -> np.ndarray:
    """C*ab of (..., 2) a*b* (or (..., 3) Lab)."""
    ab = np.asarray(ab, dtype=np.float32)
    return np.hypot(ab[..., -2], ab[..., -1])


def lab_hue_deg(ab: np.ndarray) -> np.ndarray:
    """Hue angle h_ab in degrees [0, 360) of (..., 2) a*b* (or (..., 3) Lab)."""
    ab = np.asarray(ab, dtype=np.float32)
    return np.degrees(np.arctan2(ab[..., -1], ab[..., -2])) % 360.0


def hue_difference_deg(h1: np.ndarray | float, h2: np.ndarray | float) -> np.ndarray:
    """Smallest absolute angle between two hues, in degrees [0, 180]."""
    d = np.abs(np.asarray(h1, dtype=np.float64) - np.asarray(h2, dtype=np.float64)) % 360.0
    return np.minimum(d, 360.0 - d)


# --- Y'CbCr -------------------------------------------------------------------------------------

def ycbcr_coeffs(matrix: str) -> tuple[float, float, float]:
    """(Kr, Kg, Kb) of a matrix name ("bt601", "bt709", "bt2020")."""
    try:
        kr, kb = YCBCR_COEFFS[matrix]
    except KeyError:
        known = sorted(YCBCR_COEFFS)
        raise ValueError(f"unknown Y'CbCr matrix {matrix!r}; expected one of {known}") from None
    return kr, 1.0 - kr - kb, kb


def rgb_to_luma(rgb: np.ndarray, matrix: str = "bt601") -> np.ndarray:
    """Y' of (..., 3) gamma-encoded R'G'B' under ``matrix``."""
    kr, kg, kb = ycbcr_coeffs(matrix)
    rgb = np.asarray(rgb, dtype=np.float32)
    return (kr * rgb[..., 0] + kg * rgb[..., 1] + kb * rgb[..., 2]).astype(np.float32)


def rgb_to_ypbpr(rgb: np.ndarray, matrix: str = "bt601") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., 3) R'G'B' in [0, 1] -> Y' in [0, 1], Pb and Pr in [-0.5, 0.5] (analogue, full range)."""
    kr, _, kb = ycbcr_coeffs(matrix)
    rgb = np.asarray(rgb, dtype=np.float32)
    y = rgb_to_luma(rgb, matrix)
    pb = (rgb[..., 2] - y) / np.float32(2.0 * (1.0 - kb))
    pr = (rgb[..., 0] - y) / np.float32(2.0 * (1.0 - kr))
    return y, pb.astype(np.float32), pr.astype(np.float32)


def ypbpr_to_rgb(y: np.ndarray, pb: np.ndarray, pr: np.ndarray, matrix: str = "bt601") -> np.ndarray:
    """Inverse of :func:`rgb_to_ypbpr`; returns (..., 3) R'G'B', unclipped."""
    kr, kg, kb = ycbcr_coeffs(matrix)
    r = y + np.float32(2.0 * (1.0 - kr)) * pr
    b = y + np.float32(2.0 * (1.0 - kb)) * pb
    g = (y - kr * r - kb * b) / np.float32(kg)
    return np.stack([r, g, b], axis=-1).astype(np.float32)


# --- recombination ------------------------------------------------------------------------------

_LUT_AB = 128.0  # a*, b* range of the table, +-
_LUT_AB_STEP = 4.0
_LUT_Y_STEPS = 64


def _solve_lightness(y: np.ndarray, ab: np.ndarray, matrix: str, iterations: int = 6) -> np.ndarray:
    """L* per entry such that the (unclipped) sRGB of (L*, a*, b*) has Y' equal to ``y``.

    Secant iterations started at the L* of the gray of the same Y' (the second point assumes L*
    rises about 100 per unit of Y'); converges to ~1e-6 in Y' within a few steps.
    """
    def luma_of(lightness: np.ndarray) -> np.ndarray:
        return rgb_to_luma(lab_to_srgb(np.concatenate([lightness[..., None], ab], axis=-1)), matrix)

    l0 = gray_to_lightness(y).astype(np.float64)
    g0 = luma_of(l0.astype(np.float32)) - y
    l1 = np.clip(l0 - g0 * 100.0, 0.0, 100.0)
    for _ in range(iterations):
        g1 = luma_of(l1.astype(np.float32)) - y
        denom = g1 - g0
        step = np.where(np.abs(denom) > 1e-9, g1 * (l1 - l0) / np.where(denom == 0, 1, denom), 0.0)
        l0, g0 = l1, g1
        l1 = np.clip(l1 - step, 0.0, 100.0)
    return l1.astype(np.float32)


def _target_direction(y: np.ndarray, ab: np.ndarray, matrix: str) -> np.ndarray:
    """d = T - Y'(T), T the unclipped sRGB of (L*, a*, b*) with L* solved so that Y'(T) = y."""
    lightness = _solve_lightness(y, ab, matrix)
    target = lab_to_srgb(np.concatenate([lightness[..., None], ab], axis=-1))
    return target - rgb_to_luma(target, matrix)[..., None]


def _max_chroma(ys: np.ndarray, hues_deg: np.ndarray, matrix: str, steps: int = 14) -> np.ndarray:
    """Largest C*ab in gamut at each (Y', hue) of the grid (len(ys), len(hues)), by bisection."""
    yy, hh = np.meshgrid(ys, np.radians(hues_deg), indexing="ij")
    unit = np.stack([np.cos(hh), np.sin(hh)], axis=-1).astype(np.float32)
    lo = np.zeros(yy.shape, np.float32)
    hi = np.full(yy.shape, 200.0, np.float32)
    for _ in range(steps):
        mid = (lo + hi) / 2
        target = yy[..., None] + _target_direction(yy, unit * mid[..., None], matrix)
        inside = np.all((target >= -1e-4) & (target <= 1 + 1e-4), axis=-1)
        lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
    return lo


@functools.lru_cache(maxsize=4)
def _direction_lut(matrix: str) -> np.ndarray:
    """In-gamut chroma d(Y', a*, b*) on a grid, packed for :func:`cv2.remap`.

    Shape ((Y_STEPS+1) * n, n, 3): rows are (Y' slice, b*), columns a*. d = T - Y'(T) has zero
    luma; T is the sRGB of (L*, a*, b*) with L* solved so that Y'(T) is the slice's Y', so an
    in-gamut colour recombined with its own Y' comes back as itself. Where T would leave the
    gamut, C*ab is first reduced at constant CIELab hue to the largest that fits.
    """
    axis = np.arange(-_LUT_AB, _LUT_AB + _LUT_AB_STEP / 2, _LUT_AB_STEP, dtype=np.float32)
    n = axis.size
    ys = np.linspace(0.0, 1.0, _LUT_Y_STEPS + 1, dtype=np.float32)
    hue_grid = np.arange(0.0, 361.0, 2.5, dtype=np.float32)
    limits = _max_chroma(ys, hue_grid, matrix)
    yy, bb, aa = np.meshgrid(ys, axis, axis, indexing="ij")
    ab = np.stack([aa, bb], axis=-1)
    hue, chroma = lab_hue_deg(ab), lab_chroma(ab)
    limit = np.stack([np.interp(hue[i], hue_grid, limits[i]) for i in range(ys.size)])
    scale = np.where(chroma > limit, limit / np.maximum(chroma, 1e-6), 1.0).astype(np.float32)
    d = _target_direction(yy, ab * scale[..., None], matrix)
    d[:, n // 2, n // 2] = 0.0  # neutral stays exactly neutral
    return np.ascontiguousarray(d.reshape(-1, n, 3), dtype=np.float32)


def _lookup_direction(y: np.ndarray, ab: np.ndarray, matrix: str) -> np.ndarray:
    """Trilinear lookup of the chroma direction: bilinear in a*, b* by remap, linear across Y'."""
    lut = _direction_lut(matrix)
    n = lut.shape[1]
    map_x = np.clip((ab[..., 0] + _LUT_AB) / _LUT_AB_STEP, 0, n - 1).astype(np.float32)
    map_b = np.clip((ab[..., 1] + _LUT_AB) / _LUT_AB_STEP, 0, n - 1).astype(np.float32)
    pos = y * _LUT_Y_STEPS
    k = np.minimum(np.floor(pos), _LUT_Y_STEPS - 1).astype(np.float32)
    t = (pos - k)[..., None]
    lo = cv2.remap(lut, map_x, map_b + k * n, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    hi = cv2.remap(lut, map_x, map_b + (k + 1) * n, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return lo + t * (hi - lo)


def _gamut_scale(y: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Largest s in [0, 1] per pixel with y + s*d inside [0, 1] in every channel.

    d has zero luma, so its largest channel is >= 0 and its smallest <= 0.
    """
    r, g, b = d[..., 0], d[..., 1], d[..., 2]  # pairwise: numpy's reduce over a last axis of 3 is slow
    top = np.maximum(np.maximum(r, g), b)
    bottom = -np.minimum(np.minimum(r, g), b)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_up = np.where(top > 1e-9, (1.0 - y) / top, 1.0)
        s_down = np.where(bottom > 1e-9, y / bottom, 1.0)
    return np.clip(np.minimum(s_up, s_down), 0.0, 1.0).astype(np.float32)


def _chroma_direction(y: np.ndarray, ab: np.ndarray, matrix: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.clip(np.asarray(y, dtype=np.float32), 0.0, 1.0)
    ab = np.asarray(ab, dtype=np.float32)
    if ab.shape[:2] != y.shape or ab.shape[-1] != 2:
        raise ValueError(f"chroma of shape {ab.shape} does not fit luma of shape {y.shape}")
    d = _lookup_direction(y, ab, matrix)
    d -= rgb_to_luma(d, matrix)[..., None]  # remove interpolation residue: luma stays exact
    d *= _gamut_scale(y, d)[..., None]
    return y, d


def recombine_rgb(y: np.ndarray, ab: np.ndarray, matrix: str = "bt601") -> np.ndarray:
    """Colour the source luma with CIELab chroma, keeping the luma exactly.

    Args:
        y: (H, W) source Y' in [0, 1], full resolution.
        ab: (H, W, 2) CIE a*, b* (D65) at the same size (see :func:`upsample_chroma`).
        matrix: the Y'CbCr matrix whose Y' is kept ("bt601" for photos).

    Returns:
        (H, W, 3) float32 R'G'B' in [0, 1] whose Y' under ``matrix`` equals ``y`` (to float
        rounding, about 1e-7); colour that would leave the gamut at that luma is desaturated at
        constant hue. See the module docstring for the method.
    """
    y, chroma = _chroma_direction(y, ab, matrix)
    return np.clip(y[..., None] + chroma, 0.0, 1.0)


def recombine_pbpr(y: np.ndarray, ab: np.ndarray, matrix: str = "bt709") -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`recombine_rgb` but returns the analogue chroma for a video writer.

    Returns:
        (pb, pr), each (H, W) float32 in [-0.5, 0.5]; with the source Y' they make R'G'B' in [0, 1].
    """
    kr, _, kb = ycbcr_coeffs(matrix)
    _, chroma = _chroma_direction(y, ab, matrix)
    pb = chroma[..., 2] / np.float32(2.0 * (1.0 - kb))
    pr = chroma[..., 0] / np.float32(2.0 * (1.0 - kr))
    return np.clip(pb, -0.5, 0.5), np.clip(pr, -0.5, 0.5)


# --- edge-aware upsampling ----------------------------------------------------------------------

def push_pull(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(H, W, C) ``values`` kept where ``known`` and filled elsewhere from the known pixels nearby
    (a push-pull pyramid: coarser levels' averages fill the holes of finer ones)."""
    w0 = known.astype(np.float32)
    if w0.all() or not w0.any():
        return values.astype(np.float32)
    pyramid = []
    v, w = values.astype(np.float32) * w0[..., None], w0
    while True:
        pyramid.append((v, w))
        h, wd = w.shape
        if (w > 0).all() or (h <= 1 and wd <= 1):
            break
        size = (max(1, (wd + 1) // 2), max(1, (h + 1) // 2))
        v = cv2.resize(v, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        w = cv2.resize(w, size, interpolation=cv2.INTER_AREA)
    v, w = pyramid[-1]
    filled = v / np.maximum(w, 1e-8)[..., None]
    for v, w in reversed(pyramid[:-1]):
        h, wd = w.shape
        up = cv2.resize(filled, (wd, h), interpolation=cv2.INTER_LINEAR).reshape(h, wd, -1)
        a = np.clip(w * 4.0, 0.0, 1.0)[..., None]
        filled = a * (v / np.maximum(w, 1e-8)[..., None]) + (1 - a) * up
    return filled.astype(np.float32)


def _extend(ab: np.ndarray, cover: np.ndarray, pure: float = 0.95, reach: float = 4.0) -> np.ndarray:
    """A region's chroma over the whole grid: its wholly covered cells (or, for a region without
    any, its best covered ones) kept, the cells near them filled by normalised convolution with
    growing Gaussian windows (sigma up to ``reach`` cells), the rest by :func:`push_pull` from
    those, so the fill depends on the region's own cells only. (Wider Gaussians cost seconds a
    frame and change nothing the region's own pixels see: the guided filter reaches a few cells.)"""
    known = cover >= min(pure, float(cover.max()) * 0.999)
    weight = known.astype(np.float32)
    out = np.where(known[..., None], ab, 0.0).astype(np.float32)
    todo = ~known
    sigma = 1.0
    while todo.any() and sigma <= reach:
        den = cv2.GaussianBlur(weight, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        num = cv2.GaussianBlur(out * weight[..., None], (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        fill = todo & (den > 1e-4)
        out[fill] = num[fill] / den[fill][:, None]
        todo &= ~fill
        sigma *= 2
    return push_pull(out, ~todo) if todo.any() else out


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def _guided_coefficients(guide: np.ndarray, p: np.ndarray, radius: int, eps: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Window-averaged A, B of the guided filter's local model p = A * guide + B."""
    mean_i = _box(guide, radius)
    var_i = np.maximum(_box(guide * guide, radius) - mean_i * mean_i, 0.0)
    mean_p = _box(p, radius)
    cov_ip = _box(p * guide[..., None], radius) - mean_i[..., None] * mean_p
    a = cov_ip / (var_i[..., None] + np.float32(eps))
    b = mean_p - a * mean_i[..., None]
    return _box(a, radius), _box(b, radius)


def upsample_chroma(ab_small: np.ndarray, guide_luma: np.ndarray, *, regions: np.ndarray | None = None,
                    background: np.ndarray | None = None, radius: int | None = None, eps: float = 1e-3,
                    passes: int = 2) -> np.ndarray:
    """Bring an engine's chroma to full size, its edges following the full-resolution luma.

    A fast guided filter (He and Sun, 2015): the per-window linear model chroma = A * luma + B is
    fitted at the chroma's own size against the area-downscaled luma, A and B are upsampled
    bilinearly and applied to the full-resolution luma. The radius is counted in working-size
    pixels, so it scales with the size ratio and edges land on the picture's edges at 4K as at
    480p. Extra passes first re-filter the chroma at its own size, which pulls a blurry chroma
    edge further onto the luma edge.

    With ``regions`` (the instance masks as one id per full-resolution pixel), each region is
    upsampled by itself: from the working-size cells it covers wholly (the cells it shares with
    a neighbour hold a blend of both), extended over the rest of the grid by normalised
    convolution, and only its own pixels are taken. A region's colour then stops at its mask's
    full-resolution edge instead of bleeding a few working-size cells across it, and what one
    instance's colour changes stays inside that instance's mask. With ``background`` (the engine's
    colour of the frame without its instances, on the same grid) the region outside every mask is
    upsampled from it as a whole picture instead, so it is exactly what it is without the instances,
    up to their masks' edges.

    Args:
        ab_small: (h, w, 2) a*b* at the engine's working size.
        guide_luma: (H, W) Y' in [0, 1] at full resolution.
        regions: optional (H, W) integer region ids (0 background, k instance k).
        background: optional (h, w, 2) a*b* of the frame without its instances, for region 0.
        radius: window radius in working-size pixels; default about 1/128 of the long side, at
            least 3.
        eps: regularisation in units of luma variance; luma steps much below sqrt(eps) are not edges.
        passes: guided-filter passes (the last one is the upsampling one).

    Returns:
        (H, W, 2) float32 a*b*, kept within the range of ``ab_small``.
    """
    ab_small = np.asarray(ab_small, dtype=np.float32)
    guide = np.asarray(guide_luma, dtype=np.float32)
    h, w = ab_small.shape[:2]
    if radius is None:
        radius = max(3, round(max(h, w) / 128))
    small_guide = cv2.resize(guide, (w, h), interpolation=cv2.INTER_AREA)
    ids = np.unique(regions) if regions is not None else np.zeros(1)
    if ids.size == 1:
        whole = (0, guide.shape[0], 0, guide.shape[1])
        return _guided_upsample(ab_small, small_guide, guide, radius, eps, passes, whole)
    out = np.empty((*guide.shape, 2), np.float32)
    for rid in ids:
        inside = regions == rid
        cover = cv2.resize(inside.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        layer = np.asarray(background, np.float32) if rid == 0 and background is not None else _extend(ab_small, cover)
        up = _guided_upsample(layer, small_guide, guide, radius, eps, passes, box)
        sel = inside[box[0]:box[1], box[2]:box[3]]
        out[box[0]:box[1], box[2]:box[3]][sel] = up[sel]
    return out


def _guided_upsample(ab_small: np.ndarray, small_guide: np.ndarray, guide: np.ndarray, radius: int, eps: float,
                     passes: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """The guided upsampling of :func:`upsample_chroma` inside ``box`` (y0, y1, x0, x1) of the full frame."""
    p = ab_small
    for _ in range(passes - 1):
        a, b = _guided_coefficients(small_guide, p, radius, eps)
        p = a * small_guide[..., None] + b
    a, b = _guided_coefficients(small_guide, p, radius, eps)
    coeffs = np.concatenate([a, b], axis=-1)
    (H, W), (h, w) = guide.shape, ab_small.shape[:2]
    y0, y1, x0, x1 = box
    if box == (0, H, 0, W):
        coeffs = cv2.resize(coeffs, (W, H), interpolation=cv2.INTER_LINEAR)
    else:  # the same bilinear map as cv2.resize, evaluated on the box only
        sx, sy = w / W, h / H
        m = np.float32([[sx, 0, (x0 + 0.5) * sx - 0.5], [0, sy, (y0 + 0.5) * sy - 0.5]])
        coeffs = cv2.warpAffine(coeffs, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    out = coeffs[..., :2] * guide[y0:y1, x0:x1, None] + coeffs[..., 2:]
    flat = ab_small.reshape(-1, 2)
    return np.clip(out, flat.min(axis=0), flat.max(axis=0)).astype(np.float32)
