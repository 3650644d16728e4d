"""tiny's automatic colour prior: candidates measured side by side on the development split (issue 11).

Run: python bench/prior_candidates.py DATA --out DIR [--only NAME ...] [--steps N] [--threads T]
     python bench/prior_candidates.py DATA --out DIR --table        # the Markdown table of what DIR holds

Each candidate is a `restorer train --stage prior` run (:func:`restorer.training.prior.train_prior`,
the same code the CLI calls) into DIR/NAME, then a weights folder DIR/NAME/weights (the shipped U-Net,
ControlNet and adapter, linked, beside the candidate's prior/), scored on the development split with
:func:`restorer.pipelines.evaluate.evaluate_split` at every annealed-mean temperature of `--temperatures`,
with and without test-time flip averaging (`prior_flip`). Only automatic colour is scored (no texts:
the prior is all that colours a photo without them). Each score is the paired difference against the
gray picture with its 95 % bootstrap interval, and against the shipped prior (`shipped`).

The test split is never read here: settings are chosen on the development split only.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

CANDIDATES = {
    # name: (PriorConfig fields, views)
    "lite0": ({}, 10),
    "lite0_jitter": ({"jitter": 0.15}, 10),
    "lite0_context": ({"context": 4, "global_context": True}, 10),
    "lite2": ({"backbone": "efficientnet-lite2"}, 10),
    "lite2_context": ({"backbone": "efficientnet-lite2", "context": 4, "global_context": True}, 10),
    "lite2_context_jitter": ({"backbone": "efficientnet-lite2", "context": 4, "global_context": True,
                              "jitter": 0.15}, 10),
    "lite2_drop05": ({"backbone": "efficientnet-lite2", "dropout": 0.5}, 10),
    "lite2_context_rb03": ({"backbone": "efficientnet-lite2", "context": 4, "global_context": True,
                            "rebalance": 0.3}, 10),
    "lite2_context_rb07": ({"backbone": "efficientnet-lite2", "context": 4, "global_context": True,
                            "rebalance": 0.7}, 10),
}
SHIPPED = Path(__file__).resolve().parents[1] / "restorer" / "weights" / "tiny"


def weights_folder(run: Path) -> Path:
    """The shipped tiny weights with this run's prior in place of the shipped one (links, nothing copied)."""
    folder = run / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("unet", "controlnet", "adapter", "rendered_colours.json"):
        link = folder / part
        if not link.exists():
            link.symlink_to(SHIPPED / part)
    prior = folder / "prior"
    if not prior.exists():
        prior.symlink_to((run / "prior" / "final").resolve())
    return folder


def score(data: Path, weights: Path | None, temperature: float, flip: bool) -> dict:
    from restorer.pipelines.evaluate import evaluate_split

    result = evaluate_split(data, weights=weights, split="val", per_image=0,
                            overrides={"prior_temperature": temperature, "prior_flip": flip})
    return {"temperature": temperature, "flip": flip, "ciede2000": result["automatic"]["ciede2000"],
            "gray_ciede2000": result["gray_baseline"]["ciede2000"],
            "colourfulness_ratio": result["automatic"]["colourfulness_ratio"],
            "versus_gray": result["versus_gray"]["ciede2000"],
            "per_image": [r["ciede2000"] for r in result["raw"]["automatic"]],
            "names": [r["name"] for r in result["raw"]["images"]]}


def run_candidate(name: str, data: Path, out: Path, steps: int, temperatures: list[float]) -> dict:
    from restorer.training.prior import PriorConfig, train_prior

    run = out / name
    result_file = run / "scores.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    summary = {"name": name}
    if name == "shipped":
        weights = None
    else:
        fields, views = CANDIDATES[name]
        shared = out / "_caches"  # one cache folder for all: each cache sits under its own key
        shared.mkdir(parents=True, exist_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        if not (run / "prior_cache").exists():
            (run / "prior_cache").symlink_to(shared.resolve())
        t0 = time.perf_counter()
        summary["train"] = train_prior(data, run, steps=steps, config=PriorConfig(steps=steps, **fields),
                                       views=views)
        summary["train_wall_s"] = round(time.perf_counter() - t0, 1)
        summary["config"] = fields
        weights = weights_folder(run)
    summary["scores"] = [score(data, weights, t, flip) for t in temperatures for flip in (False, True)]
    run.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def table(out: Path) -> str:
    from restorer.metrics import paired_bootstrap

    runs = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/scores.json"))}
    ref = {(s["temperature"], s["flip"]): s for s in runs.get("shipped", {}).get("scores", [])}
    rows = ["| candidate | T | flip | CIEDE2000 | / gray | vs gray, 95 % | vs shipped (same T, flip), 95 % "
            "| colourfulness / truth | train s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, run in runs.items():
        for s in run["scores"]:
            g = s["versus_gray"]
            base = ref.get((s["temperature"], s["flip"]))
            vs = "-"
            if base is not None and name != "shipped":
                d = paired_bootstrap(s["per_image"], base["per_image"])
                vs = f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"
            rows.append(f"| {name} | {s['temperature']} | {'yes' if s['flip'] else 'no'} | {s['ciede2000']:.2f} | "
                        f"{s['ciede2000'] / s['gray_ciede2000']:.3f} | {g['mean']:+.2f} [{g['low']:+.2f}, "
                        f"{g['high']:+.2f}] | {vs} | {s['colourfulness_ratio']:.2f} | "
                        f"{run.get('train_wall_s', '-')} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", default=None, help="candidate names (and/or 'shipped')")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--temperatures", type=float, nargs="*", default=[0.3, 0.4, 0.5])
    ap.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", 1)))
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.table:
        print(table(args.out))
        return
    import torch

    torch.set_num_threads(args.threads)
    for name in args.only or ["shipped", *CANDIDATES]:
        t0 = time.perf_counter()
        run_candidate(name, args.data, args.out, args.steps, args.temperatures)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    print(table(args.out))


if __name__ == "__main__":
    main()
