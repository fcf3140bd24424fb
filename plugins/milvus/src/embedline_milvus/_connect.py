"""Opening a MilvusClient: Milvus Lite folder or server, with one-line errors; logs quiet during our calls only."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

from embedline.contracts import StoreSpec
from embedline.errors import StoreError
from embedline.toolkit import redact_uri, redact_uris_in
from pymilvus import MilvusClient, MilvusException

from embedline_milvus import _logs
from embedline_milvus._logs import ours
from embedline_milvus._options import DEFAULT_URI, OPTIONS, is_lite


def option(spec: StoreSpec, name: str):
    """An option value (secrets revealed), falling back to the declared default when the core did not
    fill it (e.g. a StoreSpec built by hand)."""
    return spec.option(name, OPTIONS[name].default)


def _hide_credentials(text: str, uri: str, token: str) -> str:
    """``text`` (a client error) with the token, the URI's password and every URI's credentials as ``***``."""
    try:
        password = urlsplit(uri).password or ""
    except ValueError:
        password = ""
    for secret in (token, password if len(password) >= 4 else ""):  # not every "a" of the message
        if secret:
            text = text.replace(secret, "***")
    return redact_uris_in(text)


class Connection:
    """An open client and how to describe (and release) what it is connected to."""

    def __init__(self, client: MilvusClient, where: str, lite_path: str | None = None, lease=None):
        self.client = client
        self.where = where
        self.lite_path = lite_path  # an in-process Milvus Lite (lite_engine = "inline")
        self.lease = lease  # a hold on the shared Milvus Lite engine (lite_engine = "process")
        self.filtered = False  # whether this connection keeps the log filter on (see connect)

    def engine_gone(self) -> bool:
        """True when this connection's Milvus Lite engine process has stopped (killed, say)."""
        return self.lease is not None and not self.lease.alive()

    def close(self) -> None:
        filtered, self.filtered = self.filtered, False
        try:
            with ours():
                try:
                    self.client.close()
                except MilvusException:
                    pass
                if self.lite_path is not None:
                    _release_lite(self.lite_path)
                if self.lease is not None:
                    self.lease.close()  # the engine stops when its last user has closed
        finally:
            if filtered:
                _logs.detach()


def connect(spec: StoreSpec) -> Connection:
    """Open a client; its logs are quiet during our calls only (``embedline_milvus._logs``)."""
    _logs.attach()
    try:
        uri = option(spec, "uri") or DEFAULT_URI
        conn = _connect_lite(spec, uri) if is_lite(uri) else _connect_server(spec, uri)
    except BaseException:
        _logs.detach()
        raise
    conn.filtered = True
    return conn


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

    if option(spec, "lite_engine") == "process":
        return _connect_engine(path, where)
    _import_lite()
    # Milvus Lite swallows the reason it could not open a folder (pymilvus only says "Open local
    # milvus failed") and logs it instead: the records our call drops tell a locked folder from
    # other faults.
    caught: list[logging.LogRecord] = []
    with _lite_lock:
        try:
            with ours(caught):
                client = MilvusClient(str(path))
        except MilvusException as exc:
            cause = next((r.exc_info[1] for r in caught if r.exc_info and r.exc_info[1] is not None), None)
            raise StoreError(_lite_open_message(where, cause, exc)) from cause
        _lite_opens[str(path)] = _lite_opens.get(str(path), 0) + 1
    return Connection(client, where, lite_path=str(path))


def _connect_engine(path: Path, where: str) -> Connection:
    """A client of the Milvus Lite engine process shared by every user of ``path`` (``_engine``)."""
    from embedline_milvus import _engine

    try:
        path.mkdir(exist_ok=True)  # the engine's flock is on the folder itself
    except OSError as exc:
        raise StoreError(f"{where}: cannot create the folder: {exc.strerror}") from None
    try:
        lease = _engine.acquire(str(path))
    except _engine.EngineError as exc:
        if exc.locked:
            raise StoreError(
                f"{where} is in use: another process has it open with an in-process Milvus Lite "
                "(lite_engine = \"inline\"); wait for it to finish, or open it with the default lite_engine = \"process\""
            ) from None
        raise StoreError(f"cannot open {where}: {exc.reason}") from None
    except OSError as exc:
        raise StoreError(f"cannot open {where}: {exc.strerror or exc}") from None
    try:
        with ours():
            client = MilvusClient(uri=lease.uri)
    except MilvusException as exc:
        lease.close()
        raise StoreError(f"cannot open {where}: its engine did not answer: {exc.message}") from None
    except BaseException:
        lease.close()
        raise
    return Connection(client, where, lease=lease)


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


def _import_lite() -> None:
    """Milvus Lite's modules, imported before the first open so that their loggers exist when the
    filter is spread (pymilvus imports them only inside the call that opens the folder)."""
    try:
        import milvus_lite.adapter.grpc.server  # noqa: F401
        import milvus_lite.server_manager  # noqa: F401
    except ImportError:  # another Milvus Lite layout: its records are filtered from the next call on
        pass


# --- Milvus server / Zilliz Cloud ---------------------------------------------------------------


def _connect_server(spec: StoreSpec, uri: str) -> Connection:
    if uri.lower().startswith("grpc://"):
        uri = "http://" + uri[len("grpc://") :]  # pymilvus rejects grpc://; http:// is plain gRPC
    token = option(spec, "token") or ""
    db_name = option(spec, "db_name") or ""
    where = f"Milvus at {redact_uri(uri)}" + (f" (database {db_name!r})" if db_name else "")
    try:
        with ours():
            client = MilvusClient(uri=uri, token=token, db_name=db_name)
    except MilvusException as exc:
        reason = _hide_credentials(exc.message or f"error code {exc.code}", uri, token)
        raise StoreError(f"cannot connect to {where}: {reason.splitlines()[0]}") from None
    return Connection(client, where)
