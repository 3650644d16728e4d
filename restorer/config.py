"""Validated configuration files: shots.yaml.

A *shots file* says, per shot of a film (or for the single "shot" of a photo), what
the shot shows and how some objects in it should look::

    version: 1
    prompt: "a street in the 1950s, daylight"     # optional default for every shot
    shots:
      - frames: [0, 47]                             # inclusive; or time: ["00:00:00.000", "00:00:02.000"]
        prompt: "a street at noon"                  # optional, overrides the default
        instances:
          - name: car
            text: "a red car"
            prompts:                                # one or more, each on a frame of this shot
              - frame: 24
                box: [100, 80, 180, 160]            # or mask: masks/car.png, or points: [[x, y]]

Rules a reader needs:

- ``frames: [a, b]`` are frame indices, both included. ``time: [start, end]`` gives
  the moment the shot starts and the moment the next one starts (what the template's
  comments show), as ``"HH:MM:SS.mmm"``, ``"MM:SS.mmm"`` or a number of seconds.
- ``frames``/``time`` may be left out for a photo and for a film's only shot.
- Frames that no shot covers are filled with detected shots that take the default
  prompt and no instances.
- A prompt region is ``box: [x0, y0, x1, y1]`` in pixels (``x1``/``y1`` excluded),
  ``mask:`` a PNG beside the yaml file (nonzero, or alpha where there is an alpha
  channel, is inside; same size as the picture), or ``points: [[x, y], ...]`` with
  optional ``negative:`` points. Points alone need a segmenter (SAM2).
- A shots file is untrusted input (sidecars arrive in drop folders from other people):
  a ``mask:`` path must be relative and resolve, symlinks followed, to a regular file
  inside the shots file's folder (:func:`contained_path`). :func:`load_shots` refuses
  anything else before anything reads, hashes or fingerprints the path.
- Where instances overlap, the later one in the file is on top.
- A photo ``x.jpg`` picks up ``x.shots.yaml`` beside it (:func:`find_sidecar`).

:func:`load_shots` checks syntax and schema; :func:`resolve_shots` checks the file
against a film and returns shots that cover every frame exactly once. Both raise
:class:`~restorer.errors.ShotsError` pointing at ``file:line``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from restorer.errors import ShotsError

logger = logging.getLogger(__name__)

SHOTS_VERSION = 1

# --------------------------------------------------------------------------- schema

_TIMECODE_RE = r"^(?:(\d+):)?([0-5]?\d):([0-5]?\d(?:\.\d+)?)$"

FrameIndex = Annotated[StrictInt, Field(ge=0)]
Coord = Annotated[float, Field(strict=True)]
Point = tuple[Coord, Coord]
TimeValue = Annotated[
    Annotated[float, Field(strict=True, ge=0)] | Annotated[str, StringConstraints(pattern=_TIMECODE_RE)],
    Field(union_mode="left_to_right"),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegionPrompt(_Strict):
    """Where an instance is on one frame: a box, a mask PNG, or points (+ negative points)."""

    frame: FrameIndex | None = Field(None, description="Frame index in the film; default: the shot's first frame.")
    box: tuple[Coord, Coord, Coord, Coord] | None = Field(None, description="[x0, y0, x1, y1] in pixels.")
    mask: str | None = Field(None, description="PNG path relative to the yaml file; nonzero is inside.")
    points: list[Point] | None = Field(None, min_length=1, description="[[x, y], ...] inside the object.")
    negative: list[Point] | None = Field(None, min_length=1, description="[[x, y], ...] outside the object.")

    @field_validator("box")
    @classmethod
    def _box_has_area(cls, box: tuple[float, float, float, float] | None) -> Any:
        if box is not None and (box[2] <= box[0] or box[3] <= box[1]):
            raise ValueError(f"box {list(box)} has zero area; write [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
        return box

    @model_validator(mode="after")
    def _one_region(self) -> RegionPrompt:
        if self.box is None and self.mask is None and self.points is None:
            raise ValueError("a prompt needs a region: box: [x0, y0, x1, y1], mask: file.png or points: [[x, y]]")
        if self.box is not None and self.mask is not None:
            raise ValueError("a prompt takes box or mask, not both; keep one")
        return self


class Instance(_Strict):
    """One object of a shot, its colour text and where it is."""

    name: Annotated[str, StringConstraints(min_length=1)] = Field(description="Short name, for messages.")
    text: Annotated[str, StringConstraints(min_length=1)] = Field(description='What it looks like: "a red car".')
    prompts: list[RegionPrompt] = Field(min_length=1, description="One or more regions, each on a frame of the shot.")


class Anchor(_Strict):
    """A colour anchor set by hand (the anchors preset): the colour of the picture around a point."""

    point: Point = Field(description="[x, y] in pixels on the frame.")
    color: Annotated[str, StringConstraints(min_length=1)] = Field(
        description='A colour name (`restorer colors`) or "#2f4f2f".')
    frame: FrameIndex | None = Field(None, description="Films: the frame the point is set on; default: the "
                                                       "shot's first. The point is tracked through the shot.")


class Shot(_Strict):
    """A run of frames with its own prompt and instances."""

    frames: tuple[FrameIndex, FrameIndex] | None = Field(None, description="[first, last], both included.")
    time: tuple[TimeValue, TimeValue] | None = Field(
        None, description='[start, end]: "HH:MM:SS.mmm" or seconds; end is when the next shot starts.')
    prompt: str | None = None
    instances: list[Instance] = Field(default_factory=list,
                                      description="Later instances are on top where they overlap.")
    keyframes: list[FrameIndex] = Field(default_factory=list,
                                        description="Frames of this shot the engine must colour itself "
                                                    "(film frame numbers); the rest are carried from keyframes.")
    anchors: list[Anchor] = Field(default_factory=list,
                                  description="The anchors preset: colours set by hand at points; each replaces "
                                              "the colour of the anchor there, and spreads by the picture's affinity. "
                                              "Inside an instance's mask the instance's text wins.")

    @field_validator("frames")
    @classmethod
    def _frames_in_order(cls, frames: tuple[int, int] | None) -> Any:
        if frames is not None and frames[1] < frames[0]:
            raise ValueError(f"frames {list(frames)} are reversed; write [{frames[1]}, {frames[0]}]")
        return frames

    @field_validator("time")
    @classmethod
    def _time_in_order(cls, time: tuple[float | str, float | str] | None) -> Any:
        if time is not None and parse_time(time[1]) <= parse_time(time[0]):
            raise ValueError(f"time {list(time)} ends before it starts; the end must come after the start")
        return time

    @model_validator(mode="after")
    def _frames_or_time(self) -> Shot:
        if self.frames is not None and self.time is not None:
            raise ValueError("a shot takes frames or time, not both; keep one")
        return self


class ShotsFile(_Strict):
    """A whole shots.yaml: a version, an optional default prompt and the shots."""

    model_config = ConfigDict(extra="forbid", title="restorer shots file")

    version: Literal[1] = Field(description="Format version; this restorer reads 1.")
    prompt: str | None = Field(None, description="Default prompt of every shot without its own.")
    shots: list[Shot] = Field(default_factory=list)

    _source: Path | None = PrivateAttr(None)
    _lines: dict[tuple, int] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> Path | None:
        """The file it was loaded from, if any."""
        return self._source

    def line_of(self, *loc: str | int) -> int | None:
        """The line of the deepest known part of ``loc`` (e.g. ``("shots", 0, "frames")``)."""
        return _line_for(self._lines, tuple(loc))


_MODEL_AT: dict[str | None, type[BaseModel]] = {
    None: ShotsFile, "shots": Shot, "instances": Instance, "prompts": RegionPrompt}


def shots_schema() -> dict[str, Any]:
    """The JSON schema of a shots file, for editors (``restorer shots schema``)."""
    schema = ShotsFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = "Per-shot prompts and instance regions for restorer (shots.yaml)."
    return schema


def parse_time(value: float | str) -> Fraction:
    """Seconds from a timecode ``"HH:MM:SS.mmm"`` / ``"MM:SS.mmm"`` or a number of seconds."""
    if isinstance(value, (int, float)):
        return Fraction(str(value))
    match = re.match(_TIMECODE_RE, value)
    if match is None:
        raise ValueError(f"not a timecode: {value!r}")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + Fraction(seconds)


def format_time(seconds: Fraction | float) -> str:
    """``HH:MM:SS.mmm``, rounded to the millisecond."""
    ms = math.floor(Fraction(seconds) * 1000 + Fraction(1, 2))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    return f"{hours:02d}:{minutes:02d}:{ms // 1000:02d}.{ms % 1000:03d}"


def find_sidecar(image_path: str | Path) -> Path | None:
    """The shots file beside a photo: ``x.shots.yaml`` (or ``.yml``) for ``x.jpg``, if present."""
    image_path = Path(image_path)
    for suffix in (".shots.yaml", ".shots.yml"):
        candidate = image_path.with_name(image_path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------- paths inside files

class UnsafePath(ValueError):
    """A path named inside a file that does not stay inside that file's folder (or is not there).

    ``problem`` reads after the quoted name: "mask '../x.png' <problem>". ``missing`` is True when the
    path is fine but nothing is there yet.
    """

    def __init__(self, problem: str, *, missing: bool = False):
        super().__init__(problem)
        self.problem = problem
        self.missing = missing


def contained_path(folder: str | Path, name: Any, *, kind: Literal["file", "dir"] = "file",
                   what: str = "the file's folder", must_exist: bool = True) -> Path:
    """``name`` (from an untrusted file) as a real path inside ``folder``, or :class:`UnsafePath`.

    The rule for every path a shots file, a preset YAML or a dataset record holds: a non-empty
    relative path that resolves, every symlink followed, to something inside ``folder`` (itself
    resolved); a regular file for ``kind="file"`` (never a folder, device or FIFO), a folder for
    ``kind="dir"``. Nothing is opened or read, only ``stat``-ed. With ``must_exist=False`` a path
    with nothing behind it passes (the caller reports it later, when it needs the file); a dangling
    symlink is judged by where it points.

    Returns:
        The resolved path, with no symlinks left in it: read that one, not ``folder / name``.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnsafePath("is not a path (write a file name)")
    if "\x00" in name:
        raise UnsafePath("holds a NUL character")
    if Path(name).is_absolute():
        raise UnsafePath(f"is an absolute path; it must be relative to {what}")
    root = Path(folder).resolve()
    try:
        target = (root / name).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise UnsafePath("cannot be resolved (a symlink loop?)") from None
    if target != root and not target.is_relative_to(root):
        named_outside = not Path(os.path.normpath(root / name)).is_relative_to(root)  # or only a symlink leads out
        raise UnsafePath(f"is outside {what}" if named_outside else f"is a symlink that leads outside {what}")
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        if must_exist:
            raise UnsafePath(f"not found in {what} (looked for {target})", missing=True) from None
        return target
    except OSError as exc:
        raise UnsafePath(f"cannot be checked: {exc.strerror or exc}") from None
    if kind == "file" and stat.S_ISDIR(mode):
        raise UnsafePath("is a folder, not a file")
    if kind == "file" and not stat.S_ISREG(mode):
        raise UnsafePath("is not a regular file")
    if kind == "dir" and not stat.S_ISDIR(mode):
        raise UnsafePath("is not a folder")
    return target


