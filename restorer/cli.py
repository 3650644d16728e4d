"""The `restorer` command. It parses and validates, then calls the library.

Exit codes: 0 done, 1 failed while running, 2 bad usage or bad input. Errors print
one line; ``RESTORER_DEBUG=1`` prints the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from restorer import __version__
from restorer.io.codecs import CODECS  # the codec table: --codec's choices
from restorer.models.mtcolor.paths import RUNTIMES  # --runtime's choices
from restorer.models.tracking.tracker import TRACKERS

DEBUG = os.environ.get("RESTORER_DEBUG", "") not in ("", "0")
# Weights are only ever read from local paths: make the Hugging Face libraries refuse the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
TRACKER_CHOICES = list(TRACKERS)  # the tracker registry (restorer/models/tracking/tracker.py)
DTYPES = ("auto", "float32", "float16", "bfloat16")


def _fail(message: str, code: int) -> None:
    click.echo(f"restorer: error: {message}", err=True)
    sys.exit(code)


class RestorerGroup(click.Group):
    """Turns known errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        from restorer.errors import RestorerError

        try:
            return super().invoke(ctx)
        except RestorerError as exc:
            if DEBUG:
                raise
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume", 130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except OSError as exc:
            if DEBUG:
                raise
            where = exc.filename or "a file"
            _fail(f"{where}: {exc.strerror or exc} — check the path, its permissions and free disk space", 1)
        except MemoryError:
            _fail("out of memory; try a smaller --chunk-frames or a lighter preset", 1)
        except Exception as exc:  # noqa: BLE001 - the top-level handler of a CLI
            if DEBUG:
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (run with RESTORER_DEBUG=1 for the traceback)", 1)


def _quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """``--quiet`` given to the group or to the command: logging to warnings and errors, and the command sees it."""
    if value and not ctx.meta.get("restorer.quiet"):
        from restorer.console import setup_logging

        ctx.meta["restorer.quiet"] = True  # meta is shared by the group's context and its commands'
        setup_logging(quiet=True, debug=DEBUG)
    return bool(ctx.meta.get("restorer.quiet"))


# --quiet, one definition: `restorer -q CMD` and `restorer colorize ... -q` mean the same
quiet_option = click.option("--quiet", "-q", is_flag=True, callback=_quiet,
                            help="Warnings and errors only, no progress bars.")


@click.group(cls=RestorerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="restorer")
@quiet_option
def main(quiet: bool) -> None:
    """Colorize black-and-white films and photo archives."""
    if not quiet:
        from restorer.console import setup_logging

        setup_logging(quiet=False, debug=DEBUG)


def engine_options(command):
    """The options that choose and run the model, the same for every command that colorizes."""
    for option in reversed([
        click.option("--preset", default=None,
                     help="Preset name (see `restorer presets`; default: tiny) or path to a preset YAML."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where the model runs (auto: CUDA if there is a GPU)."),
        click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
                     help="Model precision (auto: float16 on CUDA, float32 on the CPU)."),
        click.option("--threads", type=click.IntRange(1, 1024), default=None,
                     help="CPU threads for the model (default: torch's choice, usually one per core)."),
        click.option("--runtime", type=click.Choice(list(RUNTIMES)), default="torch", show_default=True,
                     help='What runs the model: torch, or ONNX Runtime (tiny and anchors; pip install '
                          '"restorer[onnx]"; exported once into a cache, or --weights a folder from '
                          "`restorer export onnx`)."),
        click.option("--seed", type=int, default=None,
                     help="Same seed, same colours (default 0). The anchors preset without it gives each anchor "
                          "its expected colour (the annealed mean); with it, colours drawn from the model's "
                          "distributions."),
        click.option("--weights", type=click.Path(path_type=Path), default=None, envvar="RESTORER_WEIGHTS",
                     help="Folder with restorer's own weights [env RESTORER_WEIGHTS]."),
        click.option("--base", type=click.Path(path_type=Path), default=None, envvar="RESTORER_SD15",
                     help="Local Stable Diffusion 1.5 (diffusers folder or .safetensors) [env RESTORER_SD15]."),
    ]):
        command = option(command)
    return command


