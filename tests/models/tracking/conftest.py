"""Generated media for the tracking tests: textured shapes moving, scaling and crossing."""

from __future__ import annotations

import numpy as np
import pytest


def _texture(rng: np.random.Generator, h: int, w: int, mean: float, contrast: float,
             sigma: float) -> np.ndarray:
    import cv2

    noise = rng.standard_normal((h, w)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    noise /= noise.std() + 1e-6
    return mean + contrast * noise


class Scene:
    """Two textured objects over a slowly panning textured background, frames ``start..``.

    ``A`` is a disc that travels right and grows; ``B`` a rectangle that travels left,
    half hidden behind ``A`` at first and clear of it from frame ``start + 8`` on. ``masks(t)`` are the visible regions.
    """

    def __init__(self, size=(72, 96), n=48, start=100, seed=0):
        self.h, self.w = size
        self.n, self.start = n, start
        rng = np.random.default_rng(seed)
        self.bg = _texture(rng, self.h + 40, self.w + 40, 110, 35, 1.6)
        self.tex_a = _texture(rng, 64, 64, 170, 40, 1.2)
        self.tex_b = _texture(rng, 64, 64, 60, 30, 1.2)

    @property
    def end(self) -> int:
        return self.start + self.n - 1

    def _pose(self, t: int):
        s = (t - self.start) / (self.n - 1)
        a = (18 + 48 * s, 24 + 6 * s, 10 + 6 * s)  # cx, cy, radius
        b = (34 - 24 * s, 41, 12, 9)  # cx, cy, half width, half height
        return a, b

    def _shapes(self, t: int):
        yy, xx = np.mgrid[0:self.h, 0:self.w].astype(np.float32) + 0.5
        (ax, ay, ar), (bx, by, bw, bh) = self._pose(t)
        a = (xx - ax) ** 2 + (yy - ay) ** 2 <= ar ** 2
        b = (np.abs(xx - bx) <= bw) & (np.abs(yy - by) <= bh)
        return a, b

    def frame(self, t: int) -> np.ndarray:
        import cv2

        (ax, ay, ar), (bx, by, _, _) = self._pose(t)
        k = t - self.start
        m_bg = np.float32([[1, 0, -20 + 0.25 * k], [0, 1, -20 + 0.1 * k]])
        img = cv2.warpAffine(self.bg, m_bg, (self.w, self.h), flags=cv2.INTER_LINEAR)
        sa = ar / 16.0  # texture of A scales with A
        m_a = np.float32([[sa, 0, ax - 32 * sa], [0, sa, ay - 32 * sa]])
        tex_a = cv2.warpAffine(self.tex_a, m_a, (self.w, self.h), flags=cv2.INTER_LINEAR)
        m_b = np.float32([[1, 0, bx - 32], [0, 1, by - 32]])
        tex_b = cv2.warpAffine(self.tex_b, m_b, (self.w, self.h), flags=cv2.INTER_LINEAR)
        a, b = self._shapes(t)
        img = np.where(b, tex_b, img)
        img = np.where(a, tex_a, img)
        return np.clip(img, 0, 255).astype(np.uint8)

    def masks(self, t: int) -> np.ndarray:
        a, b = self._shapes(t)
        return np.stack([a, b & ~a])

    def read(self, start: int, end: int):
        self.reads.append((start, end))
        for t in range(start, end + 1):
            yield t, self.frame(t)

    reads: list


@pytest.fixture
def scene() -> Scene:
    s = Scene()
    s.reads = []
    return s
