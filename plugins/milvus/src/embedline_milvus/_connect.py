"""Opening a MilvusClient: Milvus Lite folder or server, with one-line errors and quiet logs."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from embedline.contracts import StoreSpec
from embedline.errors import StoreError
from pymilvus import MilvusClient, MilvusException

from embedline_milvus._options import DEFAULT_URI, OPTIONS, is_lite


def quiet_logs() -> None:
    """pymilvus logs an ERROR with a traceback for every failed call, and Milvus Lite (running in this
    process) logs its own; we raise one clear StoreError instead, so both are silenced."""
    # pymilvus configures "pymilvus.milvus_client" with its own handler, so it needs its own level.
    for name in ("pymilvus", "pymilvus.milvus_client", "milvus_lite"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def option(spec: StoreSpec, name: str):
    """An option value (secrets revealed), falling back to the declared default when the core did not
    fill it (e.g. a StoreSpec built by hand)."""
    return spec.option(name, OPTIONS[name].default)


def safe_uri(uri: str) -> str:
    """``uri`` without any ``user:password@`` part, fit for messages."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


class Connection:
    """An open client and how to describe (and release) what it is connected to."""

    def __init__(self, client: MilvusClient, where: str, lite_path: str | None = None):
        self.client = client
        self.where = where
        self.lite_path = lite_path

    def close(self) -> None:
        try:
            self.client.close()
        except MilvusException:
            pass
        if self.lite_path is not None:
            _release_lite(self.lite_path)


def connect(spec: StoreSpec) -> Connection:
    quiet_logs()
    uri = option(spec, "uri") or DEFAULT_URI
    if is_lite(uri):
        return _connect_lite(spec, uri)
    return _connect_server(spec, uri)


# --- Milvus Lite --------------------------------------------------------------------------------

# Milvus Lite keeps one in-process server per folder until the process exits, holding the folder's
# lock all that time.  We count our own opens per folder and stop the server when the last one
# closes, so another process can use the database while this one is still alive.
_lite_opens: dict[str, int] = {}
_lite_lock = threading.Lock()


def _connect_lite(spec: StoreSpec, uri: str) -> Connection:
    path = Path(uri).expanduser()
    if not path.is_absolute():
        path = Path(spec.base_dir) / path
    path = Path(os.path.abspath(path))
    where = f"Milvus Lite database {path}"
    if path.suffix != ".db":
        raise StoreError(f"{where}: a Milvus Lite database path must end in '.db'")
    if path.exists() and not path.is_dir():
        raise StoreError(
            f"{where} is a file; Milvus Lite 3 keeps a database as a folder "
            "(a file may come from an older Milvus Lite): choose another path"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{where}: cannot create folder {path.parent}: {exc.strerror}") from None

    with _lite_lock:
        with _CaptureLiteFailure() as failure:
            try:
                client = MilvusClient(str(path))
            except MilvusException as exc:
                raise StoreError(_lite_open_message(where, failure.exc, exc)) from failure.exc
        _lite_opens[str(path)] = _lite_opens.get(str(path), 0) + 1
    return Connection(client, where, lite_path=str(path))


def _lite_open_message(where: str, cause: BaseException | None, exc: MilvusException) -> str:
    if cause is not None and (type(cause).__name__ == "DataDirLockedError" or "lock" in str(cause).lower()):
        return (
            f"{where} is in use: another process has it open (Milvus Lite allows one process at a time); "
            "wait for it to finish, or use a Milvus server for concurrent access"
        )
    reason = str(cause) if cause is not None else exc.message
    return f"cannot open {where}: {reason.splitlines()[0] if reason else 'unknown error'}"


def _release_lite(path: str) -> None:
    with _lite_lock:
        left = _lite_opens.get(path, 0) - 1
        if left > 0:
            _lite_opens[path] = left
            return
        _lite_opens.pop(path, None)
    try:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)
    except Exception:  # an older/newer milvus-lite without this hook: the lock goes at exit
        pass


class _CaptureLiteFailure(logging.Handler):
    """Milvus Lite swallows the reason it could not open a folder (pymilvus only says "Open local
    milvus failed") and logs it instead; catch that record to tell a locked folder from other faults."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.exc: BaseException | None = None
        self._logger = logging.getLogger("milvus_lite.server_manager")

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.exc = record.exc_info[1]

    def __enter__(self) -> _CaptureLiteFailure:
        self._saved = (self._logger.level, self._logger.propagate)
        self._logger.setLevel(logging.ERROR)
        self._logger.propagate = False  # keep the traceback off stderr
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc_info) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved[0])
        self._logger.propagate = self._saved[1]


# --- Milvus server / Zilliz Cloud ---------------------------------------------------------------


def _connect_server(spec: StoreSpec, uri: str) -> Connection:
    if uri.lower().startswith("grpc://"):
        uri = "http://" + uri[len("grpc://") :]  # pymilvus rejects grpc://; http:// is plain gRPC
    token = option(spec, "token") or ""
    db_name = option(spec, "db_name") or ""
    where = f"Milvus at {safe_uri(uri)}" + (f" (database {db_name!r})" if db_name else "")
    try:
        client = MilvusClient(uri=uri, token=token, db_name=db_name)
    except MilvusException as exc:
        reason = exc.message or f"error code {exc.code}"
        if token:
            reason = reason.replace(token, "***")
        raise StoreError(f"cannot connect to {where}: {reason.splitlines()[0]}") from None
    return Connection(client, where)