def backend_options(command):
    """Where the work runs: this process, or a Ray cluster's actor pool."""
    for option in reversed([
        click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Colour in this process (local), or over a Ray cluster's workers (ray; needs "
                          "pip install \"restorer[ray]\"). The output is the same."),
        click.option("--ray-address", default=None, metavar="ADDR",
                     help="With --backend ray: join this cluster (HEAD:6379); default: start a local one with "
                          "this machine's CPUs for the run."),
        click.option("--ray-gpus-per-worker", type=click.FloatRange(0, min_open=True), default=None,
                     metavar="G", help="With --backend ray: G GPUs per worker (one worker per G GPUs); default: "
                                       "one worker per CPU."),
    ]):
        command = option(command)
    return command


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output film, image, or folder (for several inputs or a folder input).")
@click.option("--shots", type=click.Path(path_type=Path), help="shots.yaml with per-shot prompts and instances.")
@engine_options
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--codec", type=click.Choice(CODECS), default="h264", show_default=True,
              help="Film codec (ffv1: lossless archival master; prores: for editing).")
@click.option("--bit-depth", type=click.Choice(["8", "10"]), default=None, help="Output bit depth (default: source).")
@click.option("--report", type=click.Path(path_type=Path), help="Write a JSON report here.")
@click.option("--strict", is_flag=True, help="Treat a damaged input as an error (exit 2, no output).")
@quiet_option
@click.option("--tracker", type=click.Choice(TRACKER_CHOICES), default=None,
              help="How instances follow their objects (default: sam2 with --sam2, else flow).")
@click.option("--sam2", type=click.Path(path_type=Path), default=None, help="Local SAM2 folder.")
@click.option("--box-refine", type=click.Choice(["grabcut", "off"]), default="grabcut", show_default=True,
              help="A box prompt becomes the object inside it (GrabCut on the luma; SAM2 with --sam2), or stays "
                   "a rectangle (off).")
@click.option("--save-masks", type=click.Path(path_type=Path), default=None,
              help="Write each instance's mask here as PNGs (a film: one per frame; a photo: one per instance).")
@click.option("--temporal", type=click.Choice(["propagate", "off"]), default="propagate", show_default=True,
              help="Films: colour keyframes with the model and carry their colour through the shot by optical flow "
                   "(propagate), or colour every frame on its own (off).")
@click.option("--keyframe-interval", type=click.IntRange(1, 100000), default=24, show_default=True,
              help="Films: never more than this many frames of a shot without a keyframe.")
@click.option("--chunk-frames", type=click.IntRange(8, 100000), default=240, show_default=True,
              help="Longest segment; a killed run loses at most this much work.")
@click.option("--variants", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Photos: N pictures each (photo_v1 .. photo_vN, seeds SEED .. SEED+N-1) and a contact sheet "
                   "photo_variants.png; -o names a folder or the first file's base name.")
