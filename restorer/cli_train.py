"""Click commands for training: ``dataset build``, ``train``, ``eval``.

They only parse and validate, then call the library (:mod:`restorer.training.dataset.build`,
:mod:`restorer.training` through its trainer registry, :mod:`restorer.pipelines.evaluate`). The main group registers
them with ``main.add_command(...)``; ``python -m restorer.cli_train`` runs them standalone.
Errors are :class:`restorer.errors.RestorerError` and reach the main group's handler.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from restorer.training.registry import STAGES

log = logging.getLogger(__name__)


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


@click.group("dataset")
def dataset() -> None:
    """Build training datasets (instance masks + "object + colour" texts)."""


@dataset.command("build")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to write (resumes if it exists).")
@click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0.0, 0.9),
              help="Share of photos held out as the development split (settings are chosen on it; by file-name "
                   "hash, series and near-duplicates kept on one side).")
@click.option("--test-fraction", default=0.1, show_default=True, type=click.FloatRange(0.0, 0.9),
              help="Share held out as the test split (scored once per shipped model; 0: none).")
@click.option("--size", default=256, show_default=True, type=click.IntRange(32, 4096),
              help="Long side of the stored images and masks.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same dataset.")
@click.option("--threads", default=1, show_default=True, type=int, help="torch CPU threads.")
@click.option("--contact-sheet", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw images, masks and texts into this PNG.")
@click.option("--sam2", type=click.Path(path_type=Path), default=None,
              help="Local SAM2 folder: instance masks from its automatic mask generator, the pixels it "
                   "leaves uncovered from the colour segmentation (default: colour segmentation alone).")
def dataset_build(images: tuple[Path, ...], out: Path, val_fraction: float, test_fraction: float, size: int, seed: int,
                  threads: int,
                  contact_sheet: Path | None, sam2: Path | None) -> None:
    """Build a dataset from the colour photos in the IMAGES folders (one or more; each record notes its folder).

    Each photo gets 3-12 instance masks (fewer for a simple photo) from a colour segmentation,
    or from SAM2's automatic masks with --sam2, and an "object + colour" text per instance.
    Resumes an interrupted build in OUT; resuming with another mask source is refused.
    """
    from restorer.training.dataset.build import build_dataset
    from restorer.training.dataset.records import dataset_contact_sheet

    _threads(threads)
    if val_fraction + test_fraction > 0.9:
        from restorer.errors import InputError

        raise InputError(f"--val-fraction {val_fraction} and --test-fraction {test_fraction} leave too little "
                         "to train on", hint="keep their sum at 0.9 or below")
    manifest = build_dataset(images[0] if len(images) == 1 else list(images), out, val_fraction=val_fraction,
                             test_fraction=test_fraction, size=size,
                             seed=seed, sam2=sam2)
    if contact_sheet:
        dataset_contact_sheet(out, contact_sheet)
    click.echo(json.dumps({k: manifest[k] for k in ("count", "train", "val", "test", "inputs_sha256")}))


@click.command("train")
@click.option("--preset", default="tiny", show_default=True, help="Preset name or YAML path.")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Dataset folder from 'restorer dataset build'.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (stageN/ checkpoints, final/, log.csv, loss.png; cache/).")
@click.option("--stage", default=None, type=click.Choice(STAGES),
              help="tiny: 0 base, 1 instance module, 2 ControlNet + PMAM, prior the automatic colour prior "
                   "(required). anchors: one stage, none to give.")
@click.option("--steps", required=True, type=click.IntRange(1), help="Optimizer steps of this stage.")
@click.option("--resume", is_flag=True, help="Continue from the stage's latest checkpoint, exactly.")
@click.option("--init", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Start from these weights instead of out/stage{N-1}/final.")
@click.option("--batch", default=None, type=click.IntRange(1), help="Batch size [8; prior: 16].")
@click.option("--lr", default=None, type=float, help="AdamW learning rate [1e-3; anchors: 5e-4].")
@click.option("--warmup", default=None, type=click.IntRange(1), help="Warm-up steps [100; prior: 20].")
@click.option("--views", default=None, type=click.IntRange(1),
              help="Augmented views per photo in the frozen-feature cache [6; prior: 10].")
@click.option("--checkpoint-every", default=250, show_default=True, type=click.IntRange(1),
              help="Steps between checkpoints (a killed run resumes from the last one).")
@click.option("--rebalance", default=0.5, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Prior and anchors: class rebalancing lambda (Zhang et al.; 1 = none).")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same training run.")
@click.option("--backbone", default="efficientnet-lite0", show_default=True,
              type=click.Choice(["efficientnet-lite0", "efficientnet-lite2"]),
              help="Prior only: the frozen features the colour prior reads.")
@click.option("--context", default=0, show_default=True, type=click.IntRange(0, 8),
              help="Prior only: dilated residual blocks that let each cell see the picture around it.")
@click.option("--global-context/--no-global-context", default=False, show_default=True,
              help="Prior only: add the scene's mean feature to every cell.")
@click.option("--dropout", default=0.3, show_default=True, type=click.FloatRange(0.0, 0.9),
              help="Prior only: dropout on the features the colour prior reads.")
@click.option("--jitter", default=0.0, show_default=True, type=click.FloatRange(0.0, 0.5),
              help="Prior only: exposure and contrast jitter of the gray input (+-share; colours are untouched).")
@click.option("--threads", default=1, show_default=True, type=int, help="torch CPU threads.")
@click.option("--export", "export", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Afterwards, copy the final weights here (tiny: in float16), as the package ships them.")
def train(preset: str, data: Path, out: Path, stage: str, steps: int, resume: bool, init: Path | None,
          batch: int | None, lr: float, warmup: int | None, views: int | None, checkpoint_every: int,
          rebalance: float, seed: int, backbone: str, context: int, global_context: bool, dropout: float,
          jitter: float,
          threads: int, export: Path | None) -> None:
    """Train a preset's model on a dataset: one stage of MT-Color (tiny), or the anchors (DISCO) network."""
    from restorer.training.registry import TrainRequest, stage_of, trainer_for

    _threads(threads)
    trainer = trainer_for(preset)
    chosen = stage_of(trainer, stage, preset)
    trainer.check(preset)  # refuse a preset this trainer cannot train, before any cache is built
    summary = chosen.run(TrainRequest(
        preset=preset, data=data, out=out, stage=stage, steps=steps, resume=resume, init=init, batch=batch, lr=lr,
        warmup=warmup, views=views, checkpoint_every=checkpoint_every, rebalance=rebalance, seed=seed,
        backbone=backbone, context=context, global_context=global_context, dropout=dropout, jitter=jitter))
    if export is not None:
        summary["exported"] = str(chosen.export(Path(summary["final"]), export))
    click.echo(json.dumps(summary))


