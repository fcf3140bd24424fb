"""The ``backend = "onnx"`` half of the minilm plugin: ONNX Runtime for the transformer, ``tokenizers``
for the text, NumPy for pooling.  Nothing here imports torch, transformers or sentence-transformers.

The model folder's own sentence-transformers files say what to do around the transformer:
``modules.json`` (Transformer, Pooling, optional Normalize), ``sentence_bert_config.json``
(max sequence length, lower-casing), ``1_Pooling/config.json`` (pooling mode, whether the prompt is
pooled) and ``config_sentence_transformers.json`` (saved prompts).  The transformer itself is
``onnx/model.onnx`` when the folder has one, else an export made once from the torch weights and
cached (:mod:`embedline_minilm._onnx_export`, the only place that imports torch).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from embedline.contracts import Model
from embedline.errors import ConfigError, ModelSourceError
from embedline.toolkit import ResolvedSource, parse_device

from embedline_minilm._backend import first_line, folder_model

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_LEGACY_POOLING_KEYS = {  # sentence-transformers < 6 wrote one boolean per mode, in this order
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_VERY_LARGE = 10**12  # transformers' "no limit" model_max_length is 1e30
_MODULES = ("Transformer", "Pooling", "Normalize")  # what this backend runs


# -- the folder's sentence-transformers configuration ----------------------------------------


class STConfig:
    """What a sentence-transformers folder says about the modules around its transformer."""

    def __init__(self, folder: Path, source: str):
        self.folder = folder
        modules = _read_json(folder / "modules.json", source)
        plain = modules is None  # a plain transformers folder: sentence-transformers adds mean pooling
        if plain:
            modules = [{"type": "Transformer", "path": ""}]
        kinds = [(str(m.get("type", "")).rsplit(".", 1)[-1], m.get("path") or "") for m in modules]
        unsupported = [f"{kind} ({path or '.'})" for kind, path in kinds if kind not in _MODULES]
        if unsupported or not kinds or kinds[0][0] != "Transformer":
            what = ", ".join(unsupported) if unsupported else "no Transformer module first"
            raise ModelSourceError(
                f"model {source!r}: backend \"onnx\" runs only Transformer, Pooling and Normalize modules; "
                f"this model has {what}: use backend = \"torch\""
            )
        self.transformer_dir = folder / kinds[0][1]
        self.normalize = any(kind == "Normalize" for kind, _ in kinds)
        st = _read_json(self.transformer_dir / "sentence_bert_config.json", source) or {}
        self.do_lower_case = bool(st.get("do_lower_case", False))
        self.hf_config = _read_json(self.transformer_dir / "config.json", source) or {}
        self.tokenizer_config = _read_json(self.transformer_dir / "tokenizer_config.json", source) or {}
        self.max_positions = _positive(self.hf_config.get("max_position_embeddings"))
        self.max_seq_length = _positive(st.get("max_seq_length")) or self._tokenizer_limit()

        pooling_path = next((path for kind, path in kinds if kind == "Pooling"), None)
        pooling = {} if pooling_path is None else _read_json(folder / pooling_path / "config.json", source) or {}
        self.pooling = _pooling_modes(pooling, source)
        self.include_prompt = bool(pooling.get("include_prompt", True))
        width = pooling.get("embedding_dimension") or pooling.get("word_embedding_dimension")
        width = width or self.hf_config.get("hidden_size")
        # Without a Pooling module the model makes token vectors, not one per text.
        self.dim = int(width) * len(self.pooling) if width and (plain or pooling_path is not None) else None

        saved = _read_json(folder / "config_sentence_transformers.json", source) or {}
        self.prompts: dict[str, str] = dict(saved.get("prompts") or {})
        self.default_prompt_name: str | None = saved.get("default_prompt_name")

    def _tokenizer_limit(self) -> int | None:
        """sentence-transformers' default: the tokenizer's model_max_length, capped at the positions."""
        limit = _positive(self.tokenizer_config.get("model_max_length"))
        limit = limit if limit is not None and limit < _VERY_LARGE else None
        if self.max_positions is not None:
            return min(limit, self.max_positions) if limit is not None else self.max_positions
        return limit

    def tokenizer_file(self) -> Path | None:
        path = self.transformer_dir / "tokenizer.json"
        return path if path.is_file() else None


def _read_json(path: Path, source: str) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"model {source!r}: cannot read {path}: {exc}") from None


def _positive(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number > 0 else None


def _pooling_modes(config: Mapping[str, Any], source: str) -> tuple[str, ...]:
    mode = config.get("pooling_mode")
    if mode is None:
        modes = tuple(name for key, name in _LEGACY_POOLING_KEYS.items() if config.get(key))
    else:
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    modes = modes or ("mean",)
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown:
        raise ModelSourceError(f"model {source!r}: unknown pooling mode {unknown[0]!r} in its Pooling module")
    return modes


# -- loading ---------------------------------------------------------------------------------


def load(spec, name: str, resolved: ResolvedSource) -> Model:
    """Load ``resolved`` for ONNX Runtime, with the torch backend's rules for lengths and prompts."""
    from embedline_minilm import ONNX_INSTALL, _onnx_export

    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as exc:
        raise ModelSourceError(f'model {name!r}: backend = "onnx" needs {exc.name}: {ONNX_INSTALL}') from None
    resolved = _onnx_export.on_disk(resolved, spec)
    config = STConfig(resolved.path, resolved.source)
    if config.dim is None:
        raise ModelSourceError(f"model {name!r}: cannot tell the size of its embeddings (no pooling module?)")
    providers = _providers(spec)
    quantize = spec.option("quantize")
    onnx_path, tokenizer_path = _onnx_export.onnx_files(resolved, config, spec, quantize=quantize)

    def make(max_seq_length: int | None) -> OnnxEncoder:
        encoder = OnnxEncoder(
            session=_session(onnx_path, resolved.source, providers, threads(spec)),
            path=onnx_path,
            tokenizer_path=tokenizer_path,
            config=config,
            max_seq_length=max_seq_length,
            source=resolved.source,
        )
        encoder.check_output(config.dim)
        return encoder

    # int8 changes the vectors: another model identity
    extra = {"quantize": quantize} if quantize else {}
    return folder_model(spec, name, resolved, config, make, backend="onnx", settings=extra)


