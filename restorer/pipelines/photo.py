"""Colorize photos: one file, several, or whole folders of an archive.

A photo is a one-frame shot. Its notes come from ``--shots`` or a sidecar
(``x.shots.yaml`` beside ``x.jpg``). A folder's outputs keep each file's relative
path and stem. A batch is a job: the photos it finished are recorded in the job
folder, so an interrupted batch resumes without redoing them and without calling its
own outputs collisions.

In Python, ``PhotoColorizationPipeline(engine, ColorizeOptions())(array, shots=..., seed=...)`` colours a
picture in memory as the files are coloured; :func:`colorize_frame` is the core both entries, ``restorer eval``
and the benches share.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from restorer.console import Stopwatch
from restorer.errors import InputError, OutputError
from restorer.fs import open_atomic, refuse_existing
from restorer.io.images import IMAGE_SUFFIXES
from restorer.jobs import (
    Job,
    check_output,
    input_fingerprint,
    notes_fingerprint,
    require_file,
    settings_fingerprint,
)
from restorer.models.engine import FrameInput, InstanceText, ShotContext, check_chroma
from restorer.pipelines.frames import full_chroma
from restorer.pipelines.options import ColorizeOptions, shot_seed

log = logging.getLogger(__name__)


@dataclass
class PhotoTask:
    source: Path
    output: Path
    name: Path | None = None  # its path under the output folder, without suffix (for --save-masks)
    variant: int | None = None  # --variants: which one (1..N), its seed the run's seed + variant - 1

    @property
    def stem_path(self) -> Path:
        return self.name if self.name is not None else Path(self.output.stem)


def variant_path(output: Path, k: int) -> Path:
    """``out/photo.jpg`` -> ``out/photo_v{k}.jpg``."""
    return output.with_name(f"{output.stem}_v{k}{output.suffix}")


def variants_sheet_path(output: Path) -> Path:
    """Where the contact sheet of a photo's variants goes: ``out/photo_variants.png``."""
    return output.with_name(f"{output.stem}_variants.png")


@dataclass
class PhotoResult:
    outputs: list[Path] = field(default_factory=list)
    frames_processed: int = 0
    frames_reused: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    sheets: list[Path] = field(default_factory=list)  # --variants: one contact sheet per photo


def _unit_key(task: PhotoTask, shots: Path | None = None) -> str:
    """A photo's unit of work: its source (as it is now), its notes and its output. The set of photos
    may change between runs (an archive grows, a bad scan is removed) without redoing finished ones."""
    from restorer.shots.paths import find_sidecar

    notes = shots or find_sidecar(task.source)
    ident = settings_fingerprint({"source": str(task.source.resolve()), "output": str(task.output.resolve()),
                                  "file": input_fingerprint(task.source),
                                  "notes": notes_fingerprint(notes)})
    return f"photos/{ident}"


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def plan_photos(inputs: list[Path], output: Path, variants: int = 1) -> list[PhotoTask]:
    """Map inputs to outputs: a single file to a file (or into a folder), folders keep relative paths.
    With ``variants`` N > 1 every photo gives N tasks, ``photo_v1.jpg`` .. ``photo_vN.jpg``."""
    tasks = _plan(inputs, output)
    if variants <= 1:
        return tasks
    return [PhotoTask(t.source, variant_path(t.output, k), None if t.name is None else t.name.with_name(
        f"{t.name.name}_v{k}"), variant=k) for t in tasks for k in range(1, variants + 1)]


def _plan(inputs: list[Path], output: Path) -> list[PhotoTask]:
    from restorer.io.images import output_suffix

    single_file = len(inputs) == 1 and inputs[0].is_file() and is_image(output)
    tasks = []
    for src in inputs:
        if src.is_dir():
            files = sorted(p for p in src.rglob("*") if p.is_file() and is_image(p) and not p.name.startswith("."))
            if not files:
                raise InputError("no images in folder", path=src,
                                 hint=f"a folder input needs {', '.join(sorted(IMAGE_SUFFIXES))} files")
            for f in files:
                rel = f.relative_to(src)
                tasks.append(PhotoTask(f, (output / rel).with_suffix(output_suffix(f.suffix)),
                                       rel.with_suffix("")))
        elif single_file:
            tasks.append(PhotoTask(src, output))
        else:
            tasks.append(PhotoTask(src, output / src.with_suffix(output_suffix(src.suffix)).name))
    return tasks