@click.command("eval")
@click.argument("pred", type=click.Path(exists=True, path_type=Path), required=False)
@click.argument("gt", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON here (default: stdout).")
@click.option("--split", "split_data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Instead of PRED GT: colorize this dataset's validation split with the "
                                 "preset and measure everything, binding and leakage included.")
@click.option("--subset", type=click.Choice(["dev", "test"]), default="dev", show_default=True,
              help="With --split: the development split (choose settings here) or the test split (score each "
                   "shipped model once, and record the look in its RECIPE.md).")
@click.option("--preset", default="tiny", show_default=True, help="Preset name or YAML path to evaluate.")
@click.option("--weights", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Weights folder to evaluate (default: the preset's own).")
@click.option("--save", "save_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --split: keep the outputs, a contact sheet (gray | ours | truth) and a binding "
                   "sheet (own texts | one text changed) here.")
@click.option("--per-image", default=3, show_default=True, type=click.IntRange(0),
              help="With --split: instances per photo given a counter colour (binding, leakage).")
@click.option("--hard", is_flag=True,
              help="With --split: also the hard binding evaluation (unseen colour words, free phrasings, one object "
                   "at a time on an automatic photo, leakage in the border band).")
@click.option("--threads", default=1, show_default=True, type=int, help="torch CPU threads.")
def evaluate(pred: Path | None, gt: Path | None, out: Path | None, split_data: Path | None, subset: str, preset: str,
             weights: Path | None, save_dir: Path | None, per_image: int, hard: bool, threads: int) -> None:
    """Compare PRED with GT (folders of images, or films) and write metrics as JSON."""
    from restorer.errors import InputError
    from restorer.pipelines import evaluate as ev

    _threads(threads)
    if split_data is not None:
        if subset == "test":
            log.warning("scoring the test split: record this look in the model's RECIPE.md, and choose nothing on it")
        result = ev.evaluate_split(split_data, preset=preset, weights=weights, save=save_dir, per_image=per_image,
                                   split="val" if subset == "dev" else "test")
        result.pop("raw")
        if hard:
            result["hard"] = ev.evaluate_hard(split_data, preset=preset, weights=weights, save=save_dir,
                                              split="val" if subset == "dev" else "test")
            result["hard"].pop("raw")
        if save_dir is not None:
            ev.contact_sheet(save_dir, save_dir / "contact_sheet.png")
            if per_image:
                ev.binding_sheet(save_dir, save_dir / "binding_sheet.png")
    elif pred is None or gt is None:
        raise InputError("give PRED and GT, or --split DATASET")
    else:
        result = ev.evaluate_paths(pred, gt)
    text = json.dumps(result, indent=1, sort_keys=True)
    if out:
        out.write_text(text + "\n")
    click.echo(text)


COMMANDS = (dataset, train, evaluate)


@click.group()
def _standalone() -> None:
    """Training commands (the main 'restorer' group registers the same commands)."""


for _cmd in COMMANDS:
    _standalone.add_command(_cmd)

if __name__ == "__main__":
    from restorer.console import setup_logging

    setup_logging()
    _standalone()
