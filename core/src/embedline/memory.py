"""The built-in store plugin ``memory``: exact search in NumPy, kept in memory or in one file.

Registered by every plugin manager before entry points, so ``plugin = "memory"`` works with only
the core installed (tests, notebooks, small corpora).  This module only declares the plugin; the
store itself (:class:`embedline._memory_store.MemoryStore`) imports NumPy when it opens.

```toml
[store]
plugin = "memory"
path = "vectors.npz"      # optional: saved there (relative to the pipeline file) on close
metric = "COSINE"         # or "IP", "L2"
```
"""

from __future__ import annotations

from typing import Any

from embedline import __version__, hookimpl
from embedline.contracts import Option, PluginInfo, StoreSpec
from embedline.exact import METRICS

name = "memory"
plugin_info = PluginInfo(
    kind="store",
    options={
        "path": Option(
            str,
            None,
            "file the store is loaded from and saved to on close (relative to the pipeline file); "
            "without it the vectors live in memory only",
        ),
        "metric": Option(str, "COSINE", "similarity of new collections: COSINE, IP or L2", choices=METRICS),
    },
    description="exact NumPy search, in memory or saved to one file (built in)",
)


@hookimpl
def store(spec: StoreSpec) -> Any:
    from embedline._memory_store import MemoryStore

    return MemoryStore.open(spec)


def __getattr__(attr: str) -> Any:
    if attr == "MemoryStore":
        from embedline._memory_store import MemoryStore

        return MemoryStore
    raise AttributeError(f"module 'embedline.memory' has no attribute {attr!r}")


__all__ = ["MemoryStore", "__version__", "plugin_info", "store"]
