"""Feature caches: the frozen inputs of a training run, computed once and reused.

Every trainer's cache lives in ``ROOT/KEY/`` (:func:`stored`), where KEY hashes the dataset's training
records (names, source files' SHA-256, instances, texts: :func:`cache_key`) and the settings that shape the
cache, so another dataset, a rebuilt one or other settings get their own cache and never an old one.

Tiny's cache (:func:`prepare_cache`): ``views`` augmented views per training photo (:mod:`.augment`),
each stored as gray and a*b* at the grid, EfficientNet-Lite0 features at 1/32 (8x8 for the 256² view,
upsampled at train time exactly as at inference) and labels at 64²; the MiniLM embeddings of every
"a COLOUR OBJECT" text any instance can take and of every global text. Only training photos enter it.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from restorer.errors import InputError
from restorer.training import augment


def cache_key(records: list[dict], **settings: Any) -> str:
    """What a cache depends on: the training records and the settings given (JSON values)."""
    blob = json.dumps({"records": records, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def training_records(data: Path) -> list[dict]:
    """The dataset's training records.

    Raises:
        InputError: the dataset has none.
    """
    from restorer.training.dataset.records import read_dataset

    records = read_dataset(data, "train")
    if not records:
        raise InputError("the dataset has no training photos", path=data)
    return records


def stored(folder: Path, name: str, build: Callable[[], tuple[dict[str, torch.Tensor], dict]]) -> dict[str, Any]:
    """``folder/NAME.safetensors`` and its ``NAME.json`` (as ``"meta"``) when there, else ``build()``'s
    (tensors, meta), written (the tensors atomically, last) and returned."""
    from safetensors.torch import load_file, save_file

    from restorer.fs import atomic_path

    folder = Path(folder)
    if (folder / f"{name}.safetensors").exists():
        return {**load_file(folder / f"{name}.safetensors"), "meta": json.loads((folder / f"{name}.json").read_text())}
    tensors, meta = build()
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    with atomic_path(folder / f"{name}.safetensors") as tmp:
        save_file(tensors, tmp)
    return {**tensors, "meta": meta}


@contextmanager
def cache_progress(show: bool, what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar for building a feature cache (minutes on a CPU): yields the ``progress(done, total)``
    callback the cache builders take, or None when ``show`` is off."""
    from restorer.console import progress

    with progress(show) as bar:
        if bar is None:
            yield None
            return
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def prepare_cache(data: Path, cache: Path, *, views: int = 8, seed: int = 0, features: bool = True,
                  text_encoder: Any = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Tiny's frozen inputs (the module docstring), in ``cache/KEY``; returns the cache.

    ``text_encoder`` (tests) replaces MiniLM: anything with ``pooled(list[str]) -> (n, 384)``.
    """
    records = training_records(data)
    key = cache_key(records, views=views, seed=seed, features=features, grid=augment.GRID, view=augment.VIEW,
                    what="tiny-v1")
    return stored(Path(cache) / key, "cache",
                  lambda: _build(data, records, views, seed, features, text_encoder, progress))


def _build(data: Path, records: list[dict], views: int, seed: int, features: bool, text_encoder: Any,
           progress: Callable[[int, int], None] | None) -> tuple[dict[str, torch.Tensor], dict]:
    from restorer.models.colornames import TRAINED_COLOURS
    from restorer.training.dataset.records import load_record
    from restorer.training.dataset.texts import instance_text

    feats = _feature_net() if features else None
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("gray", "ab", "labels", "feat", "record")}
    for i, rec in enumerate(records):
        rgb, labels = load_record(data, rec)
        for crop, luma, lab in augment.augmented_views(rgb, labels, rng, views):
            augment.add_view(out, crop, luma, i)
            out["labels"].append(lab)
            if feats is not None:
                out["feat"].append(_raw_features(feats, luma)[0].half())
        if progress:
            progress(i + 1, len(records))
    objects = sorted({inst["object"] for r in records for inst in r["instances"]})
    texts = [instance_text(o, c) for o in objects for c in TRAINED_COLOURS]
    enc = text_encoder or _minilm()
    tensors = {k: torch.stack(v) for k, v in out.items() if v}
    tensors["text_emb"] = enc.pooled(texts).float().view(len(objects), len(TRAINED_COLOURS), -1)
    tensors["global_emb"] = enc.pooled([r["global"] for r in records] + [""]).float()
    tensors["inst_obj"], tensors["inst_col"] = _instance_tables(records, objects)
    meta = {"records": [r["name"] for r in records], "objects": objects, "views": views, "seed": seed,
            "features": features}
    return tensors, meta


def _instance_tables(records: list[dict], objects: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_records, MAX_INSTANCES) object and palette-colour indices of each instance (-1: none)."""
    from restorer.models.colornames import TRAINED_COLOURS

    obj = torch.full((len(records), augment.MAX_INSTANCES), -1, dtype=torch.long)
    col = torch.full((len(records), augment.MAX_INSTANCES), -1, dtype=torch.long)
    for i, r in enumerate(records):
        for inst in r["instances"][:augment.MAX_INSTANCES]:
            obj[i, inst["id"]] = objects.index(inst["object"])
            col[i, inst["id"]] = TRAINED_COLOURS.index(inst["color"])
    return obj, col


def held_out(names: list[str], share: float) -> torch.Tensor:
    """Which records are held out for early stopping: a stable share by a hash of the name."""
    return torch.tensor([int(hashlib.sha256(n.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share
                         for n in names])


def split_held_out(cached: dict, share: float, data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit, held-out) view indices of a cache: the views of a stable share of the photos (:func:`held_out`) are
    held out for early stopping (the trainers with early stopping: the prior, anchors).

    Raises:
        InputError: too few photos to hold some out and keep some to fit.
    """
    hold = held_out(cached["meta"]["records"], share)[cached["record"].long()]
    if hold.all() or not hold.any():
        raise InputError("too few training photos to hold some out for early stopping", path=data,
                         hint=f"use a dataset with more training photos ({share:.0%} of them, by name, are held out)")
    return (~hold).nonzero().flatten(), hold.nonzero().flatten()


def _feature_net():
    from restorer.models.mtcolor.features import EfficientNetFeatures

    return EfficientNetFeatures(input_size=augment.VIEW)


@torch.no_grad()
def _raw_features(feats, luma: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 at 1/32 of the 256² view, before the resize to the grid."""
    x = (luma.expand(-1, 3, -1, -1) - feats.mean) / feats.std
    return feats.net.extract_features(x)


def _minilm():
    from restorer.models.mtcolor.text import MiniLMText

    return MiniLMText("cpu")
