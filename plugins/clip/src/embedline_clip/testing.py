"""A one-layer CLIP with random weights and a character-level tokenizer, for tests and examples that
need a CLIP folder without downloading one."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["build_tiny_clip"]


def _byte_level_vocab(specials: tuple[str, ...]) -> dict[str, int]:
    """Every byte-level character alone and as a word end (``</w>``): BPE with no merges needs both."""
    from tokenizers.pre_tokenizers import ByteLevel

    chars = sorted(ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for token in (*specials, *chars, *(c + "</w>" for c in chars)):
        vocab.setdefault(token, len(vocab))
    return vocab


def build_tiny_clip(path: str | os.PathLike[str], seed: int = 0, *, dim: int = 32, context: int = 77) -> Path:
    """Save a one-layer random CLIP (``dim``-d shared space, 32-pixel images in 8-pixel patches).

    The tokenizer is a real ``CLIPTokenizer`` over single byte-level characters (no merges), so any
    text tokenizes, one token per character, and ``context`` (77, as in CLIP) truncates long texts.
    Saved with a ``CLIPProcessor`` (PIL image processor).  Returns ``path``.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    path = Path(path)
    tokenizer = CLIPTokenizer(
        vocab=_byte_level_vocab(("<|startoftext|>", "<|endoftext|>")), merges=[], model_max_length=context
    )
    layer = {"hidden_size": dim, "intermediate_size": 2 * dim, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={
            **layer,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": context,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**layer, "image_size": 32, "patch_size": 8},
        projection_dim=dim,
    )
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(path)
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)
    return path
