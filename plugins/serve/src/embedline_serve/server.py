"""Running the app: :func:`main` for ``embedline serve``, :class:`BackgroundServer` for tests and
benchmarks (a real uvicorn on a loopback port, in a thread).

The socket is bound here, before uvicorn starts, so that a port in use or a bad address is a
one-line :class:`~embedline_serve.errors.ServeError` (uvicorn would log it and exit), and so that
port 0 (any free port) works: :attr:`BackgroundServer.port` says which one it got.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from embedline_serve.errors import ServeError
from embedline_serve.security import Limits, check_bind, resolve_token

log = logging.getLogger("embedline.serve")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, as the host resolves); port 0 picks a
    free one.  :class:`ServeError` when the address cannot be used."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(2048)
            sock.set_inheritable(True)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    reason = last.strerror if last is not None and last.strerror else "no usable address"
    raise ServeError(f"cannot listen on {host}:{port}: {reason}")


def _uvicorn_config(app: Any, *, log_level: str = "info", access_log: bool = True, **extra: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=access_log,
        server_header=False,  # do not advertise the server software
        proxy_headers=False,  # the client address is the peer's, not a header's
        timeout_graceful_shutdown=5,
        **extra,
    )


class BackgroundServer:
    """A uvicorn server for ``app`` on ``host`` (port 0: a free one) in a daemon thread::

        with BackgroundServer(app) as server:
            httpx.get(f"{server.url}/health")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"):
        import uvicorn

        self._socket = bind_socket(host, port)
        self.host = host
        self.port = self._socket.getsockname()[1]
        self.server = uvicorn.Server(_uvicorn_config(app, log_level=log_level, access_log=False))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]},
                                        name="embedline-serve", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(
    config: str = "embed.toml",
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    *,
    cors_origins: Iterable[str] = (),
    aliases: Mapping[str, str] | None = None,
    batching: bool = True,
    max_wait_ms: float = 5.0,
    log_level: str = "info",
    access_log: bool = True,
    **limits: Any,
) -> int:
    """``embedline serve``: load the pipeline ``config``, load its models once, listen on
    ``host:port`` until interrupted; returns the exit status (0).

    ``token`` (else ``$EMBEDLINE_SERVE_TOKEN``) is required on every route but ``/health``, and
    to listen on anything but loopback.  ``limits``: fields of :class:`Limits`
    (``max_body_bytes``, ``max_upload_bytes``, ``max_inputs``, ``max_input_chars``, ``max_k``).
    Raises :class:`~embedline.errors.EmbedlineError` (one line, for the command line to print)
    when the server cannot start: a public address without a token, a port in use, a pipeline
    or model that does not load.
    """
    import uvicorn
    from embedline import Pipeline

    from embedline_serve.app import create_app
    from embedline_serve.service import Service

    token = resolve_token(token)
    check_bind(host, token)
    try:
        bounds = Limits(**limits)
    except (TypeError, ValueError) as exc:
        raise ServeError(str(exc)) from None
    sock = bind_socket(host, port)  # before loading models: a port in use fails in milliseconds
    try:
        with Pipeline.from_toml(config) as pipeline:
            try:
                service = Service(pipeline, aliases=aliases, batching=batching, max_wait_ms=max_wait_ms)
            except ValueError as exc:  # an alias naming no collection
                raise ServeError(str(exc)) from None
            started = time.perf_counter()
            service.warm()
            log.info("loaded %d model(s) in %.1f s", len(service.models), time.perf_counter() - started)
            app = create_app(pipeline, token=token, limits=bounds, cors_origins=cors_origins, service=service)
            server = uvicorn.Server(_uvicorn_config(app, log_level=log_level, access_log=access_log))
            try:
                server.run(sockets=[sock])
            except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it stopped for: a normal end
                pass
            finally:
                service.close()
    finally:
        sock.close()
    return 0


__all__ = ["BackgroundServer", "bind_socket", "main"]
