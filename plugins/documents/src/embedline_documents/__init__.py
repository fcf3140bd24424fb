"""embedline plugin ``documents``: markdown, HTML and PDF files parsed into blocks along their
structure (headings, tables, code, lists, pages), which the core packs into chunks.

This module only declares the plugin; each format's parser is imported when a file of that format
is read, so listing plugins imports none of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from embedline import hookimpl
from embedline.contracts import Block, PluginInfo

__version__ = "0.1.0"

_PARSERS = {"markdown": "embedline_documents.markdown", "html": "embedline_documents.html", "pdf": "embedline_documents.pdf"}

plugin_info = PluginInfo(
    kind="reader",
    formats=tuple(_PARSERS),
    description="Markdown (markdown-it-py), HTML (selectolax) and PDF (pypdf) parsed into blocks along their structure",
)


@hookimpl
def read_document(path: str, format: str, encoding: str) -> Iterable[Block] | None:
    module = _PARSERS.get(format)
    if module is None:
        return None
    parser = importlib.import_module(module)
    return parser.read(path) if format == "pdf" else parser.read(path, encoding)