@click.option("--steps", type=click.IntRange(1, 1000), default=None, help="Diffusion steps.")
@click.option("--guidance", type=float, default=None, help="Classifier-free guidance scale.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=None, help="Share of steps per instance.")
@click.option("--beta", type=click.FloatRange(0, 1), default=None, help="Background weight in the fusion.")
@click.option("--fusion", type=click.Choice(["literal", "convex", "vp"]), default=None,
              help="Latent fusion form (Eq. 8).")
@backend_options
def colorize(inputs, output, shots, preset, device, dtype, threads, runtime, seed, overwrite, codec, bit_depth, report,
             strict, quiet, weights, base, tracker, sam2, box_refine, save_masks, temporal, keyframe_interval,
             chunk_frames, variants, steps, guidance, alpha, beta, fusion, backend, ray_address, ray_gpus_per_worker):
    """Colorize INPUTS (a film, images, or folders of images) into OUTPUT."""
    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.run import colorize_run

    overrides = {k: v for k, v in dict(steps=steps, guidance=guidance, alpha=alpha, beta=beta,
                                       fusion=fusion).items() if v is not None}
    opts = ColorizeOptions(preset=preset or "", device=device, dtype=dtype, threads=threads, runtime=runtime,
                           seed=0 if seed is None else seed, sample=seed is not None, variants=variants,
                           overwrite=overwrite, codec=codec,
                           bit_depth=int(bit_depth) if bit_depth else None, strict=strict, quiet=quiet,
                           shots=shots, report=report, weights=weights, base=base, tracker=tracker, sam2=sam2,
                           box_refine=box_refine, save_masks=save_masks, temporal=temporal,
                           keyframe_interval=keyframe_interval, chunk_frames=chunk_frames, overrides=overrides,
                           backend=backend, ray_address=ray_address, ray_gpus_per_worker=ray_gpus_per_worker)
    colorize_run(list(inputs), output, opts)


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output folder; each photo keeps its path relative to FOLDER.")
@engine_options
@click.option("--overwrite", is_flag=True, help="Redo photos whose output exists.")
@click.option("--settle", type=click.FloatRange(0, 3600), default=2.0, show_default=True,
              help="Seconds a new file's size must stay unchanged before it is read.")
@click.option("--once", is_flag=True, help="Colorize what is there now and exit.")
@backend_options
def watch(folder, output, preset, device, dtype, threads, runtime, seed, weights, base, overwrite, settle, once,
          backend, ray_address, ray_gpus_per_worker):
    """Colorize the photos in FOLDER into OUTPUT, then each new one as it arrives.

    A photo is read once its size has stayed the same for --settle seconds; its sidecar
    (x.shots.yaml beside x.jpg) is used if present. Ctrl-C stops; the next run goes on.
    """
    from restorer.jobs import require_file
    from restorer.pipelines.backends import make_backend
    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.photo import PhotoColorizationPipeline
    from restorer.pipelines.watch import watch_folder
    from restorer.presets import DEFAULT_PRESET, load_preset

    opts = ColorizeOptions(preset=preset or DEFAULT_PRESET, device=device, dtype=dtype, threads=threads,
                           runtime=runtime, seed=0 if seed is None else seed, sample=seed is not None,
                           weights=weights, base=base, overwrite=overwrite,
                           backend=backend, ray_address=ray_address, ray_gpus_per_worker=ray_gpus_per_worker)
    runner = make_backend(opts)  # `--backend ray` without Ray: refused before any model loads
    chosen = load_preset(opts.preset)
    require_file(folder, "watched folder")
    try:
        engine, _ = runner.open(chosen, opts)  # open_engine refuses missing weights before they load
        pipeline = PhotoColorizationPipeline(engine, opts, backend=None if runner.name == "local" else runner)
        n = watch_folder(folder, output, pipeline, settle=settle, once=once)
    except KeyboardInterrupt:
        click.echo("stopped; run the same command again to go on", err=True)
        return
    finally:
        runner.close()
    click.echo(f"colorized {n} photo(s) into {output}")


@main.group()
def shots() -> None:
    """Create and check shots.yaml files."""


@shots.command("init")
@click.argument("film", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="The shots.yaml to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def shots_init(film, output, overwrite):
    """Detect the shots of FILM and write an editable shots.yaml template."""
    from restorer.shots.detect import init_template
    from restorer.shots.resolve import probe_film

    n = init_template(film, output, overwrite=overwrite)
    info = probe_film(film)
    click.echo(f"wrote {output} with {n} shot(s) of {film.name} ({info.frame_count} frames, "
               f"{info.width}x{info.height} pixels: boxes are x0, y0, x1, y1 in these pixels); "
               "add instances and prompts, then `restorer shots check`")


@shots.command("check")
@click.argument("film", type=click.Path(path_type=Path))
@click.argument("shots_yaml", type=click.Path(path_type=Path))
@click.option("--preset", default=None, help="Check the texts for this preset (stencil needs colour names).")
@click.option("--tracker", type=click.Choice(TRACKER_CHOICES), default=None,
              help="The tracker colorize will use (points-only instances need sam2).")
@click.option("--sam2", type=click.Path(path_type=Path), default=None,
              help="Local SAM2 folder (points-only instances need it).")
def shots_check(film, shots_yaml, preset, tracker, sam2):
    """Check SHOTS_YAML against FILM: syntax, ranges, regions, colour names."""
    from restorer.presets import DEFAULT_PRESET, load_preset, open_engine
    from restorer.shots.resolve import check_shots, has_segmenter

    chosen = load_preset(preset or DEFAULT_PRESET)
    engine = open_engine(chosen) if chosen.engine == "stencil" else None  # diffusion engines read free text
    resolved = check_shots(film, shots_yaml, engine=engine,
                           segmenter_available=has_segmenter(tracker, sam2))
    for s in resolved:
        names = ", ".join(f"{i.name} ({i.text})" for i in s.instances) or "no instances"
        kind = "detected" if s.detected else "from file"
        click.echo(f"shot {s.index + 1}: frames {s.start}-{s.end} [{kind}] {names}")
    click.echo(f"{shots_yaml}: ok")


@shots.command("preview")
@click.argument("film", type=click.Path(path_type=Path))
@click.option("--shots", "shots_yaml", type=click.Path(path_type=Path), default=None,
              help="shots.yaml (default: the film's sidecar).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Folder for the PNGs.")
@click.option("--every", type=click.IntRange(1, 100000), default=24, show_default=True,
              help="Draw every Nth frame of each shot (and every prompted frame).")
@click.option("--tracker", type=click.Choice(TRACKER_CHOICES), default=None,
              help="How instances follow their objects (default: sam2 with --sam2, else flow).")
@click.option("--sam2", type=click.Path(path_type=Path), default=None, help="Local SAM2 folder.")
@click.option("--overwrite", is_flag=True, help="Replace existing PNGs.")
def shots_preview_cmd(film, shots_yaml, output, every, tracker, sam2, overwrite):
    """Draw each instance's tracked outline over FILM's frames, as PNGs and a contact sheet."""
    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.preview import shots_preview

    opts = ColorizeOptions(shots=shots_yaml, tracker=tracker, sam2=sam2, overwrite=overwrite)
    sheet = shots_preview(film, output, opts, every=every)
    click.echo(f"wrote {sheet}")


@shots.command("schema")
def shots_schema_cmd():
    """Print the JSON schema of shots.yaml (for editors)."""
    from restorer.shots.schema import shots_schema

    click.echo(json.dumps(shots_schema(), indent=2))


@main.command()
def presets():
    """List the shipped presets and what each needs (* marks the default)."""
    from restorer.presets import DEFAULT_PRESET, load_preset, shipped

    for name in shipped():
        p = load_preset(name)
        label = f"{p.name}*" if p.name == DEFAULT_PRESET else p.name
        click.echo(f"{label:10s} {p.engine:8s} runs on {p.runs_on:8s} needs: {p.needs}")
        click.echo(f"{'':10s} {p.description}")


@main.command()
@click.argument("query", required=False)
def colors(query):
    """List the colour names that instance texts may use (optionally filtered)."""
    from restorer.models.colornames import all_names

    names = [n for n in all_names() if not query or query.lower() in n]
    if not names:
        from restorer.errors import InputError

        raise InputError(f"no colour name contains {query!r}",
                         hint="try a shorter word (`restorer colors red`), or `restorer colors` for all names")
    click.echo("\n".join(names))


def _register_training_commands() -> None:
    from restorer.cli_train import dataset, evaluate, train

    main.add_command(dataset)
    main.add_command(train)
    main.add_command(evaluate)
    from restorer.cli_export import export

    main.add_command(export)


_register_training_commands()

if __name__ == "__main__":
    main()
