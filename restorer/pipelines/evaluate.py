"""``restorer eval``: the metrics of :mod:`restorer.metrics` run over files, films and dataset splits.

:func:`evaluate_paths` compares predictions with ground truth on disk; :func:`evaluate_split` colorizes a
dataset split (automatic, gray baseline, and instance texts for binding and leakage) and
:func:`evaluate_hard` gives instances unseen colour words in free phrasings. Photos are colorized by
:func:`colorize`, the photo pipeline's own core. The contact and binding sheets draw a ``save`` folder.
Binding asks for vivid names at least 90° of hue away from the instance's true colour.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from restorer.errors import InputError
from restorer.metrics import (
    border_band,
    bound,
    delta_ab,
    film_metrics,
    image_metrics,
    leakage,
    mean_ab,
    outside,
    summarize,
    versus_gray,
)

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}


def read_film(path: Path) -> list[np.ndarray]:
    import av

    try:
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24").astype(np.float64) for f in container.decode(video=0)]
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"cannot decode film ({exc})", path=path) from exc


def read_rgb255(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def evaluate_paths(pred: Path, gt: Path) -> dict[str, Any]:
    """PRED and GT: two films, two images, or two folders of images matched by file stem."""
    pred, gt = Path(pred), Path(gt)
    if pred.suffix.lower() in VIDEO_SUFFIXES:
        from restorer.shots.detect import detect_cuts

        return film_metrics(read_film(pred), read_film(gt), tuple(detect_cuts(gt)))
    if pred.is_file():
        return summarize([image_metrics(read_rgb255(pred), read_rgb255(gt))])
    from restorer.training.dataset.build import IMAGE_SUFFIXES

    truth = {p.stem: p for p in gt.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = [(p, truth[p.stem]) for p in sorted(pred.iterdir())
             if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in truth]
    if not pairs:
        raise InputError("no prediction has a ground truth of the same name", path=pred,
                         hint="name each prediction like its ground-truth file (any image suffix)")
    return summarize([image_metrics(read_rgb255(p), read_rgb255(g)) for p, g in pairs])


def counter_color(true_lab: list[float] | np.ndarray) -> str:
    """The requested colour for an instance: among the vivid names at least 90° of hue away from its
    true colour (any, for a near-gray truth), the one closest in L* (its luma is kept)."""
    from restorer.models.colornames import COUNTER_COLORS, palette_lab

    pal = palette_lab()
    return far_colour(true_lab, {c: pal[c] for c in COUNTER_COLORS})


def far_colour(true_lab, candidates: dict[str, np.ndarray]) -> str:
    """Among ``candidates`` (name -> CIELab) those at least 90° of hue from the truth (all, for a
    near-gray truth), the one closest in L*; ties by name."""
    from restorer.io.color import hue_difference_deg, lab_chroma, lab_hue_deg

    lab = np.asarray(true_lab, np.float64)
    far = [c for c, v in candidates.items()
           if lab_chroma(lab[1:]) < 10 or hue_difference_deg(lab_hue_deg(lab[1:]), lab_hue_deg(v[1:])) >= 90]
    return min(far, key=lambda c: (abs(candidates[c][0] - lab[0]), c))


def evaluate_split(data: Path, *, preset: str = "tiny", weights: Path | None = None, save: Path | None = None,
                   split: str = "val", per_image: int = 3, min_area: float = 0.03, seed: int = 0,
                   limit: int | None = None, shard: tuple[int, int] = (0, 1),
                   overrides: dict[str, Any] | None = None, base: Path | None = None) -> dict[str, Any]:
    """Colorize a dataset split with a preset and measure it (the measures: :mod:`restorer.metrics`).

    Automatic colorization has no texts and no masks; the instance runs give every instance
    its own text ("a gray area"), then change one instance at a time (the ``per_image``
    largest covering at least ``min_area``) to its counter colour. ``shard`` (k, n) takes
    every n-th photo from the k-th, for parallel processes; :func:`merge_results` joins them.
    """
    from restorer.pipelines.options import shot_seed
    from restorer.presets import load_preset, open_engine
    from restorer.training.dataset.records import read_dataset

    records = read_dataset(data, split)[:limit][shard[0]::shard[1]]
    if not records:
        raise InputError(f"the dataset has no '{split}' photos", path=data)
    chosen = load_preset(preset)
    # the engine and the seed exactly as `restorer colorize` opens them for a photo (a one-frame shot at 0)
    engine = open_engine(chosen, device="cpu", weights=weights, base=base, overrides=overrides or {})
    raw = {"automatic": [], "gray": [], "binding": [], "leakage": [], "images": []}
    try:
        for rec in records:
            _one_record(engine, data, rec, raw, save, per_image, min_area, shot_seed(seed, 0))
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    result = merge_results([{"raw": raw}])
    result.update({"split": split, "preset": chosen.name, "engine": engine.name,
                   "weights": str(weights) if weights else "default",
                   "overrides": overrides or {}, "shard": list(shard), "raw": raw})
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        (save / f"per_image_{shard[0]}.json").write_text(json.dumps(raw["images"], indent=1) + "\n")
        (save / "dataset.json").write_text(json.dumps({"root": str(Path(data).resolve())}) + "\n")
    return result


# Colour words no training text holds (training uses PALETTE and COUNTER_COLORS), vivid (chroma > 45).
HARD_COLORS = ("crimson", "scarlet", "mustard", "amber", "emerald", "turquoise", "cobalt", "magenta", "lime",
               "fuchsia")
# Phrasings no training text has (training says "a {colour} {object}").
HARD_PHRASINGS = ("the {obj} should be bright {color}", "make the {obj} {color}", "{color} {obj}",
                  "a {obj} painted {color}")


def hard_color(true_lab) -> str:
    """A colour word from :data:`HARD_COLORS` at least 90° of hue from the truth (any for a near-gray
    truth), the closest in L*; ties by name."""
    from restorer.models.colornames import parse_color

    return far_colour(true_lab, {c: np.asarray(parse_color(c).lab, np.float64) for c in HARD_COLORS})


def evaluate_hard(data: Path, *, preset: str = "tiny", weights: Path | None = None, split: str = "val",
                  objects: int = 2, min_area: float = 0.03, max_area: float = 0.4, seed: int = 0,
                  limit: int | None = None, shard: tuple[int, int] = (0, 1), save: Path | None = None,
                  overrides: dict[str, Any] | None = None, base: Path | None = None) -> dict[str, Any]:
    """Instance texts measured the hard way, as a user gives them.

    Per photo, up to ``objects`` regions covering ``min_area``..``max_area`` of it (objects, not the
    background) each get a text on an otherwise automatic photo, one at a time: a colour word no
    training text holds (:data:`HARD_COLORS`, >= 90° of hue from the truth), in a phrasing no training
    text has (:data:`HARD_PHRASINGS`, in turn). Binding as in :func:`bound`; leakage against the
    automatic output of the same photo, in the border band just outside the mask
    (:func:`border_band`, where colour bleeds) and beyond the 5 % margin (:func:`outside`).
    """
    from restorer.io.color import rgb_to_luma, srgb_to_lab
    from restorer.models.colornames import parse_color
    from restorer.pipelines.options import shot_seed
    from restorer.presets import load_preset, open_engine
    from restorer.training.dataset.records import load_record, read_dataset

    records = read_dataset(data, split)[:limit][shard[0]::shard[1]]
    if not records:
        raise InputError(f"the dataset has no '{split}' photos", path=data)
    chosen = load_preset(preset)
    engine = open_engine(chosen, device="cpu", weights=weights, base=base, overrides=overrides or {})
    raw: dict[str, list] = {"hard_binding": [], "band_leakage": [], "far_leakage": [], "hard": []}
    k = 0
    try:
        for rec in records:
            rgb, labels = load_record(data, rec)
            luma = rgb_to_luma(rgb)
            auto = colorize(engine, luma, [], np.zeros((0, *luma.shape), bool), shot_seed(seed, 0))
            picked = object_regions(rec, min_area, max_area)[:objects]
            for inst in picked:
                text, color = hard_request(inst, k)
                k += 1
                m = labels == inst["id"]
                out = colorize(engine, luma, [text], m[None], shot_seed(seed, 0))
                ok = bound(out, m, tuple(parse_color(color).lab))
                band, far = delta_ab(auto, out, border_band(m)), delta_ab(auto, out, outside(m))
                raw["hard_binding"].append(ok)
                raw["band_leakage"].append(band)
                raw["far_leakage"].append(far)
                ab = srgb_to_lab(np.asarray(out, np.float64)[m] / 255)[:, 1:].mean(0)
                raw["hard"].append({"name": rec["name"], "id": inst["id"], "text": text, "bound": ok,
                                    "band_leakage": round(band, 3), "far_leakage": round(far, 3),
                                    "mean_ab": [round(float(v), 2) for v in ab]})
                if save is not None:
                    _save(save / "hard" / f"{rec['name']}__{inst['id']}_{color}.png", out)
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    result = merge_hard([{"raw": raw}])
    result.update({"split": split, "preset": chosen.name, "engine": engine.name, "shard": list(shard), "raw": raw})
    return result


def hard_request(inst: dict[str, Any], k: int) -> tuple[str, str]:
    """The ``k``-th hard request, for instance record ``inst``: its text and the colour it names."""
    color = hard_color(inst["lab"])
    obj = inst["object"] if inst["object"] != "area" else "thing"
    return HARD_PHRASINGS[k % len(HARD_PHRASINGS)].format(obj=obj, color=color), color


def object_regions(rec: dict[str, Any], min_area: float = 0.03, max_area: float = 0.4) -> list[dict[str, Any]]:
    """A record's instances that may stand for objects (covering ``min_area``..``max_area`` of the
    photo, not the background), largest first."""
    return sorted((i for i in rec["instances"] if min_area <= i["area"] <= max_area), key=lambda i: -i["area"])


def merge_hard(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of one or more :func:`evaluate_hard` results."""
    raw = {key: [x for p in parts for x in p["raw"][key]]
           for key in ("hard_binding", "band_leakage", "far_leakage", "hard")}
    n = len(raw["hard_binding"])
    return {"hard_instances": n,
            "hard_binding": float(np.mean(raw["hard_binding"])) if n else None,
            "band_leakage": float(np.mean(raw["band_leakage"])) if n else None,
            "band_leakage_max": float(np.max(raw["band_leakage"])) if n else None,
            "far_leakage": float(np.mean(raw["far_leakage"])) if n else None}


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of one or more :func:`evaluate_split` results (their ``raw`` lists joined)."""
    raw = {k: [x for p in parts for x in p["raw"][k]] for k in ("automatic", "gray", "binding", "leakage", "images")}
    return {"images": len(raw["images"]), "automatic": summarize(raw["automatic"]),
            "gray_baseline": summarize(raw["gray"]),
            "versus_gray": versus_gray(raw["automatic"], raw["gray"]),
            "binding": float(np.mean(raw["binding"])) if raw["binding"] else None,
            "binding_instances": len(raw["binding"]),
            "leakage": float(np.mean(raw["leakage"])) if raw["leakage"] else None}


def _one_record(engine, data: Path, rec: dict[str, Any], raw: dict[str, list], save: Path | None,
                per_image: int, min_area: float, seed: int) -> None:
    from restorer.io.color import rgb_to_luma
    from restorer.models.colornames import palette_lab
    from restorer.training.dataset.records import load_record

    pal = palette_lab()
    rgb, labels = load_record(data, rec)
    gt = rgb.astype(np.float64) * 255
    luma = rgb_to_luma(rgb)
    pred = colorize(engine, luma, [], np.zeros((0, *luma.shape), bool), seed)
    raw["automatic"].append(image_metrics(pred, gt))
    raw["gray"].append(image_metrics(colorize(None, luma, [], None, seed), gt))
    row = {"name": rec["name"], **{k: round(v, 4) for k, v in raw["automatic"][-1].items()}, "instances": []}
    masks = np.stack([labels == inst["id"] for inst in rec["instances"]])
    texts = [inst["text"] for inst in rec["instances"]]
    chosen = sorted((i for i in rec["instances"] if i["area"] >= min_area), key=lambda i: -i["area"])[:per_image]
    base = colorize(engine, luma, texts, masks, seed) if chosen else None
    for inst in chosen:
        want = counter_color(inst["lab"])
        changed = list(texts)
        changed[inst["id"]] = f"a {want} {inst['object']}"
        out = colorize(engine, luma, changed, masks, seed)
        m = masks[inst["id"]]
        raw["binding"].append(bound(out, m, tuple(pal[want])))
        raw["leakage"].append(leakage(base, out, m))
        row["instances"].append({"id": inst["id"], "text": changed[inst["id"]], "bound": raw["binding"][-1],
                                 "leakage": round(raw["leakage"][-1], 3),
                                 "mean_ab": [round(float(v), 2) for v in mean_ab(out, m)]})
        if save is not None:
            _save(save / "instances" / f"{rec['name']}__{inst['id']}_{want}.png", out)
    raw["images"].append(row)
    if save is not None:
        _save(save / "auto" / f"{rec['name']}.png", pred)
        _save(save / "gt" / f"{rec['name']}.png", gt)
        _save(save / "gray" / f"{rec['name']}.png", np.repeat(np.round(luma * 255)[..., None], 3, axis=2))
        if base is not None:
            _save(save / "texts" / f"{rec['name']}.png", base)


def colorize(engine, luma: np.ndarray, texts: list[str], masks: np.ndarray | None, seed: int,
             prompt: str | None = None) -> np.ndarray:
    """One photo through :func:`restorer.pipelines.photo.colorize_frame`, an instance ``i{k}`` per text
    and mask: RGB 0..255 (float64), quantised to 8 bits. ``engine`` None gives the gray output (a*b* = 0)."""
    from restorer.models.engine import InstanceText, ShotContext
    from restorer.pipelines.photo import colorize_frame

    instances = tuple(InstanceText(f"i{k}", t) for k, t in enumerate(texts))
    ctx = ShotContext(seed=seed, prompt=prompt, instances=instances, size=luma.shape)
    rgb = colorize_frame(engine, ctx, luma, masks)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.float64)


def _save(path: Path, rgb255: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rgb255, 0, 255).astype(np.uint8)).save(path)


def binding_sheet(save: Path, png: Path, *, cell: int = 160, limit: int | None = None) -> None:
    """Rows of gray input | output with the dataset's own texts | output with one counter-coloured text,
    the request and its mask outlined, from an :func:`evaluate_split` ``save`` folder."""
    import cv2
    from PIL import Image, ImageDraw

    from restorer.training.dataset.records import load_record, read_dataset

    rows = sorted((save / "instances").glob("*.png"))[:limit]
    data = json.loads((save / "dataset.json").read_text())["root"] if (save / "dataset.json").exists() else None
    records = {r["name"]: r for r in read_dataset(Path(data))} if data else {}
    sheet = Image.new("RGB", (3 * (cell + 6) + 6, 20 + len(rows) * (cell + 20) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for j, label in enumerate(("gray input", "own texts", "one text changed (outlined)")):
        draw.text((6 + j * (cell + 6), 4), label, fill="black")
    for i, path in enumerate(rows):
        name, rest = path.stem.rsplit("__", 1)
        inst, colour = rest.split("_", 1)
        y = 20 + i * (cell + 20)
        changed = np.asarray(Image.open(path).convert("RGB")).copy()
        rec = records.get(name)
        if rec is not None:
            _, labels = load_record(Path(data), rec)
            edge = cv2.morphologyEx((labels == int(inst)).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3)))
            changed[edge > 0] = (255, 255, 255)
        for j, im in enumerate((Image.open(save / "gray" / f"{name}.png"), Image.open(save / "texts" / f"{name}.png"),
                                Image.fromarray(changed))):
            im = im.convert("RGB")
            im.thumbnail((cell, cell), Image.LANCZOS)
            sheet.paste(im, (6 + j * (cell + 6), y + 16))
        draw.text((6, y + 2), f"{name[:40]}  instance {inst} -> '{colour}'", fill="black")
    sheet.save(png)


def contact_sheet(save: Path, png: Path, *, names: list[str] | None = None, cell: int = 200,
                  labels: tuple[str, ...] = ("gray input", "ours (no text)", "ground truth")) -> None:
    """Rows of gray input | automatic output | ground truth from an :func:`evaluate_split` ``save`` folder."""
    columns = list(zip(labels, (save / "gray", save / "auto", save / "gt"), strict=True))
    comparison_sheet(columns, png, names=names or sorted(p.stem for p in (save / "auto").glob("*.png")), cell=cell)


def comparison_sheet(columns: list[tuple[str, Path]], png: Path, *, names: list[str], cell: int = 200) -> None:
    """One row per name, one column per (label, folder of ``NAME.png``): e.g. gray | previous model |
    new model | truth from two :func:`evaluate_split` ``save`` folders."""
    from PIL import Image, ImageDraw

    sheet = Image.new("RGB", (len(columns) * (cell + 6) + 6, 20 + len(names) * (cell + 6)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (label, _) in enumerate(columns):
        draw.text((6 + j * (cell + 6), 4), label, fill="black")
    for i, name in enumerate(names):
        for j, (_, folder) in enumerate(columns):
            with Image.open(Path(folder) / f"{name}.png") as im:
                im = im.convert("RGB")
                im.thumbnail((cell, cell), Image.LANCZOS)
                sheet.paste(im, (6 + j * (cell + 6), 20 + i * (cell + 6)))
    sheet.save(png)
