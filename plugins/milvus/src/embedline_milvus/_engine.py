"""Milvus Lite's engine in a process of its own, shared by every process that opens the same ``.db``.

Milvus Lite 3 is a Python engine.  Run inside the pipeline's process, its work holds the GIL
while the model encodes, and its lock on the folder lets one process at a time open the
database, so a search fails while a run is writing.  Here the engine runs in a separate
process that every user of the folder shares, and stops when the last one is gone::

    a user (any process)                           the engine (python -m embedline_milvus._engine DIR)
    flock(DIR) ──┐                                 MilvusLite(DIR), gRPC on 127.0.0.1:PORT
    connect to the lease socket ──  hello  ──────► users += 1
                 ◄──────────────── port PORT ────
    unlock ──────┘
    MilvusClient("http://127.0.0.1:PORT") ───────► insert, search, ...  (writes one at a time)
    close, exit or kill -9 ─────────  EOF  ──────► users -= 1; none left for LINGER s: stop, exit

- **Finding the engine.**  The lease socket's address comes from the folder's absolute path
  (an abstract Unix socket on Linux: no file to go stale; a socket file in a private temporary
  folder elsewhere).  A user takes an exclusive ``flock`` on the folder itself while it connects,
  and starts the engine if nothing answers; so two users never start two engines, and an engine
  never stops between a user's connect and its hello.
- **Its lifetime is its users'.**  A user holds one socket connection for as long as it has
  the database open; the kernel closes it when the user exits or is killed, so the engine sees
  every user go.  With none left for ``LINGER`` seconds (a pipeline that opens the store again
  right away reuses the engine), it takes the folder's ``flock`` without waiting, closes the
  socket, stops the gRPC server and closes the database (which releases Milvus Lite's own lock),
  then exits.  A user arriving meanwhile waits for the ``flock`` and starts a new engine.
- **Nothing acknowledged is lost.**  Milvus Lite appends every write to its WAL and flushes it
  to the OS before answering, so a ``kill -9`` of the engine loses no row a user was told is
  written; the next engine replays the WAL.  A ``kill -9`` of a user only ends its lease.
- **One writer.**  Milvus Lite's engine allows one writer per collection; the engine serves
  reads (search, query, describe) concurrently and every other call one at a time.
- The engine is started in a new session (a Ctrl-C at the terminal is the run's, not the
  engine's), forks once so that no user has to reap it, and writes nothing: its one line on
  the pipe it was started with says ``ready PORT`` or ``error REASON``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import select
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

#: Seconds the engine stays up with no user: a pipeline that closes and reopens the store (a
#: ``check`` and then a ``run``; a test) reuses it instead of paying its start again.
LINGER = 2.0

#: Seconds a user waits for the folder's flock (an engine may be closing a large database) and
#: for a new engine to say it is ready.
LOCK_TIMEOUT = 300.0
START_TIMEOUT = 120.0

#: Calls that only read: served concurrently.  Every other call is served one at a time.
READS = frozenset(
    {
        "Connect", "GetVersion", "CheckHealth", "HasCollection", "DescribeCollection", "ShowCollections",
        "Query", "Search", "HybridSearch", "DescribeIndex", "GetLoadingProgress", "GetLoadState",
        "HasPartition", "ShowPartitions", "GetFlushState", "GetCollectionStatistics",
        "GetPartitionStatistics", "ListDatabases", "DescribeDatabase", "DescribeAlias", "ListAliases",
        "GetCompactionState",
    }
)  # fmt: skip


class EngineError(Exception):
    """The engine could not be started or reached; ``locked`` when another process holds the
    folder with an in-process Milvus Lite."""

    def __init__(self, reason: str, *, locked: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.locked = locked


# --- where a folder's engine listens -------------------------------------------------------------


def lease_address(path: str) -> str | bytes:
    """The lease socket of the engine for folder ``path`` (absolute)."""
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:32]
    if sys.platform.startswith("linux"):
        return b"\0embedline-lite-" + digest.encode()  # abstract: gone with the process that bound it
    folder = os.path.join(tempfile.gettempdir(), f"embedline-lite-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, digest + ".sock")


@contextlib.contextmanager
def folder_lock(path: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive ``flock`` on the folder ``path`` itself (no file added to it)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"waited {timeout:g} s for the Milvus Lite engine of this database to stop or start"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(fd)  # releases the flock


# --- a user's side -------------------------------------------------------------------------------


class Lease:
    """One user's hold on a folder's engine: the engine runs while a lease is open."""

    def __init__(self, sock: socket.socket, port: int, pid: int):
        self._sock: socket.socket | None = sock
        self.port = port
        self.pid = pid  # the engine's process

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        """False once the engine is gone (its end of the lease closed)."""
        sock = self._sock
        if sock is None:
            return False
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return True
        try:
            return sock.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class _Stale(Exception):
    """The engine answering serves a folder that was deleted (or replaced) since it opened it."""


def _folder_identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _hello(address: str | bytes, identity: tuple[int, int]) -> Lease:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(30)
        sock.connect(address)
        sock.sendall(b"hello %d %d %d\n" % (os.getpid(), *identity))
        answer = b""
        while not answer.endswith(b"\n"):
            part = sock.recv(64)
            if not part:
                raise ConnectionRefusedError("the engine closed the lease before answering")
            answer += part
        words = answer.split()
        if words == [b"stale"]:
            raise _Stale()
        if len(words) != 4 or words[0] != b"port" or words[2] != b"pid":
            raise ConnectionRefusedError(f"unexpected answer from the engine: {answer[:60]!r}")
        sock.settimeout(None)
        return Lease(sock, int(words[1]), int(words[3]))
    except BaseException:
        sock.close()
        raise


def acquire(path: str, *, linger: float = LINGER) -> Lease:
    """A lease on the engine of folder ``path`` (absolute, existing), started if none runs."""
    address = lease_address(path)
    with folder_lock(path):
        identity = _folder_identity(path)
        try:
            return _hello(address, identity)
        except (ConnectionRefusedError, FileNotFoundError, socket.timeout):
            pass
        except _Stale:  # it has let go of the address: a new engine for the folder that is there now
            pass
        if isinstance(address, str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)  # a socket file left by an engine that was killed
        _start(path, linger)
        return _hello(address, identity)


def _start(path: str, linger: float) -> None:
    """Start the engine for ``path`` and wait for its one line: ``ready PORT`` or ``error ...``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedline_milvus._engine", path, "--linger", repr(linger)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, cwd="/",
    )  # fmt: skip
    try:
        line = _read_line(proc.stdout, START_TIMEOUT)
    finally:
        proc.stdout.close()
        try:
            proc.wait(timeout=START_TIMEOUT)  # the first process exits once it has forked the engine
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if line.startswith("ready "):
        return
    if line.startswith("locked "):
        raise EngineError(line[len("locked ") :], locked=True)
    if line.startswith("error "):
        raise EngineError(line[len("error ") :])
    raise EngineError(
        "the Milvus Lite engine did not start" + (f" (it said {line[:200]!r})" if line else " (it exited without a word)")
    )


