"""What keeps the server safe to run: loopback by default, a bearer token, limits on what a request
may hold.  Pure ASGI middleware, so each check runs before any body is read or parsed.

* :func:`check_bind` refuses any address but loopback unless a token is set.
* :class:`BearerAuth` requires ``Authorization: Bearer <token>`` on every route but ``/health``
  (compared in constant time; the token is never printed or logged).
* :class:`BodyLimit` answers 413 when a body is larger than its limit: at once when
  ``Content-Length`` says so, else as soon as the bytes read pass it (chunked uploads).  A
  multipart body (an upload to ``/search``) gets :attr:`Limits.max_upload_bytes`, any other body
  :attr:`Limits.max_body_bytes`.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from embedline.contracts import Secret, reveal
from starlette.exceptions import HTTPException

from embedline_serve.errors import ServeError, send_error

#: The environment variable the token is read from when ``--token`` is not given.
TOKEN_ENV = "EMBEDLINE_SERVE_TOKEN"

#: Routes answered without a token.
PUBLIC_PATHS = frozenset({"/health"})


@dataclass(frozen=True)
class Limits:
    """What one request may hold.  Larger requests are answered 413 (bodies) or 422 (the rest)."""

    max_body_bytes: int = 1 << 20  # a JSON body: 1 MiB
    max_upload_bytes: int = 50 << 20  # a multipart body (an uploaded query file): 50 MiB
    max_inputs: int = 2048  # texts in one /v1/embeddings request
    max_input_chars: int = 32_768  # characters of one input text, or of a search query
    max_k: int = 1000  # hits one search may ask for

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"limit {name} must be a positive integer, got {value!r}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost``, ``127.0.0.0/8`` or ``::1``."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(token: str | None) -> str | None:
    """``token`` when given, else ``$EMBEDLINE_SERVE_TOKEN``; None when neither is set (or empty)."""
    if token is None:
        token = os.environ.get(TOKEN_ENV)
    return token or None


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen on anything but loopback without a token: a :class:`ServeError` (one line)."""
    if not is_loopback(host) and not token:
        raise ServeError(
            f"refusing to listen on {host} without a token: anyone who can reach it could use the server; "
            f"set --token or {TOKEN_ENV}, or listen on 127.0.0.1"
        )


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value
    return None


class BearerAuth:
    """``Authorization: Bearer <token>`` on every HTTP route but :data:`PUBLIC_PATHS`; 401 otherwise.

    CORS preflights (``OPTIONS`` with ``Access-Control-Request-Method``) never reach this: the CORS
    middleware, outside it, answers them.
    """

    def __init__(self, app: Any, token: str | Secret, public: Iterable[str] = PUBLIC_PATHS):
        self.app = app
        self._token = str(reveal(token)).encode("utf-8")
        self._public = frozenset(public)

    def __repr__(self) -> str:  # never show the token
        return "BearerAuth(token='***')"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in self._public:
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"authorization") or b""
        scheme, _, credential = given.partition(b" ")
        ok = scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self._token)
        if not ok:
            message = "missing bearer token" if not given else "invalid bearer token"
            await send_error(
                send, 401, f"{message}: send 'Authorization: Bearer <token>'",
                code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"},
            )
            return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised while a body is read, past its limit; an :class:`HTTPException` so that FastAPI's body
    parsing lets it through (it turns other exceptions into a 400)."""

    def __init__(self, limit: int, what: str):
        super().__init__(413, f"{what} too large: at most {limit} bytes")
        self.limit = limit


class BodyLimit:
    """413 for a body over the limit: multipart bodies ``upload`` bytes, any other ``body`` bytes."""

    def __init__(self, app: Any, body: int, upload: int):
        self.app = app
        self.body = body
        self.upload = upload

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or b"").lower()
        multipart = content_type.startswith(b"multipart/form-data")
        limit, what = (self.upload, "upload") if multipart else (self.body, "request body")
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await send_error(send, 400, "invalid Content-Length header")
                return
            if size > limit:
                await send_error(send, 413, f"{what} too large: {size} bytes, at most {limit}",
                                 headers={"Connection": "close"})
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, what)
            return message

        await self.app(scope, limited, send)


__all__ = [
    "BearerAuth", "BodyLimit", "BodyTooLarge", "Limits", "TOKEN_ENV", "check_bind", "is_loopback", "resolve_token",
]
