"""A real Milvus server for tests, without Docker: :func:`start_server`.

The PyPI package ``milvus`` (``pip install milvus==2.3.5``) ships a Milvus 2.3.5 standalone binary
(embedded etcd, local storage, rocksmq) compressed inside the wheel.  :func:`start_server` unpacks
it once (into a cache folder shared by every test session), writes a configuration whose every
port is a free one picked here, and runs the binary as a child process in a session of its own::

    from embedline_milvus.testing import start_server

    with start_server(tmp_path / "milvus") as server:
        spec = StoreSpec(plugin="milvus", options={"uri": server.uri, ...})

Every port is chosen here, so several test sessions on one machine each get their own server.
The package's ``milvus-server`` command cannot promise that: its health port starts at 9091 and
its embedded etcd always listens on 2379/2380, so a second instance dies on start.

:meth:`MilvusServer.stop` ends it with SIGTERM, then SIGKILL after a timeout, and checks that no
process of its session is left.  :func:`temporary_database` gives a test a database of its own on
a shared server, and :class:`Backend` opens stores on Lite or on a server alike.  Nothing here is
imported by the plugin itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

__all__ = [
    "Backend", "MilvusServer", "MilvusServerError", "lite_engines", "start_server", "temporary_database",
    "wait_lite_engines_gone",
]  # fmt: skip

MILVUS_PACKAGE = "milvus==2.3.5"
GRACEFUL_STOP_S = 3

#: Settings :func:`start_server` gives the server unless told otherwise (keys of ``milvus.yaml``).
TEST_CONFIG: dict[str, object] = {
    # The components talk to each other on loopback, not on the machine's first address.
    **{f"{role}.ip": "127.0.0.1" for role in ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode",
                                               "dataCoord", "dataNode")},  # fmt: skip
    # A query node with a loaded collection waits on SIGTERM for another node to take its segments
    # over (in standalone there is none): 1800 s by default.  The data is thrown away anyway.
    "common.gracefulStopTimeout": GRACEFUL_STOP_S,
}


class MilvusServerError(RuntimeError):
    """The test server could not be started (or stopped cleanly)."""


class MilvusServer:
    """A running Milvus standalone server (see :func:`start_server`)."""

    def __init__(self, process: subprocess.Popen, data_dir: Path, port: int, health_port: int, log: Path):
        self.process = process
        self.data_dir = data_dir
        self.port = port
        self.health_port = health_port
        self.log = log
        self.started_in = 0.0  # seconds from launching the binary to the first answer

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def __repr__(self) -> str:
        return f"MilvusServer({self.uri}, pid {self.pid}, data {self.data_dir})"

    def __enter__(self) -> MilvusServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``timeout`` seconds; then check
        that no process of the group is left (``MilvusServerError`` if one is)."""
        group = self.process.pid  # start_new_session: the server leads a process group of its own
        if self.process.poll() is None:
            _signal_group(group, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(group, signal.SIGKILL)
                self.process.wait(timeout=30)
        if _group_alive(group):  # children of the binary (none are expected) outliving it
            _signal_group(group, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _group_alive(group):
                if time.monotonic() > deadline:
                    raise MilvusServerError(f"processes of Milvus server group {group} are still running")
                time.sleep(0.1)


def start_server(
    data_dir: str | os.PathLike[str],
    *,
    timeout: float = 120.0,
    bin_dir: str | os.PathLike[str] | None = None,
    settings: dict[str, object] | None = None,
) -> MilvusServer:
    """Start a Milvus standalone server with its data in ``data_dir`` (made if missing) and wait
    until it answers on ``127.0.0.1``.

    ``bin_dir``: where the binary is unpacked (default: a folder of the user's cache, shared by
    test sessions; ``$EMBEDLINE_MILVUS_BIN_DIR`` overrides it).  Raises ``MilvusServerError`` when
    the ``milvus`` package is missing or the server does not come up within ``timeout`` seconds.
    ``settings``: ``milvus.yaml`` keys (dotted, e.g. ``"proxy.timeTickInterval"``) to set, instead
    of :data:`TEST_CONFIG`; each must exist in the package's configuration template.

    On Linux the server is killed when the thread that started it ends (so a killed test session
    leaves none behind): call this from a thread that outlives the server, e.g. pytest's.
    """
    try:
        import milvus
    except ImportError:
        raise MilvusServerError(
            f"the Milvus server for these tests comes with the 'milvus' package: pip install {MILVUS_PACKAGE}"
        ) from None
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    bin_dir = bin_dir or os.environ.get("EMBEDLINE_MILVUS_BIN_DIR") or _cache_dir(milvus)
    binaries = _unpacked_binaries(milvus, Path(bin_dir))
    for attempt in range(3):  # a port picked here may be taken by someone else before the server binds it
        try:
            return _start(milvus, binaries, data, timeout, TEST_CONFIG if settings is None else settings)
        except _PortTaken:
            if attempt == 2:
                raise MilvusServerError("Milvus server: the ports picked for it were taken, three times") from None
    raise AssertionError("unreachable")


class _PortTaken(Exception):
    pass


def _start(milvus, binaries: Path, data: Path, timeout: float, settings: dict[str, object]) -> MilvusServer:
    # Every listening port is picked here, from the kernel's free ones: the package's own
    # choices (19530 up, 9091 up, etcd on 2379/2380) clash between parallel test sessions.
    config = milvus.MilvusServerConfig(data_dir=str(data))
    port_keys = sorted(key for key in config.configurable_items if key.endswith("_port"))
    ports = _free_ports(len(port_keys) + 2)
    config.update(**dict(zip(port_keys, ports)))
    peer_port, health_port = ports[-2:]
    for key, value in settings.items():
        config.set(key, value)
    try:
        config.resolve()  # writes configs/milvus.yaml (after checking that each port binds)
    except RuntimeError as exc:
        raise _PortTaken() from exc
    etcd_config = data / "configs" / "embedEtcd.yaml"
    client = f"http://127.0.0.1:{config.get('etcd_port')}"
    peer = f"http://127.0.0.1:{peer_port}"
    etcd_config.write_text(
        f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
        f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\ninitial-cluster: default={peer}\n"
    )
    env = {
        **os.environ,
        "DEPLOY_MODE": "STANDALONE",
        "METRICS_PORT": str(health_port),  # /healthz and metrics; not in milvus.yaml
        "ETCD_CONFIG_PATH": str(etcd_config),  # the embedded etcd's own listen addresses
        "MILVUS_RUN_DIR": str(data / "run"),
        "LD_LIBRARY_PATH": os.pathsep.join(p for p in (str(binaries), os.environ.get("LD_LIBRARY_PATH", "")) if p),
    }
    log = data / "logs" / "milvus.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(binaries / "milvus"), "run", "standalone"],
            cwd=data,  # the binary reads configs/milvus.yaml from here
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals all of it
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    server = MilvusServer(process, data, int(config.get("proxy_port")), health_port, log)
    try:
        _wait_until_ready(server, timeout)
    except BaseException as exc:
        server.stop(timeout=10)
        if isinstance(exc, MilvusServerError) and "address already in use" in server.log_tail(200):
            raise _PortTaken() from exc
        raise
    server.started_in = time.monotonic() - began
    return server


_databases = count()


@contextmanager
def temporary_database(server: MilvusServer | str) -> Iterator[str]:
    """A new database on ``server`` (a :class:`MilvusServer` or a uri) for the block, dropped with
    its collections afterwards, so tests sharing one server never see each other's collections.
    (At most 64 databases exist at once on a default server.)"""
    from pymilvus import MilvusClient

    uri = server.uri if isinstance(server, MilvusServer) else server
    name = f"embedline_{os.getpid()}_{next(_databases)}"
    admin = MilvusClient(uri=uri)
    try:
        admin.create_database(name)
        try:
            yield name
        finally:
            inside = MilvusClient(uri=uri, db_name=name)  # (MilvusClient.use_database needs Milvus 2.4)
            try:
                for collection in inside.list_collections():
                    inside.drop_collection(collection)
            finally:
                inside.close()
            admin.drop_database(name)
    finally:
        admin.close()


class Backend:
    """Where a test's stores live: ``Backend.lite(folder)`` (a Milvus Lite database in ``folder``)
    or ``Backend.server(uri, db_name, folder)``.  ``spec()``/``store()`` open a ``milvus`` store
    there with the plugin's defaults; ``store_section()`` is a pipeline's ``[store]`` for it."""

    def __init__(self, kind: str, location: dict[str, Any], base_dir: str | os.PathLike[str]):
        self.kind = kind
        self.location = location
        self.base_dir = Path(base_dir)

    @classmethod
    def lite(cls, folder: str | os.PathLike[str], uri: str = "embed.db") -> Backend:
        return cls("lite", {"uri": uri}, folder)

    @classmethod
    def server(cls, uri: str, db_name: str, folder: str | os.PathLike[str]) -> Backend:
        return cls("server", {"uri": uri, "db_name": db_name}, folder)

    def __repr__(self) -> str:
        return f"Backend({self.kind}, {self.location})"

    @property
    def is_server(self) -> bool:
        return self.kind == "server"

    def options(self, **overrides: Any) -> dict[str, Any]:
        """Every option of the plugin: its default, this backend's location, then ``overrides``."""
        import embedline_milvus

        options = {name: opt.default for name, opt in embedline_milvus.plugin_info.options.items()}
        return {**options, **self.location, **overrides}

    def spec(self, collection: str = "c", **overrides: Any):
        from embedline.contracts import StoreSpec

        options = self.options(**overrides)
        return StoreSpec(plugin="milvus", collection=collection, options=options, base_dir=self.base_dir)

    def store(self, **overrides: Any):
        import embedline_milvus

        return embedline_milvus.store(self.spec(**overrides))

    def store_section(self, collection: str = "docs", **overrides: Any) -> dict[str, Any]:
        """A pipeline's ``[store]`` section for this backend (a Lite path made absolute)."""
        location = dict(self.location)
        if not self.is_server:
            location["uri"] = str(self.base_dir / location["uri"])
        return {"plugin": "milvus", "collection": collection, **location, **overrides}


# -- helpers ---------------------------------------------------------------------------------------


def _cache_dir(milvus) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "embedline" / f"milvus-server-{milvus.__version__}"


def _unpacked_binaries(milvus, target: Path) -> Path:
    """The folder holding the unpacked ``milvus`` binary and its libraries (about 250 MB), made
    once: unpacked into a sibling folder, then renamed into place, so sessions never see half."""
    ready = target / ".complete"
    if ready.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        milvus._initialize_data_files(str(staging))  # unpacks data/bin/*.lzma into staging/bin
        (staging / "bin" / ".complete").write_text(milvus.__version__)
        try:
            os.replace(staging / "bin", target)
        except OSError:  # another session got there first (or a stale incomplete folder)
            if not ready.exists():
                shutil.rmtree(target, ignore_errors=True)
                os.replace(staging / "bin", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held together while picked, so no two are the same)."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_until_ready(server: MilvusServer, timeout: float) -> None:
    """Until /healthz says OK and a client can list collections (the proxy answers)."""
    from pymilvus import MilvusClient, MilvusException

    deadline = time.monotonic() + timeout
    healthy = False
    while True:
        if not server.running():
            raise MilvusServerError(
                f"Milvus server exited with code {server.process.returncode} while starting; "
                f"log {server.log}:\n{server.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise MilvusServerError(
                f"Milvus server not ready after {timeout:.0f} s; log {server.log}:\n{server.log_tail()}"
            )
        if not healthy:
            try:
                url = f"http://127.0.0.1:{server.health_port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    healthy = b"OK" in answer.read()
            except (OSError, urllib.error.URLError):
                pass
        if healthy:
            try:
                client = MilvusClient(uri=server.uri, timeout=5)
                try:
                    client.list_collections()
                    return
                finally:
                    client.close()
            except MilvusException:
                pass
        time.sleep(0.2)


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prctl():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl() if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the test process dies (even by SIGKILL), so a killed
    test session leaves no server behind (its data is thrown away: no graceful stop needed).
    Only a syscall here (the parent may have threads)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


# -- Milvus Lite's engine processes (lite_engine = "process") ---------------------------------------


def lite_engines(path: str | os.PathLike[str]) -> list[int]:
    """Pids of running (not zombie) Milvus Lite engine processes serving the ``.db`` folder ``path``."""
    wanted = os.path.abspath(path)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"embedline_milvus._engine" in argv and os.fsencode(wanted) in argv:
            found.append(int(entry))
    return found


def wait_lite_engines_gone(path: str | os.PathLike[str], timeout: float = 30.0) -> list[int]:
    """Wait until no engine serves ``path`` (it lingers a little after its last user); the pids left."""
    deadline = time.monotonic() + timeout
    while True:
        left = lite_engines(path)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)