def _read_line(stream, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise EngineError(f"the Milvus Lite engine did not start within {timeout:g} s")
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            part = os.read(fd, 4096)
            if not part:
                break
            data += part
    return data.decode("utf-8", "replace").strip()


# --- the engine's side ---------------------------------------------------------------------------


def _interceptor():
    import grpc

    lock = threading.Lock()

    class OneWriter(grpc.ServerInterceptor):
        def intercept_service(self, continuation, details):
            handler = continuation(details)
            name = details.method.rsplit("/", 1)[-1]
            if handler is None or name in READS or handler.unary_unary is None:
                return handler
            inner = handler.unary_unary

            def one_at_a_time(request, context):
                with lock:
                    return inner(request, context)

            return handler._replace(unary_unary=one_at_a_time)

    return OneWriter()


def _serve_grpc(path: str):
    """Milvus Lite on ``path`` behind a gRPC server on a free loopback port: (server, db, port)."""
    from concurrent import futures

    import grpc
    from milvus_lite.adapter.grpc.servicer import MilvusServicer
    from milvus_lite.db import MilvusLite
    from pymilvus.grpc_gen import milvus_pb2_grpc

    from embedline_milvus import _lite_speedups

    _lite_speedups.apply()  # this process is the engine's own: a faster flush (see the module)
    db = MilvusLite(path)
    try:
        size = 256 * 1024 * 1024  # what Milvus Lite's own server allows
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            interceptors=[_interceptor()],
            options=[("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)],
        )
        milvus_pb2_grpc.add_MilvusServiceServicer_to_server(_servicer_class(MilvusServicer)(db), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
    except BaseException:
        db.close()
        raise
    return server, db, port


def _servicer_class(base: type) -> type:
    """Milvus Lite's servicer, with a ``Flush`` that answers once the flushed collections' segments
    are compacted and indexed.  Milvus Lite does that on a background thread after a flush; without
    the wait a run would end while its engine still indexes, and the searches right after it would
    scan segments that have no index yet (and a timing of the run would leave that work out)."""

    class Servicer(base):
        def Flush(self, request, context):
            response = super().Flush(request, context)
            try:
                database = self._database_name(request, context)
                for name in request.collection_names:
                    collection = self._db.get_collection(name, database_name=database)
                    wait = getattr(collection, "_wait_for_bg", None)
                    if wait is not None:
                        wait()
            except Exception:  # noqa: S110 - the flush itself succeeded or reported its own error
                pass
            return response

    return Servicer


class _Engine:
    def __init__(self, path: str, linger: float):
        self.path = path
        self.linger = linger
        self.users: set[socket.socket] = set()
        self.selector = selectors.DefaultSelector()
        self.stale = False  # the folder was deleted or replaced: no new users

    def run(self, announce) -> None:
        try:
            server, db, port = _serve_grpc(self.path)
        except Exception as exc:
            locked = type(exc).__name__ == "DataDirLockedError"
            reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            announce(("locked " if locked else "error ") + reason)
            return
        address = lease_address(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(address)
            listener.listen(64)
        except OSError as exc:
            server.stop(grace=0)
            db.close()
            announce(f"error cannot listen for users: {exc.strerror or exc}")
            return
        self.port = port
        self.identity = _folder_identity(self.path)
        self.address = address
        announce(f"ready {port}")
        try:
            self._loop(listener)
        finally:
            listener.close()
            if isinstance(address, str) and not self.stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address)
            try:
                server.stop(grace=0 if self.stale else 5).wait(10)
            finally:
                if self._folder_is_ours():
                    db.close()  # flushes, and releases Milvus Lite's lock on the folder
                else:  # deleted or replaced: flushing now would write into another database's folder
                    os._exit(0)

    def _loop(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self.selector.register(listener, selectors.EVENT_READ)
        self.idle_since = time.monotonic()
        while True:
            timeout = None if self.users else max(0.0, self.idle_since + self.linger - time.monotonic())
            for key, _ in self.selector.select(timeout):
                if key.fileobj is listener:
                    self._accept(listener)
                else:
                    self._read(key.fileobj)
            if self.stale:
                return
            if self.users or time.monotonic() - self.idle_since < self.linger:
                continue
            if self._may_stop(listener):
                return
            self.idle_since = time.monotonic() - self.linger + 0.05  # a user is connecting: look again soon

    def _may_stop(self, listener: socket.socket) -> bool:
        """With the folder's flock taken (without waiting): no user connecting means stop now; the
        flock is kept until this process exits, after the database is closed."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:  # the folder is gone: nobody can use this engine any more
            self.stale = True
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        readable, _, _ = select.select([listener], [], [], 0)
        if readable:  # connected before we took the flock: serve it
            os.close(fd)
            return False
        self._held = fd  # released when the process exits
        return True

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.settimeout(10)
        try:
            hello = b""
            while not hello.endswith(b"\n") and len(hello) < 64:
                part = conn.recv(64)
                if not part:
                    break
                hello += part
            words = hello.split()
            if len(words) != 4 or words[0] != b"hello":
                conn.close()
                return
            if (int(words[2]), int(words[3])) != self.identity:
                # The user sees another folder at this path: this one was deleted or replaced while
                # the engine served it.  Let go of the address (a new engine takes it) and stop at
                # once, without flushing: Milvus Lite writes by path, into the new folder.
                self._retire(listener)
                conn.sendall(b"stale\n")
                conn.close()
                return
            conn.sendall(b"port %d pid %d\n" % (self.port, os.getpid()))
        except OSError:
            conn.close()
            return
        conn.setblocking(False)
        self.users.add(conn)
        self.selector.register(conn, selectors.EVENT_READ)

    def _folder_is_ours(self) -> bool:
        try:
            return _folder_identity(self.path) == self.identity
        except OSError:
            return False

    def _retire(self, listener: socket.socket) -> None:
        self.stale = True
        self.selector.unregister(listener)
        listener.close()
        if isinstance(self.address, str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the user closed its lease, exited or was killed
            self.selector.unregister(conn)
            self.users.discard(conn)
            conn.close()
            if not self.users:
                self.idle_since = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m embedline_milvus._engine")
    parser.add_argument("path")
    parser.add_argument("--linger", type=float, default=LINGER)
    args = parser.parse_args(argv)
    if os.fork() > 0:  # the starter reaps this process at once; the engine is nobody's child
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    def on_term(signum, frame):
        raise SystemExit(0)  # unwinds through _Engine.run's finally: the database is closed

    signal.signal(signal.SIGTERM, on_term)
    said = []

    def announce(line: str) -> None:
        if said:
            return
        said.append(line)
        try:
            os.write(1, (line.replace("\n", " ") + "\n").encode())
        except OSError:
            pass
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)

    try:
        _Engine(os.path.abspath(args.path), args.linger).run(announce)
    except SystemExit:
        pass
    except BaseException as exc:  # before ready: tell the starter; after: nobody is listening
        announce(f"error {type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
