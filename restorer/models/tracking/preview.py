"""Pictures for people: instance outlines and names over the grayscale, and contact sheets."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .prompts import to_uint8

# distinct, saturated colours (RGB) that read on gray; cycled beyond ten instances
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def _font_scale(h: int) -> tuple[float, int]:
    scale = max(0.3, h / 480)
    return scale, max(1, round(scale * 1.5))


def draw_preview(luma: np.ndarray, masks: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The frame in gray with each instance's outline and name in its own colour.

    Args:
        luma: (H, W) Y' (uint8, uint16 or float in [0, 1]).
        masks: (N, H, W) bool, one per name.
        names: the instances' names.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    import cv2

    gray = to_uint8(luma)
    img = np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    h = gray.shape[0]
    thick = max(1, round(h / 240))
    scale, text_thick = _font_scale(h)
    for i, (mask, name) in enumerate(zip(masks, names, strict=True)):
        colour = PALETTE[i % len(PALETTE)]
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, colour, thick, cv2.LINE_AA)
        ys, xs = np.nonzero(mask)
        if len(xs):
            _label(img, name, (int(xs.min()), max(int(ys.min()) - 2, 0)), colour, scale,
                   text_thick)
    return img


def _label(img: np.ndarray, text: str, org: tuple[int, int], colour, scale: float,
           thick: int) -> None:
    import cv2

    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x = min(max(org[0], 0), max(img.shape[1] - tw - 2, 0))
    y = max(org[1], th + base)
    cv2.rectangle(img, (x, y - th - base), (x + tw + 2, y + 1), (0, 0, 0), -1)
    cv2.putText(img, text, (x + 1, y - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                thick, cv2.LINE_AA)


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str],
                  columns: int = 4) -> np.ndarray:
    """Tile RGB images (any sizes, padded to the largest) with a caption under each.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    import cv2

    if not images:
        return np.zeros((1, 1, 3), np.uint8)
    th = max(im.shape[0] for im in images)
    tw = max(im.shape[1] for im in images)
    scale, thick = _font_scale(max(th, 240))
    cap = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][1] + 8
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    pad = 4
    sheet = np.full((rows * (th + cap + pad) + pad, columns * (tw + pad) + pad, 3), 24, np.uint8)
    for k, (im, text) in enumerate(zip(images, labels, strict=True)):
        r, c = divmod(k, columns)
        y, x = pad + r * (th + cap + pad), pad + c * (tw + pad)
        sheet[y:y + im.shape[0], x:x + im.shape[1]] = im
        cv2.putText(sheet, str(text), (x + 2, y + th + cap - 5), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (235, 235, 235), thick, cv2.LINE_AA)
    return sheet
