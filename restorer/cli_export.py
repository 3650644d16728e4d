"""``restorer export onnx``: write a preset's ONNX graphs into a folder that ``--runtime onnx --weights DIR`` runs.

It parses and checks (no model loads before the refusals), then calls the engine's ``export_from_weights``
(:mod:`restorer.models.mtcolor.onnx_export` for tiny, :mod:`restorer.models.anchors.onnx_runtime`). Errors are
:class:`restorer.errors.RestorerError` and reach the main group's handler.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("export")
def export() -> None:
    """Export a preset's models for another runtime."""


@export.command("onnx")
@click.option("--preset", default="tiny", show_default=True, help="The preset to export (tiny or anchors).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option("--weights", type=click.Path(path_type=Path), default=None, envvar="RESTORER_WEIGHTS",
              help="Weights folder to export (default: the preset's shipped ones) [env RESTORER_WEIGHTS].")
@click.option("--overwrite", is_flag=True, help="Replace an existing folder.")
def export_onnx(preset: str, output: Path, weights: Path | None, overwrite: bool) -> None:
    """Export a preset's models to ONNX: tiny's features, colour prior and U-Net (+ ControlNet + instance branch);
    anchors' two halves of a frame."""
    from restorer.errors import OutputError
    from restorer.fs import refuse_existing
    from restorer.presets import load_preset, preflight

    chosen = load_preset(preset)
    refuse_existing(output, overwrite=overwrite)
    if output.exists() and not output.is_dir():
        raise OutputError("output is a file, not a folder", path=output, hint="choose a folder")
    from restorer.models.mtcolor.paths import is_exported, require_onnxruntime

    if output.is_dir() and any(output.iterdir()) and not is_exported(output):
        raise OutputError("output is a folder that is not an ONNX export; --overwrite replaces exports only",
                          path=output, hint="choose a new or empty folder")

    if is_exported(weights):
        raise OutputError("--weights is already an ONNX export", path=weights, hint="give the torch weights folder")
    preflight(chosen, weights=weights, runtime="onnx")  # tiny or anchors, the packages, the weights folder
    require_onnxruntime(export=True)
    if chosen.engine == "anchors":
        from restorer.models.anchors.onnx_runtime import export_from_weights as export_anchors
        from restorer.models.anchors.paths import weights_folder

        folder = export_anchors(weights_folder(weights), output)
    else:
        from restorer.models.mtcolor.loading import resolve
        from restorer.models.mtcolor.onnx_export import export_from_weights

        folder = export_from_weights(resolve(weights, "RESTORER_WEIGHTS"), dict(chosen.options), output)
    click.echo(f"wrote {folder} (run it with `restorer colorize --preset {preset} --runtime onnx --weights {folder}`)")
