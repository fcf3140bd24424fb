"""The working half of the openai plugin: one HTTP endpoint, batching, retries and checks.

Imported on the first hook call (``embedline.toolkit.model_hooks``), so listing plugins never
imports httpx or numpy.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
from embedline.contracts import MODES, Failed, Item, Model
from embedline.errors import ConfigError, ModelSourceError
from embedline.toolkit import redact_uri, redact_uris_in

from embedline_openai import AZURE_HOST_SUFFIXES, DEFAULT_BASE_URL, DEFAULT_NAME, KEYED_HOSTS, __version__

log = logging.getLogger("embedline.openai")

#: How to wait between attempts, and the jitter draw in [0, 1).  Module attributes looked up at
#: each use, so tests replace them (``monkeypatch.setattr(_backend, "sleep", waits.append)``).
sleep = time.sleep
jitter = random.random

BACKOFF_BASE = 0.5  # seconds: the bound of the first wait; it doubles with every retry
MAX_WAIT = 60.0  # no single wait is longer, Retry-After included
MAX_INPUTS = 2048  # OpenAI refuses more inputs in one request
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx
PROBE_TEXT = "embedline probe"
REVISION = "api"  # an endpoint has no weights to hash: its identity is host, model and dimension
UNIT_TOLERANCE = 1e-3


class EndpointError(Exception):
    """What went wrong with one request, before it is turned into the error its caller raises.

    ``kind``: ``auth`` (401/403), ``not_found`` (404), ``rejected`` (another 4xx, or a redirect),
    ``transient`` (429/5xx after every retry), ``timeout`` (no answer, after every retry),
    ``unreachable`` (no connection, after every retry), ``malformed`` (a 2xx that is not an
    embeddings answer for these inputs).
    """

    def __init__(self, kind: str, message: str, status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status


# -- the endpoint ----------------------------------------------------------------------------


class Endpoint:
    """One OpenAI-compatible ``/embeddings`` URL with its key, batching and retry policy.

    Holds the key privately: its ``repr`` and every message it makes leave it out.
    """

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        name: str = DEFAULT_NAME,
        api_key: str | None = None,
        api_version: str | None = None,
        dimensions: int | None = None,
        timeout: float = 60,
        max_retries: int = 6,
        batch_size: int = 256,
        max_batch_tokens: int = 100_000,
        input_types: dict[str, str] | None = None,
        key: str = "model",
    ):
        parts = urlsplit(base_url.strip())
        path = parts.path.rstrip("/")
        parts = parts._replace(path=path if path.endswith("/embeddings") else path + "/embeddings", fragment="")
        self.url = urlunsplit(parts)  # a query in base_url (a gateway's own parameter) is kept
        hostname = (parts.hostname or "").lower()
        shown_host = f"[{hostname}]" if ":" in hostname else hostname  # IPv6
        default_port = {"http": 80, "https": 443}.get(parts.scheme)
        self.host = shown_host + (f":{parts.port}" if parts.port and parts.port != default_port else "")
        self.azure = hostname.endswith(AZURE_HOST_SUFFIXES)
        self.name = name
        self._key = (api_key or "").strip() or None
        self.params = {"api-version": api_version} if api_version else {}
        self.dimensions = dimensions
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.batch_size = max(1, min(batch_size, MAX_INPUTS))
        self.max_batch_tokens = max_batch_tokens
        self.input_types = dict(input_types or {})
        self.spec_key = key
        self.shown_url = redact_uri(urlunsplit(parts._replace(query="", fragment="")))
        self.verified = False  # a well-formed answer came back since load
        self.failing = False  # the last request used up its retries: try the next ones once only
        self.count = _no_count  # Model.count, once the model exists
        self._tokens_lock = threading.Lock()
        self._encoding: Any = None
        self._encoding_loaded = False
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout), follow_redirects=False)

    def __repr__(self) -> str:
        return f"<openai endpoint {self.shown_url} model={self.name!r} key={'***' if self._key else 'none'}>"

    # -- identity --------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """``host[:port]``, and ``/deployments/NAME`` for an Azure deployment URL (which names the
        model): the endpoint's part of the model's identity.  No credentials, no other path."""
        deployment = re.search(r"/deployments/([^/]+)", urlsplit(self.url).path)
        return f"{self.host}/deployments/{deployment.group(1)}" if deployment else self.host

    @property
    def identity(self) -> str:
        """``where/model``: the fingerprint's ``source``."""
        return f"{self.where}/{self.name}"

    # -- messages --------------------------------------------------------------------------

    def scrub(self, text: str, limit: int = 300) -> str:
        """``text`` as one short line with the key, URI credentials and key-like tokens hidden."""
        text = str(text)
        if self._key:
            text = text.replace(self._key, "***")
        text = redact_uris_in(text)
        text = re.sub(r"\b(sk|pk|rk)-[A-Za-z0-9_\-*.]{6,}", r"\1-***", text)
        text = re.sub(r"(?i)\b(bearer)\s+\S+", r"\1 ***", text)
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"embedline-openai/{__version__}",
        }
        if self._key:
            if self.azure:
                headers["api-key"] = self._key
            else:
                headers["Authorization"] = f"Bearer {self._key}"
        return headers

    # -- tokens and batches ----------------------------------------------------------------

    def tokens(self, text: str) -> int:
        """The tokens ``text`` is counted as: tiktoken's count when tiktoken is importable and
        has an encoding for the model (else ``cl100k_base``), otherwise ``len(text) // 4 + 1``."""
        if not self._encoding_loaded:
            with self._tokens_lock:
                if not self._encoding_loaded:
                    self._encoding = tiktoken_encoding(self.name)
                    self._encoding_loaded = True
        if self._encoding is not None:
            try:
                return len(self._encoding.encode(text, disallowed_special=()))
            except Exception:  # noqa: BLE001 - an estimate is good enough to cut a request
                pass
        return len(text) // 4 + 1

    def batches(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` slices of ``texts``: at most ``batch_size`` inputs (and 2,048) and
        ``max_batch_tokens`` estimated tokens each; a text over the limit goes alone."""
        start, tokens = 0, 0
        for i, text in enumerate(texts):
            n = self.tokens(text)
            if i > start and (i - start >= self.batch_size or tokens + n > self.max_batch_tokens):
                yield start, i
                start, tokens = i, 0
            tokens += n
        if start < len(texts):
            yield start, len(texts)

    # -- one request -----------------------------------------------------------------------

    def request(self, texts: Sequence[str], mode: str) -> np.ndarray:
        """The ``(len(texts), d)`` float32 vectors of one request, in input order.  Raises
        :class:`EndpointError`."""
        body: dict[str, Any] = {"model": self.name, "input": list(texts), "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        input_type = self.input_types.get(mode)
        if input_type:
            body["input_type"] = input_type
        response = self._send(json.dumps(body).encode("utf-8"))
        return self._parse(response, len(texts))

    def _send(self, content: bytes) -> httpx.Response:
        """POST with retries: 429, 408, 409 and 5xx (or what ``x-should-retry`` says), timeouts and
        connection errors are retried up to ``max_retries`` times."""
        attempts = 1 if self.failing else 1 + self.max_retries
        for attempt in range(attempts):
            wait: float | None = None
            try:
                response = self._client.post(self.url, params=self.params, headers=self._headers(), content=content)
            except httpx.TimeoutException as exc:
                if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
                    kind, problem = "unreachable", f"cannot reach {self.shown_url}: no connection within {self.timeout:g} s"
                else:
                    kind, problem = "timeout", f"{self.shown_url} gave no answer within {self.timeout:g} s (timeout)"
            except httpx.TransportError as exc:
                kind = "unreachable"
                problem = f"cannot reach {self.shown_url}: {type(exc).__name__}: {self.scrub(exc, 160)}".rstrip(": ")
            else:
                if not _should_retry(response):
                    self.failing = False  # it answers again (even if this answer is a refusal)
                    return response
                kind = "transient"
                problem = f"{self.shown_url} answered HTTP {response.status_code}{self._said(response)}"
                wait = retry_after(response.headers)
            if attempt + 1 >= attempts:
                break
            if wait is None:
                wait = jitter() * min(MAX_WAIT, BACKOFF_BASE * 2**attempt)  # full jitter
            wait = max(0.0, min(MAX_WAIT, wait))
            log.info("openai: %s; retry %d of %d in %.2f s", problem, attempt + 1, self.max_retries, wait)
            self.count("retries")
            sleep(wait)
        if kind != "unreachable":
            self.failing = True
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        limits = f"max_retries = {self.max_retries}" + (f", timeout = {self.timeout:g}" if kind == "timeout" else "")
        raise EndpointError(kind, f"{problem}, after {tries} ({limits})")

    def _parse(self, response: httpx.Response, n: int) -> np.ndarray:
        status = response.status_code
        if status in (401, 403):
            raise EndpointError("auth", self._said(response, lead=": it said: "), status)
        if status == 404:
            raise EndpointError("not_found", self._said(response, lead="; it said: "), status)
        if 300 <= status < 400:
            where = redact_uri(response.headers.get("location", "?"))
            raise EndpointError("rejected", f"{self.shown_url} redirects (HTTP {status}) to {where}: set base_url to the final URL", status)
        if not 200 <= status < 300:
            raise EndpointError("rejected", f"{self.shown_url} rejected the request (HTTP {status}){self._said(response)}", status)

        def malformed(detail: str) -> EndpointError:
            return EndpointError("malformed", f"{self.shown_url} gave a malformed answer: {detail}")

        try:
            payload = json.loads(response.content)
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            start = self.scrub(response.content[:60].decode("utf-8", "replace"), 80)
            raise malformed(f"not JSON ({kind}): {start!r}") from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) and isinstance(payload, dict) and payload.get("error"):
            raise malformed(f"an error instead of `data`{self._said(response)}")  # a proxy's 200 with an error
        if not isinstance(data, list):
            keys = ", ".join(sorted(map(str, payload))[:8]) if isinstance(payload, dict) else type(payload).__name__
            raise malformed(f"no `data` list (got {keys or 'an empty object'})")
        if len(data) != n:
            raise malformed(f"{len(data)} embeddings for {n} inputs")
        rows: list[np.ndarray | None] = [None] * n
        for position, entry in enumerate(data):
            if not isinstance(entry, dict) or "embedding" not in entry:
                raise malformed(f"data[{position}] has no `embedding`")
            index = entry.get("index", position)
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n or rows[index] is not None:
                raise malformed(f"data[{position}] has index {index!r}, not one of 0..{n - 1} used once")
            try:
                rows[index] = _vector(entry["embedding"])
            except (TypeError, ValueError) as exc:
                raise malformed(f"data[{position}].embedding is not a list of numbers ({exc})") from None
        lengths = sorted({len(row) for row in rows if row is not None})
        if len(lengths) != 1 or lengths[0] == 0:
            raise malformed(f"vectors of lengths {', '.join(map(str, lengths))} in one answer")
        usage = payload.get("usage")
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        if isinstance(total, int) and not isinstance(total, bool) and total > 0:
            self.count("tokens", total)
        return np.stack(rows)  # type: ignore[arg-type]

    def _said(self, response: httpx.Response, lead: str = ": ") -> str:
        """What the endpoint said in an error answer (OpenAI's ``error.message``, TEI's ``error``,
        FastAPI's ``detail``, else the start of the body), scrubbed; empty when it said nothing."""
        message: Any = None
        try:
            payload = json.loads(response.content)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            error = payload.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            message = message or payload.get("message") or payload.get("detail")
            if isinstance(message, list):  # FastAPI validation errors
                message = "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in message)
        elif response.content and not response.headers.get("content-type", "").startswith("text/html"):
            message = response.content[:300].decode("utf-8", "replace")
        text = self.scrub(message) if message else ""
        return f"{lead}{text}" if text else ""


def _no_count(name: str, n: int = 1) -> None:
    return None


def _should_retry(response: httpx.Response) -> bool:
    if response.is_success:
        return False
    should = response.headers.get("x-should-retry", "").strip().lower()
    if should in ("true", "false"):
        return should == "true"
    return response.status_code in RETRY_STATUSES or response.status_code >= 500


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds the answer asks us to wait: ``retry-after-ms``, else ``Retry-After`` in seconds or
    as an HTTP date; None when neither is there or readable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _vector(value: Any) -> np.ndarray:
    if isinstance(value, str):  # encoding_format = "base64": little-endian float32
        return np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4").astype(np.float32)
    if not isinstance(value, list):
        raise TypeError(type(value).__name__)
    vector = np.asarray(value, dtype=np.float32)
    if vector.ndim != 1:
        raise ValueError(f"{vector.ndim} dimensions")
    return vector


def tiktoken_encoding(name: str) -> Any:
    """tiktoken's encoding for ``name`` (``cl100k_base`` for names it does not know), or None when
    tiktoken is not installed or cannot load its encoding (offline without a cache)."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        try:
            return tiktoken.encoding_for_model(name)
        except KeyError:
            return tiktoken.get_encoding("cl100k_base")
    except Exception as exc:  # noqa: BLE001 - a download that failed: estimate instead
        log.info("openai: tiktoken has no encoding for %r (%s); estimating tokens as characters / 4", name, type(exc).__name__)
        return None


# -- errors as the hooks raise them ----------------------------------------------------------


def _public(endpoint: Endpoint, exc: EndpointError, *, loading: bool) -> Exception:
    """The error a hook raises for ``exc``: configuration faults as :class:`ConfigError` (the key),
    a missing model or unreachable endpoint as :class:`ModelSourceError` (both stop a run), and
    what may be a batch's own fault as a one-line :class:`RuntimeError` (the core then retries
    the batch's inputs one by one and reports only those that fail)."""
    key = endpoint.spec_key
    if exc.kind == "auth":
        sent = "refused the API key" if endpoint._key else "asks for an API key, and none was set"
        return ConfigError(
            f"{endpoint.shown_url} {sent} ({exc.status}): set api_key = \"${{OPENAI_API_KEY}}\" "
            f"(or the variable holding your key) to a key valid for model {endpoint.name!r}{exc}",
            key=f"{key}.api_key",
        )
    if exc.kind == "not_found":
        return ModelSourceError(
            f"model {endpoint.name!r} or URL {endpoint.shown_url} not found (404): check `name` (a model "
            f"the endpoint serves) and `base_url` (the API root, usually ending in /v1){exc}"
        )
    if exc.kind == "unreachable" or loading:
        return ModelSourceError(str(exc))
    if exc.kind == "malformed" and not endpoint.verified:
        return ModelSourceError(str(exc) + ": is base_url an OpenAI-compatible API root?")
    return RuntimeError(str(exc))


def _check_dim(endpoint: Endpoint, got: int, expected: int, probed: bool) -> None:
    if got == expected:
        return
    if not probed:
        raise ConfigError(
            f"{endpoint.shown_url} returned {got}-d vectors for model {endpoint.name!r}, but dimensions = "
            f"{expected}: the endpoint does not shorten vectors; remove `dimensions` or set it to {got}",
            key=f"{endpoint.spec_key}.dimensions",
        )
    raise ModelSourceError(
        f"{endpoint.shown_url} returned {got}-d vectors for model {endpoint.name!r}, but {expected}-d when the "
        "model was loaded: the model behind the endpoint changed; load it again (and use another collection)"
    )


# -- the three hooks ---------------------------------------------------------------------------


def load(spec: Any) -> Model:
    name = spec.name or DEFAULT_NAME
    input_types = {
        mode: value for mode in MODES if (value := spec.option(f"{mode}_input_type"))
    }
    endpoint = Endpoint(
        base_url=spec.option("base_url") or DEFAULT_BASE_URL,
        name=name,
        api_key=spec.option("api_key"),
        api_version=spec.option("api_version"),
        dimensions=spec.option("dimensions"),
        timeout=spec.option("timeout", 60),
        max_retries=spec.option("max_retries", 6),
        batch_size=spec.batch_size,
        max_batch_tokens=spec.option("max_batch_tokens", 100_000),
        input_types=input_types,
        key=spec.key,
    )
    if endpoint._key is None and (endpoint.host in KEYED_HOSTS or endpoint.azure):
        raise ConfigError(
            f"{endpoint.host} needs an API key: set api_key = \"${{OPENAI_API_KEY}}\" "
            "(the key itself stays in the environment)",
            key=f"{spec.key}.api_key",
        )
    if endpoint.azure and "/deployments/" in endpoint.url and not endpoint.params:
        raise ConfigError(
            "an Azure OpenAI deployment URL needs api_version (e.g. api_version = \"2024-10-21\"), "
            "or use base_url = \"https://RESOURCE.openai.azure.com/openai/v1\"",
            key=f"{spec.key}.api_version",
        )

    dimensions = spec.option("dimensions")
    unit = False
    if dimensions is None:  # one tiny request tells the dimension, and checks key, model and URL
        try:
            probe = endpoint.request([PROBE_TEXT], "document")
        except EndpointError as exc:
            raise _public(endpoint, exc, loading=True) from None
        endpoint.verified = True
        dim = int(probe.shape[1])
        unit = bool(abs(float(np.linalg.norm(probe[0])) - 1.0) < UNIT_TOLERANCE)
    else:
        dim = dimensions

    # The core compares plugin, revision, dim, normalized and settings, not source: the endpoint
    # and the model go in settings too, so a collection refuses vectors from another one.
    settings: dict[str, Any] = {"endpoint": endpoint.where, "model": name, "dimensions": dim}
    for mode in MODES:
        if input_types.get(mode):
            settings[f"{mode}_input_type"] = input_types[mode]
        if spec.option(f"{mode}_prompt"):
            settings[f"{mode}_prompt"] = spec.option(f"{mode}_prompt")
    model = Model(
        dim=dim,
        modalities=("text",),
        source=endpoint.identity,
        revision=REVISION,
        impl=endpoint,
        normalized=bool(spec.normalize or unit),
        settings=settings,
    )
    model.state["probed"] = dimensions is None
    endpoint.count = model.count
    return model


def preprocess(model: Model, items: Sequence[Item], mode: str) -> list[Any]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    prompt = model.settings.get(f"{mode}_prompt", "")
    out: list[Any] = []
    for item in items:
        if item.modality != "text":
            out.append(Failed(f"{model.plugin or 'openai'} embeds text, not {item.modality}"))
        elif item.text is None or not item.text.strip():
            out.append(Failed("no text to embed (empty)"))
        else:
            out.append(prompt + item.text)
    return out


def embed(model: Model, inputs: Sequence[str], mode: str) -> np.ndarray:
    endpoint: Endpoint = model.impl
    out = np.zeros((len(inputs), model.dim), dtype=np.float32)
    for start, stop in endpoint.batches(inputs):
        try:
            vectors = endpoint.request(inputs[start:stop], mode)
        except EndpointError as exc:
            raise _public(endpoint, exc, loading=False) from None
        _check_dim(endpoint, int(vectors.shape[1]), model.dim, probed=bool(model.state.get("probed")))
        endpoint.verified = True
        out[start:stop] = vectors
    if model.normalized:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, np.finfo(np.float32).tiny)
    return out
