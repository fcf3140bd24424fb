"""``backend = "torch"`` without sentence-transformers, for the folders most models ship as: a
Transformer module of a known encoder architecture, a Pooling module, maybe Normalize, and a
``tokenizer.json``.  The tokens, pooling and normalisation are the onnx backend's
(:class:`~embedline_minilm._onnx.TextEncoder`), which follow the folder's sentence-transformers
files; the transformer runs in torch: a plain BERT (all-MiniLM-L6-v2 is one) in :class:`Bert`,
from the folder's safetensors weights, any other through transformers' ``AutoModel``.

Why: a cold start imported torch (~1.1 s), transformers' modelling code (~3 s: it pulls in
torch.distributed, kernels and loss code) and sentence-transformers (~1.5 s more: scikit-learn,
SciPy's statistics, pandas).  A plain BERT now needs torch alone; and every text is tokenized
once, in ``preprocess``.  The vectors are sentence-transformers' (the tests compare them: tiny
models, and all-MiniLM-L6-v2 on STS-B).  Any other folder (Dense or custom modules, remote code, a
hub id not yet downloaded, other architectures) loads through sentence-transformers as before.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from embedline.errors import ModelSourceError
from embedline.toolkit import ResolvedSource

from embedline_minilm._backend import first_line
from embedline_minilm._onnx import STConfig, TextEncoder

#: ``model_type`` values of encoder-only models whose ``AutoModel`` is what sentence-transformers'
#: Transformer module runs (it special-cases encoder-decoder and retrieval models; those go to it).
ENCODERS = frozenset({
    "albert", "bert", "camembert", "deberta", "deberta-v2", "distilbert", "electra", "mpnet", "roberta",
    "xlm-roberta",
})  # fmt: skip


def plain_folder(resolved: ResolvedSource, spec) -> STConfig | None:
    """The folder's configuration when this module can run it, else None (sentence-transformers does)."""
    if resolved.path is None or spec.trust_remote_code:
        return None
    try:
        config = STConfig(resolved.path, resolved.source)
    except ModelSourceError:  # modules other than Transformer/Pooling/Normalize, unreadable files
        return None
    if config.dim is None or config.tokenizer_file() is None:
        return None
    hf = config.hf_config
    if hf.get("model_type") not in ENCODERS or hf.get("is_encoder_decoder") or hf.get("auto_map"):
        return None
    return config


def load(config: STConfig, source: str, device: str, max_seq_length: int | None) -> TorchEncoder:
    """The folder's transformer on ``device``: BERT models by :class:`Bert` (torch and the weights
    file only: transformers' own imports take ~3 s), any other through ``AutoModel``."""
    run = _bert(config, device)
    if run is None:
        run = _auto_model(config, source, device)
    return TorchEncoder(run=run, device=device, tokenizer_path=config.tokenizer_file(), config=config,
                        max_seq_length=max_seq_length, source=source)  # fmt: skip