def shots_folder(shots: ShotsFile | None) -> Path:
    """The folder a shots file's ``mask:`` paths are relative to (the current one for no file)."""
    return shots.source.parent if shots is not None and shots.source is not None else Path.cwd()


MASK_FIX = "copy the mask beside the shots file and name it relatively (e.g. mask: masks/car.png)"


# --------------------------------------------------------------------------- loading

def load_shots(path: str | Path) -> ShotsFile:
    """Read and validate a shots file (syntax and schema; the film is checked by :func:`resolve_shots`).

    Raises:
        ShotsError: one line naming ``file:line``, the problem and the fix.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ShotsError("shots file not found", path=path, hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ShotsError(f"cannot read shots file: {exc}", path=path, hint="save it as UTF-8 text") from None
    data, lines = _parse_yaml(text, path)
    _check_version(data, lines, path)
    try:
        shots = ShotsFile.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(exc, data, lines, path) from None
    shots._source = path
    shots._lines = lines
    _check_names(shots)
    _check_mask_paths(shots)
    return shots


def _check_mask_paths(shots: ShotsFile) -> None:
    """Every ``mask:`` stays inside the shots file's folder; a missing one is reported by :func:`resolve_shots`."""
    folder = shots_folder(shots)
    for i, shot in enumerate(shots.shots):
        for j, inst in enumerate(shot.instances):
            for k, prompt in enumerate(inst.prompts):
                if prompt.mask is None:
                    continue
                try:
                    contained_path(folder, prompt.mask, what="the shots file's folder", must_exist=False)
                except UnsafePath as exc:
                    raise ShotsError(f"mask {prompt.mask!r} {exc.problem}", path=shots.source,
                                     line=shots.line_of("shots", i, "instances", j, "prompts", k, "mask"),
                                     hint=MASK_FIX) from None


