"""embedline plugin ``openai``: text embeddings from any OpenAI-compatible ``/embeddings`` endpoint.

OpenAI itself, Azure OpenAI, vLLM, Hugging Face TEI, infinity, ``embedline serve``: anything that
answers ``POST {base_url}/embeddings`` the way OpenAI does.  No weights are loaded here; the
model's identity is the endpoint's host, the model name and the dimension.  This module only
declares the plugin; the work (httpx, numpy) happens in ``_backend``, imported inside the hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from embedline.contracts import Option, PluginInfo
from embedline.toolkit import model_hooks, redact_uri

__version__ = "0.1.0"

DEFAULT_NAME = "text-embedding-3-small"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Hosts that need a key whatever the pipeline says (a missing key is a config error at load).
KEYED_HOSTS = ("api.openai.com",)
#: Azure OpenAI hosts: the key goes in the ``api-key`` header instead of ``Authorization``.
AZURE_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com")


def _validate(options: Mapping[str, Any]) -> None:
    """Checks ``embedline check`` runs before anything is loaded (values already type-checked)."""
    base_url = options.get("base_url")
    if base_url is not None:
        shown = redact_uri(base_url)
        try:
            parts = urlsplit(base_url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ValueError(f"base_url: not a valid URL: {shown!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url: expected an http:// or https:// URL, got {shown!r}")
        if any(c.isspace() for c in base_url):
            raise ValueError(f"base_url: contains whitespace: {shown!r}")
    timeout = options.get("timeout")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout: expected a number of seconds greater than 0, got {timeout}")
    max_retries = options.get("max_retries")
    if max_retries is not None and max_retries < 0:
        raise ValueError(f"max_retries: expected 0 or more, got {max_retries}")
    dimensions = options.get("dimensions")
    if dimensions is not None and dimensions < 1:
        raise ValueError(f"dimensions: expected a positive integer, got {dimensions}")
    max_batch_tokens = options.get("max_batch_tokens")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens: expected a positive integer, got {max_batch_tokens}")
    api_version = options.get("api_version")
    if api_version is not None and not api_version.strip():
        raise ValueError("api_version: expected a version such as \"2024-10-21\", got an empty string")


plugin_info = PluginInfo(
    kind="model",
    modalities=("text",),
    options={
        "base_url": Option(
            str,
            DEFAULT_BASE_URL,
            "the OpenAI-compatible API root; requests go to {base_url}/embeddings "
            "(e.g. http://localhost:8000/v1 for vLLM, TEI or embedline serve)",
        ),
        "api_key": Option(
            str,
            None,
            'the API key, from the environment: api_key = "${OPENAI_API_KEY}"; sent as '
            "`Authorization: Bearer` (Azure: the `api-key` header); never printed",
            secret=True,
        ),
        "dimensions": Option(
            int,
            None,
            "ask for vectors of this size (sent as `dimensions`; text-embedding-3-* shorten theirs); "
            "default: the model's own, learnt from one probe request at load",
        ),
        "max_batch_tokens": Option(
            int,
            100_000,
            "a request is also cut when its inputs' estimated tokens would pass this "
            "(tiktoken when installed, else characters / 4)",
        ),
        "timeout": Option((int, float), 60, "seconds to wait for one answer before retrying"),
        "max_retries": Option(
            int,
            6,
            "retries of one request after 429, 5xx, a timeout or a connection error "
            "(exponential backoff with full jitter, Retry-After honoured, at most 60 s per wait)",
        ),
        "api_version": Option(
            str,
            None,
            "Azure OpenAI: sent as the `api-version` query parameter (required for "
            ".../openai/deployments/NAME URLs, e.g. \"2024-10-21\")",
        ),
        "document_input_type": Option(
            str,
            None,
            "sent as `input_type` with documents, for endpoints that take one (e.g. \"passage\"); "
            "default: none sent",
        ),
        "query_input_type": Option(
            str, None, "sent as `input_type` with queries (e.g. \"query\"); default: none sent"
        ),
        "document_prompt": Option(str, "", "text put before every document (e.g. \"passage: \" for E5 models)"),
        "query_prompt": Option(str, "", "text put before every query (e.g. \"query: \" for E5 models)"),
    },
    description="text embeddings from an OpenAI-compatible endpoint: OpenAI, Azure OpenAI, vLLM, TEI, infinity",
    validate=_validate,
)


load_model, preprocess, embed = model_hooks("embedline_openai._backend")
