"""``backend = "torch"`` without sentence-transformers, for the folders most models ship as: a
Transformer module of a known encoder architecture, a Pooling module, maybe Normalize, and a
``tokenizer.json``.  The transformer runs in torch through transformers' ``AutoModel``; the tokens,
pooling and normalisation are the onnx backend's (:class:`~embedline_minilm._onnx.TextEncoder`),
which follow the folder's sentence-transformers files.

Why: importing sentence-transformers costs about 1.5 s more than transformers alone (it imports
scikit-learn, SciPy's statistics and pandas), paid by every run and every cold search; and the
text is tokenized once, in ``preprocess``.  The vectors are sentence-transformers' (the tests
compare them, tiny models and all-MiniLM-L6-v2 on STS-B).  Any other folder (Dense or custom
modules, remote code, a hub id not yet downloaded, another architecture) loads through
sentence-transformers as before.
"""

from __future__ import annotations

import inspect
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
    return TorchEncoder(model=model, tokenizer_path=config.tokenizer_file(), config=config,
                        max_seq_length=max_seq_length, source=source)  # fmt: skip


class TorchEncoder(TextEncoder):
    """The transformer in torch (``torch.inference_mode``; safe to call from several threads)."""

    def __init__(self, *, model: Any, tokenizer_path: Any, config: STConfig, max_seq_length: int | None, source: str):
        self.model = model
        self.device = model.device
        params = inspect.signature(model.forward).parameters
        # position ids are left to the model, which numbers the tokens itself, as under sentence-transformers
        self.inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in params]
        super().__init__(tokenizer_path=tokenizer_path, config=config, max_seq_length=max_seq_length, source=source)

    def _hidden(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tensors = {name: torch.from_numpy(array).to(self.device) for name, array in feeds.items()}
            hidden = self.model(**tensors, return_dict=True).last_hidden_state
            return hidden.float().cpu().numpy()
