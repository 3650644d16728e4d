"""Instance masks for every frame of a shot, behind one interface for the pipelines.

Until a segmenting tracker is chosen, an instance's region holds still: each frame
uses the region of the nearest prompt at or before it (the first prompt before that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from restorer.pipelines.frames import prompt_mask
from restorer.pipelines.options import ColorizeOptions


class StaticMasks:
    def __init__(self, shot, size: tuple[int, int]):
        self.size = size
        self.instances = [sorted(i.prompts, key=lambda p: p.frame) for i in shot.instances]
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def _region(self, k: int, index: int) -> np.ndarray:
        prompts = self.instances[k]
        chosen = prompts[0]
        for p in prompts:
            if p.frame <= index:
                chosen = p
        key = (k, id(chosen))
        if key not in self._cache:
            self._cache[key] = prompt_mask(chosen, self.size)
        return self._cache[key]

    def get(self, index: int) -> np.ndarray:
        if not self.instances:
            return np.zeros((0, *self.size), dtype=bool)
        return np.stack([self._region(k, index) for k in range(len(self.instances))])


def tracker_factory(opts: ColorizeOptions):
    def make(film: Path, info, shot, job):
        return StaticMasks(shot, (info.height, info.width))
    return make