def _check_names(shots: ShotsFile) -> None:
    for i, shot in enumerate(shots.shots):
        seen: dict[str, int] = {}
        for j, inst in enumerate(shot.instances):
            if inst.name in seen:
                raise ShotsError(f"shot {i} has two instances named '{inst.name}' (the other on line "
                                 f"{shots.line_of('shots', i, 'instances', seen[inst.name], 'name')})",
                                 path=shots.source, line=shots.line_of("shots", i, "instances", j, "name"),
                                 hint="give each instance of a shot its own name")
            seen[inst.name] = j


def _parse_yaml(text: str, path: Path) -> tuple[Any, dict[tuple, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "<stream end>" in (exc.problem or ""):
            mark = exc.context_mark  # an unclosed bracket or quote: point where it opened
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ShotsError(f"YAML syntax error: {problem}", path=path, line=line,
                         hint="check indentation, colons and quotes on this line or the one before") from None
    except yaml.YAMLError as exc:
        raise ShotsError(f"YAML syntax error: {exc}", path=path, hint="check the file is YAML") from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _record_lines(node, (), lines, path, set())
    return data, lines


def _record_lines(node: yaml.Node, loc: tuple, lines: dict[tuple, int], path: Path, active: set[int]) -> None:
    """Map the location of every mapping key and sequence item to its 1-based line."""
    lines.setdefault(loc, node.start_mark.line + 1)
    if id(node) in active:  # a recursive alias; its parts are already recorded
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = _key_of(key_node)
            if loc + (key,) in lines:
                raise ShotsError(f"key '{key}' appears twice (first on line {lines[loc + (key,)]})",
                                 path=path, line=key_node.start_mark.line + 1, hint="keep only one")
            lines[loc + (key,)] = key_node.start_mark.line + 1
            _record_lines(value_node, loc + (key,), lines, path, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[loc + (i,)] = item.start_mark.line + 1
            _record_lines(item, loc + (i,), lines, path, active)
    active.discard(id(node))


def _key_of(key_node: yaml.Node) -> str:
    # Keys are names here; a non-scalar key is reported by the schema as unknown.
    return key_node.value if isinstance(key_node, yaml.ScalarNode) else f"<{key_node.tag}>"


def _line_for(lines: dict[tuple, int], loc: tuple) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _check_version(data: Any, lines: dict[tuple, int], path: Path) -> None:
    if data is None:
        raise ShotsError("the shots file is empty", path=path, line=1,
                         hint=f"start it with `version: {SHOTS_VERSION}` and a `shots:` list")
    if not isinstance(data, dict):
        raise ShotsError("the top level must be a mapping", path=path, line=1,
                         hint=f"start it with `version: {SHOTS_VERSION}` and a `shots:` list")
    if "version" not in data:
        raise ShotsError("version missing", path=path, line=1,
                         hint=f"add `version: {SHOTS_VERSION}` as the first line")
    if data["version"] != SHOTS_VERSION or isinstance(data["version"], bool):
        raise ShotsError(f"version {data['version']!r} is not supported", path=path,
                         line=lines.get(("version",)),
                         hint=f"this restorer reads `version: {SHOTS_VERSION}`; write that or upgrade restorer")


# --------------------------------------------------------------------------- schema errors

_FIELD_HINTS = {
    "frames": "write frames: [first, last] with whole frame numbers, e.g. frames: [0, 47]",
    "time": 'write time: ["00:00:01.000", "00:00:02.500"] (HH:MM:SS.mmm) or seconds, e.g. time: [1, 2.5]',
    "frame": "write frame: N, a whole frame number inside the shot",
    "box": "write box: [x0, y0, x1, y1] in pixels, e.g. box: [100, 80, 180, 160]",
    "points": "write points: [[x, y], ...] in pixels, e.g. points: [[120, 90]]",
    "negative": "write negative: [[x, y], ...] in pixels",
    "mask": "write mask: masks/name.png, a path relative to this file",
    "prompt": 'write prompt: "some text", or leave the key out',
    "text": 'write text: "a red car", a non-empty description',
    "name": "write name: car, a short non-empty name",
    "instances": "write instances: as a list of {name, text, prompts}, or instances: []",
    "prompts": "give prompts: a list with at least one {frame, box | mask | points}",
    "shots": "write shots: as a list of {frames, prompt, instances}",
}


def _schema_error(exc: ValidationError, data: Any, lines: dict[tuple, int], path: Path) -> ShotsError:
    err = _pick_error(exc.errors())
    loc = _data_loc(err["loc"], data)
    line = _line_for(lines, loc)
    where = _human_loc(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        key = loc[-1]
        allowed = ", ".join(_MODEL_AT[_parent_field(loc[:-1])].model_fields)
        return ShotsError(f"unknown key '{key}'" + (f" in {_human_loc(loc[:-1])}" if loc[:-1] else ""),
                          path=path, line=line, hint=f"allowed keys here: {allowed}")
    if kind == "missing" and isinstance(err["loc"][-1], int):  # a short tuple
        return ShotsError(f"{where}: too few items (got {_short(_value_at(data, loc))})", path=path, line=line,
                          hint=_FIELD_HINTS.get(_last_field(loc)))
    if kind == "missing":
        key = err["loc"][-1]
        return ShotsError(f"missing required key '{key}'" + (f" in {where}" if where else ""),
                          path=path, line=line, hint=_FIELD_HINTS.get(str(key), f"add `{key}:`"))
    message = err["msg"].removeprefix("Value error, ")
    hint = None if kind == "value_error" else _FIELD_HINTS.get(_last_field(loc))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "expected a mapping of keys (key: value)"
    shown = f"{where}: {message}" if where else message
    if kind != "value_error" and "input" in err:
        shown += f" (got {_short(err['input'])})"
    return ShotsError(shown, path=path, line=line, hint=hint)


def _pick_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The most useful of pydantic's errors: an unknown or missing key before type noise."""
    for kind in ("extra_forbidden", "missing", "value_error"):
        for err in errors:
            if err["type"] == kind:
                return err
    return errors[0]


def _data_loc(loc: tuple, data: Any) -> tuple:
    """The part of pydantic's ``loc`` that names real places in the data (drops union tags)."""
    out: list[Any] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, (list, tuple)) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_dict or in_list):
            break
        node = node[part]
        out.append(part)
    return tuple(out)


def _value_at(data: Any, loc: tuple) -> Any:
    for part in loc:
        data = data[part]
    return data


def _parent_field(loc: tuple) -> str | None:
    names = [p for p in loc if isinstance(p, str)]
    return names[-1] if names else None


def _last_field(loc: tuple) -> str:
    return _parent_field(loc) or ""


def _human_loc(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- resolving

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


FrameAt = Callable[[Fraction], int]


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
        size: (width, height) of the picture in pixels.
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
    film = _Film(frame_count, size[0], size[1], frame_at, shots.source if shots else None, shots)
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
    from restorer.errors import InputError
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
