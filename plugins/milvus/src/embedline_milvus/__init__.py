"""embedline plugin ``milvus``: store vectors in Milvus Lite (a local file), a Milvus server or Zilliz Cloud.

This module only declares the plugin.  pymilvus (slow to import) is imported inside the hook, so
``embedline plugins`` and config checks stay cheap.
"""

from __future__ import annotations

from embedline import hookimpl
from embedline.contracts import PluginInfo

from embedline_milvus._options import OPTIONS, validate

__version__ = "0.1.0"

plugin_info = PluginInfo(
    kind="store",
    modalities=(),
    options=OPTIONS,
    description="Milvus vector store: Milvus Lite file (default embed.db), Milvus server or Zilliz Cloud",
    validate=validate,
)


@hookimpl
def store(spec):
    from embedline_milvus._store import MilvusStore

    return MilvusStore.open(spec)