def threads(spec) -> int:
    """``threads`` from the pipeline, else every core this process may run on."""
    wanted = spec.option("threads")
    if wanted:
        return int(wanted)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _providers(spec) -> list[Any]:
    import onnxruntime as ort

    kind, index = parse_device(spec.device, spec.key)
    if kind in ("auto", "cpu"):
        return ["CPUExecutionProvider"]
    if kind == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": index or 0}), "CPUExecutionProvider"]
    raise ConfigError(
        f'device {spec.device!r} is not available to onnxruntime {ort.__version__} '
        f'(providers: {", ".join(ort.get_available_providers())}); use "auto" or "cpu", or backend = "torch"',
        key=f"{spec.key}.device",
    )


def _session(path: Path, source: str, providers: list[Any], n_threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the CPU provider's notes are not the user's business
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # a truncated, corrupt or foreign file
        from embedline_minilm._onnx_export import is_cached

        advice = "delete it to export the model again" if is_cached(path) else 'replace it, or use backend = "torch"'
        raise ModelSourceError(
            f"model {source!r}: cannot load the ONNX model {path}: {type(exc).__name__}: {first_line(exc)}; {advice}"
        ) from exc


# -- encoding --------------------------------------------------------------------------------


class TextEncoder:
    """A transformer run on token ids from the folder's ``tokenizer.json``, then the folder's pooling
    and normalisation: what ``Model.impl`` holds with ``backend = "onnx"`` (:class:`OnnxEncoder`)
    and, for plain folders, with ``backend = "torch"`` (``_torch.TorchEncoder``).  A subclass runs
    the transformer (:meth:`_hidden`).  ``encode`` is safe to call from several threads: nothing
    changes after construction (the tokenizer's settings are fixed here)."""

    #: The transformer's input names (a subclass sets them).
    inputs: list[str]

    def __init__(self, *, tokenizer_path: Path, config: STConfig, max_seq_length: int | None, source: str):
        from tokenizers import Tokenizer

        self.source = source
        self.config = config
        self.max_seq_length = max_seq_length
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:
            raise ModelSourceError(
                f"model {source!r}: cannot read the tokenizer {tokenizer_path}: {first_line(exc)}"
            ) from exc
        if config.do_lower_case:
            from tokenizers.normalizers import Lowercase
            from tokenizers.normalizers import Sequence as Normalizers

            normalizers = [Lowercase(), tokenizer.normalizer] if tokenizer.normalizer else [Lowercase()]
            tokenizer.normalizer = Normalizers(normalizers)
        # One tokenization per text: ``tokenize`` (from preprocess) truncates to max_seq_length and
        # says whether it had to; ``encode`` pads those encodings itself, so nothing is tokenized twice.
        tokenizer.no_padding()
        if max_seq_length:
            tokenizer.enable_truncation(max_length=max_seq_length, strategy="longest_first")
        else:
            tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.pad_id = self._pad_id(tokenizer)
        self.pad_left = str(config.tokenizer_config.get("padding_side") or "right") == "left"
        self.special_ids = {i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
        self._prompt_lengths: dict[str, int] = {}

    def _hidden(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The transformer's last hidden states (batch, tokens, width) for the padded batch ``feeds``."""
        raise NotImplementedError

    def _pad_id(self, tokenizer) -> int:
        token = self.config.tokenizer_config.get("pad_token")
        if isinstance(token, Mapping):
            token = token.get("content")
        if token and tokenizer.token_to_id(str(token)) is not None:
            return int(tokenizer.token_to_id(str(token)))
        return int(self.config.hf_config.get("pad_token_id") or 0)

    def tokenize(self, texts: list[str]) -> list[Any]:
        """Each text's encoding as the model gets it: special tokens added, cut to max_seq_length
        (``encoding.overflowing`` is not empty when it was cut), not padded."""
        return self.tokenizer.encode_batch(texts, add_special_tokens=True)

    def prompt_length(self, prompt: str) -> int:
        """Tokens the prompt takes at the start of an input, as sentence-transformers counts them."""
        if prompt not in self._prompt_lengths:
            ids = self.tokenizer.encode(prompt, add_special_tokens=True).ids
            n = len(ids) - (1 if ids and ids[-1] in self.special_ids else 0)
            self._prompt_lengths[prompt] = n
        return self._prompt_lengths[prompt]

    def encode(self, texts: Sequence[Any], *, batch_size: int, normalize: bool, prompt: str = "") -> np.ndarray:
        """``texts``: strings, or encodings from :meth:`tokenize` (not tokenized again).  Batched
        longest first, as sentence-transformers does, so that a batch pads little; rows come back
        in the order given."""
        skip = self.prompt_length(prompt) if prompt and not self.config.include_prompt else 0
        encodings = list(texts)
        strings = [i for i, t in enumerate(encodings) if isinstance(t, str)]
        for i, encoding in zip(strings, self.tokenize([encodings[i] for i in strings]) if strings else ()):
            encodings[i] = encoding
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
        step = max(1, batch_size)
        batches = [order[start : start + step] for start in range(0, len(order), step)]
        pooled = [self._encode_batch([encodings[i] for i in rows], skip) for rows in batches]
        if not pooled:
            return np.zeros((0, self.config.dim or 0), dtype=np.float32)
        vectors = np.empty((len(encodings), pooled[0].shape[1]), dtype=np.float32)
        for rows, batch in zip(batches, pooled):
            vectors[rows] = batch
        if self.config.normalize or normalize:
            vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode_batch(self, encodings: Sequence[Any], skip: int) -> np.ndarray:
        ids, mask, types = self._padded(encodings)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = types
        if "position_ids" in self.inputs:
            feeds["position_ids"] = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape).copy()
        hidden = self._hidden({k: v for k, v in feeds.items() if k in self.inputs})
        return pool(np.asarray(hidden, dtype=np.float32), mask, self.config.pooling, skip)

    def _padded(self, encodings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return padded(encodings, self.pad_id, left=self.pad_left)


def padded(encodings: Sequence[Any], pad_id: int, *, left: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, attention mask and token types of a batch of ``tokenizers`` encodings, padded to
    its longest on the tokenizer's side (the encodings themselves are left as they are)."""
    width = max(len(e.ids) for e in encodings)
    ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    types = np.zeros((len(encodings), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        cols = slice(width - n, width) if left else slice(0, n)
        ids[row, cols] = encoding.ids
        mask[row, cols] = encoding.attention_mask
        types[row, cols] = encoding.type_ids
    return ids, mask, types


class OnnxEncoder(TextEncoder):
    """``backend = "onnx"``: the transformer is an ONNX Runtime session (``InferenceSession.run`` is
    thread-safe)."""

    def __init__(
        self, *, session, path: Path, tokenizer_path: Path, config: STConfig, max_seq_length: int | None, source: str
    ):
        self.session = session
        self.path = path  # the ONNX file: the folder's onnx/model.onnx, or one in the cache
        self.inputs = [i.name for i in session.get_inputs()]
        if "input_ids" not in self.inputs:
            raise ModelSourceError(
                f"model {source!r}: its ONNX model takes {self.inputs}, not input_ids: not a transformer export"
            )
        self.output = _hidden_state_output(session)
        super().__init__(tokenizer_path=tokenizer_path, config=config, max_seq_length=max_seq_length, source=source)

    def _hidden(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output], feeds)[0]

    def check_output(self, dim: int) -> None:
        """Run one short text: the pooled width must be what the folder's Pooling module says."""
        try:
            got = self.encode(["a"], batch_size=1, normalize=False).shape[1]
        except Exception as exc:  # inputs it does not get, outputs that are not token states, ...
            raise ModelSourceError(
                f"model {self.source!r}: cannot run its ONNX model {self.path} as a transformer: "
                f"{type(exc).__name__}: {first_line(exc)}"
            ) from exc
        if got != dim:
            raise ModelSourceError(
                f"model {self.source!r}: its ONNX model {self.path} gives {got}-d vectors, but the folder's Pooling "
                f"module says {dim}: the ONNX file is not this model's transformer"
            )


def _hidden_state_output(session) -> str:
    names = [o.name for o in session.get_outputs()]
    for wanted in ("last_hidden_state", "token_embeddings"):
        if wanted in names:
            return wanted
    return names[0]


def pool(hidden: np.ndarray, mask: np.ndarray, modes: Sequence[str], skip: int = 0) -> np.ndarray:
    """sentence-transformers' Pooling over ``hidden`` (batch, tokens, width): each mode's vector,
    concatenated in the order given.  ``skip`` leaves the first tokens (a prompt) out of the pool."""
    original = mask
    if skip:
        mask = mask.copy()
        starts = original.argmax(axis=1)  # left padding: the first real token of each row
        positions = np.arange(mask.shape[1])[None, :]
        mask[positions < (starts + skip)[:, None]] = 0
    weights = mask[..., None].astype(np.float32)
    out = []
    for mode in modes:
        if mode == "cls":
            first = mask.argmax(axis=1)
            out.append(hidden[np.arange(hidden.shape[0]), first])
        elif mode == "max":
            out.append(np.where(weights > 0, hidden, -np.inf).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = np.clip(weights.sum(axis=1), 1e-9, None)
            out.append((hidden * weights).sum(axis=1) / (count if mode == "mean" else np.sqrt(count)))
        elif mode == "weightedmean":
            steps = np.arange(1, hidden.shape[1] + 1, dtype=np.float32)[None, :, None]
            position = weights * (steps - original.argmax(axis=1).astype(np.float32)[:, None, None])
            out.append((hidden * position).sum(axis=1) / np.clip(position.sum(axis=1), 1e-9, None))
        elif mode == "lasttoken":
            flipped = mask[:, ::-1]
            last = np.where(flipped.max(axis=1) == 0, 0, hidden.shape[1] - 1 - flipped.argmax(axis=1))
            out.append((hidden * weights)[np.arange(hidden.shape[0]), last])
    return np.concatenate(out, axis=1)
