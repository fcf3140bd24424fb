"""Dynamic batching: texts from concurrent requests embedded together, in one model call.

Each request puts its texts on a queue as one job and waits on a future.  One worker thread per
model takes the first job, then keeps taking jobs until it holds ``max_batch`` texts (the model's
``batch_size``) or ``max_wait_ms`` have passed since it took the first, embeds all their texts in
one call and gives each job its own rows back.  The wait is skipped while requests come one at a
time (the previous call held a single job): a lone client pays no latency for batching, and the
jobs already queued are still taken together.  While the model is busy, new jobs queue up and the
next call takes them all, so the number of model calls grows much more slowly than the number of
requests, and throughput grows with concurrency.  A job is never split: one request with more
texts than ``max_batch`` is one call (the model cuts it into its own batches).

Jobs of one call share the mode (``query`` or ``document``); a call whose jobs have both modes
makes one model call per mode.  When a call fails, each of its jobs is embedded again on its own,
so a bad input fails its own request only.  A job whose caller went away (its future cancelled)
is dropped before it is embedded.

``enabled=False`` embeds every job in a call of its own, in arrival order: the same code path,
for comparing with batching on.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from typing import Any

log = logging.getLogger("embedline.serve")

#: ``embed(texts, mode) -> float32 array (len(texts), dim)``
EmbedFn = Callable[[list[str], str], Any]

_STOP = object()


class _Job:
    __slots__ = ("texts", "mode", "future")

    def __init__(self, texts: list[str], mode: str):
        self.texts = texts
        self.mode = mode
        self.future: Future[Any] = Future()


class DynamicBatcher:
    """Gathers the texts of concurrent requests into model calls of up to ``max_batch`` texts.

    ``embed`` is called on the worker thread only, holding ``lock`` (when given) so that another
    user of the same model (a search) never runs at the same time.  ``calls``, ``texts`` and
    ``jobs`` count what was done (for tests and the benchmark).
    """

    def __init__(
        self,
        embed: EmbedFn,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        enabled: bool = True,
        lock: AbstractContextManager[Any] | None = None,
        name: str = "embedline-batcher",
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        self._embed = embed
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.enabled = enabled
        self._lock = lock if lock is not None else nullcontext()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._name = name
        self._last_jobs = 2  # jobs the last call took; starts as if concurrent, so the first call waits
        self.calls = 0  # model calls made
        self.texts = 0  # texts embedded
        self.jobs = 0  # jobs (requests) answered, successfully or not

    # -- callers -------------------------------------------------------------------------------

    def submit(self, texts: Sequence[str], mode: str = "document") -> Future[Any]:
        """A future for the rows of ``texts`` (float32, one row per text, in order)."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        job = _Job(list(texts), mode)
        if not job.texts:
            job.future.set_result(None)
            return job.future
        self._ensure_started()
        self._queue.put(job)
        return job.future

    async def embed(self, texts: Sequence[str], mode: str = "document") -> Any:
        """:meth:`submit` for a coroutine: waits without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(texts, mode))

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the worker after the jobs already queued; idempotent."""
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout)

    # -- the worker ----------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                thread.start()
                self._thread = thread

    def _work(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs, n = [first], len(first.texts)
            if self.enabled:
                # Wait for more only when requests have been arriving together: a lone client
                # (the last call held one job) pays no wait, only takes what is already queued.
                wait = self.max_wait if self._last_jobs > 1 else 0.0
                deadline = time.monotonic() + wait
                while n < self.max_batch:
                    remaining = deadline - time.monotonic()
                    try:  # past the deadline, still take what is already queued
                        job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is _STOP:
                        stop = True
                        break
                    jobs.append(job)
                    n += len(job.texts)
            self._last_jobs = len(jobs)
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            try:
                self._run(live)
            except BaseException as exc:  # noqa: BLE001 - never leave a caller waiting forever
                log.exception("batcher %s failed", self._name)
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _run(self, jobs: list[_Job]) -> None:
        modes: dict[str, list[_Job]] = {}
        for job in jobs:
            modes.setdefault(job.mode, []).append(job)
        for mode, group in modes.items():
            texts = [text for job in group for text in job.texts]
            try:
                vectors = self._call(texts, mode)
            except Exception as exc:
                if len(group) == 1:
                    self._fail(group[0], exc)
                    continue
                for job in group:  # find the request at fault: the others still get their rows
                    try:
                        self._resolve(job, self._call(job.texts, mode))
                    except Exception as one:
                        self._fail(job, one)
                continue
            start = 0
            for job in group:
                end = start + len(job.texts)
                self._resolve(job, vectors[start:end])
                start = end

    def _call(self, texts: list[str], mode: str) -> Any:
        with self._lock:
            self.calls += 1
            vectors = self._embed(texts, mode)
        if len(vectors) != len(texts):
            raise RuntimeError(f"the model returned {len(vectors)} rows for {len(texts)} texts")
        self.texts += len(texts)
        return vectors

    def _resolve(self, job: _Job, rows: Any) -> None:
        self.jobs += 1
        job.future.set_result(rows)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        self.jobs += 1
        job.future.set_exception(exc)


__all__ = ["DynamicBatcher"]
