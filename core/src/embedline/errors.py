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
        where = ""
        if source and key:
            where = f"{source}: {key}: "
        elif source:
            where = f"{source}: "
        elif key:
            where = f"{key}: "
        super().__init__(where + message)


class PluginNotFoundError(EmbedlineError):
    """The pipeline names a plugin that is not installed (or is blocked)."""


class PluginLoadError(EmbedlineError):
    """A plugin is installed but failed to import or register."""


class ModelSourceError(EmbedlineError):
    """A model could not be found or loaded from the source the pipeline gives."""


class ModelMismatchError(EmbedlineError):
    """A collection was filled by one model and is being used with another."""


class StoreError(EmbedlineError):
    """The vector store refused an operation (locked database, dimension mismatch, ...)."""


class ItemError(EmbedlineError):
    """One item could not be read, preprocessed or embedded.  Never aborts a run by itself."""

    def __init__(self, uri: str, stage: str, reason: str):
        self.uri = uri
        self.stage = stage
        self.reason = reason
        super().__init__(f"{uri}: {stage}: {reason}")
