"""The shots.yaml schema: pydantic models of a shots file, its timecodes, its JSON schema.

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
  inside the shots file's folder (:func:`restorer.shots.paths.contained_path`).
  :func:`restorer.shots.load.load_shots` refuses anything else before anything reads,
  hashes or fingerprints the path.
- Where instances overlap, the later one in the file is on top.
- A photo ``x.jpg`` picks up ``x.shots.yaml`` beside it (:func:`restorer.shots.paths.find_sidecar`).

:func:`restorer.shots.load.load_shots` checks syntax and schema; :func:`restorer.shots.resolve.resolve`
checks the file against a film and returns shots that cover every frame exactly once. Both raise
:class:`~restorer.errors.ShotsError` pointing at ``file:line``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

SHOTS_VERSION = 1

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
        return line_for(self._lines, tuple(loc))


MODEL_AT: dict[str | None, type[BaseModel]] = {
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


def line_for(lines: dict[tuple, int], loc: tuple) -> int | None:
    """The line of ``loc``, or of the nearest part above it that has one."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None
