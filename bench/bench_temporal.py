"""The temporal stage against the per-frame path, side by side in one run.

Run: python bench/bench_temporal.py [--clip PATH] [--frames 120] [--presets stencil tiny] [--interval 24]
                                    [--threads 2]

The clip's own colours are the ground truth: each preset colours the clip's luma with ``temporal="off"``
(every frame by the engine) and ``temporal="propagate"`` (the engine on keyframes, optical flow between
them), and the films are scored with the metrics of ``restorer eval`` (``evaluate_paths``): colour
distribution consistency (CDC) and warp error, with the clip's own values beside them, colourfulness,
frames per second, keyframes and the share of pixels carried by the flow. The stencil preset colours a
face box (tracked by the flow tracker) on a sepia background; tiny colours automatically (no shots file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIP = ROOT.parent / "shared" / "data" / "video" / "carphone_pristine.mp4"
FACE_BOX = (54.0, 30.0, 106.0, 98.0)  # carphone, frame 60 (as bench_tracking.py)
SHOTS = """\
version: 1
shots:
  - frames: [0, {last}]
    prompt: "sepia"
    instances:
      - name: face
        text: "an orange face"
        prompts:
          - frame: 60
            box: [{b[0]}, {b[1]}, {b[2]}, {b[3]}]
"""


def trim(src: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``src`` as a lossless (ffv1, yuv444p) film."""
    from fractions import Fraction

    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        rate = Fraction(stream.average_rate)
        video = out.add_stream("ffv1", rate=rate)
        video.width, video.height, video.pix_fmt = stream.width, stream.height, "yuv444p"
        video.time_base = video.codec_context.time_base = 1 / rate
        for i, frame in enumerate(inp.decode(stream)):
            if i >= frames:
                break
            new = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv444p"), format="yuv444p")
            new.pts, new.time_base = i, 1 / rate
            out.mux(video.encode(new))
        out.mux(video.encode(None))
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--presets", nargs="+", default=["stencil", "tiny"])
    ap.add_argument("--interval", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()

    import cv2
    import torch

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    from restorer.pipelines.evaluate import evaluate_paths
    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.run import colorize_run
    from restorer.pipelines.temporal import Propagator
    from restorer.pipelines.video import VideoColorizationPipeline

    # keep each run's VideoResult (run.py's report does not carry the temporal fields yet)
    results = []
    call = VideoColorizationPipeline.__call__

    def spy(self, *a, **k):
        results.append(call(self, *a, **k))
        return results[-1]

    VideoColorizationPipeline.__call__ = spy
    assert Propagator  # the stage under test
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gt = trim(args.clip, tmp / "gt.mkv", args.frames)
        (tmp / "face.yaml").write_text(SHOTS.format(last=args.frames - 1, b=FACE_BOX), encoding="utf-8")
        for preset in args.presets:
            for temporal in ("off", "propagate"):
                out = tmp / f"{preset}_{temporal}.mkv"
                opts = ColorizeOptions(preset=preset, temporal=temporal, keyframe_interval=args.interval,
                                       quiet=True, codec="ffv1", threads=args.threads,
                                       shots=tmp / "face.yaml" if preset == "stencil" else None,
                                       tracker="flow" if preset == "stencil" else None)
                t0 = time.perf_counter()
                colorize_run([gt], out, opts)
                seconds = time.perf_counter() - t0
                r = results[-1]
                m = evaluate_paths(out, gt)
                keys = sum(len(v) for v in r.keyframes.values())
                rows.append({"preset": preset, "temporal": temporal, "frames": r.frames, "seconds": seconds,
                             "fps": r.frames / seconds, "keyframes": keys if temporal == "propagate" else r.frames,
                             "propagated_share": r.propagated_share, "cdc": m["cdc_pred"], "cdc_gt": m["cdc_gt"],
                             "warp_error": m["warp_error_pred"], "warp_error_gt": m["warp_error_gt"],
                             "colourfulness": m.get("colourfulness_pred"),
                             "colourfulness_gt": m.get("colourfulness_gt"),
                             "psnr": m.get("psnr"), "ciede2000": m.get("ciede2000")})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.clip.name}, first {args.frames} frames, keyframe interval {args.interval}, "
          f"{args.threads} threads; command: python bench/bench_temporal.py {' '.join(sys.argv[1:])}")
    print("| preset | temporal | fps | keyframes | propagated | CDC (clip's own) | warp error (clip's own) | "
          "PSNR | CIEDE2000 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['preset']} | {r['temporal']} | {r['fps']:.1f} | {r['keyframes']} | {r['propagated_share']:.2f} | "
              f"{r['cdc']:.5f} ({r['cdc_gt']:.5f}) | {r['warp_error']:.5f} ({r['warp_error_gt']:.5f}) | "
              f"{_f(r['psnr'])} | {_f(r['ciede2000'])} |")
    by = {(r["preset"], r["temporal"]): r for r in rows}
    for preset in args.presets:
        off, prop = by[(preset, "off")], by[(preset, "propagate")]
        print(f"{preset}: propagate/off speed {prop['fps'] / off['fps']:.2f}x, "
              f"CDC {prop['cdc'] / max(off['cdc'], 1e-12):.2f}x, "
              f"warp error {prop['warp_error'] / max(off['warp_error'], 1e-12):.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
