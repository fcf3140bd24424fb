"""A tiny random Whisper checkpoint for tests (seconds, no download), laid out like a real one so
the plugin's loading code runs unchanged; torch and transformers load only when it is built."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["build_tiny_whisper"]


def build_tiny_whisper(
    path: str | os.PathLike[str],
    *,
    d_model: int = 32,
    chunk_length: int = 2,
    num_mel_bins: int = 80,
    seed: int = 0,
) -> Path:
    """Save a one-layer random Whisper (``WhisperForConditionalGeneration``) and its feature extractor.

    ``chunk_length`` is the window in seconds: the feature extractor makes ``100 * chunk_length``
    mel frames and the encoder takes exactly that many (``max_source_positions`` is half of it),
    as with real Whisper (30 s, 3000 frames, 1500 positions).  The decoder is there only because a
    real checkpoint has one; its token ids stay inside a 64-token vocabulary.  Returns ``path``.
    """
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    path = Path(path)
    extractor = WhisperFeatureExtractor(feature_size=num_mel_bins, chunk_length=chunk_length)
    config = WhisperConfig(
        vocab_size=64,
        num_mel_bins=num_mel_bins,
        d_model=d_model,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_source_positions=extractor.nb_max_frames // 2,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )
    torch.manual_seed(seed)
    WhisperForConditionalGeneration(config).eval().save_pretrained(path)
    extractor.save_pretrained(path)
    return path
