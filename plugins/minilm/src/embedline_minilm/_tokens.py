"""The minilm plugin's :class:`~embedline.contracts.TokenCounter`: the model folder's own
``tokenizer.json`` run by ``tokenizers`` (no torch, no weights read), so that the core can pack
chunks to the model's limit before, or without, loading the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from embedline.toolkit import file_sha256, resolve_model_source

from embedline_minilm import model_name


class ModelTokens:
    """Counts tokens as the model's tokenizer does, special tokens left out; ``limit`` is the
    model's max sequence length less its special tokens and its document prompt."""

    def __init__(self, tokenizer: Any, *, max_seq_length: int, prompt: str, lower: bool, file_hash: str):
        self._tokenizer, self._lower = tokenizer, lower
        specials = tokenizer.num_special_tokens_to_add(False)
        prompt_tokens = self.count([prompt])[0] if prompt else 0
        self.limit = max(1, max_seq_length - specials - prompt_tokens)
        self.identity = f"{file_hash[:16]}/{self.limit}/lower={int(lower)}"

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        texts = [t.lower() for t in texts] if self._lower else list(texts)
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]

    def __repr__(self) -> str:
        return f"<ModelTokens limit={self.limit} {self.identity}>"


def counter(spec) -> ModelTokens | None:
    """The token counter of the model ``spec`` names, or None when its folder has no
    ``tokenizer.json`` (then the core counts words)."""
    from tokenizers import Tokenizer

    from embedline_minilm._backend import prompt_for
    from embedline_minilm._onnx import STConfig

    name = model_name(spec)
    resolved = resolve_model_source(name, revision=spec.revision, base_dir=spec.base_dir)
    config = STConfig(resolved.path, name)
    path = config.tokenizer_file()
    if path is None:
        return None
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    length = spec.option("max_seq_length") or config.max_seq_length or 512
    if config.max_positions:
        length = min(length, config.max_positions)
    prompt = prompt_for(config.prompts, config.default_prompt_name, "document", spec.option("document_prompt"))
    digest = file_sha256(path)
    return ModelTokens(tokenizer, max_seq_length=length, prompt=prompt, lower=config.do_lower_case, file_hash=digest)
