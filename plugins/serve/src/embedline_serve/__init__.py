"""embedline serve: a warm HTTP server for a pipeline.

* :func:`main` — what ``embedline serve`` calls: load the pipeline and its models once, listen.
* :func:`create_app` — the FastAPI application around a :class:`embedline.Pipeline`.
* :class:`Limits` — what one request may hold; :class:`DynamicBatcher` — dynamic batching.
* :class:`BackgroundServer` — a real uvicorn on a loopback port, in a thread (tests, benchmarks).

Importing this package is cheap: FastAPI and uvicorn are imported on first use of these names.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_app": "embedline_serve.app",
    "main": "embedline_serve.server",
    "BackgroundServer": "embedline_serve.server",
    "bind_socket": "embedline_serve.server",
    "Limits": "embedline_serve.security",
    "TOKEN_ENV": "embedline_serve.security",
    "check_bind": "embedline_serve.security",
    "is_loopback": "embedline_serve.security",
    "DynamicBatcher": "embedline_serve.batching",
    "Service": "embedline_serve.service",
    "ServeError": "embedline_serve.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'embedline_serve' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
