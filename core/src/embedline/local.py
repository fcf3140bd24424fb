"""The built-in executor ``local``: the stages of a run on threads of this process.

    reader (calling thread)     plan.windows()
    workers (N threads)         plan.prepare(window): skip stored ids, ``preprocess``
    embedder (calling thread)   plan.embed(prepared): ``embed``, batch by batch
    writer (one thread)         plan.write(rows): every write of a run goes through it

Joined by bounded queues, so memory stays flat and the model is never waiting on decoding or on
the database.  It is also the reference for writing an executor plugin: ~100 lines.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from embedline import hookimpl
from embedline.contracts import Executor, ExecutorSpec, Option, Plan, PluginInfo

if TYPE_CHECKING:
    from embedline.stages import Writer

#: Embedded batches waiting for the writer; a full queue makes the embedder wait (back-pressure).
WRITE_QUEUE = 4


def _validate(options: Any) -> None:
    for key in ("workers", "write_queue"):
        value = options.get(key)
        if value is not None and value < 1:
            raise ValueError(f"{key}: expected a positive integer, got {value}")


name = "local"
__version__ = "0.1.0"
plugin_info = PluginInfo(
    kind="executor",
    options={
        "workers": Option(int, None, "threads that look up stored ids and run `preprocess` (default: [pipeline] workers)"),
        "write_queue": Option(int, WRITE_QUEUE, "embedded batches that may wait for the writer thread"),
    },
    description="threads in this process: N preprocess workers, the embedder, one writer (the default)",
    validate=_validate,
)


@hookimpl
def executor(spec: ExecutorSpec) -> Executor:
    return LocalExecutor(workers=spec.option("workers"), write_queue=spec.option("write_queue", WRITE_QUEUE))


class LocalExecutor(Executor):
    def __init__(self, workers: int | None = None, write_queue: int = WRITE_QUEUE):
        self.workers = workers
        self.write_queue = write_queue

    def run(self, plan: Plan) -> None:
        workers = self.workers or plan.config.workers
        from embedline.stages import Writer  # here: importing this plugin stays cheap

        writer = Writer(plan.write, self.write_queue)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="embedline-prep") as pool:
                inflight: collections.deque[Future[Any]] = collections.deque()
                try:
                    for window in plan.windows():
                        inflight.append(pool.submit(plan.prepare, window))
                        while len(inflight) > 2 * workers:
                            self._embed(plan, inflight.popleft().result(), writer)
                    while inflight:
                        self._embed(plan, inflight.popleft().result(), writer)
                finally:
                    for future in inflight:
                        future.cancel()
        finally:
            writer.close()  # store what was embedded, whatever stopped the run

    @staticmethod
    def _embed(plan: Plan, prepared: Any, writer: Writer) -> None:
        plan.record(prepared.outcome)
        for rows, outcome in plan.embed(prepared):
            plan.record(outcome)  # first: with on_error = "fail" a failing batch stores nothing
            writer.put(rows)
