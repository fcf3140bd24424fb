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


def build_tiny_perceiver(
    path: str | os.PathLike[str],
    *,
    image_size: int = 16,
    num_frames: int = 2,
    audio_samples_per_frame: int = 64,
    num_latents: int = 16,
    d_latents: int = 32,
    seed: int = 0,
) -> Path:
    """Save a random ``PerceiverForMultimodalAutoencoding`` (the architecture of
    deepmind/multimodal-perceiver) with small frames, few latents and one self-attention layer.

    The input preprocessors (Fourier position encodings over frames x pixels and audio samples) and
    the reconstruction decoders are built as in the real model; only the sizes shrink.  Returns ``path``.
    """
    import torch
    from transformers import PerceiverConfig, PerceiverForMultimodalAutoencoding

    path = Path(path)
    config = PerceiverConfig(
        num_latents=num_latents,
        d_latents=d_latents,
        d_model=d_latents,
        num_blocks=1,
        num_self_attends_per_block=1,
        num_self_attention_heads=2,
        num_cross_attention_heads=1,
        image_size=image_size,
        num_frames=num_frames,
        audio_samples_per_frame=audio_samples_per_frame,
        samples_per_patch=16,
        output_shape=[1, num_frames, image_size, image_size],
        output_num_channels=16,
        num_labels=8,
    )
    config._label_trainable_num_channels = 16
    torch.manual_seed(seed)
    PerceiverForMultimodalAutoencoding(config).eval().save_pretrained(path)
    return path


def build_tiny_resnet(path: str | os.PathLike[str], seed: int = 0, *, image_size: int = 32) -> Path:
    """Save a two-stage random ResNet (16-d pooled output) with its image processor at ``path``.

    Saved as ``ResNetForImageClassification`` with a ``ConvNextImageProcessor`` config, like
    ``microsoft/resnet-50``, so the same loading code (classifier dropped, PIL processor) runs.
    Returns ``path``.
    """
    import torch
    from transformers import ConvNextImageProcessorPil, ResNetConfig, ResNetForImageClassification

    path = Path(path)
    config = ResNetConfig(hidden_sizes=[8, 16], depths=[1, 1], embedding_size=8, num_labels=4)
    torch.manual_seed(seed)
    ResNetForImageClassification(config).eval().save_pretrained(path)
    ConvNextImageProcessorPil(size={"shortest_edge": image_size}).save_pretrained(path)
    return path


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
