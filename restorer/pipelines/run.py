"""`restorer colorize`: sort the inputs into films and photos, open the engine once, run, report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from restorer.console import Stopwatch, progress
from restorer.devices import resolve_device
from restorer.errors import InputError
from restorer.fs import write_json_atomic
from restorer.jobs import require_file
from restorer.pipelines.options import ColorizeOptions
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


def preflight(kind: str, inputs: list[Path], output: Path, opts: ColorizeOptions, preset) -> Path | None:
    """Every refusal that needs no model, before any model loads or heavy library imports.

    A wrong path, an existing output, an empty file or a broken shots file is refused in about a
    second instead of after the weights have loaded. Returns the film's shots file, if it has one.
    """
    from restorer.presets import preflight as engine_preflight

    engine_preflight(preset, weights=opts.weights, base=opts.base, runtime=opts.runtime)  # the engine's own checks
    if opts.sam2 is not None:
        from restorer.models.tracking.sam2 import check_sam2_folder

        check_sam2_folder(opts.sam2)
    if kind == "photo":
        from restorer.pipelines.photo import preflight as photo_preflight

        photo_preflight(inputs, output, opts)
        return None
    from restorer.io.mux import check_container
    from restorer.io.probe import probe
    from restorer.jobs import check_output, require_file
    from restorer.shots.load import load_shots
    from restorer.shots.paths import find_sidecar

    film = inputs[0]
    if opts.variants > 1:
        raise InputError(f"--variants {opts.variants} is for photos, not films", path=film,
                         hint="colour the film once per --seed instead, or leave --variants out")
    check_output(output, [film], overwrite=opts.overwrite)
    probe(film)
    check_container(output, film)
    notes = opts.shots or find_sidecar(film)
    if notes is None:
        log.info("%s: no shots file (--shots, or %s.shots.yaml beside it): automatic colour everywhere",
                 film.name, film.stem)
        return None
    require_file(notes, "shots file")
    load_shots(notes)
    log.info("notes: %s%s", notes, "" if opts.shots else " (beside the film)")
    return notes


def open_run_engine(preset, opts: ColorizeOptions):
    """The run's engine, opened once (``colorize`` and ``watch``): torch's threads, the device, the dtype.

    Returns (engine, device)."""
    from restorer.presets import open_engine

    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    # A CPU-only engine needs no device probe: `auto` would import torch (seconds) for nothing.
    device = "cpu" if opts.device == "auto" and preset.runs_on == "cpu" else resolve_device(opts.device)
    engine = open_engine(preset, device=device, weights=opts.weights, base=opts.base, overrides=opts.overrides,
                         dtype=opts.dtype, runtime=opts.runtime, threads=opts.threads)
    return engine, device


def colorize_run(inputs: list[Path], output: Path, opts: ColorizeOptions) -> dict[str, Any]:
    from restorer.pipelines.backends import make_backend
    from restorer.presets import DEFAULT_PRESET, load_preset

    backend = make_backend(opts)  # `--backend ray` without Ray installed: refused before anything else
    kind = classify(inputs)
    preset = load_preset(opts.preset or DEFAULT_PRESET)
    opts.preset = preset.name
    opts.preset_config = preset.model_dump()
    notes = preflight(kind, inputs, output, opts, preset)
    clock = Stopwatch()
    try:
        engine, device = backend.open(preset, opts)
    except BaseException:
        backend.close()
        raise
    remote = None if backend.name == "local" else backend
    try:
        with progress(enabled=not opts.quiet) as bar:
            if kind == "video":
                from restorer.pipelines.tracking import tracker_factory

                if remote is None:
                    tracks = tracker_factory(opts, device)
                else:  # the workers open their own tracker; here only its settings are checked
                    from restorer.models.tracking.refine import check_mode

                    check_mode(opts.box_refine)
                    tracks = None
                pipe = VideoColorizationPipeline(engine, opts, tracks, backend=remote)
                r = pipe(inputs[0], output, bar)
                report = {"frames": r.frames, "frames_processed": r.frames_processed,
                          "frames_reused": r.frames_reused, "shots": r.shots,
                          "damaged": r.damaged, "warnings": r.warnings,
                          "shots_file": str(notes) if notes else None,
                          "temporal": opts.temporal, "keyframes": {str(k): v for k, v in r.keyframes.items()},
                          "propagated_share": round(r.propagated_share, 4)}
                if r.damaged:
                    msg = f"{inputs[0]}: damaged; colorized what decodes: {damage_summary(r.damaged)} " \
                          "(--report lists every range)"
                    log.warning(msg)
                    report["warnings"].append(msg)
            else:
                r = PhotoColorizationPipeline(engine, opts, backend=remote)(inputs, output, bar)
                report = {"frames": len(r.outputs), "frames_processed": r.frames_processed,
                          "frames_reused": r.frames_reused, "shots": len(r.outputs), "warnings": r.warnings,
                          "outputs": [str(p) for p in r.outputs], "sheets": [str(p) for p in r.sheets]}
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
        backend.close()
    report.update({"input": [str(p) for p in inputs], "output": str(output), "preset": preset.name,
                   "device": device, "backend": backend.name, "seconds": clock.seconds})
    if opts.report:
        write_json_atomic(opts.report, report)
    if not opts.quiet:
        log.info("wrote %s (%d frame%s in %.1f s)", output, report["frames"], "" if report["frames"] == 1 else "s",
                 report["seconds"])
    return report