def preflight(inputs: list[Path], output: Path, opts: ColorizeOptions) -> list[PhotoTask]:
    """Every refusal a photo run can make without a model (seconds, not the minute a model takes to load).

    Missing or empty inputs, outputs that exist or collide, and a broken ``--shots`` file or a single
    photo's broken sidecar are refused here; in a batch a photo's own broken sidecar or scan is
    skipped with an error later, so that one bad scan does not stop an archive.
    """
    from restorer.shots.load import load_shots
    from restorer.shots.paths import find_sidecar

    for src in inputs:
        require_file(src)
    tasks = plan_photos(inputs, output, opts.variants)
    single = len(tasks) == 1 and tasks[0].output == output
    check_output(output, inputs, overwrite=opts.overwrite, is_dir=not single)
    check_task_outputs(tasks)
    if len(tasks) == 1 and tasks[0].source.stat().st_size == 0:
        from restorer.io.images import empty_photo

        raise empty_photo(tasks[0].source)
    if not opts.overwrite and not Job(output, {}).folder.exists():  # no job to resume: an existing output is final
        for task in tasks:
            refuse_existing(task.output, instead="choose another output folder")
    if opts.shots is not None:
        require_file(opts.shots, "shots file")
        load_shots(opts.shots)
        log.info("notes for every photo: %s", opts.shots)
    else:
        sources = list(dict.fromkeys(t.source for t in tasks))  # --variants: several tasks per photo
        sidecars = [(src, find_sidecar(src)) for src in sources]
        found = [(src, side) for src, side in sidecars if side is not None]
        if len(sources) == 1 and found:
            load_shots(found[0][1])
            log.info("notes: %s (beside the photo)", found[0][1])
        elif found:
            log.info("notes: %d of %d photos have a shots file beside them (%s, ...)", len(found), len(sources),
                     found[0][1])
    return tasks


def check_task_outputs(tasks: list[PhotoTask]) -> None:
    """No photo may be written over a source photo, and no two photos onto one output.

    Raises:
        OutputError: naming the photo(s) concerned, whatever ``--overwrite`` says.
    """
    sources = {t.source.resolve() for t in tasks}
    seen: dict[Path, Path] = {}
    for t in tasks:
        out = t.output.resolve()
        if out in sources:
            raise OutputError("the output would overwrite an input photo", path=t.output,
                              hint="choose an output folder outside the inputs")
        if out in seen:
            raise OutputError(f"{seen[out]} and {t.source} would both be written to this output", path=t.output,
                              hint="colorize them into separate output folders, or rename one")
        seen[out] = t.source


def save_photo_masks(folder: Path, names: list[str], masks: np.ndarray) -> None:
    """One 0/255 PNG per instance, ``folder/NN_name.png``, as the film's ``--save-masks`` names them."""
    import cv2

    from restorer.models.tracking.store import instance_file_name

    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, m) in enumerate(zip(names, masks, strict=True)):
        ok, buf = cv2.imencode(".png", m.astype(np.uint8) * 255)
        with open_atomic(folder / f"{instance_file_name(i, name)}.png", sync=False) as f:
            f.write(buf.tobytes())


