"""Instance tracking: masks that follow each shots.yaml instance through its shot.

Backends (``--tracker``): ``sam2`` (transformers SAM2 video model from ``--sam2 DIR``),
``flow`` (OpenCV DIS optical flow, no weights), ``static`` (the region stays put).

Usage by a pipeline::

    tracker = open_tracker(kind, sam2_dir)            # once per run
    shot = ShotPrompts.from_resolved(resolved, size)  # per shot
    store = track_shot(tracker, shot, read, job / "masks" / f"shot{n:04d}")
    masks = store.get(index)                          # (N, H, W) bool
"""

from .preview import contact_sheet, draw_preview
from .prompts import FrameSource, InstancePrompts, Prompt, ShotPrompts
from .store import MaskStore
from .tracker import BACKENDS, Tracker, open_tracker, track_shot

__all__ = [
    "BACKENDS", "FrameSource", "InstancePrompts", "MaskStore", "Prompt", "ShotPrompts",
    "Tracker", "contact_sheet", "draw_preview", "open_tracker", "track_shot",
]
