"""pymilvus and Milvus Lite stay quiet during embedline's own calls, and only then.

pymilvus logs an ERROR with a traceback for every failed call (its ``pymilvus`` logger has a
stderr handler of its own), and Milvus Lite logs why it could not open a folder; embedline raises
one clear ``StoreError`` instead.  The host process may use pymilvus too, so levels and handlers
are left as the host set them.  While a connection is open, a filter sits on every ``pymilvus``
and ``milvus_lite`` logger (a record is filtered by the logger that emits it, not by its
parents); it drops only the records emitted on a thread that is inside one of our calls
(``with ours():``).  Records of the host's threads pass, and so does everything once our call
returns.  When the last connection closes, the filters are removed.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

NAMESPACES = ("pymilvus", "milvus_lite")

_state = threading.local()  # per thread: depth of our calls, the list that keeps what they dropped
_lock = threading.Lock()
_connections = 0  # open connections: the filters are on the loggers while this is above 0
_filtered: set[str] = set()
_seen = -1  # size of logging's table of loggers when the filter was last spread


class _DuringOurCalls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(_state, "depth", 0):
            return True
        caught = getattr(_state, "caught", None)
        if caught is not None:
            caught.append(record)
        return False


_FILTER = _DuringOurCalls()


def attach() -> None:
    """A connection opens: filter the loggers (the first one puts the filter on them)."""
    global _connections
    with _lock:
        _connections += 1
        _spread()


def detach() -> None:
    """A connection closed: the last one takes the filter off every logger it was put on."""
    global _connections, _seen
    with _lock:
        _connections = max(_connections - 1, 0)
        if _connections:
            return
        for name in _filtered:
            logging.getLogger(name).removeFilter(_FILTER)
        _filtered.clear()
        _seen = -1


@contextmanager
def ours(caught: list[logging.LogRecord] | None = None) -> Iterator[None]:
    """Records these libraries emit on this thread inside the block are dropped (and appended to
    ``caught`` when given)."""
    depth = getattr(_state, "depth", 0)
    saved = getattr(_state, "caught", None)
    if depth == 0 and len(logging.Logger.manager.loggerDict) != _seen:
        with _lock:  # loggers created since (a module imported late) get the filter too
            _spread()
    _state.depth = depth + 1
    if caught is not None:
        _state.caught = caught
    try:
        yield
    finally:
        _state.depth = depth
        _state.caught = saved


F = TypeVar("F", bound=Callable[..., Any])


def quiet(method: F) -> F:
    """A method whose whole call is one of ours (not for generators: see ``MilvusStore.scan``)."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with ours():
            return method(*args, **kwargs)

    return call  # type: ignore[return-value]


def _spread() -> None:
    global _seen
    if not _connections:
        return
    table = logging.Logger.manager.loggerDict
    for name, logger in list(table.items()):
        if name in _filtered or not isinstance(logger, logging.Logger) or name.split(".")[0] not in NAMESPACES:
            continue
        logger.addFilter(_FILTER)
        _filtered.add(name)
    _seen = len(table)
