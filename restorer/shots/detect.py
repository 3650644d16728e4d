"""Shots of a film: detect the cuts, and write an editable shots.yaml template (``restorer shots init``).

Cut detection streams the film once through PySceneDetect's content detector on luma
(frames are counted in decode order, the same numbering the rest of restorer uses),
so memory does not grow with the film. A damaged film yields the cuts found up to
where it stops decoding.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from restorer.errors import InputError
from restorer.fs import refuse_existing, write_text_atomic
from restorer.shots.resolve import probe_film
from restorer.shots.schema import format_time

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 27.0
DEFAULT_MIN_LEN = 15
_DETECT_WIDTH = 256  # cuts are found as well on a small picture, much faster


# --------------------------------------------------------------------------- detection

def detect_cuts(
    path: str | Path,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_len: int = DEFAULT_MIN_LEN,
    progress: Callable[[int], None] | None = None,
) -> list[int]:
    """Find the shot boundaries of a film.

    Args:
        path: the film.
        threshold: content-change score (luma only) above which a frame starts a shot.
        min_len: shortest shot, in frames.
        progress: called with the number of frames read so far, every 100 frames.

    Returns:
        The first frame index of every shot after the first, ascending; [] for one shot.

    Raises:
        InputError: the film cannot be opened at all.
    """
    from scenedetect import FrameTimecode
    from scenedetect.detectors import ContentDetector

    video = _open_for_detection(Path(path))
    detector = ContentDetector(threshold=threshold, min_scene_len=min_len, luma_only=True)
    rate = video.frame_rate
    cuts: list[int] = []
    index = 0
    for index, frame in enumerate(_small_frames(video, Path(path))):
        cuts += [tc.frame_num for tc in detector.process_frame(FrameTimecode(index, rate), frame)]
        if progress is not None and index % 100 == 99:
            progress(index + 1)
    cuts += [tc.frame_num for tc in detector.post_process(FrameTimecode(index, rate))]
    return sorted({c for c in cuts if 0 < c <= index})


def _open_for_detection(path: Path):
    from scenedetect import open_video
    from scenedetect.video_stream import VideoOpenFailure  # FrameRateUnavailable is one

    if not path.is_file():
        raise InputError("film not found", path=path, hint="check the path")
    try:
        # suppress_output keeps FFmpeg's log calls as PyAV set them up (quiet) instead of
        # letting the backend route them to the terminal.
        return open_video(str(path), backend="pyav", suppress_output=True)
    except (VideoOpenFailure, OSError, ValueError) as exc:
        raise InputError(f"cannot open the film for shot detection: {exc}", path=path,
                         hint="check that the file plays; re-mux it with ffmpeg if it is damaged") from None


def _small_frames(video, path: Path):
    """Decoded frames (BGR) shrunk to about ``_DETECT_WIDTH``; stops quietly where decoding fails."""
    import av
    import cv2

    width = video.frame_size[0]
    scale = _DETECT_WIDTH / width if width > _DETECT_WIDTH else 1.0
    count = 0
    while True:
        try:
            frame = video.read()
        except (av.error.FFmpegError, OSError, ValueError) as exc:  # damaged tail: keep what we have
            logger.warning("%s: decoding stopped after frame %d (%s); cuts after it are not known",
                           path.name, count, exc)
            return
        if frame is False:
            return
        count += 1
        if scale < 1.0:
            frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        yield np.ascontiguousarray(frame)


# --------------------------------------------------------------------------- template

def write_template(
    path_out: str | Path,
    film_path: str | Path,
    cuts: list[int],
    frame_count: int,
    frame_rate: Fraction | float,
    *,
    overwrite: bool = False,
    size: tuple[int, int] | None = None,
) -> None:
    """Write an editable shots.yaml with one entry per shot, atomically.

    Raises:
        OutputError: ``path_out`` exists and ``overwrite`` is False, or cannot be written.
    """
    path_out = Path(path_out)
    refuse_existing(path_out, overwrite=overwrite, instead="pick another name")
    text = template_text(Path(film_path).name, _shot_ranges(cuts, frame_count), frame_count, Fraction(frame_rate),
                         size=size)
    write_text_atomic(path_out, text)
    logger.info("wrote %s", path_out)


def template_text(film_name: str, ranges: list[tuple[int, int]], frame_count: int, rate: Fraction,
                  size: tuple[int, int] | None = None) -> str:
    """The template's YAML text (see :func:`write_template`); ``size`` is the frame's (width, height)."""
    safe_name = film_name.replace("\n", " ").replace("\r", " ")
    pixels = f", {size[0]}x{size[1]} pixels" if size else ""
    head = [
        f"# shots for {safe_name}: {frame_count} frames at {float(rate):.3f} fps{pixels}, {len(ranges)} shot(s)",
        "# Each shot: frames: [first, last] (both included), or time: [start, end].",
        "# Give a shot a prompt and instances; later instances are on top where they overlap.",
        f"# Check it with: restorer shots check {safe_name} <this file>",
        "version: 1",
        '# prompt: "the whole film: place, period, light"  # default for every shot',
        "shots:" if ranges else "shots: []",
    ]
    if size:
        head.insert(3, f"# Boxes and points are in pixels of the {size[0]}x{size[1]} frame: x from 0 (left) to "
                       f"{size[0] - 1}, y from 0 (top) to {size[1] - 1}.")
    body = [line for start, end in ranges for line in _template_shot(start, end, rate)]
    return "\n".join(head + body) + "\n"


def _template_shot(start: int, end: int, rate: Fraction) -> list[str]:
    t0, t1 = format_time(start / rate), format_time((end + 1) / rate)
    return [
        f"  - frames: [{start}, {end}]  # {t0} – {t1}",
        '    # prompt: "what this shot shows"',
        "    instances: []",
        "    # instances:",
        "    #   - name: car",
        '    #     text: "a red car"',
        "    #     prompts:",
        f"    #       - frame: {(start + end) // 2}",
        "    #         box: [x0, y0, x1, y1]  # pixels; or mask: masks/car.png, or points: [[x, y]]",
    ]


def _shot_ranges(cuts: list[int], frame_count: int) -> list[tuple[int, int]]:
    if frame_count <= 0:
        return []
    edges = [0] + sorted({c for c in cuts if 0 < c < frame_count}) + [frame_count]
    return [(a, b - 1) for a, b in itertools.pairwise(edges)]


def init_template(film_path: str | Path, path_out: str | Path, *, overwrite: bool = False) -> int:
    """``restorer shots init``: detect the film's shots and write the template (with the frame size that
    boxes are measured in). Returns the shot count."""
    path_out = Path(path_out)
    refuse_existing(path_out, overwrite=overwrite, instead="pick another name")  # before a long detection pass
    info = probe_film(Path(film_path))
    cuts = detect_cuts(film_path) if info.frame_count > 1 else []
    write_template(path_out, film_path, cuts, info.frame_count, info.frame_rate, overwrite=overwrite,
                   size=(info.width, info.height))
    return len(_shot_ranges(cuts, info.frame_count))
