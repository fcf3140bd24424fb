"""The HTTP API of a pipeline: OpenAI-compatible embeddings, search, media, health.

:func:`create_app` builds a FastAPI application around a :class:`embedline.Pipeline`; it loads
nothing by itself (models load on first use, or all at once with ``Service.warm``, which
:func:`embedline_serve.server.main` calls before it listens).

Routes: ``POST /v1/embeddings``, ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /search``
(JSON, or a multipart upload), ``GET /media/{uri}``, ``GET /health``, and FastAPI's ``/docs`` and
``/openapi.json``; the search page ``GET /`` (with ``/page/app.js`` and ``/page/style.css``) and
``POST /media-links`` (signed media links for a page on a server with a token).  Every error is an
OpenAI-style object (:mod:`embedline_serve.errors`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Optional, Union

from embedline import Pipeline, __version__
from embedline.contracts import Secret
from embedline.errors import CollectionNotFoundError, ConfigError, EmbedlineError, ItemError, ModelMismatchError
from embedline.filters import as_filter, parse_where
from embedline.snippets import section_of, snippet
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from embedline_serve.errors import APIError, error_body
from embedline_serve.media import media_type, resolve_media
from embedline_serve.security import PUBLIC_PATHS, BearerAuth, BodyLimit, Limits
from embedline_serve.service import ServedModel, Service

log = logging.getLogger("embedline.serve")

_JSON_TYPES = ("application/json",)


# ---------------------------------------------------------------------------------------------
# Request and response bodies (for validation and the OpenAPI document)
# ---------------------------------------------------------------------------------------------


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request; ``input_type`` is embedline's extension."""

    model_config = ConfigDict(extra="ignore")

    input: Union[str, list[str]] = Field(
        description="a text, or a list of texts (token arrays are not accepted)",
        examples=["a cat sleeps on the sofa"],
    )
    model: str = Field(description="a model of the pipeline: its collection name, or an alias (GET /v1/models)")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes, base64-encoded"
    )
    dimensions: Optional[int] = Field(
        None, strict=True, description="accepted only when equal to the model's dimension"
    )
    user: Optional[str] = Field(None, description="ignored")
    input_type: Literal["query", "document"] = Field(
        "document",
        description="embedline extension: embed as a search query or as a document (models with "
        "query/document prompts embed them differently); default document",
    )


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: Usage


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "embedline"
    modalities: list[str] = []
    aliases: list[str] = []
    plugin: str = ""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="the text to search for", examples=["how do I write a plugin?"])
    k: int = Field(10, strict=True, description="number of hits")
    where: Union[dict[str, Any], list[str], None] = Field(
        None,
        description='portable filter: a mapping ({"modality": "image", "year": {"gte": 2000}}) or '
        'the command line\'s --where strings (["year>=2000"])',
    )


class SearchHit(BaseModel):
    id: str
    uri: str
    score: float
    modality: str
    chunk: int
    section: str
    snippet: str
    text: str
    metadata: dict[str, Any]
    start: Optional[float] = None
    end: Optional[float] = None
    page: Optional[int] = None
    media: Optional[str] = None


class SearchResponse(BaseModel):
    hits: list[SearchHit]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    models: list[str]


_ERROR_SCHEMA = {
    "description": "an OpenAI-style error object",
    "content": {"application/json": {"example": error_body(400, "what went wrong", param="input")}},
}


# ---------------------------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------------------------


