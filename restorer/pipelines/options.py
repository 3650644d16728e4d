"""The settings of one `restorer colorize` run, shared by the photo and video pipelines."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from restorer.presets import DEFAULT_PRESET


@dataclass
class ColorizeOptions:
    preset: str = DEFAULT_PRESET  # the CLI's default too
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    runtime: str = "torch"  # torch, or onnx (tiny on ONNX Runtime)
    seed: int = 0
    sample: bool = False  # the user chose the seed: engines with a most likely answer (anchors) sample instead
    variants: int = 1  # photos: N pictures, seeds seed .. seed + N - 1, and a contact sheet
    overwrite: bool = False
    codec: str = "h264"
    bit_depth: int | None = None
    strict: bool = False
    quiet: bool = False
    shots: Path | None = None
    report: Path | None = None
    weights: Path | None = None
    base: Path | None = None
    tracker: str | None = None
    sam2: Path | None = None
    box_refine: str = "grabcut"  # a box prompt refined to the object inside it (grabcut), or kept (off)
    save_masks: Path | None = None
    chunk_frames: int = 240
    # the temporal stage of a film: "propagate" (engine on keyframes, chroma carried by optical flow
    # between them) or "off" (every frame coloured by the engine on its own)
    temporal: str = "propagate"
    keyframe_interval: int = 24  # never more than this many frames of a shot without a keyframe
    overrides: dict[str, Any] = field(default_factory=dict)
    # where the work runs: "local" (this process) or "ray" (an actor pool on a Ray cluster: ``ray_address``,
    # or a local one; ``ray_gpus_per_worker`` GPUs per actor). Not in result_settings: the backend never
    # changes the output, and a job started on one backend resumes on the other.
    backend: str = "local"
    ray_address: str | None = None
    ray_gpus_per_worker: float | None = None
    # the loaded preset, so an edited YAML counts; filled from ``preset`` when left empty
    preset_config: dict[str, Any] = field(default_factory=dict)

    def resolved_preset(self) -> dict[str, Any]:
        """The preset these options run: ``preset_config`` if given, else ``preset`` loaded (YAML, cheap)."""
        if not self.preset_config:
            from restorer.presets import load_preset

            self.preset_config = load_preset(self.preset or DEFAULT_PRESET).model_dump()
        return self.preset_config

    def result_settings(self) -> dict[str, Any]:
        """Every setting that changes the pixels of the result (the job fingerprint).

        It depends on the options alone: a pipeline built directly from ``ColorizeOptions()`` fingerprints
        the same preset, weights and assets as ``restorer colorize`` with the same settings.
        """
        from restorer import __version__

        self.resolved_preset()
        keep = ("preset", "seed", "sample", "variants", "dtype", "runtime", "codec", "bit_depth", "weights", "base",
                "tracker", "sam2",
                "box_refine", "chunk_frames", "temporal", "keyframe_interval", "overrides", "preset_config")
        d = asdict(self)
        return {"version": __version__, **{k: (str(d[k]) if isinstance(d[k], Path) else d[k]) for k in keep},
                "assets": self.assets()}

    def assets(self) -> dict[str, Any]:
        """What the weights the run may load look like (a retrained or replaced file restarts the job)."""
        import os

        from restorer.jobs import tree_fingerprint

        preset = self.resolved_preset()
        paths: dict[str, Any] = {"sam2": self.sam2}
        if preset.get("engine", "stencil") != "stencil":  # the stencil engine has no weights
            paths["weights"] = self.weights or os.environ.get("RESTORER_WEIGHTS") or None
            paths["base"] = self.base or os.environ.get("RESTORER_SD15") or None
        if preset.get("options", {}).get("backbone") == "tiny" and paths.get("weights") is None:
            from restorer.models.mtcolor.tiny import SHIPPED  # the engine imports it anyway

            paths["weights"] = SHIPPED
        return {k: tree_fingerprint(Path(v)) for k, v in paths.items() if v is not None}


def shot_seed(seed: int, shot_start: int) -> int:
    """A shot's seed depends on the run's seed and where the shot starts, not on the order of work."""
    digest = hashlib.sha256(f"{seed}:{shot_start}".encode()).digest()
    return int.from_bytes(digest[:4], "little")
