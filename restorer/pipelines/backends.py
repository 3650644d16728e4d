"""Where a run's work is done: in this process (:class:`LocalBackend`) or on a Ray cluster (:class:`RayBackend`).

The units of work are those of the job folder (:mod:`restorer.jobs`): a film's segments and a
batch's photos. Both backends colour them with the same code (``encode_segment``,
``colorize_one``) and the same options, so the output does not depend on the backend, and a
job started on one resumes on the other.

On Ray, each worker is an actor that opens the engine once (:func:`restorer.pipelines.run.open_run_engine`,
the same options) and keeps it; the pool has one actor per CPU of the cluster (or per
``ray_gpus_per_worker`` GPUs). The driver plans, shows the one progress bar, records finished
units in the job folder and assembles the film. The task of a film is one segment; the segments
of a shot with instances go together, in order, to one worker, because the shot's tracked masks
are made once for the whole shot. A worker writes a segment under a temporary name in the job
folder and the driver renames it and records it, so nothing half-written ever sits under a final
name (the job folder must be on a file system every worker sees). A worker that dies (killed, out
of memory) is restarted and its task retried once; a unit that fails twice stops the run with one
line naming it, the finished units kept for the next run.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any, Iterator

from restorer.errors import BackendError, InputError, RestorerError

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
# Tests only: the path of a marker file. A Ray worker that finds it missing creates it and SIGKILLs itself
# in the middle of a segment, once (the marker says it happened), so that the retry can be tested.
KILL_ONCE_ENV = "RESTORER_TEST_KILL_WORKER_ONCE"
MISSING_RAY = 'pip install "restorer[ray]"'


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it (before any model loads)."""
    try:
        import ray
    except ImportError:
        raise BackendError("--backend ray needs Ray, which is not installed",
                           hint=f"{MISSING_RAY}, or use --backend local") from None
    return ray


def make_backend(opts):
    """The backend ``opts.backend`` names; a Ray one checks that Ray is installed (nothing loads yet)."""
    if opts.backend == "local":
        return LocalBackend()
    if opts.backend == "ray":
        return RayBackend(opts)
    raise BackendError(f"unknown backend {opts.backend!r}", hint="use --backend local or --backend ray")


class LocalBackend:
    """Everything in this process, one unit after another: the engine opened here."""

    name = "local"

    def open(self, preset, opts) -> tuple[Any, str]:
        from restorer.pipelines.run import open_run_engine

        return open_run_engine(preset, opts)

    def film(self, pipe, film, info, job, segments, result, bar) -> list[Path]:
        return pipe._run_segments(film, info, job, segments, result, bar)

    def photos(self, pipe, tasks) -> Iterator[tuple[Any, Any]]:
        for task in tasks:
            try:
                yield task, pipe.colorize_one(task)
            except InputError as exc:
                yield task, exc

    def close(self) -> None:
        pass


class RemoteEngine:
    """The driver's stand-in for the engine on a Ray run: the checks that need it (instance texts) run
    on a worker; the colouring itself only ever happens there."""

    def __init__(self, backend: RayBackend, name: str):
        self.backend = backend
        self.name = name

    def validate(self, ctx) -> None:
        self.backend.call(self.backend.actors[0].validate.remote(ctx))


