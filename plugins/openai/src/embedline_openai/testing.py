"""A fake OpenAI-compatible embeddings server for tests: no network, no weights, standard library.

::

    from embedline_openai.testing import FakeEmbeddingServer, answer

    with FakeEmbeddingServer(models={"fake-embed": 16}, api_key="sk-test") as server:
        server.then(answer(429, headers={"Retry-After": "2"}))   # the next request gets a 429
        ...  # point base_url at server.url ("http://127.0.0.1:PORT/v1")
        server.requests                                          # what it was sent

It answers ``POST /v1/embeddings`` (also ``/embeddings``, and Azure's
``/openai/deployments/NAME/embeddings`` and ``/openai/v1/embeddings``, also as the absolute URL a
client sends to an HTTP proxy; any other path is a 404 page) as OpenAI does: ``data`` with ``index`` and
``embedding``, ``model``, ``usage``.  Vectors are deterministic bags of hashed words, unit length,
so similar texts get similar vectors and a text finds itself; ``dimensions`` shortens them and
renormalises, as ``text-embedding-3-*`` do.  Scripted answers (:func:`answer`) test retries and
errors; ``always`` applies one to every request that has no scripted answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import struct
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeEmbeddingServer", "Recorded", "answer", "fake_vector"]

_WORD = re.compile(r"\w+")
#: The paths it serves: OpenAI's, a bare root's, Azure's deployment and v1 paths.
_EMBEDDINGS_PATH = re.compile(r"(/v1|/openai/v1|/openai/deployments/[^/]+)?/embeddings")


def fake_vector(text: str, dim: int) -> list[float]:
    """The unit vector the fake server gives ``text`` at ``dim`` dimensions (before ``dimensions``
    shortens it): each lower-cased word adds +-1 at a hashed position."""
    vector = [0.0] * dim
    for word in _WORD.findall(text.lower()) or [text]:
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        vector[int.from_bytes(digest[:4], "little") % dim] += 1.0 if digest[4] & 1 else -1.0
    return _unit(vector) if any(vector) else _unit([1.0] + [0.0] * (dim - 1))


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


def answer(
    status: int = 200,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    delay: float = 0.0,
    mutate: str | None = None,
) -> dict[str, Any]:
    """One scripted answer.  ``status`` other than 200 answers with it (``body`` as JSON, or as is
    when it is ``bytes``; default an OpenAI-style error).  ``delay`` waits that many seconds first
    (a slow endpoint).  ``mutate`` changes a good answer: ``"shuffle"`` (``data`` in another order,
    ``index`` kept), ``"drop"`` (one embedding fewer), ``"wrong_dim"`` (one number more in each
    vector), ``"no_data"`` (no ``data`` key), ``"not_json"`` (an HTML page), ``"no_index"``
    (``index`` left out), ``"base64"`` (vectors as base64 float32)."""
    return {"status": status, "body": body, "headers": dict(headers or {}), "delay": delay, "mutate": mutate}


class Recorded:
    """One request the server received."""

    def __init__(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any):
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body

    @property
    def inputs(self) -> list[str]:
        return list(self.body.get("input", [])) if isinstance(self.body, dict) else []

    def __repr__(self) -> str:
        return f"<Recorded {self.method} {self.path} inputs={len(self.inputs)}>"


class FakeEmbeddingServer:
    """An OpenAI-compatible ``/embeddings`` endpoint on a free loopback port, served by a thread.

    ``models`` maps the model names it serves to their dimension (another name is a 404);
    ``api_key`` set: requests must carry it (``Authorization: Bearer`` or ``api-key``), else 401
    (whose message repeats the key sent, as a careless server might); ``max_input_chars``: a longer
    input is a 400, like a text over a model's context length; ``ignore_dimensions``: the
    ``dimensions`` field is ignored, as TEI does.
    """

    def __init__(
        self,
        models: dict[str, int] | None = None,
        *,
        api_key: str | None = None,
        max_input_chars: int | None = None,
        ignore_dimensions: bool = False,
    ):
        self.models = dict(models or {"fake-embed": 16})
        self.api_key = api_key
        self.max_input_chars = max_input_chars
        self.ignore_dimensions = ignore_dimensions
        self.always: dict[str, Any] | None = None
        self.requests: list[Recorded] = []
        self._script: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The API root to use as ``base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def then(self, *answers: dict[str, Any]) -> FakeEmbeddingServer:
        """Answer the next requests with these, in order; then as usual (or ``always``)."""
        with self._lock:
            self._script.extend(answers)
        return self

    def reset(self) -> FakeEmbeddingServer:
        """Forget the scripted answers and ``always``: answer as usual again."""
        with self._lock:
            self._script.clear()
            self.always = None
        return self

    def start(self) -> FakeEmbeddingServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeEmbeddingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answering -------------------------------------------------------------------------

    def _next(self) -> dict[str, Any] | None:
        with self._lock:
            return self._script.popleft() if self._script else self.always

    def respond(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        with self._lock:
            self.requests.append(Recorded(method, parts.path, parse_qs(parts.query), headers, body))
        scripted = self._next() or answer()
        if scripted["delay"]:
            time.sleep(scripted["delay"])
        if scripted["status"] != 200:
            return _error(scripted["status"], scripted["body"], scripted["headers"])
        if method != "POST" or not _EMBEDDINGS_PATH.fullmatch(parts.path):
            return 404, {"Content-Type": "text/html"}, b"<html><body>404 Not Found</body></html>"
        sent = headers.get("authorization", "").removeprefix("Bearer ").strip() or headers.get("api-key", "")
        if self.api_key is not None and sent != self.api_key:
            return _error(401, {"error": {"message": f"Incorrect API key provided: {sent or '(none)'}.", "type": "invalid_request_error", "code": "invalid_api_key"}})
        if not isinstance(body, dict):
            return _error(400, {"error": {"message": "We could not parse the JSON body of your request."}})
        name = body.get("model")
        if name not in self.models:
            return _error(404, {"error": {"message": f"The model `{name}` does not exist or you do not have access to it.", "code": "model_not_found"}})
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) and t for t in inputs):
            return _error(400, {"error": {"message": "'$.input' is invalid. Please check the API reference."}})
        for text in inputs:
            if self.max_input_chars is not None and len(text) > self.max_input_chars:
                return _error(400, {"error": {"message": f"This model's maximum context length is {self.max_input_chars} characters, however you requested {len(text)}."}})
        dim = self.models[name]
        wanted = body.get("dimensions")
        if wanted is not None and not self.ignore_dimensions:
            if not isinstance(wanted, int) or not 0 < wanted <= dim:
                return _error(400, {"error": {"message": f"dimensions must be between 1 and {dim}"}})
        else:
            wanted = dim
        vectors = [_unit(fake_vector(t, dim)[:wanted]) for t in inputs]
        mutate = scripted["mutate"]
        if mutate == "wrong_dim":
            vectors = [v + [0.0] for v in vectors]
        encode = body.get("encoding_format") == "base64" or mutate == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _b64(v) if encode else v} for i, v in enumerate(vectors)
        ]
        if mutate == "shuffle":
            random.Random(len(data)).shuffle(data)
            if len(data) > 1 and all(d["index"] == i for i, d in enumerate(data)):
                data.reverse()
        elif mutate == "drop":
            data = data[:-1]
        elif mutate == "no_index":
            for d in data:
                d.pop("index")
        tokens = sum(len(_WORD.findall(t)) or 1 for t in inputs)
        payload: dict[str, Any] = {"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        if mutate == "no_data":
            payload.pop("data")
        if mutate == "not_json":
            return 200, {"Content-Type": "text/html", **scripted["headers"]}, b"<html><body>Welcome to nginx!</body></html>"
        return 200, {"Content-Type": "application/json", **scripted["headers"]}, json.dumps(payload).encode()


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _error(status: int, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    if isinstance(body, bytes):
        return status, {"Content-Type": "text/plain", **(headers or {})}, body
    if body is None:
        body = {"error": {"message": f"fake error {status}", "type": "server_error" if status >= 500 else "invalid_request_error"}}
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def _handler_for(server: FakeEmbeddingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall between

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out_headers, body = server.respond(self.command, self.path, headers, raw)
            try:
                self.send_response(status)
                for key, value in out_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                self.close_connection = True

        do_POST = do_GET = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler
