"""Read a shots.yaml: YAML syntax, the version, the schema, names and mask paths, each error at ``file:line``.

The YAML is composed once to record the line of every key and list item, so pydantic's errors (and
:mod:`restorer.shots.resolve`'s) point at the line to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from restorer.errors import ShotsError
from restorer.shots.paths import MASK_FIX, UnsafePath, contained_path, shots_folder
from restorer.shots.schema import MODEL_AT, SHOTS_VERSION, ShotsFile, line_for


def load_shots(path: str | Path) -> ShotsFile:
    """Read and validate a shots file (syntax and schema; :mod:`restorer.shots.resolve` checks the film).

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
    """Every ``mask:`` stays inside the shots file's folder; a missing one is reported when resolving."""
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
    line = line_for(lines, loc)
    where = _human_loc(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        key = loc[-1]
        allowed = ", ".join(MODEL_AT[_parent_field(loc[:-1])].model_fields)
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
