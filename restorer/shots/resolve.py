"""A shots file checked against its film: :func:`resolve`, the one path every caller takes.

Colorize (films and photos), ``restorer shots check``, ``restorer shots preview`` and ``restorer watch`` all
call :func:`resolve`: load the file, let the engine check its instance texts, and cover every frame of the
film exactly once (:func:`resolve_shots`), frames the file leaves out becoming detected shots. Sizes are
(height, width), as everywhere else in restorer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from restorer.errors import InputError, ShotsError
from restorer.io.images import IMAGE_SUFFIXES
from restorer.shots.load import load_shots
from restorer.shots.paths import MASK_FIX, UnsafePath, contained_path, shots_folder
from restorer.shots.schema import Instance, RegionPrompt, Shot, ShotsFile, parse_time

FrameAt = Callable[[Fraction], int]


@dataclass(frozen=True)
class FilmInfo:
    """What resolving a shots file needs to know about its film (a photo: one frame, no rate).

    :func:`resolve` takes this or anything with the same fields (``restorer.io.film.VideoInfo``)."""

    frame_count: int
    width: int
    height: int
    frame_rate: Fraction | None
    frame_at: FrameAt | None = None  # pts-exact, for variable frame rate


def has_segmenter(tracker: str | None, sam2: Any) -> bool:
    """Whether a point-prompt segmenter (SAM2) will run, so that points alone make a region:
    ``--tracker sam2``, or a ``--sam2 DIR``. Films, photos and ``shots check`` all ask this."""
    return tracker == "sam2" or sam2 is not None


def resolve(
    shots: str | Path | ShotsFile | None,
    film: Any,
    *,
    engine: Any = None,
    segmenter: bool = False,
    cuts: list[int] | None = None,
    detect: Callable[[], list[int]] | None = None,
) -> list[ResolvedShot]:
    """The shots of ``film``: ``shots`` (a path, a loaded file, or None) checked against it.

    Args:
        shots: the shots file; None gives one detected shot per run of ``cuts``.
        film: a :class:`FilmInfo` (or ``VideoInfo``): frame count, width, height, frame rate, ``frame_at``.
        engine: if given, its ``validate`` checks every instance text first, errors at the file's line
            (e.g. the stencil engine needs a colour name).
        segmenter: :func:`has_segmenter`; without one an instance of points alone is refused.
        cuts: first frame of each detected shot after the first, for the frames the file leaves out.
        detect: instead of ``cuts``: called (once) for them, only when the file does not cover the whole film.

    Raises:
        ShotsError: the file does not parse or does not fit the film (``file:line``).
        InputError: ``engine`` refuses an instance text.
    """
    shots_file = load_shots(shots) if isinstance(shots, (str, Path)) else shots
    check_texts(engine, shots_file)
    if detect is not None and (shots_file is None or not _covers_all(shots_file, film)):
        cuts = detect()
    return resolve_shots(shots_file, frame_count=film.frame_count, size=(film.height, film.width),
                         frame_rate=film.frame_rate, frame_at=film.frame_at, detected_cuts=cuts,
                         segmenter_available=segmenter)


def check_shots(film_path: str | Path, shots_path: str | Path, *, segmenter_available: bool = False,
                detected_cuts: list[int] | None = None, engine: Any = None) -> list[ResolvedShot]:
    """``restorer shots check``: :func:`resolve` a shots file against the film (or photo) at ``film_path``.

    Frames the file leaves uncovered come back as detected shots, split at ``detected_cuts`` if given
    (this does not run detection itself).

    Raises:
        ShotsError: the file does not parse or does not fit the film.
        InputError: the film cannot be read, or ``engine`` refuses an instance text.
    """
    info = probe_film(Path(film_path))
    return resolve(shots_path, info, engine=engine, segmenter=segmenter_available, cuts=detected_cuts)


def probe_film(path: Path) -> FilmInfo:
    """Frame count, size and rate of a film (or a photo: one frame)."""
    if not path.is_file():
        raise InputError("not found", path=path, hint="check the path")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _probe_image(path)
    from restorer.io.probe import probe

    info = probe(path)
    return FilmInfo(info.frame_count, info.width, info.height, info.frame_rate, info.frame_at)


def _probe_image(path: Path) -> FilmInfo:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read the picture: {exc}", path=path, hint="check the file opens") from None
    return FilmInfo(1, width, height, None)


def check_texts(engine: Any, shots_file: ShotsFile | None) -> None:
    """Let the engine check every instance text of a shots file, errors pointing at its line.

    The engine names ``ShotContext.source`` in its messages, so giving it "shots.yaml:LINE"
    makes an unknown colour word point at the line to fix rather than at the film.
    """
    if engine is None or shots_file is None:  # no engine: nothing reads the texts yet (``shots check`` alone)
        return
    validate = engine.validate
    from restorer.models.engine import InstanceText, ShotContext

    source = shots_file.source
    for i, shot in enumerate(shots_file.shots):
        prompt = shot.prompt if shot.prompt is not None else shots_file.prompt
        start = shot.frames[0] if shot.frames is not None else 0
        for j, inst in enumerate(shot.instances):
            line = shots_file.line_of("shots", i, "instances", j, "text")
            where = f"{source}:{line}" if source is not None and line else str(source or "")
            validate(ShotContext(seed=0, prompt=prompt, instances=(InstanceText(inst.name, inst.text),),
                                 shot_start=start, shot_end=start, source=where))


def _covers_all(shots_file: ShotsFile, film: Any) -> bool:
    """Whether the file's shots cover every frame (then no detection is needed)."""
    try:
        shots = resolve_shots(shots_file, frame_count=film.frame_count, size=(film.height, film.width),
                              frame_rate=film.frame_rate, frame_at=film.frame_at, detected_cuts=[],
                              segmenter_available=True)
    except Exception:  # the real resolve reports the problem with its line
        return True
    return not any(s.detected for s in shots)


