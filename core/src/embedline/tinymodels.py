"""Tiny random-weight models for tests and plugin authors: built locally in seconds, no download.

The folders they write are loaded by the same code as real models (``SentenceTransformer(path)``,
``StaticModel.from_pretrained(path)``), so a test exercises the real loading path.  The vectors
mean nothing; only shapes, plumbing and determinism (same ``seed``, same weights) are real.

Heavy libraries are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Enough everyday English that short test sentences are mostly in-vocabulary.
COMMON_WORDS = tuple(
    """
    the be to of and a in that have i it for not on with he as you do at this but his by from they we
    say her she or an will my one all would there their what so up out if about who get which go me when
    make can like time no just him know take people into year your good some could them see other than then
    now look only come its over think also back after use two how our work first well way even new want
    because any these give day most us is are was were has had been did does said made went got
    man woman child children dog dogs cat cats horse bird fish car cars bus train plane boat house home
    city street road river sea water tree trees field park table chair door window book books room food
    bread cheese apple music song guitar piano ball game team player players school student students
    teacher doctor police market money price world country government president minister news report
    red blue green black white brown small big large little old young long short high low hot cold
    happy sad fast slow open close run runs running walk walks walking sit sits sitting stand stands
    standing eat eats eating drink play plays playing read reads reading write talk talks cook cooks
    ride rides riding swim swims jump jumps fly flies sleep sleeps sing sings dance dances wear wears
    down near under between across through while before again very more less
    much many each every another same different today yesterday tomorrow morning night week month
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def _vocabulary() -> list[str]:
    words = list(dict.fromkeys(w.lower() for w in COMMON_WORDS))
    return [*SPECIAL_TOKENS, *words, ".", ",", "!", "?", "'", "-"]


def build_tiny_sentence_transformer(
    path: str | os.PathLike[str],
    dim: int = 32,
    seed: int = 0,
    *,
    normalize: bool = False,
    max_seq_length: int = 128,
    prompts: Mapping[str, str] | None = None,
) -> Path:
    """Save a one-layer random BERT with mean pooling as a sentence-transformers folder at ``path``.

    The tokenizer is a BERT (WordPiece) tokenizer over whole common English words, so unknown words
    become ``[UNK]``.  ``normalize`` appends a Normalize module; ``prompts`` (e.g. ``{"query": "find
    the "}``) are saved with the model like those of e5-style models.  Returns ``path``.
    """
    import tempfile

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizer

    if dim % 2:
        raise ValueError(f"dim must be even (two attention heads), got {dim}")
    path = Path(path)
    vocab = {token: i for i, token in enumerate(_vocabulary())}
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
        if normalize:
            modules.append(Normalize())
        model = SentenceTransformer(modules=modules, device="cpu", prompts=dict(prompts) if prompts else None)
        model.save(str(path))
    return path


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

    vocab = {token: i for i, token in enumerate(_vocabulary())}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vectors = np.random.default_rng(seed).standard_normal((len(vocab), dim)).astype(dtype)
    path = Path(path)
    StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=normalize).save_pretrained(path)
    return path