def _auto_model(config: STConfig, source: str, device: str) -> Any:
    import inspect

    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(config.transformer_dir), local_files_only=True)
        model.to(device)
        model.eval()
    except Exception as exc:  # any loader failure becomes one line naming the model
        raise ModelSourceError(
            f"model {source!r}: cannot load a transformers model from {config.transformer_dir}: "
            f"{type(exc).__name__}: {first_line(exc)}"
        ) from exc
    params = inspect.signature(model.forward).parameters

    def run(input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
        # position ids are left to the model, which numbers the tokens itself, as under sentence-transformers
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return model(**{k: v for k, v in given.items() if k in params}, return_dict=True).last_hidden_state

    return run


class TorchEncoder(TextEncoder):
    """The transformer in torch (``torch.inference_mode``; safe to call from several threads)."""

    inputs = ["input_ids", "attention_mask", "token_type_ids"]

    def __init__(self, *, run: Any, device: str, tokenizer_path: Any, config: STConfig, max_seq_length: int | None,
                 source: str):  # fmt: skip
        import torch

        self.run = run
        self.device = torch.device(device)
        super().__init__(tokenizer_path=tokenizer_path, config=config, max_seq_length=max_seq_length, source=source)

    def _hidden(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tensors = {name: torch.from_numpy(array).to(self.device) for name, array in feeds.items()}
            return self.run(**tensors).float().cpu().numpy()


# -- BERT without transformers ---------------------------------------------------------------


def _bert(config: STConfig, device: str) -> Any:
    """:class:`Bert` with the folder's weights, or None when the folder is not a plain BERT this
    class computes exactly as transformers' ``BertModel`` does (absolute positions, exact GELU,
    float32 safetensors weights under the usual names)."""
    hf = config.hf_config
    weights = config.transformer_dir / "model.safetensors"
    if (hf.get("model_type") != "bert" or hf.get("position_embedding_type", "absolute") != "absolute"
            or hf.get("hidden_act", "gelu") != "gelu" or not weights.is_file()):  # fmt: skip
        return None
    import torch
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except Exception:  # an unreadable file: transformers' loader says what is wrong with it
        return None
    if any(v.is_floating_point() and v.dtype != torch.float32 for v in state.values()):
        return None  # fp16/bf16 weights: transformers decides the dtype, as under sentence-transformers
    state = {k.removeprefix("bert."): v for k, v in state.items()}
    try:
        model = _bert_class().build(hf)
        missing, _ = model.load_state_dict(state, strict=False)
    except (KeyError, TypeError, ValueError, RuntimeError):  # odd shapes or names: let transformers try
        return None
    if missing:
        return None
    model.to(device=torch.device(device))
    model.eval()
    return model


@functools.cache
def _bert_class() -> Any:
    """The :class:`Bert` module class, made on first use (this module is imported before torch is)."""
    import torch
    from torch import nn
    from torch.nn import functional

    class Layer(nn.Module):
        def __init__(self, width: int, heads: int, inner: int, eps: float):
            super().__init__()
            self.heads = heads
            self.attention = nn.Module()
            self.attention.self = nn.Module()
            for name in ("query", "key", "value"):
                setattr(self.attention.self, name, nn.Linear(width, width))
            self.attention.output = nn.Module()
            self.attention.output.dense = nn.Linear(width, width)
            self.attention.output.LayerNorm = nn.LayerNorm(width, eps=eps)
            self.intermediate = nn.Module()
            self.intermediate.dense = nn.Linear(width, inner)
            self.output = nn.Module()
            self.output.dense = nn.Linear(inner, width)
            self.output.LayerNorm = nn.LayerNorm(width, eps=eps)

        def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            batch, length, width = hidden.shape
            attention = self.attention.self

            def heads(linear: nn.Linear) -> torch.Tensor:
                return linear(hidden).view(batch, length, self.heads, -1).transpose(1, 2)

            context = functional.scaled_dot_product_attention(
                heads(attention.query), heads(attention.key), heads(attention.value), attn_mask=mask
            )
            context = context.transpose(1, 2).reshape(batch, length, width)
            out = self.attention.output
            hidden = out.LayerNorm(out.dense(context) + hidden)
            inner = functional.gelu(self.intermediate.dense(hidden))
            return self.output.LayerNorm(self.output.dense(inner) + hidden)

    class Bert(nn.Module):
        """transformers' ``BertModel`` encoder at inference (eval: no dropout), with its parameter names."""

        @classmethod
        def build(cls, hf: dict[str, Any]) -> Bert:
            return cls(
                vocab=int(hf["vocab_size"]), width=int(hf["hidden_size"]), layers=int(hf["num_hidden_layers"]),
                heads=int(hf["num_attention_heads"]), inner=int(hf["intermediate_size"]),
                positions=int(hf["max_position_embeddings"]), types=int(hf.get("type_vocab_size", 2)),
                eps=float(hf.get("layer_norm_eps", 1e-12)), pad=int(hf.get("pad_token_id") or 0),
            )  # fmt: skip

        def __init__(self, *, vocab, width, layers, heads, inner, positions, types, eps, pad):
            super().__init__()
            if width % heads:
                raise ValueError(f"hidden size {width} is not a multiple of {heads} heads")
            self.embeddings = nn.Module()
            self.embeddings.word_embeddings = nn.Embedding(vocab, width, padding_idx=pad)
            self.embeddings.position_embeddings = nn.Embedding(positions, width)
            self.embeddings.token_type_embeddings = nn.Embedding(types, width)
            self.embeddings.LayerNorm = nn.LayerNorm(width, eps=eps)
            self.encoder = nn.Module()
            self.encoder.layer = nn.ModuleList(Layer(width, heads, inner, eps) for _ in range(layers))

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            e = self.embeddings
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            hidden = e.word_embeddings(input_ids) + e.token_type_embeddings(token_type_ids)
            hidden = e.LayerNorm(hidden + e.position_embeddings(positions)[None])
            mask = attention_mask[:, None, None, :].bool()  # attend to real tokens only
            for layer in self.encoder.layer:
                hidden = layer(hidden, mask)
            return hidden

    return Bert
