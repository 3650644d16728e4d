"""Colorize a film: decode, shots, masks, engine, recombine, encode per segment, assemble.

The film streams through in segments (a shot, or a chunk of a long shot). Each
segment is encoded to its own file in the job folder and recorded as finished; a
killed run resumes from the finished segments. The final film is assembled by
remuxing the segments' packets with every audio and subtitle stream of the source,
packet for packet, under a temporary name, and renamed when complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from restorer.console import Stopwatch
from restorer.errors import DamagedInputError, InputError, RestorerError
from restorer.jobs import Job, check_output, input_fingerprint, notes_fingerprint, require_file
from restorer.models.engine import FrameInput, InstanceText, ShotContext, check_chroma
from restorer.pipelines.frames import full_chroma
from restorer.pipelines.options import ColorizeOptions, shot_seed
from restorer.shots.paths import find_sidecar

log = logging.getLogger(__name__)

TEMPORAL_MODES = ("propagate", "off")
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".mxf", ".ogv",
                  ".wmv", ".flv", ".3gp", ".dv", ".y4m", ".nut"}


@dataclass
class Segment:
    shot: Any  # ResolvedShot
    start: int
    end: int  # inclusive

    @property
    def name(self) -> str:
        return f"segments/{self.start:08d}-{self.end:08d}"


@dataclass
class VideoResult:
    output: Path
    frames: int = 0
    frames_processed: int = 0
    frames_reused: int = 0
    shots: int = 0
    damaged: list[dict[str, Any]] = field(default_factory=list)  # first, last, start, end, reason
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # temporal stage (``temporal="propagate"``): each shot's keyframes (film frame indices, by shot index)
    # and the share of all frames' pixels whose chroma the flow carried from a keyframe
    keyframes: dict[int, list[int]] = field(default_factory=dict)
    propagated_share: float = 0.0


def plan_segments(shots: list, chunk_frames: int) -> list[Segment]:
    """Every shot, cut into chunks of at most ``chunk_frames`` so a long reel never restarts from zero."""
    out = []
    for shot in shots:
        for a in range(shot.start, shot.end + 1, chunk_frames):
            out.append(Segment(shot, a, min(shot.end, a + chunk_frames - 1)))
    return out


def load_film_shots(film: Path, info, opts: ColorizeOptions, job: Job | None = None, engine=None) -> list:
    """shots.yaml (given, or the film's sidecar) resolved against the film (:func:`restorer.shots.resolve.resolve`);
    gaps get detected shots, the cuts detected once per job.

    With ``engine``, its check of the instance texts runs first, errors pointing at the file's line.
    """
    from restorer.shots.detect import detect_cuts
    from restorer.shots.resolve import has_segmenter, resolve

    return resolve(opts.shots or find_sidecar(film), info, engine=engine,
                   segmenter=has_segmenter(opts.tracker, opts.sam2),
                   detect=lambda: _cached_cuts(film, job, detect_cuts))


def _cached_cuts(film: Path, job: Job | None, detect) -> list[int]:
    if job is not None:
        record = job.unit_done("cuts")
        if record is not None:
            return record["cuts"]
    log.info("%s: no shots.yaml covers the whole film; detecting shots", film.name)
    cuts = detect(film)
    if job is not None:
        job.finish_unit("cuts", {"cuts": cuts})
    return cuts


class VideoColorizationPipeline:
    """One film in, one colour film out. Build once per run; call per film."""

    def __init__(self, engine, opts: ColorizeOptions, tracker_factory, backend=None):
        self.engine = engine
        self.opts = opts
        self.tracker_factory = tracker_factory
        # where the segments are coloured: in this process (LocalBackend, the default) or on Ray workers
        self.backend = backend
        if opts.temporal not in TEMPORAL_MODES:
            raise InputError(f"unknown temporal mode {opts.temporal!r}", hint="use propagate or off")
        if opts.keyframe_interval < 1:
            raise InputError(f"keyframe interval must be at least 1, got {opts.keyframe_interval}",
                             hint="give --keyframe-interval N with N >= 1")

    def __call__(self, film: Path, output: Path, bar=None) -> VideoResult:
        from restorer.io.mux import check_container
        from restorer.io.probe import probe

        require_file(film)
        check_output(output, [film], overwrite=self.opts.overwrite)
        info = probe(film)
        check_container(output, film)  # after probe: a bad film gets its own message first
        clock = Stopwatch()
        result = VideoResult(output=output, frames=info.frame_count)
        if info.is_color:
            msg = (f"{film}: looks like a colour film (mean chroma {info.chroma:g}); restorer keeps its luma "
                   "and replaces its colours")
            log.warning(msg)
            result.warnings.append(msg)
        fingerprint = {"input": input_fingerprint(film), "settings": self.opts.result_settings(),
                       "shots_yaml": notes_fingerprint(self.opts.shots or find_sidecar(film))}
        if info.holes and self.opts.strict:  # known from the index alone: fail before any work
            raise _strict_error(film, [_damage_record(d) for d in info.holes])
        with Job(output, fingerprint) as job:
            try:
                shots = load_film_shots(film, info, self.opts, job, self.engine)
                self._validate(shots, film)
            except RestorerError:
                if not job.resumed:
                    job.remove()  # refused before any work: leave no job folder behind
                raise
            segments = plan_segments(shots, self._chunk())
            result.shots = len(shots)
            if self.backend is None:
                done = self._run_segments(film, info, job, segments, result, bar)
            else:
                done = self.backend.film(self, film, info, job, segments, result, bar)
            if result.damaged and self.opts.strict:
                job.remove()  # --strict leaves nothing behind, not even the job folder
                raise _strict_error(film, result.damaged)
            self._assemble(film, info, output, done)
            job.remove()
        result.seconds = clock.seconds
        return result

    def _chunk(self) -> int:
        """Segments of a shot: ``chunk_frames`` long; with propagation a multiple of the keyframe interval,
        so each segment starts on a fixed keyframe and is colored the same whole or resumed."""
        if self.opts.temporal == "off":
            return self.opts.chunk_frames
        from restorer.pipelines.temporal import segment_chunk

        return segment_chunk(self.opts.chunk_frames, self.opts.keyframe_interval)

    def _validate(self, shots: list, film: Path) -> None:
        for shot in shots:
            self.engine.validate(self._context(shot, film, (0, 0)))

    def _context(self, shot, film: Path, size) -> ShotContext:
        return ShotContext(seed=shot_seed(self.opts.seed, shot.start), prompt=shot.prompt,
                           instances=tuple(InstanceText(i.name, i.text) for i in shot.instances),
                           shot_start=shot.start, shot_end=shot.end, size=size, source=str(film),
                           sample=self.opts.sample)

    def _run_segments(self, film, info, job, segments, result, bar) -> list[Path]:
        task = bar.add_task("", total=info.frame_count) if bar is not None else None
        files, tracks, edge = [], {}, {}  # edge: the last decoded frame's thumbnail, for the next reader
        propagated, counted = 0.0, 0
        shots = len({seg.shot.index for seg in segments})
        for seg in segments:
            where = f"{film.name} shot {seg.shot.index + 1}/{shots}"
            done = sum(len(v) for v in result.keyframes.values())

            def tick(keys: int | None = None, where=where, done=done) -> None:
                if bar is not None:  # keyframes: those of earlier segments and this one's so far
                    extra = "" if keys is None else f" · keyframes {done + keys}"
                    bar.update(task, advance=1, description=where + extra)

            if bar is not None:
                bar.update(task, description=where)
            record = job.unit_done(seg.name)
            if record is None:
                record = self._encode_segment(film, info, job, seg, tracks, tick, edge)
                result.frames_processed += record["frames"]
            else:
                result.frames_reused += record["frames"]
            result.damaged.extend(record["damaged"])
            if "keyframes" in record:
                keys = result.keyframes.setdefault(seg.shot.index, [])
                keys.extend(record["keyframes"])
                propagated += record["propagated"]
            counted += record["frames"]
            if result.damaged and self.opts.strict:
                break  # no need to colorize the rest of a film that will be refused
            if record["frames"]:
                files.append(job.folder / record["file"])
            if bar is not None:
                bar.update(task, completed=seg.end + 1)
        result.propagated_share = propagated / counted if counted else 0.0
        return files

    def _encode_segment(self, film, info, job, seg: Segment, tracks: dict, tick, edge: dict) -> dict:
        record = self.encode_segment(film, info, job, seg, tracks, tick, edge, self.segment_path(job, seg))
        job.finish_unit(seg.name, record)
        return record

    def segment_path(self, job, seg: Segment) -> Path:
        """The final name of a segment's file in the job folder."""
        from restorer.io.encode import segment_suffix

        return job.path(f"{seg.name}{segment_suffix(self.opts.codec)}")

    def encode_segment(self, film, info, job, seg: Segment, tracks: dict, tick, edge: dict, final: Path) -> dict:
        """Colour and encode one segment into ``final`` (renamed into place when complete) and return its
        record; recording it as finished is the caller's (the local loop, or the driver of a Ray run)."""
        from restorer.io.decode import LumaReader
        from restorer.io.encode import SegmentWriter

        masks = tracks.get(seg.shot.index)
        if masks is None:
            masks = tracks.setdefault(seg.shot.index, self.tracker_factory(film, info, seg.shot, job))
        # the previous segment's last frame: a stray first frame is judged against it (a damaged frame
        # is often taken for a cut, so it starts a shot)
        reader = LumaReader(film, info, start=seg.start, end=seg.end, previous=edge.get(seg.start - 1))
        frames = 0
        stats = None
        if self.opts.temporal == "propagate":
            colorized, stats = self._propagate(film, info, seg, reader, masks)
        else:
            colorized = self._colorize(film, info, seg, reader, masks)
        with SegmentWriter(final, info, codec=self.opts.codec, bit_depth=self.opts.bit_depth) as writer:
            for decoded, pb, pr in colorized:
                writer.write(decoded.index, decoded.luma, pb, pr)
                frames += 1
                tick(None if stats is None else len(stats.keyframes))
            if frames == 0:
                writer.abort()
        edge.clear()
        if reader.edge is not None:
            edge[reader.edge[0]] = reader.edge
        record = {"frames": frames, "damaged": [_damage_record(d) for d in reader.damaged],
                  "file": final.relative_to(job.folder).as_posix()}
        if stats is not None:
            record.update({"keyframes": stats.keyframes, "propagated": stats.propagated})
        return record

    def _colorize(self, film, info, seg, reader, masks) -> Iterator:
        from restorer.io.color import recombine_pbpr
        from restorer.io.decode import luma_to_unit

        matrix = info.matrix_name
        pending: list = []

        def frames() -> Iterator[FrameInput]:
            for decoded in reader:
                y = luma_to_unit(decoded.luma, info)
                frame = FrameInput(index=decoded.index, luma=y, masks=masks.get(decoded.index),
                                   extra=frame_extra(masks, decoded.index))
                pending.append((decoded, frame))
                yield frame

        ctx = self._context(seg.shot, film, (info.height, info.width))
        for ab in self.engine.shot(ctx, frames()):
            decoded, frame = pending.pop(0)
            y = frame.luma
            ab = check_chroma(ab, self.engine.name)
            if not ab.any():  # neutral frame: Pb = Pr = 0 exactly, as recombining would give, at no cost
                pb = pr = np.zeros(y.shape, np.float32)
            else:
                pb, pr = recombine_pbpr(y, full_chroma(ab, y, frame.masks), matrix)
            yield decoded, pb, pr

    def _propagate(self, film, info, seg, reader, masks):
        """The temporal stage: the engine on the segment's keyframes, flow between them
        (:mod:`restorer.pipelines.temporal`). Returns the frames' iterator and its statistics."""
        from restorer.io.color import recombine_pbpr
        from restorer.io.decode import LumaReader, luma_to_unit
        from restorer.pipelines.temporal import Item, Propagator, TemporalSettings, window_starts

        shot = seg.shot
        interval = self.opts.keyframe_interval
        starts = window_starts(shot.start, shot.end, interval, getattr(shot, "keyframes", None) or ())
        ctx = self._context(shot, film, (info.height, info.width))

        def colour(item: Item) -> np.ndarray:
            frame = FrameInput(index=item.index, luma=item.luma, masks=item.masks,
                               extra=frame_extra(masks, item.index))
            return check_chroma(next(iter(self.engine.shot(ctx, [frame]))), self.engine.name)

        def items(source) -> Iterator[Item]:
            for decoded in source:
                yield Item(decoded.index, luma_to_unit(decoded.luma, info), masks.get(decoded.index), decoded)

        def next_item() -> Item | None:
            if seg.end >= shot.end:
                return None
            # the next segment's first frame: its keyframe, read apart (its damage is the next segment's)
            return next(items(LumaReader(film, info, start=seg.end + 1, end=shot.end)), None)

        fill = None
        if getattr(self.engine, "has_automatic", False):  # the engine's cheap colour, for what no flow explains
            def fill(item: Item) -> np.ndarray:
                return self.engine.automatic(FrameInput(index=item.index, luma=item.luma, masks=item.masks))

        settings = TemporalSettings(interval=interval)
        prop = Propagator(settings, (info.height, info.width), starts, colour, fill)
        before: Iterator[Item] = iter(())
        if seg.start > shot.start and settings.reconcile > 0:
            # the windows before the segment, read apart (their damage is the previous segment's): the segment's
            # keyframes are reconciled with the keyframes those hold, as in a whole run
            first = starts[max(0, prop.window_of(seg.start - 1) - int(settings.reconcile) + 1)]
            before = items(LumaReader(film, info, start=first, end=seg.start - 1))
        matrix = info.matrix_name

        def frames() -> Iterator:
            for item, ab in prop.run(items(reader), next_item, before):
                y = item.luma
                if not ab.any():
                    pb = pr = np.zeros(y.shape, np.float32)
                else:
                    pb, pr = recombine_pbpr(y, full_chroma(ab, y, item.masks), matrix)
                yield item.payload, pb, pr

        return frames(), prop.stats

    def _assemble(self, film: Path, info, output: Path, segments: list[Path]) -> None:
        from restorer.io.mux import assemble

        assemble(segments, film, info, output, overwrite=self.opts.overwrite)  # atomic: temp name, then rename


def _damage_record(d) -> dict[str, Any]:
    """A :class:`restorer.io.film.Damage` as JSON for the job record and the report."""
    return {"first": d.first, "last": d.last, "start": d.start, "end": d.end, "reason": d.reason}


def damage_summary(damaged: list[dict[str, Any]], limit: int = 5) -> str:
    """'2 damaged range(s) at frames 1 (00:00:00.733), 5-9 (00:00:01.200); the first: <its reason>': the
    first ``limit``, then a count, then the first range's reason (what kind of damage this is)."""
    shown = [(f"{d['first']}" if d["first"] == d["last"] else f"{d['first']}-{d['last']}") + f" ({d['start']})"
             for d in damaged[:limit]]
    more = f" and {len(damaged) - limit} more" if len(damaged) > limit else ""
    why = f"; the first: {damaged[0]['reason']}" if damaged and damaged[0].get("reason") else ""
    return f"{len(damaged)} damaged range(s) at frames " + ", ".join(shown) + more + why


def _strict_error(film: Path, damaged: list[dict[str, Any]]) -> DamagedInputError:
    return DamagedInputError(f"damaged input: {damage_summary(damaged)}", path=film,
                             hint="drop --strict to colorize what decodes")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def frame_extra(masks, index: int) -> dict:
    """What a frame carries beside its masks: the user anchors tracked to it (anchors preset), if any."""
    at = getattr(masks, "anchors_at", None)
    return {} if at is None else {"anchors": at(index)}