class RayWorker:
    """One Ray actor: the engine, opened once with the run's options, and the pipelines around it."""

    def __init__(self, preset, opts):
        from restorer.console import setup_logging

        setup_logging(quiet=True)
        self.opts = opts
        self.error: RestorerError | None = None
        self.engine = None
        self.device_name = "cpu"
        try:
            from restorer.pipelines.run import open_run_engine

            self.engine, self.device_name = open_run_engine(preset, opts)
        except RestorerError as exc:  # returned by the first call, as one line (not a dead actor)
            self.error = exc
        self.video = None
        self.photo_pipe = None

    def _ready(self):
        if self.error is not None:
            raise self.error

    def describe(self) -> tuple[str, str, int]:
        """The device, the engine's name and this worker's pid."""
        self._ready()
        return self.device_name, getattr(self.engine, "name", "engine"), os.getpid()

    def ping(self) -> None:
        """An empty task (the bench measures the round trip)."""

    def validate(self, ctx) -> None:
        self._ready()
        self.engine.validate(ctx)

    def segments(self, film: Path, output: Path, info, segments: list) -> list[dict[str, Any]]:
        """Colour and encode ``segments`` (consecutive, of one shot when there is more than one), each
        into a temporary file in the job folder; return their records, with ``tmp`` naming that file."""
        from restorer.fs import partial_name
        from restorer.io.decode import LumaReader
        from restorer.jobs import Job
        from restorer.pipelines.tracking import tracker_factory
        from restorer.pipelines.video import VideoColorizationPipeline

        self._ready()
        if self.video is None:
            self.video = VideoColorizationPipeline(self.engine, self.opts, tracker_factory(self.opts, self.device_name))
        job = Job(output, {})  # its paths only: the driver holds the lock and records the units
        tracks: dict = {}
        edge: dict = {}
        first = segments[0].start
        if first > 0:  # the frame before, as the local loop's previous segment leaves it (the stray-frame check)
            before = LumaReader(film, info, start=first - 1, end=first - 1)
            for _ in before:
                pass
            if before.edge is not None:
                edge[before.edge[0]] = before.edge
        records = []
        for seg in segments:
            final = self.video.segment_path(job, seg)
            tmp = partial_name(final)  # unique across the workers' machines; the driver renames it
            record = self.video.encode_segment(film, info, job, seg, tracks, _kill_once_hook(), edge, tmp)
            record["file"] = final.relative_to(job.folder).as_posix()
            record["tmp"] = tmp.relative_to(job.folder).as_posix()
            records.append(record)
        return records

    def photo(self, task) -> list[str]:
        from restorer.pipelines.photo import PhotoColorizationPipeline

        self._ready()
        if self.photo_pipe is None:
            self.photo_pipe = PhotoColorizationPipeline(self.engine, self.opts)
        return self.photo_pipe.colorize_one(task)


def _kill_once_hook():
    """The frame tick of a worker's segment (``tick(keyframes_so_far)``): nothing, unless the tests' kill switch
    is set."""
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return lambda keys=None: None
    count = [0]

    def tick(keys: int | None = None) -> None:
        count[0] += 1
        if count[0] == 2 and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()), encoding="utf-8")
            os.kill(os.getpid(), signal.SIGKILL)

    return tick


def probe_address(address: str, timeout: float = 5.0) -> None:
    """Refuse, at once, an address where nothing answers: ``ray.init`` would otherwise retry for minutes,
    printing Ray's logs. ``auto`` (Ray finds a local cluster itself) is left to Ray.

    Raises:
        BackendError: the address is not HOST:PORT, or no TCP connection opens within ``timeout`` seconds.
    """
    import socket

    if address == "auto":
        return
    bare = address.split("://", 1)[-1]
    host, _, port = bare.rpartition(":")
    hint = "start the cluster with `ray start --head` on its head node and pass --ray-address HEAD:6379"
    if not host or not port.isdigit():
        raise BackendError(f"--ray-address {address!r} is not HOST:PORT", hint=hint)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BackendError(f"nothing answers at --ray-address {address} ({reason})", hint=hint) from None