@dataclass
class ResolvedPrompt:
    """A region of an instance on one frame. ``box`` is (x0, y0, x1, y1); ``mask`` is (H, W) bool."""

    frame: int
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    negative: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class ResolvedInstance:
    """An instance with its prompts, in file order (later instances are on top)."""

    name: str
    text: str
    prompts: list[ResolvedPrompt]


@dataclass(frozen=True)
class ResolvedAnchor:
    """A user's anchor checked against its film: (x, y) pixels on ``frame``, its colour's CIE a*b*."""

    x: float
    y: float
    ab: tuple[float, float]
    frame: int
    color: str


@dataclass
class ResolvedShot:
    """A shot checked against its film. ``start``/``end`` are inclusive frame indices.

    ``detected`` is True for shots that the file does not cover (filled from detected cuts).
    """

    index: int
    start: int
    end: int
    prompt: str | None
    instances: list[ResolvedInstance] = field(default_factory=list)
    detected: bool = False
    keyframes: tuple[int, ...] = ()  # the user's keyframes (film frame numbers inside the shot)
    anchors: tuple[ResolvedAnchor, ...] = ()  # the user's colour anchors (the anchors preset)

    @property
    def frame_count(self) -> int:
        return self.end - self.start + 1



@dataclass
class _Film:
    frame_count: int
    width: int
    height: int
    frame_at: FrameAt | None
    path: Path | None
    shots: ShotsFile | None

    def line_of(self, *loc: str | int) -> int | None:
        return self.shots.line_of(*loc) if self.shots is not None else None

    def error(self, message: str, loc: tuple, hint: str | None = None) -> ShotsError:
        line = self.line_of(*loc)
        return ShotsError(message, path=self.path, line=line, hint=hint)


def resolve_shots(
    shots: ShotsFile | None,
    *,
    frame_count: int,
    size: tuple[int, int],
    frame_rate: Fraction | float | None = None,
    frame_at: FrameAt | None = None,
    detected_cuts: list[int] | None = None,
    segmenter_available: bool = False,
) -> list[ResolvedShot]:
    """Check a shots file against its film and cover every frame with exactly one shot.

    Args:
        shots: the loaded file, or None (then every shot is detected).
        frame_count: frames in the film; 1 for a photo.
        size: (height, width) of the picture in pixels.
        frame_rate: constant frame rate, to turn ``time:`` into frames.
        frame_at: instead of ``frame_rate`` (variable frame rate): the index of the frame
            whose start is nearest to a time in seconds, ``frame_count`` for the film's end.
        detected_cuts: first frame of each detected shot after the first; used for the
            frames that no shot of the file covers.
        segmenter_available: whether a point-prompt segmenter (SAM2) is configured.

    Returns:
        Shots sorted by start, covering ``0 .. frame_count - 1`` exactly once.

    Raises:
        ShotsError: pointing at the file's line, when the file does not fit the film.
    """
    if frame_count < 1:
        raise ValueError(f"resolve_shots needs a film with frames, got frame_count={frame_count}")
    if frame_at is None and frame_rate is not None:
        rate = Fraction(frame_rate)

        def frame_at(seconds: Fraction) -> int:
            return math.floor(seconds * rate + Fraction(1, 2))
    film = _Film(frame_count, size[1], size[0], frame_at, shots.source if shots else None, shots)
    default_prompt = shots.prompt if shots is not None else None
    placed = _place_shots(shots, film) if shots is not None else []
    resolved = [
        ResolvedShot(-1, start, end, shot.prompt if shot.prompt is not None else default_prompt,
                     [_resolve_instance(inst, (i, j), start, end, film, segmenter_available)
                      for j, inst in enumerate(shot.instances)],
                     keyframes=_keyframes(shot, i, start, end, film), anchors=_anchors(shot, i, start, end, film))
        for i, shot, start, end in placed
    ]
    resolved += _fill_gaps([(s.start, s.end) for s in resolved], frame_count, detected_cuts, default_prompt)
    resolved.sort(key=lambda s: s.start)
    for index, shot in enumerate(resolved):
        shot.index = index
    return resolved


