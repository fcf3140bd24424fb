"""Errors as OpenAI-style objects: ``{"error": {"message", "type", "param", "code"}}``.

Every answer that is not a success has this shape, whichever route it comes from (authentication,
limits, validation, a route that does not exist), so an OpenAI client reports it as an
``openai.APIStatusError`` with the message.  No response ever carries a traceback: an unexpected
exception is logged on ``embedline.serve`` and answered with a generic 500.
"""

from __future__ import annotations

import json
from typing import Any

from embedline.errors import EmbedlineError

#: OpenAI's error types for each status we answer with.
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    416: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


class ServeError(EmbedlineError):
    """The server cannot start as asked (a public address without a token, a port in use): one
    line, which the command line prints before exiting 1."""


class APIError(Exception):
    """Raised in a route: answered as an OpenAI-style error object with ``status``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None,
               type: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type or TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_bytes(status: int, message: str, **fields: Any) -> bytes:
    return json.dumps(error_body(status, message, **fields)).encode()


async def send_error(send: Any, status: int, message: str, *, headers: dict[str, str] | None = None,
                     **fields: Any) -> None:
    """Answer an ASGI request with an error object, from a middleware (no framework needed)."""
    body = error_bytes(status, message, **fields)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