def create_app(
    pipeline: Pipeline,
    *,
    token: str | None = None,
    limits: Limits | None = None,
    cors_origins: Iterable[str] = (),
    aliases: Mapping[str, str] | None = None,
    batching: bool = True,
    max_wait_ms: float = 5.0,
    service: Service | None = None,
) -> FastAPI:
    """The API of ``pipeline``, as a FastAPI application (run it with uvicorn, or test it with
    ``fastapi.testclient.TestClient``).

    ``token``: required as ``Authorization: Bearer`` on every route but ``/health``.  ``limits``:
    what one request may hold (default :class:`Limits`).  ``cors_origins``: origins allowed by CORS (none: CORS off).
    ``aliases``: more names for models, ``{alias: collection}``; a model's ``name`` as written in
    the pipeline file is one already.  ``batching``/``max_wait_ms``: dynamic batching
    (:mod:`embedline_serve.batching`).  The app's ``state.service`` is the :class:`Service`.
    """
    limits = limits or Limits()
    service = service or Service(pipeline, aliases=aliases, batching=batching, max_wait_ms=max_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="embedline serve",
        version=__version__,
        description=(
            "Embeddings (OpenAI-compatible) and search for an embedline pipeline. "
            "Every error is an OpenAI-style object: {\"error\": {\"message\", \"type\", \"param\", \"code\"}}."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.limits = limits

    # Middleware: the last added runs first.  CORS answers preflights before auth; auth before
    # any body is read; the guard turns any unexpected exception into a generic 500.
    app.add_middleware(_Guard)
    app.add_middleware(BodyLimit, body=limits.max_body_bytes, upload=limits.max_upload_bytes)
    signer = app.state.media_signer = MediaSigner()
    if token:  # BearerAuth, with the page's files public and signed media links honoured (the search page)
        app.add_middleware(PageAuth, token=Secret(token), signer=signer)  # a Secret: shown as ***
    origins = list(cors_origins)
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"], allow_credentials=False,
        )

    _install_error_handlers(app)
    _install_routes(app, service, limits)
    _install_page(app, limits, signer)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        return _error(exc.status, exc.message, param=exc.param, code=exc.code, type=exc.type, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code)
        return _error(exc.status_code, message, code=code, headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = loc[0] if loc else None
        if param == "input":  # a union: pydantic names the member types tried, which says little
            message = "input: must be a text or a list of texts (token arrays are not accepted)"
        elif first.get("type") == "json_invalid":
            param, message = None, "the body is not valid JSON"
        else:
            reason = str(first.get("msg", "invalid value"))
            message = f"{'.'.join(loc)}: {reason}" if loc else reason
        return _error(422, message, param=param)


def _error(status: int, message: str, *, headers: Mapping[str, str] | None = None, **fields: Any) -> Response:
    return _json(error_body(status, message, **fields), status, headers=headers)


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    import json

    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return Response(body, status_code=status, media_type="application/json", headers=dict(headers or {}))


class _Guard:
    """Any exception no handler took becomes a generic 500 (traceback logged, never sent)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("error answering %s %s", scope.get("method"), scope.get("path"))
            if not started:
                from embedline_serve.errors import send_error

                await send_error(send, 500, "internal server error (logged on the server)")


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------


def _install_routes(app: FastAPI, service: Service, limits: Limits) -> None:
    errors = {400: _ERROR_SCHEMA, 401: _ERROR_SCHEMA, 404: _ERROR_SCHEMA, 413: _ERROR_SCHEMA, 422: _ERROR_SCHEMA}

    @app.get("/health", response_model=Health, tags=["server"], summary="liveness; needs no token")
    async def health() -> Response:
        return _json({"status": "ok", "models": [m.id for m in service.models]})

    @app.get("/v1/models", response_model=ModelList, responses=errors, tags=["openai"],
             summary="the pipeline's models (OpenAI list format)")
    async def models() -> Response:
        return _json({"object": "list", "data": [_model_object(m) for m in service.models]})

    @app.get("/v1/models/{model_id:path}", response_model=ModelObject, responses=errors, tags=["openai"],
             summary="one model, by collection name or alias")
    async def model(model_id: str) -> Response:
        return _json(_model_object(_lookup(service, model_id, param=None)))

    @app.post("/v1/embeddings", response_model=EmbeddingsResponse, responses=errors, tags=["openai"],
              summary="embed texts (OpenAI-compatible; dynamic batching across concurrent requests)")
    async def embeddings(body: EmbeddingsRequest) -> Response:
        served = _lookup(service, body.model, param="model")
        if not served.embeds_text:
            raise APIError(400, f"model {body.model!r} embeds {', '.join(served.modalities)}, not text",
                           param="model")
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        _check_texts(texts, limits)
        if body.dimensions is not None:
            dim = await run_in_threadpool(_loaded_dim, service, served)
            if body.dimensions != dim:
                raise APIError(400, f"model {served.id!r} makes {dim}-dimensional vectors and cannot shorten them: "
                               f"dimensions must be {dim} or left out", param="dimensions")
        try:
            vectors = await service.batcher(served).embed(texts, body.input_type)
        except ItemError as exc:
            raise APIError(400, f"an input could not be embedded: {exc.reason}", param="input") from None
        except EmbedlineError as exc:
            raise _pipeline_error(exc) from None
        tokens = await run_in_threadpool(service.count_tokens, served, texts)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(row, body.encoding_format)}
            for i, row in enumerate(vectors)
        ]
        return _json({"object": "list", "data": data, "model": served.id,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    search_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SearchRequest.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary",
                                     "description": "image, audio, video or text file"},
                            "k": {"type": "integer", "default": 10},
                            "where": {"type": "string", "description": "the portable filter as JSON"},
                        },
                    }
                },
            },
        }
    }

    @app.post("/search", response_model=SearchResponse, responses=errors, tags=["search"],
              summary="nearest stored items to a text query (JSON) or an uploaded file (multipart)",
              openapi_extra=search_body)
    async def search(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type.startswith("multipart/form-data"):
            return await _search_upload(request, service, limits)
        if content_type and content_type not in _JSON_TYPES:
            raise APIError(415, f"send application/json or multipart/form-data, not {content_type}")
        try:
            raw = await request.json()
        except ValueError:
            raise APIError(422, "the body is not valid JSON") from None
        try:
            body = SearchRequest.model_validate(raw)
        except Exception as exc:  # pydantic's ValidationError: the first problem, as for other routes
            raise RequestValidationError(getattr(exc, "errors", list)()) from None
        if not body.query.strip():
            raise APIError(422, "query: must not be empty", param="query")
        if len(body.query) > limits.max_input_chars:
            raise APIError(422, f"query: {len(body.query)} characters, at most {limits.max_input_chars}", param="query")
        k = _check_k(body.k, limits)
        flt = _filter(body.where)
        hits = await _run_search(service, query=body.query, k=k, filter=flt)
        return _json({"hits": [_hit(h, body.query) for h in hits]})

    media_route = {"tags": ["search"], "response_class": FileResponse,
                   "responses": {**errors, 206: {"description": "a byte range"}}}

    # One route per method: a route with two methods gives both operations one OpenAPI operationId.
    @app.head("/media/{uri:path}", operation_id="media_head", summary="the headers of a media hit's file",
              **media_route)
    @app.get("/media/{uri:path}", operation_id="media", summary="the file of a media hit (Range requests answered 206)",
             **media_route)
    async def media(uri: str) -> Response:
        source = service.pipeline.config.source
        path = None
        if source is not None:
            path = resolve_media(uri, base=source.base_dir, root=source.path,
                                 include=source.include, exclude=source.exclude)
        if path is None:
            raise APIError(404, "no such media file", code="not_found")
        return FileResponse(path, media_type=media_type(path), content_disposition_type="inline")


def _model_object(model: ServedModel) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": 0, "owned_by": "embedline",
            "modalities": list(model.modalities), "aliases": list(model.aliases), "plugin": model.plugin}


def _lookup(service: Service, name: str, *, param: str | None) -> ServedModel:
    served = service.lookup(name)
    if served is None:
        known = ", ".join(m.id for m in service.models)
        raise APIError(404, f"the model {name!r} does not exist; models: {known}", param=param, code="model_not_found")
    return served


def _loaded_dim(service: Service, served: ServedModel) -> int:
    try:
        return service.dim(served)
    except EmbedlineError as exc:
        raise _pipeline_error(exc) from None


def _check_texts(texts: list[str], limits: Limits) -> None:
    if not texts:
        raise APIError(422, "input: give at least one text", param="input")
    if len(texts) > limits.max_inputs:
        raise APIError(422, f"input: {len(texts)} texts, at most {limits.max_inputs} in one request", param="input")
    for i, text in enumerate(texts):
        if len(text) > limits.max_input_chars:
            raise APIError(422, f"input[{i}]: {len(text)} characters, at most {limits.max_input_chars}", param="input")
        if not text.strip():
            raise APIError(422, f"input[{i}]: empty text", param="input")


def _check_k(k: Any, limits: Limits) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= limits.max_k:
        raise APIError(422, f"k: must be an integer from 1 to {limits.max_k}", param="k")
    return k


def _filter(where: Any) -> Any:
    if where is None:
        return None
    try:
        if isinstance(where, list):
            return parse_where([str(w) for w in where])
        if isinstance(where, Mapping):
            return as_filter(dict(where), key="where")
    except (ConfigError, EmbedlineError, ValueError) as exc:
        raise APIError(422, f"where: {_one_line(exc)}", param="where") from None
    raise APIError(422, "where: a mapping (portable filter) or a list of --where strings", param="where")


def _encode(row: Any, encoding: str) -> Any:
    import numpy as np

    if encoding == "base64":
        return base64.b64encode(np.ascontiguousarray(row, dtype="<f4").tobytes()).decode("ascii")
    return np.asarray(row, dtype=np.float32).tolist()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _pipeline_error(exc: EmbedlineError) -> APIError:
    """An error of the pipeline as an API error: what the client can act on is said, the rest logged."""
    if isinstance(exc, CollectionNotFoundError):
        return APIError(404, f"the collection {exc.collection!r} does not exist yet: run `embedline run` on the "
                        "pipeline first", code="collection_not_found")
    if isinstance(exc, ModelMismatchError):
        log.error("%s", exc)
        return APIError(409, "the collection was filled by another model than the pipeline's (see the server log)",
                        code="model_mismatch")
    log.error("pipeline error: %s", exc)
    return APIError(500, "the pipeline failed (logged on the server)", code="pipeline_error")


async def _run_search(service: Service, **kwargs: Any) -> list[Any]:
    param = "file" if kwargs.get("file") else "query"
    try:
        return await run_in_threadpool(lambda: service.search(**kwargs))
    except ItemError as exc:
        raise APIError(400, f"the {param} could not be embedded: {exc.reason}", param=param) from None
    except EmbedlineError as exc:
        if type(exc) is EmbedlineError:  # the pipeline's refusals: no model embeds this modality, ...
            message = _one_line(exc).removeprefix(f"{service.pipeline.config.origin}: ")
            raise APIError(400, message, param=param) from None
        raise _pipeline_error(exc) from None


def _hit(hit: Any, query: str | None) -> dict[str, Any]:
    metadata = dict(hit.metadata or {})
    section = section_of(hit)
    text = hit.text or ""
    out = {
        "id": hit.id,
        "uri": hit.uri,
        "score": float(hit.score),
        "modality": hit.modality,
        "chunk": hit.chunk,
        "section": section,
        "snippet": snippet(text, query, section=section) if text else "",
        "text": text,
        "metadata": metadata,
        "start": _number(metadata.get("start")),
        "end": _number(metadata.get("end")),
        "page": metadata.get("page") if isinstance(metadata.get("page"), int) else None,
        "media": None,
    }
    if hit.modality and hit.modality != "text":
        from urllib.parse import quote

        out["media"] = "/media/" + quote(hit.uri, safe="/")
    return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


async def _search_upload(request: Request, service: Service, limits: Limits) -> Response:
    form = await request.form(max_files=1, max_fields=8)
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise APIError(422, "file: upload the query file in the multipart field 'file'", param="file")
        k = _check_k(_form_int(form.get("k"), default=10), limits)
        where = form.get("where")
        flt = None
        if isinstance(where, str) and where.strip():
            import json

            try:
                flt = _filter(json.loads(where))
            except ValueError:
                raise APIError(422, "where: not valid JSON", param="where") from None
        suffix = Path(upload.filename or "").suffix
        fd, name = tempfile.mkstemp(prefix="embedline-query-", suffix=suffix if _SUFFIX.match(suffix) else "")
        try:
            with os.fdopen(fd, "wb") as out:
                size = 0
                while chunk := await upload.read(1 << 20):
                    size += len(chunk)
                    if size > limits.max_upload_bytes:
                        raise APIError(413, f"upload too large: at most {limits.max_upload_bytes} bytes",
                                       code="request_too_large")
                    out.write(chunk)
            if size == 0:
                raise APIError(422, "file: the upload is empty", param="file")
            hits = await _run_search(service, file=name, k=k, filter=flt)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)
    finally:
        await form.close()
    return _json({"hits": [_hit(h, None) for h in hits]})


def _form_int(value: Any, *, default: int) -> Any:
    if value is None or value == "":
        return default
    try:
        return int(str(value))
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# The search page: GET / (index.html), /page/app.js, /page/style.css; signed media links
# ---------------------------------------------------------------------------------------------

_PAGE_DIR = Path(__file__).with_name("page")
_PAGE_TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
               "style.css": "text/css; charset=utf-8"}
#: The page's own files, answered without a token: they hold no data, and the page asks for the token.
PAGE_PATHS = frozenset({"/", "/page/app.js", "/page/style.css"})
#: Seconds a signed media link (``POST /media-links``) opens its file without a token.
MEDIA_LINK_SECONDS = 3600
_PAGE_HEADERS = {
    # The page loads nothing from elsewhere and runs only its own script.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class MediaSigner:
    """Short-lived links to media files, for a server with a token.

    ``<img>``, ``<audio>`` and ``<video>`` cannot send an ``Authorization`` header, so the page asks
    ``POST /media-links`` (with the token) for links that carry ``expires`` (Unix seconds) and
    ``signature``: HMAC-SHA256 over the expiry and the decoded path, under a key drawn at random
    for this app (not derived from the token; a restart invalidates every link).  A link opens that
    one path, by GET or HEAD, until it expires; the /media route's own checks still apply."""

    def __init__(self, seconds: int = MEDIA_LINK_SECONDS, *, key: bytes | None = None, clock: Any = time.time):
        self.seconds = seconds
        self._key = key or secrets.token_bytes(32)
        self._clock = clock

    def __repr__(self) -> str:  # never show the key
        return f"MediaSigner(seconds={self.seconds}, key='***')"

    def _mac(self, path: str, expires: int) -> str:
        message = f"{expires}\n{path}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign(self, path: str) -> tuple[str, int]:
        """``path`` (decoded: ``/media/a b.png``) as a link (``/media/a%20b.png?expires=..&signature=..``)
        and its expiry."""
        from urllib.parse import quote, urlencode

        expires = int(self._clock()) + self.seconds
        query = urlencode({"expires": expires, "signature": self._mac(path, expires)})
        return f"{quote(path, safe='/')}?{query}", expires

    def verify(self, path: str, query_string: bytes) -> bool:
        """Whether the query string signs ``path`` (as the server decoded it) and has not expired."""
        from urllib.parse import parse_qs

        try:
            params = parse_qs(query_string.decode("ascii"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return False
        expires, signature = params.get("expires", []), params.get("signature", [])
        if len(expires) != 1 or len(signature) != 1 or not re.fullmatch(r"[0-9]{1,12}", expires[0]):
            return False
        when, now = int(expires[0]), self._clock()
        if not now <= when <= now + self.seconds + 60:
            return False
        return hmac.compare_digest(signature[0].encode("ascii"), self._mac(path, when).encode("ascii"))


class PageAuth:
    """The bearer token (:class:`BearerAuth`) on every route but ``/health`` and the page's own
    files (:data:`PAGE_PATHS`); a GET or HEAD of ``/media/...`` with a valid signed link
    (:class:`MediaSigner`) needs no token."""

    def __init__(self, app: Any, token: Any, signer: MediaSigner):
        self.app = app
        self.signer = signer
        self.bearer = BearerAuth(app, token=token, public=PUBLIC_PATHS | PAGE_PATHS)

    def __repr__(self) -> str:  # never show the token
        return "PageAuth(token='***')"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") in ("GET", "HEAD")
            and str(scope.get("path", "")).startswith("/media/")
            and scope.get("query_string")
            and self.signer.verify(scope["path"], scope["query_string"])
        ):
            await self.app(scope, receive, send)
            return
        await self.bearer(scope, receive, send)


class MediaLinksRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    media: list[str] = Field(description="media links of hits, as /search gives them (/media/...)",
                             examples=[["/media/photos/cat.jpg"]])


class MediaLinksResponse(BaseModel):
    links: list[str]
    expires: int


def _page_file(name: str) -> Response:
    try:
        body = (_PAGE_DIR / name).read_bytes()
    except OSError:
        log.error("the search page's file %s is missing from the installation", name)
        raise APIError(404, "the search page is not installed", code="not_found") from None
    return Response(body, media_type=_PAGE_TYPES[name], headers=_PAGE_HEADERS)


def _install_page(app: FastAPI, limits: Limits, signer: MediaSigner) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return _page_file("index.html")

    @app.get("/page/{name}", include_in_schema=False)
    async def page_asset(name: str) -> Response:
        if name not in ("app.js", "style.css"):
            raise APIError(404, "no such file", code="not_found")
        return _page_file(name)

    @app.post("/media-links", response_model=MediaLinksResponse, tags=["search"],
              responses={401: _ERROR_SCHEMA, 422: _ERROR_SCHEMA},
              summary="signed links to media files, usable without the token for a while (for <img>, <audio>)")
    async def media_links(body: MediaLinksRequest) -> Response:
        from urllib.parse import unquote

        if len(body.media) > limits.max_k:
            raise APIError(422, f"media: at most {limits.max_k} links", param="media")
        links = []
        expires = int(time.time()) + signer.seconds
        for i, link in enumerate(body.media):
            if not link.startswith("/media/") or len(link) > 4096 or any(c in link for c in "?#\\\x00"):
                raise APIError(422, f"media[{i}]: not a media link (/media/...)", param="media")
            signed, expires = signer.sign(unquote(link))
            links.append(signed)
        return _json({"links": links, "expires": expires})


__all__ = ["EmbeddingsRequest", "SearchRequest", "create_app"]
