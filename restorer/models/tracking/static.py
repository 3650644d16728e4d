"""The ``static`` tracker: the region stays where it was drawn."""

from __future__ import annotations

import bisect

import numpy as np

from restorer.shots.regions import prompt_region

from .prompts import FrameSource, ShotPrompts
from .store import MaskStore


class StaticTracker:
    """Each frame takes the region of the instance's latest prompt at or before it.

    Frames before an instance's first prompt take the first prompt's region; an
    instance without prompts is empty. No frame is decoded.
    """

    name = "static"

    def fingerprint(self) -> str:
        return "static-1"

    def track(self, shot: ShotPrompts, read: FrameSource, store: MaskStore) -> None:
        regions = [
            {p.frame: prompt_region(p, shot.size) for p in inst.prompts} for inst in shot.instances
        ]
        keys = [sorted(r) for r in regions]
        empty = np.zeros(shot.size, bool)
        for t in range(shot.start, shot.end + 1):
            masks = []
            for region, frames in zip(regions, keys, strict=True):
                if not frames:
                    masks.append(empty)
                    continue
                k = bisect.bisect_right(frames, t) - 1
                masks.append(region[frames[max(k, 0)]])
            store.put(t, np.stack(masks) if masks else np.zeros((0, *shot.size), bool))