class RayBackend:
    """An actor pool on a Ray cluster: ``opts.ray_address``, or a local cluster started for the run."""

    name = "ray"

    def __init__(self, opts):
        self.ray = require_ray()
        self.opts = opts
        self.started = False  # whether this run connected to Ray (and so disconnects, or stops its cluster)
        self.actors: list = []
        self.capacity = 1
        self.preset = None

    # -- the pool

    def open(self, preset, opts) -> tuple[RemoteEngine, str]:
        """Connect (or start a local cluster), start the first worker, open its engine; (engine stand-in, device)."""
        ray = self.ray
        self.preset, self.opts = preset, opts
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING, "configure_logging": True}
            where = opts.ray_address or "a local cluster"
            if opts.ray_address:
                probe_address(opts.ray_address)
            try:
                if opts.ray_address:
                    ray.init(address=opts.ray_address, **kwargs)
                else:
                    ray.init(num_cpus=os.cpu_count() or 1, object_store_memory=256 * 1024 ** 2, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BackendError(f"cannot start or reach Ray ({where}): {reason}",
                                   hint="start the cluster with `ray start --head` and pass --ray-address HEAD:6379, "
                                        "or leave --ray-address out for a local cluster") from None
            self.started = True
        self.capacity = self._capacity()
        self._grow(1)
        device, name, _pid = self.call(self.actors[0].describe.remote())
        log.info("ray: %d worker(s) at most on this cluster, %s", self.capacity, device)
        return RemoteEngine(self, name), device

    def _capacity(self) -> int:
        ray = self.ray
        total, free = ray.cluster_resources(), ray.available_resources()
        gpus = self.opts.ray_gpus_per_worker
        if gpus:
            n = int(min(total.get("GPU", 0), free.get("GPU", 0)) // gpus)
            if n < 1:
                raise BackendError(f"--ray-gpus-per-worker {gpus:g}: the Ray cluster has {total.get('GPU', 0):g} "
                                   f"GPU(s), {free.get('GPU', 0):g} free",
                                   hint="lower it, add GPU machines to the cluster, or leave it out to use CPUs")
            return n
        return max(1, int(min(total.get("CPU", 1), free.get("CPU", 1))))

    def _grow(self, wanted: int) -> None:
        """Start workers until there are ``wanted`` (at most the cluster's capacity)."""
        ray = self.ray
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": -1, "max_task_retries": 1}
        if self.opts.ray_gpus_per_worker:
            options["num_gpus"] = self.opts.ray_gpus_per_worker
        env = {k: v for k, v in os.environ.items() if k.startswith("RESTORER_")}
        if env:
            options["runtime_env"] = {"env_vars": env}
        cls = ray.remote(RayWorker)
        while len(self.actors) < min(max(1, wanted), self.capacity):
            self.actors.append(cls.options(**options).remote(self.preset, self.opts))

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False

    def call(self, ref):
        """``ray.get`` with a worker's own error raised as itself (one line)."""
        out = self._outcome(ref)
        if isinstance(out, BaseException):
            if isinstance(out, RestorerError):
                raise out
            raise BackendError(f"a Ray worker failed: {_why(out)}", hint="run with RESTORER_DEBUG=1 for details")
        return out

    def _outcome(self, ref):
        from ray.exceptions import RayTaskError

        try:
            return self.ray.get(ref)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            return cause if isinstance(cause, RestorerError) else exc
        except Exception as exc:  # noqa: BLE001 - a dead actor, a lost object: the unit failed
            return exc

    def _dispatch(self, units: list, submit, depth: int = 1) -> Iterator[tuple[Any, Any]]:
        """Hand ``units`` to the workers (``depth`` in flight each); yield (unit, result or exception) as each
        finishes. Setting ``self.stopping`` submits nothing more; what is in flight still comes back."""
        ray = self.ray
        pending = list(reversed(units))
        inflight: dict = {}
        load = {id(a): 0 for a in self.actors}
        self.stopping = False
        while inflight or (pending and not self.stopping):
            for actor in self.actors:
                while pending and not self.stopping and load[id(actor)] < depth:
                    unit = pending.pop()
                    inflight[submit(actor, unit)] = (unit, actor)
                    load[id(actor)] += 1
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                unit, actor = inflight.pop(ref)
                load[id(actor)] -= 1
                yield unit, self._outcome(ref)

    # -- the work

    def film(self, pipe, film, info, job, segments, result, bar) -> list[Path]:
        task = bar.add_task(film.name, total=info.frame_count) if bar is not None else None

        def advance(seg) -> None:
            if bar is not None:
                bar.advance(task, seg.end - seg.start + 1)

        records: dict[str, dict] = {}
        groups: list[list] = []
        for seg in segments:
            record = job.unit_done(seg.name)
            if record is not None:
                records[seg.name] = record
                result.frames_reused += record["frames"]
                advance(seg)
            elif seg.shot.instances and groups and groups[-1][-1].shot.index == seg.shot.index \
                    and groups[-1][-1].end + 1 == seg.start:
                groups[-1].append(seg)  # the shot's masks are tracked once, by the worker of its first segment
            else:
                groups.append([seg])
        self._grow(len(groups))
        info_ref = self.ray.put(info)
        error: RestorerError | None = None
        for group, out in self._dispatch(groups, lambda a, g: a.segments.remote(film, job.output, info_ref, g)):
            if isinstance(out, BaseException):
                if error is None:
                    error = out if isinstance(out, RestorerError) else _unit_failed(film, group, out)
                self.stopping = True
                continue
            for seg, record in zip(group, out, strict=True):
                tmp = job.folder / record.pop("tmp")
                if tmp.exists():  # none when the segment decoded to no frames
                    os.replace(tmp, job.folder / record["file"])
                job.finish_unit(seg.name, record)
                records[seg.name] = record
                result.frames_processed += record["frames"]
                if bar is not None:
                    bar.update(task, description=f"{film.name} shot {seg.shot.index + 1}")
                advance(seg)
        if error is not None:
            raise error
        return _collect(pipe, job, segments, records, result)

    def photos(self, pipe, tasks) -> Iterator[tuple[Any, Any]]:
        if not tasks:
            return
        self._grow(len(tasks))
        error: RestorerError | None = None
        for task, out in self._dispatch(tasks, lambda a, t: a.photo.remote(t), depth=2):
            if isinstance(out, InputError):
                yield task, out
            elif isinstance(out, BaseException):
                if error is None:
                    error = out if isinstance(out, RestorerError) else BackendError(
                        f"{task.source}: failed on the Ray workers twice: {_why(out)}",
                        hint="the photos finished are kept: run the same command again to go on")
                self.stopping = True  # the photos in flight still finish and are recorded
            else:
                for warning in out:
                    log.warning(warning)
                yield task, out
        if error is not None:
            raise error


def _collect(pipe, job, segments, records, result) -> list[Path]:
    """The finished segments in film order, tallied into ``result`` as the local loop does."""
    files = []
    propagated, counted = 0.0, 0
    for seg in segments:
        record = records[seg.name]
        result.damaged.extend(record["damaged"])
        if "keyframes" in record:
            result.keyframes.setdefault(seg.shot.index, []).extend(record["keyframes"])
            propagated += record["propagated"]
        counted += record["frames"]
        if result.damaged and pipe.opts.strict:
            break
        if record["frames"]:
            files.append(job.folder / record["file"])
    result.propagated_share = propagated / counted if counted else 0.0
    return files


def _why(exc: BaseException) -> str:
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None:
        exc = exc.cause
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    name = type(exc).__name__
    if "ActorDied" in name or "ActorError" in name or "WorkerCrashed" in name:
        return "its worker died (killed, or out of memory) and died again on the retry"
    text = str(exc).strip().splitlines()
    return f"{name}: {text[0]}" if text else name


def _unit_failed(film: Path, group: list, exc: BaseException) -> BackendError:
    names = group[0].name if len(group) == 1 else f"{group[0].name} to {group[-1].name}"
    return BackendError(f"{film}: {names} (shot {group[0].shot.index + 1}) failed on the Ray workers: {_why(exc)}",
                        hint="the segments finished are kept: run the same command again to resume")