class PhotoColorizationPipeline:
    """Photos in, colour photos out, each written atomically with its EXIF and ICC profile."""

    def __init__(self, engine, opts: ColorizeOptions, backend=None):
        self.engine = engine
        self.opts = opts
        # where each photo is coloured: here (None: the local loop) or on Ray workers (backends.RayBackend)
        self.backend = backend

    def each(self, tasks: list[PhotoTask]):
        """Colour ``tasks``; yield (task, its warnings) or (task, the InputError that refused it) as each
        finishes (in order here; in the order they finish on a Ray backend)."""
        if self.backend is not None:
            yield from self.backend.photos(self, tasks)
            return
        for task in tasks:
            try:
                yield task, self.colorize_one(task)
            except InputError as exc:
                yield task, exc

    def __call__(self, inputs, output: Path | None = None, bar=None, *, shots=None, seed: int | None = None):
        """``pipe(array, shots=..., seed=...)``: one picture in memory, its colour version back
        (:meth:`colorize_array`); ``pipe(paths, output)``: photo files into ``output`` (:meth:`colorize_files`)."""
        if isinstance(inputs, np.ndarray):
            return self.colorize_array(inputs, shots=shots, seed=seed)
        if output is None or shots is not None or seed is not None:
            raise TypeError("photo files: pipe(paths, output), their notes and seed from the options; "
                            "shots= and seed= are for an array: pipe(array, shots=..., seed=...)")
        return self.colorize_files(inputs, output, bar)

    def colorize_array(self, image: np.ndarray, *, shots=None, seed: int | None = None) -> np.ndarray:
        """One picture as an array -> its colour version, as the file entry would write it.

        Args:
            image: (H, W) gray, or (H, W, 3 or 4) RGB(A): uint8, uint16, or float in [0, 1]. Colour is
                discarded and the BT.601 luma recolorized, as for a colour file.
            shots: a shots file (path or loaded) for this picture; default the options' ``--shots``, else none.
            seed: as ``--seed``: None keeps the options' seed; a number is the seed, sampled with.

        Returns:
            (H, W, 3) RGB: the input's integer type, rounded as a file is written; float32 in [0, 1] for float input.
        """
        from restorer.shots.resolve import FilmInfo, has_segmenter, resolve

        luma, top = picture_luma(image)
        (shot,) = resolve(self.opts.shots if shots is None else shots, FilmInfo(1, luma.shape[1], luma.shape[0], None),
                          engine=self.engine, segmenter=has_segmenter(self.opts.tracker, self.opts.sam2), cuts=[])
        rgb, _ = self._colorize(luma, shot, self.opts.seed if seed is None else seed,
                                self.opts.sample or seed is not None, "")
        if top is None:
            return rgb
        return np.round(np.clip(rgb, 0.0, 1.0) * top).astype(np.asarray(image).dtype)

    def colorize_files(self, inputs: list[Path], output: Path, bar=None) -> PhotoResult:
        """Photo files into ``output`` (a file for one photo, else a folder) as one resumable job."""
        for src in inputs:
            require_file(src)
        tasks = plan_photos(inputs, output, self.opts.variants)
        single = len(tasks) == 1 and tasks[0].output == output
        check_output(output, inputs, overwrite=self.opts.overwrite, is_dir=not single)
        check_task_outputs(tasks)
        clock = Stopwatch()
        result = PhotoResult()
        fingerprint = {"settings": self.opts.result_settings()}
        with Job(output, fingerprint) as job:
            try:
                self._check_collisions(tasks, job)
            except OutputError:
                if not job.resumed:
                    job.remove()  # refused before any work: leave no job folder behind
                raise
            task_id = bar.add_task("photos", total=len(tasks)) if bar is not None else None
            failed: list[tuple[int, InputError]] = []
            written: set[int] = set()  # by position in tasks: the outputs keep the tasks' order
            todo: list[PhotoTask] = []
            keys: dict[int, tuple[int, str]] = {}
            for n, task in enumerate(tasks):
                key = _unit_key(task, self.opts.shots)
                if job.unit_done(key) is not None and task.output.is_file():  # finished, and still there
                    result.frames_reused += 1
                    written.add(n)
                    if bar is not None:
                        bar.update(task_id, advance=1, description=f"{task.source.name}")
                else:
                    todo.append(task)
                    keys[id(task)] = (n, key)
            for task, outcome in self.each(todo):
                n, key = keys[id(task)]
                if isinstance(outcome, InputError):
                    if len(tasks) == 1:
                        if not job.resumed:
                            job.remove()
                        raise outcome
                    log.error("%s (skipped)", outcome)  # one bad scan must not stop an archive
                    failed.append((n, outcome))
                else:
                    result.warnings.extend(outcome)
                    job.finish_unit(key, {"output": str(task.output)})
                    result.frames_processed += 1
                    written.add(n)
                if bar is not None:
                    bar.update(task_id, advance=1, description=f"{task.source.name}")
            result.outputs = [t.output for n, t in enumerate(tasks) if n in written]
            if self.opts.variants > 1:
                result.sheets = write_variant_sheets([t for n, t in enumerate(tasks) if n in written],
                                                       self.opts.seed)
            result.seconds = clock.seconds
            if failed:
                first = min(failed, key=lambda f: f[0])[1]
                raise InputError(f"{len(failed)} of {len(tasks)} photos could not be colorized; first: {first}",
                                 hint="fix or remove them and run the same command again: "
                                      "finished photos are kept and not redone")
            job.remove()
        return result

    def _check_collisions(self, tasks: list[PhotoTask], job: Job) -> None:
        if self.opts.overwrite:
            return
        for task in tasks:
            if task.output.exists() and job.unit_done(_unit_key(task, self.opts.shots)) is None:
                refuse_existing(task.output, instead="choose another output folder")

    def colorize_one(self, task: PhotoTask) -> list[str]:
        """Colorize one photo into ``task.output`` (written atomically); return its warnings."""
        from restorer.io.images import read_image, write_image

        photo = read_image(task.source)
        warnings = []
        if photo.is_color:
            msg = f"{task.source}: colour input; its chroma is discarded and the picture recolorized from its luma"
            log.warning(msg)
            warnings.append(msg)
        shot = self._shot(task.source, photo.luma.shape)
        seed = self.opts.seed + (task.variant - 1 if task.variant else 0)
        rgb, masks = self._colorize(photo.luma, shot, seed, self.opts.sample or task.variant is not None,
                                    str(task.source))
        if self.opts.save_masks is not None and shot.instances:
            save_photo_masks(Path(self.opts.save_masks) / task.stem_path, [i.name for i in shot.instances], masks)
        task.output.parent.mkdir(parents=True, exist_ok=True)
        write_image(task.output, rgb, bit_depth=photo.bit_depth, exif=photo.exif, icc=photo.icc)
        return warnings

    def _colorize(self, luma: np.ndarray, shot, seed: int, sample: bool, source: str) -> tuple[np.ndarray, np.ndarray]:
        """A resolved shot on one picture: (float32 RGB in [0, 1], the instance masks)."""
        masks = self._masks(shot, luma)
        ctx = ShotContext(seed=shot_seed(seed, 0), prompt=shot.prompt,
                          instances=tuple(InstanceText(i.name, i.text) for i in shot.instances),
                          shot_start=0, shot_end=0, size=luma.shape, source=source, sample=sample,
                          anchors=anchor_edits(shot))
        return colorize_frame(self.engine, ctx, luma, masks), masks

    def _masks(self, shot, luma: np.ndarray) -> np.ndarray:
        """(N, H, W) bool, one per instance, every prompt of it drawn as a film's tracker draws it on the prompt's
        frame (:func:`restorer.pipelines.tracking.photo_masks`)."""
        from restorer.pipelines.tracking import photo_masks

        return photo_masks(shot, luma, self.opts, self._sam2_tracker)

    def _sam2_tracker(self):
        """SAM2 for single pictures, loaded once per run, on the first photo that needs it."""
        if getattr(self, "_sam2", None) is None:
            from restorer.models.tracking import open_tracker

            device = getattr(self.engine, "device", None)
            self._sam2 = open_tracker("sam2", self.opts.sam2, device=None if device is None else str(device))
        return self._sam2

    def _shot(self, source: Path, size: tuple[int, int]):
        """The photo's one shot: its shots file (``--shots`` or its sidecar) resolved as a film's is."""
        from restorer.shots.paths import find_sidecar
        from restorer.shots.resolve import FilmInfo, has_segmenter, resolve

        (shot,) = resolve(self.opts.shots or find_sidecar(source), FilmInfo(1, size[1], size[0], None),
                          engine=self.engine, segmenter=has_segmenter(self.opts.tracker, self.opts.sam2), cuts=[])
        return shot


