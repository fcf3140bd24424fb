"""embedline plugin ``sqlitestore``: rows in one SQLite file, exact search in NumPy."""

from __future__ import annotations

from embedline import hookimpl
from embedline.contracts import Option, PluginInfo
from embedline.toolkit import METRICS

__version__ = "0.2.0"

plugin_info = PluginInfo(
    kind="store",
    options={
        "path": Option(str, "embed.sqlite", "SQLite database file, relative to the pipeline file"),
        "metric": Option(str, "COSINE", "similarity of new collections", choices=METRICS),
    },
    description="SQLite file, exact NumPy search (a third-party example)",
)


@hookimpl
def store(spec):
    from embedline_sqlitestore._store import SqliteStore

    return SqliteStore.open(spec)