def _place_shots(shots: ShotsFile, film: _Film) -> list[tuple[int, Shot, int, int]]:
    """Each shot of the file with its inclusive frame range, checked for fit and overlap."""
    if film.frame_count == 1 and len(shots.shots) > 1:
        raise film.error(f"a photo takes one shot; this file has {len(shots.shots)}", ("shots", 1),
                         hint="keep a single entry under shots:")
    placed = [(i, shot, *_shot_range(shot, i, len(shots.shots), film)) for i, shot in enumerate(shots.shots)]
    _check_overlaps(placed, film)
    return placed


def _keyframes(shot: Shot, i: int, start: int, end: int, film: _Film) -> tuple[int, ...]:
    for k, frame in enumerate(shot.keyframes):
        if not start <= frame <= end:
            raise film.error(f"keyframe {frame} is outside the shot (frames {start} to {end})",
                             ("shots", i, "keyframes", k), hint=f"give keyframes between {start} and {end}")
    return tuple(sorted(set(shot.keyframes)))


def _anchors(shot: Shot, i: int, start: int, end: int, film: _Film) -> tuple[ResolvedAnchor, ...]:
    from restorer.models.colornames import parse_color

    out = []
    for k, anchor in enumerate(shot.anchors):
        frame = start if anchor.frame is None else anchor.frame
        if not start <= frame <= end:
            raise film.error(f"anchor {k + 1} is on frame {frame}, outside the shot (frames {start} to {end})",
                             ("shots", i, "anchors", k, "frame"), hint=f"give a frame between {start} and {end}")
        x, y = anchor.point
        if not (0 <= x < film.width and 0 <= y < film.height):
            raise film.error(f"anchor {k + 1} point [{x:g}, {y:g}] is outside the {film.width}x{film.height} picture",
                             ("shots", i, "anchors", k, "point"), hint="give [x, y] in pixels inside the picture")
        try:
            lab = parse_color(anchor.color).lab
        except InputError as err:
            raise film.error(f"anchor {k + 1}: {err.problem}", ("shots", i, "anchors", k, "color"),
                             hint=err.hint) from None
        out.append(ResolvedAnchor(float(x), float(y), (float(lab[1]), float(lab[2])), frame, anchor.color))
    return tuple(out)


def _shot_range(shot: Shot, i: int, count: int, film: _Film) -> tuple[int, int]:
    last = film.frame_count - 1
    if shot.frames is None and shot.time is None:
        if count > 1:
            raise film.error(f"shot {i} has no frames", ("shots", i),
                             hint="with several shots each needs frames: [first, last] or time: [start, end]")
        return 0, last
    if shot.frames is not None:
        start, end = shot.frames
        loc = ("shots", i, "frames")
    else:
        start, end = _time_range(shot, i, film)
        loc = ("shots", i, "time")
    if end > last:
        shown = f"frames [{start}, {end}]" if shot.frames is not None else f"time {list(shot.time or ())}"
        raise film.error(f"{shown} go past the end of the film (frames 0 to {last}, {film.frame_count} frames)",
                         loc, hint=f"end the shot at frame {last} or before")
    return start, end


def _time_range(shot: Shot, i: int, film: _Film) -> tuple[int, int]:
    assert shot.time is not None
    if film.frame_at is None:
        raise film.error("time: needs the film's frame rate, which is unknown", ("shots", i, "time"),
                         hint="use frames: [first, last] instead")
    start = film.frame_at(parse_time(shot.time[0]))
    end = film.frame_at(parse_time(shot.time[1])) - 1
    if end < start:
        raise film.error(f"time {list(shot.time)} is shorter than one frame", ("shots", i, "time"),
                         hint="make the shot at least one frame long")
    return start, end


def _check_overlaps(placed: list[tuple[int, Shot, int, int]], film: _Film) -> None:
    ordered = sorted(placed, key=lambda p: (p[2], p[0]))
    for first, second in itertools.pairwise(ordered):
        if second[2] > first[3]:
            continue
        earlier, later = sorted((first, second), key=lambda p: p[0])
        key = "frames" if later[1].frames is not None else "time"
        line = film.line_of("shots", earlier[0])
        raise film.error(
            f"shot {later[0]} (frames {later[2]} to {later[3]}) overlaps shot {earlier[0]} "
            f"(frames {earlier[2]} to {earlier[3]}" + (f", line {line})" if line else ")"),
            ("shots", later[0], key), hint="change the ranges so that no frame is in two shots")