def colorize_frame(engine, ctx: ShotContext, luma: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """The one array-level colorize core: ``engine.shot`` on one frame, its chroma brought to full size,
    recombined with ``luma`` (kept exactly). Photos, ``restorer eval``, the benches and library users call it.

    Args:
        engine: an engine (:class:`restorer.models.engine.Engine`), or None for the gray picture (a*b* = 0).
        ctx: the shot's context; luma: (H, W) float32 in [0, 1]; masks: (N, H, W) bool, one per instance.

    Returns:
        (H, W, 3) float32 R'G'B' in [0, 1].
    """
    if engine is None:
        ab = np.zeros((*luma.shape, 2), np.float32)
    else:
        (ab,) = list(engine.shot(ctx, [FrameInput(index=0, luma=luma, masks=masks)]))
        ab = check_chroma(ab, engine.name)
    return chroma_rgb(luma, ab, masks)


def chroma_rgb(luma: np.ndarray, ab: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """An engine's chroma (at its working size) upsampled along ``luma`` and the masks' edges and
    recombined with ``luma``: (H, W, 3) float32 R'G'B' in [0, 1]."""
    from restorer.io.color import recombine_rgb

    return recombine_rgb(luma, full_chroma(ab, luma, masks), "bt601")


def picture_luma(image: np.ndarray) -> tuple[np.ndarray, int | None]:
    """An in-memory picture's BT.601 luma as :func:`restorer.io.images.read_image` reads a file's, and its
    top code value (255, 65535; None for float input in [0, 1])."""
    from restorer.io.color import rgb_to_luma

    a = np.asarray(image)
    if a.dtype in (np.uint8, np.uint16):
        top = int(np.iinfo(a.dtype).max)
        pixels = a.astype(np.float32) / np.float32(top)
    elif np.issubdtype(a.dtype, np.floating):
        top, pixels = None, a.astype(np.float32)
    else:
        raise ValueError(f"a picture of {a.dtype} samples: expected uint8, uint16 or float in [0, 1]")
    if pixels.ndim == 3 and pixels.shape[2] in (1, 2):  # gray, gray + alpha
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        return pixels, top
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"a picture of shape {a.shape}: expected (H, W) gray or (H, W, 3 or 4) RGB(A)")
    return rgb_to_luma(pixels[..., :3]), top


def anchor_edits(shot) -> tuple:
    """A resolved shot's user anchors as the engines take them (:class:`restorer.models.anchors.engine.AnchorEdit`)."""
    if not getattr(shot, "anchors", ()):
        return ()
    from restorer.models.anchors.engine import AnchorEdit

    return tuple(AnchorEdit(a.x, a.y, a.ab) for a in shot.anchors)


def write_variant_sheets(tasks: list[PhotoTask], seed: int) -> list[Path]:
    """For every photo with variants written: ``photo_variants.png``, the gray photo and each variant side by side,
    labelled with its seed (the seed that gives it again: ``--seed S``)."""
    from restorer.io.images import read_image

    by_source: dict[Path, list[PhotoTask]] = {}
    for t in tasks:
        by_source.setdefault(t.source, []).append(t)
    written = []
    for source, group in by_source.items():
        group.sort(key=lambda t: t.variant or 0)
        gray = read_image(source).luma
        tiles = [(np.repeat(gray[..., None], 3, axis=2), "gray")]
        tiles += [(_as_float_rgb(t.output), f"seed {seed + (t.variant or 1) - 1}") for t in group]
        first = group[0].output  # photo_vK.ext -> photo.ext
        base = first.with_name(first.stem[:-len(f"_v{group[0].variant}")] + first.suffix)
        written.append(_draw_sheet(tiles, variants_sheet_path(base)))
    return written


def _as_float_rgb(path: Path) -> np.ndarray:
    """A written output as float RGB in [0, 1] (8 or 16 bits)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if bgr is None:
        raise OutputError("cannot read back a written variant", path=path, hint="check the output folder")
    return bgr[..., ::-1].astype(np.float32) / np.float32(np.iinfo(bgr.dtype).max)


def _draw_sheet(tiles: list[tuple[np.ndarray, str]], path: Path, height: int = 220) -> Path:
    from PIL import Image, ImageDraw

    row = []
    for rgb, label in tiles:
        h, w = rgb.shape[:2]
        img = Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).resize(
            (max(1, round(w * height / h)), height), Image.LANCZOS)
        canvas = Image.new("RGB", (img.width, height + 22), "white")
        canvas.paste(img, (0, 0))
        ImageDraw.Draw(canvas).text((4, height + 5), label, fill="black")
        row.append(canvas)
    sheet = Image.new("RGB", (sum(c.width for c in row) + 4 * (len(row) - 1), height + 22), "white")
    x = 0
    for c in row:
        sheet.paste(c, (x, 0))
        x += c.width + 4
    with open_atomic(path, sync=False) as f:
        sheet.save(f, format="PNG")
    return path
