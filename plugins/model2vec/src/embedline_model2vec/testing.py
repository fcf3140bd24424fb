"""Tiny random Model2Vec static models for tests and plugin authors, built in a second with no
download; ``StaticModel.from_pretrained`` loads them like a real one."""

from __future__ import annotations

import os
from pathlib import Path

from embedline.testing import word_vocabulary

__all__ = ["build_tiny_static_model"]


def build_tiny_static_model(
    path: str | os.PathLike[str],
    dim: int = 16,
    seed: int = 0,
    *,
    dtype: str = "float32",
    normalize: bool = False,
) -> Path:
    """Save a Model2Vec ``StaticModel`` with random ``dtype`` vectors over common English words.

    ``dtype="float16"`` mimics distilled models, whose vectors are stored as float16.  Returns ``path``.
    """
    import numpy as np
    from model2vec import StaticModel
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab = {token: i for i, token in enumerate(word_vocabulary())}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vectors = np.random.default_rng(seed).standard_normal((len(vocab), dim)).astype(dtype)
    path = Path(path)
    StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=normalize).save_pretrained(path)
    return path
