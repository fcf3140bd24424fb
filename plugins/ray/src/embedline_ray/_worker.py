"""What runs inside a Ray actor: one model, loaded once; items in, rows and outcomes out.

Nothing here imports Ray: :class:`Worker` is a plain class that ``_executor`` wraps with
``ray.remote``, so it can also be tested in-process.  What crosses the process boundary is
plain data: embedline's exceptions take their fields as ``__init__`` arguments and do not
unpickle, so failures travel as ``(uri, stage, reason)`` and other errors as
:class:`RemoteError`, and both are rebuilt as the same classes on the driver.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from embedline.errors import ItemError
from embedline.stages import Outcome, Rows, embed_window, prepare_window, write_rows

#: Environment variables that set how many threads math libraries use in a process.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")

PackedOutcome = tuple[int, int, int, int, list[tuple[str, str, str]], dict[str, int]]


def pack(outcome: Outcome) -> PackedOutcome:
    failures = [(e.uri, e.stage, e.reason) for e in outcome.failures]
    return (outcome.units, outcome.items, outcome.embedded, outcome.skipped, failures, dict(outcome.unrouted))


def unpack(packed: PackedOutcome) -> Outcome:
    units, items, embedded, skipped, failures, unrouted = packed
    return Outcome(
        units=units, items=items, embedded=embedded, skipped=skipped,
        failures=[ItemError(uri, stage, reason) for uri, stage, reason in failures], unrouted=dict(unrouted),
    )


class RemoteError:
    """An exception raised in a worker, carried to the driver and raised there as the same class
    (``args`` and attributes restored without calling ``__init__``), with the worker's traceback."""

    def __init__(self, exc: BaseException, where: str):
        self.where = where
        self.text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.payload: bytes | None
        try:
            self.payload = pickle.dumps((type(exc), exc.args, dict(vars(exc))))
            pickle.loads(self.payload)  # importable on this side at least
        except Exception:  # an exception class or attribute that does not travel
            self.payload = None
        self.summary = f"{type(exc).__name__}: {exc}"

    def rebuild(self) -> BaseException:
        if self.payload is not None:
            try:
                cls, args, state = pickle.loads(self.payload)
                exc = cls.__new__(cls)
                exc.args = args
                exc.__dict__.update(state)
                if hasattr(exc, "add_note"):
                    exc.add_note(f"(raised in {self.where}; its traceback:)\n{self.text}")
                return exc
            except Exception:  # noqa: S110 - the class is not importable here: the fallback below
                pass
        return RuntimeError(f"{self.where}: {self.summary}\n{self.text}")


def limit_threads(threads: int | None) -> None:
    """Math libraries in this process use ``threads`` threads (set before they are imported)."""
    if threads is None:
        return
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")  # already imported (a reused worker process): tell it directly
    if torch is not None:
        torch.set_num_threads(threads)


class Worker:
    """One model in one actor.  ``work`` prepares and embeds items; with ``store_spec`` it also
    writes the rows itself (a server every worker can reach) and returns their count instead."""

    def __init__(
        self,
        spec: Any,
        *,
        cwd: str | None = None,
        threads: int | None = None,
        env: Mapping[str, str] | None = None,
        store_spec: Any = None,
        fail_fast: bool = False,
    ):
        self.error: RemoteError | None = None
        self.model: Any = None
        self.store: Any = None
        self.store_spec = store_spec
        self.fail_fast = fail_fast  # on_error = "fail": a batch with a failure is not written
        self._counted: dict[str, int] = {}
        try:
            for name, value in (env or {}).items():
                os.environ.setdefault(name, value)
            limit_threads(threads)
            if cwd and os.path.isdir(cwd):  # relative paths mean the same as on the driver
                os.chdir(cwd)
            from embedline import load_model

            self.model = load_model(spec)
        except BaseException as exc:  # reported by ready(), on the driver
            self.error = RemoteError(exc, f"a Ray worker loading model {getattr(spec, 'key', '?')!r}")

    def ready(self) -> tuple[str, Any, int]:
        """``("ok", model identity, pid)``, or ``("error", RemoteError, pid)`` if loading failed."""
        if self.error is not None:
            return "error", self.error, os.getpid()
        return "ok", self.model.identity, os.getpid()

    def work(self, target: Any, items: Sequence[Any]) -> Any:
        """Prepare and embed ``items`` for ``target``: ``(prepare outcome, [(rows, outcome), ...],
        counters)`` where ``rows`` is a :class:`Rows`, or the number of rows this worker wrote, or
        ``None`` (a batch not written because of a failure under ``on_error = "fail"``).  An error
        that stops the run comes back as a :class:`RemoteError`."""
        if self.error is not None:
            return self.error
        try:
            prepared = prepare_window(self.model, target.index, list(items))
            batches: list[tuple[Any, PackedOutcome]] = []
            if prepared.prepared is not None:
                for rows, outcome in embed_window(self.model, target, prepared.prepared):
                    batches.append((self._deliver(rows, outcome), pack(outcome)))
                    if self.fail_fast and outcome.failures:
                        break  # the driver raises at this outcome: embedding more is wasted
            return pack(prepared.outcome), batches, self._counters()
        except BaseException as exc:
            return RemoteError(exc, f"a Ray worker of model {target.index} ({target.collection!r})")

    def _deliver(self, rows: Rows, outcome: Outcome) -> Rows | int | None:
        if self.store_spec is None:
            return rows
        if self.fail_fast and outcome.failures:
            return None
        if rows.records:
            if self.store is None:
                from embedline import get_plugin_manager

                self.store = get_plugin_manager().call("store", self.store_spec.plugin, spec=self.store_spec)
            write_rows(self.store, rows)
        return len(rows.records)

    def _counters(self) -> dict[str, int]:
        """What the model counted (``truncated``, ...) since the last call."""
        now = dict(self.model.model.counters)
        delta = {k: n - self._counted.get(k, 0) for k, n in now.items() if n != self._counted.get(k, 0)}
        self._counted = now
        return delta

    def finish(self) -> RemoteError | None:
        """Close the store this worker wrote to: its rows are durable and visible to others."""
        store, self.store = self.store, None
        if store is None:
            return None
        try:
            store.close()
        except BaseException as exc:
            return RemoteError(exc, "a Ray worker closing its store")
        return None