def _resolve_instance(inst: Instance, at: tuple[int, int], start: int, end: int, film: _Film,
                      segmenter_available: bool) -> ResolvedInstance:
    i, j = at
    loc = ("shots", i, "instances", j)
    prompts = [_resolve_prompt(p, loc + ("prompts", k), start, end, film) for k, p in enumerate(inst.prompts)]
    has_region = any(p.box is not None or p.mask is not None for p in prompts)
    if not has_region and not segmenter_available:
        raise film.error(f"instance '{inst.name}' has only points", loc,
                         hint="points need --tracker sam2 with --sam2 DIR, or add a box/mask")
    return ResolvedInstance(inst.name, inst.text, prompts)


def _resolve_prompt(prompt: RegionPrompt, loc: tuple, start: int, end: int, film: _Film) -> ResolvedPrompt:
    frame = start if prompt.frame is None else prompt.frame
    if not start <= frame <= end:
        raise film.error(f"prompt frame {frame} is outside its shot (frames {start} to {end})", loc + ("frame",),
                         hint=f"pick a frame from {start} to {end}, or move the prompt to the shot holding it")
    if prompt.box is not None:
        _check_box(prompt.box, loc + ("box",), film)
    for key in ("points", "negative"):
        for n, point in enumerate(getattr(prompt, key) or []):
            _check_point(point, loc + (key, n), key, film)
    mask = _load_mask(prompt.mask, loc + ("mask",), film) if prompt.mask is not None else None
    return ResolvedPrompt(frame, prompt.box, mask, list(prompt.points or []), list(prompt.negative or []))


def _check_box(box: tuple[float, float, float, float], loc: tuple, film: _Film) -> None:
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0 or x1 > film.width or y1 > film.height:
        raise film.error(f"box {list(box)} reaches outside the picture ({film.width}x{film.height})", loc,
                         hint=f"keep 0 <= x0 < x1 <= {film.width} and 0 <= y0 < y1 <= {film.height}")


def _check_point(point: tuple[float, float], loc: tuple, key: str, film: _Film) -> None:
    x, y = point
    if not (0 <= x < film.width and 0 <= y < film.height):
        raise film.error(f"{key} point {list(point)} is outside the picture ({film.width}x{film.height})", loc,
                         hint=f"keep 0 <= x < {film.width} and 0 <= y < {film.height}")


def _load_mask(name: str, loc: tuple, film: _Film) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:  # checked again here: the file may have changed since load_shots, or never went through it
        mask_path = contained_path(shots_folder(film.shots), name, what="the shots file's folder")
    except UnsafePath as exc:
        if exc.missing:  # the name itself is fine
            raise film.error(f"mask {name} {exc.problem}", loc, hint="mask paths are relative to the shots file; "
                             f"check the name, or {MASK_FIX}") from None
        raise film.error(f"mask {name!r} {exc.problem}", loc, hint=MASK_FIX) from None
    try:
        with Image.open(mask_path) as img:
            mask = _mask_array(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise film.error(f"mask {name} cannot be read: {exc}", loc, hint="save it as a PNG") from None
    if mask.shape != (film.height, film.width):
        raise film.error(f"mask {name} is {mask.shape[1]}x{mask.shape[0]}, expected {film.width}x{film.height}",
                         loc, hint=f"save the mask at the picture's size, {film.width}x{film.height}")
    if not mask.any():
        raise film.error(f"mask {name} is empty (all zero)", loc, hint="paint the object nonzero (white)")
    return mask


def _mask_array(img: Any) -> np.ndarray:
    """Nonzero is inside; with an alpha channel, the alpha decides."""
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        return np.asarray(img.getchannel("A")) > 0
    arr = np.asarray(img)
    return (arr != 0).any(axis=2) if arr.ndim == 3 else arr != 0


def _fill_gaps(taken: list[tuple[int, int]], frame_count: int, cuts: list[int] | None,
               prompt: str | None) -> list[ResolvedShot]:
    """Detected shots for the frames outside ``taken``, split at ``cuts``."""
    bounds = sorted({c for c in (cuts or []) if 0 < c < frame_count})
    shots: list[ResolvedShot] = []
    cursor = 0
    for start, end in sorted(taken) + [(frame_count, frame_count)]:
        if start > cursor:
            edges = [cursor] + [c for c in bounds if cursor < c < start] + [start]
            shots += [ResolvedShot(-1, a, b - 1, prompt, [], detected=True) for a, b in itertools.pairwise(edges)]
        cursor = max(cursor, end + 1)
    return shots
