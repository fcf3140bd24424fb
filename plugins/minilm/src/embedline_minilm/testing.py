"""Tiny random sentence-transformers models for tests and plugin authors (no download): the folder
loads through ``SentenceTransformer(path)`` like a real one; the vectors mean nothing."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from embedline.testing import word_vocabulary

__all__ = ["build_tiny_sentence_transformer"]


def build_tiny_sentence_transformer(
    path: str | os.PathLike[str],
    dim: int = 32,
    seed: int = 0,
    *,
    normalize: bool = False,
    max_seq_length: int = 128,
    prompts: Mapping[str, str] | None = None,
    dense: int | None = None,
) -> Path:
    """Save a one-layer random BERT with mean pooling as a sentence-transformers folder at ``path``.

    The tokenizer is a BERT (WordPiece) tokenizer over whole common English words, so unknown words
    become ``[UNK]``.  ``normalize`` appends a Normalize module; ``prompts`` (e.g. ``{"query": "find
    the "}``) are saved with the model like those of e5-style models; ``dense`` (a width) puts a Dense
layer after the pooling, as some models have (they load through sentence-transformers, not the
plugin's own torch path).  Returns ``path``.
    """
    import tempfile

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizer

    if dim % 2:
        raise ValueError(f"dim must be even (two attention heads), got {dim}")
    path = Path(path)
    vocab = {token: i for i, token in enumerate(word_vocabulary())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=max_seq_length)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=dim,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * dim,
        max_position_embeddings=max(512, max_seq_length),
        pad_token_id=vocab["[PAD]"],
    )
    torch.manual_seed(seed)
    # The Transformer module loads from a folder; the saved model then holds its own copy.
    with tempfile.TemporaryDirectory() as backbone:
        BertModel(config).eval().save_pretrained(backbone)
        tokenizer.save_pretrained(backbone)
        transformer = Transformer(backbone, max_seq_length=max_seq_length)
        modules = [transformer, Pooling(dim, pooling_mode="mean")]
        if dense:
            modules.append(Dense(dim, dense))
        if normalize:
            modules.append(Normalize())
        model = SentenceTransformer(modules=modules, device="cpu", prompts=dict(prompts) if prompts else None)
        model.save(str(path))
    return path
