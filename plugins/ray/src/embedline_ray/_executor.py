"""The ``ray`` executor: the driver reads, records and writes; Ray actors prepare and embed.

    driver thread      plan.windows()   read, route, content ids, dedupe (the run's ledger)
                       skip_stored      ids already stored under the model are not sent
                       submit           to the least busy actor of the window's model
                       collect          results in submission order: plan.record(outcome) ...
    writer thread      plan.write(rows) ... then the rows are written (or the actors wrote them)
    actors (N/model)   Worker.work      preprocess + embed, the model loaded once per actor

Results are taken in the order the windows were read, so counts, the failure report and
``on_error = "fail"`` come out exactly as with ``local``.  Ray is imported here, when a run
starts, never when the plugin is loaded.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
from embedline.contracts import Executor, ExecutorSpec, Plan
from embedline.errors import ConfigError, EmbedlineError, ModelMismatchError, ModelSourceError
from embedline.stages import Rows, Writer, skip_stored

from embedline_ray._worker import RemoteError, Worker, unpack

log = logging.getLogger("embedline.ray")

#: URI schemes of a store every worker can reach (a server); anything else is a local file.
SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "grpcs://")

#: Driver environment variables handed to the actors (set there unless already set): offline
#: switches, caches, embedline's own.  Nothing that looks like a credential.
_ENV_PREFIXES = ("EMBEDLINE_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "SENTENCE_TRANSFORMERS_", "TORCH_HOME")
_ENV_SECRETS = ("TOKEN", "KEY", "SECRET", "PASSWORD")


@attrs.frozen
class Settings:
    address: str | None = None
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    threads_per_actor: int | None = None
    batch_size: int | None = None
    inflight: int = 2
    write: str = "auto"
    write_queue: int = 4
    num_cpus: int | None = None
    ready_timeout: float = 600.0

    @classmethod
    def from_spec(cls, spec: ExecutorSpec) -> Settings:
        given = {f.name: spec.option(f.name) for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in given.items() if v is not None})

    @property
    def threads(self) -> int:
        return self.threads_per_actor or max(1, round(self.cpus_per_actor))


def local_cpus(settings: Settings, models: int) -> int:
    """Logical CPUs for a Ray started here: one more than the cores, and at least what every
    actor asks for plus one, so that neither the actors nor a task ever wait on Ray's CPU
    budget (on 2 cores, whole-CPU requests stall a pipeline for good); the cores, not the budget,
    then limit the speed."""
    if settings.num_cpus:
        return settings.num_cpus
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = math.ceil(settings.actors * models * settings.cpus_per_actor) + 1
    return max(cores + 1, wanted)


def start_local_ray(num_cpus: int) -> None:
    """A Ray for this process only: ``num_cpus`` logical CPUs, no dashboard, workers' output not
    copied to this process's terminal (it stays in Ray's session logs).  Ray 2.60 turns token
    authentication on for a new local cluster and warns that it did; that one record is dropped
    (during this call only: the host's logging is left as it is)."""
    import ray

    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    quiet = _DropTokenNotice()
    logger.addFilter(quiet)
    try:
        # Ray waits 30 s for its GCS to bind a port; a loaded 2-core machine can take longer.
        with _ray_environment(RAY_gcs_server_port_wait_time_s="120"):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    finally:
        logger.removeFilter(quiet)


@contextlib.contextmanager
def _ray_environment(**defaults: str) -> Iterator[None]:
    """Usage statistics off (a run must not phone home) and ``defaults``, unless the host set them,
    for the duration of ``ray.init`` only: the processes Ray starts then inherit them, and the
    host's environment is as it was afterwards."""
    added = [name for name in ("RAY_USAGE_STATS_ENABLED", *defaults) if name not in os.environ]
    os.environ.update({name: {"RAY_USAGE_STATS_ENABLED": "0", **defaults}[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


class _DropTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def writes_from_workers(settings: Settings, store: Any) -> bool:
    if settings.write != "auto":
        return settings.write == "workers"
    uri = store.options.get("uri") if hasattr(store, "options") else None
    uri = getattr(uri, "reveal", lambda: uri)()
    return isinstance(uri, str) and uri.lower().startswith(SERVER_SCHEMES)


def worker_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items()
        if k.startswith(_ENV_PREFIXES) and not any(s in k.upper() for s in _ENV_SECRETS)
    }


@attrs.define
class _Pending:
    ref: Any
    target: int
    actor: int
    skipped: int  # ids of the window found stored by the driver: added to its prepare outcome


class _Pool:
    """The actors of one model, each with the number of calls it has queued."""

    def __init__(self, actors: list[Any], pids: list[int]):
        self.actors = actors
        self.pids = pids
        self.busy = [0] * len(actors)
        self._next = 0

    def pick(self) -> int:
        least = min(self.busy)
        for k in range(len(self.actors)):  # round robin among the least busy
            i = (self._next + k) % len(self.actors)
            if self.busy[i] == least:
                self._next = i + 1
                return i
        return 0


class RayExecutor(Executor):
    def __init__(self, settings: Settings):
        self.settings = settings
        self._pools: dict[int, _Pool] = {}
        self._store_specs: dict[int, Any] = {}  # model index -> the store its workers write to (or None)
        self._started = False  # this executor started Ray (and stops it on close)
        self._ray: Any = None

    # -- Ray ------------------------------------------------------------------------------------

    def _connect(self, plan: Plan) -> Any:
        if self._ray is not None:
            return self._ray
        import ray

        if not ray.is_initialized():
            if self.settings.address is None:
                start_local_ray(local_cpus(self.settings, len(plan.targets)))
            else:
                with _ray_environment():
                    ray.init(address=self.settings.address, log_to_driver=False, logging_level=logging.WARNING)
            self._started = True
        self._ray = ray
        return ray

    def _pool(self, plan: Plan, index: int) -> _Pool:
        pool = self._pools.get(index)
        if pool is not None:
            return pool
        ray = self._ray
        s = self.settings
        spec = plan.config.models[index]
        store_spec = plan.config.store if writes_from_workers(s, plan.config.store) else None
        remote = ray.remote(Worker).options(
            num_cpus=s.cpus_per_actor, num_gpus=s.gpus_per_actor, max_restarts=0, name=None
        )
        actors = [
            remote.remote(
                spec, cwd=os.getcwd(), threads=s.threads, env=worker_env(), store_spec=store_spec,
                fail_fast=getattr(plan.config, "on_error", None) == "fail",
            )
            for _ in range(s.actors)
        ]
        try:
            answers = self._ready(actors, index, plan)
        except BaseException:
            for actor in actors:
                ray.kill(actor)
            raise
        target = plan.targets[index]
        for status, value, _ in answers:
            if status == "error":
                for actor in actors:
                    ray.kill(actor)
                plan.model(index)  # the driver loads it too: the error `local` gives, file and key named
                raise _located(value.rebuild(), plan, index)  # it loads here: a worker's own problem
            if value != target.identity:
                for actor in actors:
                    ray.kill(actor)
                plan.model(index)  # raises ModelMismatchError exactly as `local` does
                raise ModelMismatchError(
                    f"collection {target.collection!r}: the Ray workers' model has identity {value}, "
                    f"the collection's is {target.identity}"
                )
        pool = self._pools[index] = _Pool(actors, [pid for _, _, pid in answers])
        self._store_specs[index] = store_spec
        log.info("ray: %d actor(s) for model %d (pids %s)", len(actors), index, pool.pids)
        return pool

    def _ready(self, actors: list[Any], index: int, plan: Plan) -> list[tuple[str, Any, int]]:
        """Wait until every actor is placed and has loaded its model; say why if it takes too long."""
        ray = self._ray
        refs = [a.ready.remote() for a in actors]
        deadline = time.monotonic() + self.settings.ready_timeout
        while True:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=min(5.0, max(0.0, deadline - time.monotonic())))
            if len(done) == len(refs):
                return ray.get(refs)
            if time.monotonic() >= deadline:
                s = self.settings
                raise EmbedlineError(
                    f"ray executor: the actors of model {index} ({plan.config.models[index].key}) were not ready after "
                    f"{s.ready_timeout:g} s: {len(done)} of {len(refs)} started, each asking for {s.cpus_per_actor:g} "
                    f"CPU(s) and {s.gpus_per_actor:g} GPU(s); the cluster has {ray.available_resources()} free of "
                    f"{ray.cluster_resources()}. Lower `cpus_per_actor` or `actors`, or add nodes"
                )

    # -- a run ----------------------------------------------------------------------------------

    def run(self, plan: Plan) -> None:
        ray = self._connect(plan)
        writer = Writer(plan.write, self.settings.write_queue, name="embedline-ray-writer")
        inflight: collections.deque[_Pending] = collections.deque()
        finished = False
        try:
            try:
                for window in plan.windows():
                    target = plan.targets[window.target]
                    todo, skipped = skip_stored(plan.store, target, window.items)
                    if not todo:
                        plan.record(skipped)
                        continue
                    pool = self._pool(plan, window.target)
                    for n, chunk in enumerate(self._chunks(todo)):
                        i = pool.pick()
                        ref = pool.actors[i].work.remote(target, chunk)
                        pool.busy[i] += 1
                        inflight.append(_Pending(ref, window.target, i, skipped.skipped if n == 0 else 0))
                        while len(inflight) > self._queued():
                            self._collect(plan, inflight.popleft(), writer)
                while inflight:
                    self._collect(plan, inflight.popleft(), writer)
                finished = True
            finally:
                for pending in inflight:  # never recorded, so never to be stored
                    self._pools[pending.target].busy[pending.actor] -= 1
                    try:
                        ray.cancel(pending.ref)
                    except Exception:  # noqa: S110 - already done, or an actor that is gone
                        pass
                inflight.clear()
        finally:
            try:
                writer.close()  # store what was embedded and recorded, whatever stopped the run
            finally:
                self._finish_workers(report=finished)

    def _queued(self) -> int:
        """Calls that may be in flight: ``inflight`` per actor of every model started so far."""
        return max(1, self.settings.inflight * sum(len(p.actors) for p in self._pools.values()))

    def _chunks(self, items: list[Any]) -> Iterator[list[Any]]:
        size = self.settings.batch_size or len(items)
        for start in range(0, len(items), size):
            yield items[start : start + size]

    def _collect(self, plan: Plan, pending: _Pending, writer: Writer) -> None:
        pool = self._pools[pending.target]
        try:
            result = self._ray.get(pending.ref)
        except self._ray.exceptions.RayActorError as exc:
            raise EmbedlineError(
                f"ray executor: an actor of model {pending.target} ({plan.config.models[pending.target].key}) died: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            ) from exc
        finally:
            pool.busy[pending.actor] -= 1
        if isinstance(result, RemoteError):
            raise result.rebuild()
        prepare, batches, counters = result
        if counters:  # the summary adds up what the driver's model counted: count there too
            model = plan.model(pending.target)
            for name, n in counters.items():
                model.model.count(name, n)
        outcome = unpack(prepare)
        outcome.skipped += pending.skipped
        with _interrupt_after():  # a Ctrl-C here would leave rows recorded as embedded but not stored
            plan.record(outcome)
            for rows, packed in batches:
                plan.record(unpack(packed))  # first: with on_error = "fail" a failing batch stores nothing
                if isinstance(rows, Rows):
                    writer.put(rows)

    def _finish_workers(self, report: bool) -> None:
        """Workers that wrote close their store: every row is durable before the run returns.
        Their errors are raised only when nothing else stopped the run (``report``)."""
        if self._ray is None or not any(s is not None for s in self._store_specs.values()):
            return
        errors: list[BaseException] = []
        for pool in self._pools.values():
            for actor in pool.actors:
                try:
                    error = self._ray.get(actor.finish.remote(), timeout=self.settings.ready_timeout)
                except Exception as exc:  # an actor that died: what it wrote before is in the store
                    errors.append(EmbedlineError(f"ray executor: a worker could not close its store: {exc}"))
                    continue
                if error is not None:
                    errors.append(error.rebuild())
        if errors and report:
            raise errors[0]

    def close(self) -> None:
        ray, self._ray = self._ray, None
        pools, self._pools = self._pools, {}
        self._store_specs = {}
        if ray is None:
            return
        for pool in pools.values():
            for actor in pool.actors:
                try:
                    ray.kill(actor)
                except Exception:  # noqa: S110 - already gone
                    pass
        if self._started and ray.is_initialized():
            ray.shutdown()


def _located(exc: BaseException, plan: Plan, index: int) -> BaseException:
    """A model error from a worker, naming the pipeline file and key as the core does for ``local``."""
    if isinstance(exc, ModelSourceError) and exc.source is None:
        spec = plan.config.models[index]
        located: BaseException = ModelSourceError(
            exc.reason, source=plan.config.origin, key=f"{spec.key}.name" if spec.name else spec.key
        )
    elif isinstance(exc, ConfigError) and exc.source is None:
        located = ConfigError(exc.reason, source=plan.config.origin, key=exc.key)
    else:
        return exc
    for note in getattr(exc, "__notes__", ()):  # the worker's traceback
        located.add_note(note)
    return located


@contextlib.contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold a SIGINT (Ctrl-C) that arrives inside the block until the block is done, so that each
    result is recorded and queued for writing whole.  A second SIGINT interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[Any] = []

    def hold(signum: int, frame: Any) -> None:
        if held:
            raise KeyboardInterrupt
        held.append(frame)

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        if callable(previous):
            previous(signal.SIGINT, held[0])
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt
