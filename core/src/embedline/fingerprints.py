"""The fingerprint policy: which model a collection remembers, and when a model may use it.

A collection is created with the fingerprint of the model that fills it (plus its ``identity`` and
the ``spec_key`` of the model section).  Later runs and searches must use a model of the same
identity; a different one is refused with both named.  An unchanged re-run does not even load the
model: the same spec key (same section, same plugin version, same weight files by size and mtime)
vouches for the identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from embedline.contracts import ModelSpec, VectorStore, describe_fingerprint, fingerprint_id, reveal
from embedline.errors import CollectionNotFoundError, ModelMismatchError

#: The fingerprint keys that decide whether two models make interchangeable vectors.  The plugin
#: version and the path the weights were read from are recorded but do not count.
IDENTITY_KEYS = ("plugin", "revision", "dim", "normalized", "settings", "segment")


def model_identity(fingerprint: Mapping[str, Any]) -> str:
    return fingerprint_id({k: fingerprint.get(k) for k in IDENTITY_KEYS})


def spec_key(spec: ModelSpec, plugin_version: str) -> str | None:
    """A cheap key for "this model section, these weights": equal keys, equal identity.

    None when the weights cannot be stamped without loading them (a hub id not in the cache).
    """
    from embedline.modelsource import source_stamp

    stamp = source_stamp(spec.name, revision=spec.revision, base_dir=spec.base_dir)
    if stamp is None:
        return None
    options = {k: reveal(v) for k, v in spec.options.items()}
    blob = json.dumps(
        [spec.plugin, plugin_version, spec.name, spec.revision, spec.normalize,
         sorted(spec.modalities or ()), spec.trust_remote_code, options, stamp],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def check(collection: str, stored: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> None:
    """Raise :class:`ModelMismatchError` unless ``fingerprint`` makes the vectors ``stored`` describes."""
    if model_identity(stored) != model_identity(fingerprint):
        raise ModelMismatchError(
            f"collection {collection!r} was filled by {describe_fingerprint(stored)}, but this pipeline's model is "
            f"{describe_fingerprint(fingerprint)}; vectors of different models cannot be compared. "
            f"Use the collection's model, or another `collection` name to embed with this one"
        )


@attrs.frozen
class Binding:
    """A collection checked against a model section: what the run's stages need to know about it."""

    collection: str
    identity: str
    segment: tuple[float, float] | None
    fresh: bool  # created now: it holds nothing, so there is nothing to look up or clean
    loaded: bool  # whether the model had to be loaded (and was checked) to bind it


def bind(
    store: VectorStore,
    collection: str,
    key: Callable[[], str | None],
    model: Callable[[], Any],
    *,
    create: bool,
    lazy: bool,
    origin: str,
) -> Binding:
    """Check (or create) ``collection`` against a model section.

    ``model()`` loads the model (an object with ``fingerprint`` and ``identity``); ``key()`` is the
    section's :func:`spec_key`.  With ``lazy``, a collection whose recorded spec key equals the
    section's is trusted without loading the model.
    """
    stored = store.get_fingerprint(collection)
    section_key = key() if lazy else None
    if stored is not None and section_key is not None and stored.get("spec_key") == section_key:
        segment = stored.get("segment")
        return Binding(collection, model_identity(stored), tuple(segment) if segment else None, False, False)
    loaded = model()
    fresh = False
    if stored is None:
        if not create:
            raise CollectionNotFoundError(collection, f"the store of {origin}")
        section_key = section_key or key()
        store.create_collection(
            collection, {**loaded.fingerprint, "identity": loaded.identity, "spec_key": section_key}
        )
        fresh = True
    else:
        check(collection, stored, loaded.fingerprint)
    segment = loaded.fingerprint.get("segment")
    return Binding(collection, loaded.identity, tuple(segment) if segment else None, fresh, True)
