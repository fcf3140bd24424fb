"""embedline: the right embedding for every kind of data, stored and searched in Milvus.

Importing this package is cheap: it imports pluggy and attrs only.  The host API (``Pipeline``,
``load_model``) is imported on first use.
"""

from __future__ import annotations

import logging
from typing import Any

import pluggy

__version__ = "0.1.0"

# A library logs and its host decides what is shown: without this handler a host that configured
# no logging would get embedline's warnings on stderr from logging's last-resort handler.  Only
# the ``embedline`` command line sets up output (``embedline.cli``).
logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Decorate hook implementations with this marker (``@embedline.hookimpl``).
hookimpl = pluggy.HookimplMarker("embedline")

_LAZY = {
    "Pipeline": "embedline.pipeline",
    "load_model": "embedline.pipeline",
    "EmbeddingModel": "embedline.pipeline",
    "RunSummary": "embedline.pipeline",
    "get_plugin_manager": "embedline.plugins",
    "Item": "embedline.contracts",
    "Model": "embedline.contracts",
    "Failed": "embedline.contracts",
    "Block": "embedline.contracts",
    "TokenCounter": "embedline.contracts",
    "Record": "embedline.contracts",
    "Hit": "embedline.contracts",
    "VectorStore": "embedline.contracts",
    "PluginInfo": "embedline.contracts",
    "Option": "embedline.contracts",
    "ModelSpec": "embedline.contracts",
    "StoreSpec": "embedline.contracts",
    "ExecutorSpec": "embedline.contracts",
    "Executor": "embedline.contracts",
    "Secret": "embedline.contracts",
}

__all__ = ["__version__", "hookimpl", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'embedline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
