"""`restorer colorize`: sort the inputs into films and photos, open the engine once, run, report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from restorer.console import Stopwatch, progress
from restorer.errors import InputError
from restorer.jobs import require_file, write_json_atomic
from restorer.pipelines.options import ColorizeOptions, resolve_device
from restorer.pipelines.photo import PhotoColorizationPipeline, is_image
from restorer.pipelines.video import VideoColorizationPipeline, damage_summary, is_video

log = logging.getLogger(__name__)


def classify(inputs: list[Path]) -> str:
    """'video' for one film, 'photo' for images and folders; anything else is an input error."""
    for p in inputs:
        require_file(p)
    films = [p for p in inputs if p.is_file() and is_video(p)]
    if films:
        if len(inputs) > 1:
            raise InputError("a film must be colorized on its own", path=films[0],
                             hint="run `restorer colorize` once per film")
        return "video"
    for p in inputs:
        if p.is_file() and not is_image(p):
            raise InputError(f"unsupported file type {p.suffix or '(none)'}", path=p,
                             hint="give a film (.mp4, .mkv, .mov, .avi, ...), an image "
                                  "(.png, .jpg, .tif, .webp) or a folder of images")
    return "photo"


def colorize_run(inputs: list[Path], output: Path, opts: ColorizeOptions) -> dict[str, Any]:
    from restorer.presets import DEFAULT_PRESET, load_preset, open_engine

    kind = classify(inputs)
    preset = load_preset(opts.preset or DEFAULT_PRESET)
    opts.preset = preset.name
    opts.preset_config = preset.model_dump()
    # A CPU-only engine needs no device probe: `auto` would import torch (seconds) for nothing.
    device = "cpu" if opts.device == "auto" and preset.runs_on == "cpu" else resolve_device(opts.device)
    clock = Stopwatch()
    engine = open_engine(preset, device=device, weights=opts.weights, base=opts.base, overrides=opts.overrides)
    try:
        with progress(enabled=not opts.quiet) as bar:
            if kind == "video":
                from restorer.pipelines.tracking import tracker_factory

                pipe = VideoColorizationPipeline(engine, opts, tracker_factory(opts, device))
                r = pipe(inputs[0], output, bar)
                report = {"frames": r.frames, "frames_processed": r.frames_processed,
                          "frames_reused": r.frames_reused, "shots": r.shots,
                          "damaged": r.damaged, "warnings": r.warnings}
                if r.damaged:
                    msg = f"{inputs[0]}: damaged; colorized what decodes: {damage_summary(r.damaged)} " \
                          "(--report lists every range)"
                    log.warning(msg)
                    report["warnings"].append(msg)
            else:
                r = PhotoColorizationPipeline(engine, opts)(inputs, output, bar)
                report = {"frames": len(r.outputs), "frames_processed": r.frames_processed,
                          "frames_reused": r.frames_reused, "shots": len(r.outputs), "warnings": r.warnings,
                          "outputs": [str(p) for p in r.outputs]}
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    report.update({"input": [str(p) for p in inputs], "output": str(output), "preset": preset.name,
                   "device": device, "seconds": clock.seconds})
    if opts.report:
        write_json_atomic(opts.report, report)
    if not opts.quiet:
        log.info("wrote %s (%d frame%s in %.1f s)", output, report["frames"], "" if report["frames"] == 1 else "s",
                 report["seconds"])
    return report
