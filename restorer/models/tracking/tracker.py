"""The tracker interface, choosing a backend per run, and tracking a shot into its store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from ...errors import WeightsError
from .prompts import FrameSource, ShotPrompts
from .store import MaskStore

log = logging.getLogger(__name__)

class Tracker(Protocol):
    """Follows a shot's instances from their prompts through every frame of the shot."""

    name: str

    def fingerprint(self) -> str:
        """The settings that change the masks (part of a store's key)."""
        ...

    def track(self, shot: ShotPrompts, read: FrameSource, store: MaskStore) -> None:
        """Write (N, H, W) masks for every frame ``shot.start..shot.end`` into ``store``."""
        ...


def open_tracker(kind: str | None = None, sam2: str | Path | None = None,
                 device: str | None = None) -> Tracker:
    """The tracker for ``--tracker KIND`` (default: ``sam2`` with ``--sam2 DIR``, else ``flow``).

    Raises:
        WeightsError: ``sam2`` without a usable weights folder.
        ValueError: an unknown kind.
    """
    kind = kind or ("sam2" if sam2 else "flow")
    if kind not in TRACKERS:
        raise ValueError(f"unknown tracker {kind!r}; choose one of {', '.join(BACKENDS)}")
    return TRACKERS[kind](sam2, device)


def _flow(sam2, device) -> Tracker:
    from .flow import FlowTracker

    return FlowTracker()


def _static(sam2, device) -> Tracker:
    from .static import StaticTracker

    return StaticTracker()


def _sam2(sam2, device) -> Tracker:
    if sam2 is None:
        raise WeightsError("the sam2 tracker needs SAM2 weights",
                           hint="pass --sam2 DIR (a local transformers SAM2 video checkpoint) or choose --tracker flow")
    from .sam2 import Sam2Tracker

    return Sam2Tracker.from_pretrained(sam2, device=device)


# --tracker KIND -> its factory (sam2 folder, device) -> Tracker; the CLI's choices are these keys
TRACKERS = {"sam2": _sam2, "flow": _flow, "static": _static}
BACKENDS = tuple(TRACKERS)


def track_shot(tracker: Tracker, shot: ShotPrompts, read: FrameSource,
               folder: str | Path) -> MaskStore:
    """Track ``shot`` into a :class:`MaskStore` in ``folder``, or reuse a complete one.

    A store is reused when it is complete and was made by the same tracker settings
    from the same prompts; otherwise it is started afresh, filled, and marked complete.
    """
    key = f"{tracker.fingerprint()}/{shot.fingerprint()}"
    store = MaskStore(folder, shot.names, shot.size, shot.start, shot.end, key=key)
    if store.complete:
        log.info("shot %d-%d: reusing tracked masks in %s", shot.start, shot.end, folder)
        return store
    log.info("shot %d-%d: tracking %d instances with %s", shot.start, shot.end,
             len(shot.instances), tracker.name)
    tracker.track(shot, read, store)
    store.finish()
    return store
