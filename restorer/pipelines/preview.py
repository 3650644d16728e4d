"""`restorer shots preview`: see the tracks before spending time on colour.

Tracks every shot's instances with the run's tracker and writes PNG frames (every
Nth frame of each shot, every prompted frame and every fixed keyframe) with each
instance's outline and name drawn over the grayscale, plus a contact sheet of them
all, where keyframes are labelled "key". The fixed keyframes are those the temporal
stage always colours with the model (the shot's start, every ``keyframe_interval``
frames, the shot's ``keyframes:``); it adds adaptive ones while colouring, where the
flow loses the picture (report.json lists them all).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from restorer.fs import atomic_path, refuse_existing
from restorer.jobs import require_file
from restorer.pipelines.options import ColorizeOptions

log = logging.getLogger(__name__)


class _ScratchJob:
    """Just enough of a Job for the tracker: a folder for mask stores."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, name: str) -> Path:
        p = self.folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def preview_frames(shot, every: int, keyframes: tuple[int, ...] = ()) -> list[int]:
    """Every ``every``-th frame of the shot, its last frame, each prompted frame and each keyframe."""
    picks = set(range(shot.start, shot.end + 1, max(1, every))) | {shot.end} | set(keyframes)
    picks |= {p.frame for i in shot.instances for p in i.prompts}
    return sorted(picks)


def fixed_keyframes(shot, opts: ColorizeOptions) -> tuple[int, ...]:
    """The keyframes the temporal stage colours with the model whatever the flow does (none when it is off)."""
    if opts.temporal == "off":
        return ()
    from restorer.pipelines.temporal import window_starts

    return tuple(window_starts(shot.start, shot.end, opts.keyframe_interval, getattr(shot, "keyframes", ())))


TILE_WIDTH = 320


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    if w <= TILE_WIDTH:
        return rgb
    return cv2.resize(rgb, (TILE_WIDTH, max(1, round(h * TILE_WIDTH / w))), interpolation=cv2.INTER_AREA)


def write_png(path: Path, rgb: np.ndarray, overwrite: bool) -> None:
    from PIL import Image

    refuse_existing(path, overwrite=overwrite)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def shots_preview(film: Path, out_dir: Path, opts: ColorizeOptions, *, every: int = 24,
                  columns: int = 4) -> Path:
    """Write the preview frames and ``contact_sheet.png`` into ``out_dir``; return the sheet's path."""
    from restorer.io.decode import LumaReader, luma_to_unit
    from restorer.io.probe import probe
    from restorer.models.tracking import contact_sheet, draw_preview
    from restorer.pipelines.tracking import tracker_factory
    from restorer.pipelines.video import load_film_shots

    require_file(film)
    sheet = out_dir / "contact_sheet.png"
    refuse_existing(sheet, overwrite=opts.overwrite, instead="choose another folder")
    info = probe(film)
    shots = load_film_shots(film, info, opts)
    out_dir.mkdir(parents=True, exist_ok=True)
    make_masks = tracker_factory(opts)
    tiles, labels = [], []
    with tempfile.TemporaryDirectory(prefix="restorer-preview-") as scratch:
        for shot in shots:
            masks = make_masks(film, info, shot, _ScratchJob(Path(scratch)))
            keys = set(fixed_keyframes(shot, opts))
            wanted = set(preview_frames(shot, every, tuple(keys)))
            names = [i.name for i in shot.instances]
            for f in LumaReader(film, info, start=shot.start, end=shot.end):
                if f.index not in wanted:
                    continue
                rgb = draw_preview(luma_to_unit(f.luma, info), masks.get(f.index), names)
                write_png(out_dir / f"shot{shot.index + 1:04d}_frame{f.index:06d}.png", rgb, opts.overwrite)
                tiles.append(_thumbnail(rgb))  # the sheet holds small tiles: a long film stays in memory
                labels.append(f"{shot.index + 1}:{f.index} {info.timecode(f.index)[3:]}"
                              f"{' key' if f.index in keys else ''}")
    write_png(sheet, contact_sheet(tiles, labels, columns), opts.overwrite)
    log.info("wrote %d preview frames and %s", len(tiles), sheet)
    return sheet
