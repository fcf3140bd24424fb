"""Exceptions raised by embedline.

Every error a user can cause is an :class:`EmbedlineError`; the CLI prints its message as one line
(no traceback unless ``--debug``).  Messages name the thing at fault (file, key path, plugin, item)
and say what to do.
"""

from __future__ import annotations


class EmbedlineError(Exception):
    """Base class of all user-facing errors."""


class ConfigError(EmbedlineError):
    """A pipeline file (or dict) is malformed or inconsistent.

    ``source`` is the file (or ``"<dict>"``), ``key`` the dotted key path, when known.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.reason = message
        super().__init__(_where(source, key) + message)


def _where(source: str | None, key: str | None) -> str:
    """``"embed.toml: model.name: "``: the prefix naming a file and key path, or what is known of them."""
    return ": ".join(part for part in (source, key) if part) + (": " if source or key else "")


class PluginNotFoundError(EmbedlineError):
    """The pipeline names a plugin that is not installed (or is blocked)."""


class PluginError(EmbedlineError):
    """A plugin broke its contract while running: ``embed`` returned the wrong shape, ``preprocess``
    the wrong number of inputs, ``load_model`` something that is not an ``embedline.Model``.  A bug
    in the plugin, not in the pipeline file or the data."""


class PluginLoadError(PluginError):
    """A plugin is installed but failed to import or register.  A :class:`PluginError` too, so
    ``except PluginError`` catches every plugin fault; ``except PluginLoadError`` only import and
    registration faults."""


class ModelSourceError(EmbedlineError):
    """A model could not be found or loaded from the source the pipeline gives.

    ``source`` (the pipeline file) and ``key`` (the key that names the model, such as
    ``model.name``) are set when known, as for :class:`ConfigError`; plugins raise it with the
    message alone and the core adds them.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.reason = message
        super().__init__(_where(source, key) + message)


class ModelMismatchError(EmbedlineError):
    """A collection was filled by one model and is being used with another."""


class StoreError(EmbedlineError):
    """The vector store refused an operation (locked database, dimension mismatch, ...)."""


class CollectionNotFoundError(StoreError):
    """The collection searched does not exist in the store (nothing was ever stored in it).

    ``collection`` is its name, ``where`` the store (database, file) when known."""

    def __init__(self, collection: str, where: str | None = None):
        self.collection = collection
        self.where = where
        super().__init__(f"collection {collection!r} does not exist" + (f" in {where}" if where else ""))

    def __reduce__(self):  # picklable with its fields (executors may send it between processes)
        return type(self), (self.collection, self.where)


class PipelineClosedError(EmbedlineError):
    """A :class:`~embedline.Pipeline` was used after ``close()`` (or after its ``with`` block).  A
    closed pipeline never reopens its store: make a new one."""


class ItemError(EmbedlineError):
    """One item could not be read, preprocessed or embedded.  Never aborts a run by itself."""

    def __init__(self, uri: str, stage: str, reason: str):
        self.uri = uri
        self.stage = stage
        self.reason = reason
        super().__init__(f"{uri}: {stage}: {reason}")
