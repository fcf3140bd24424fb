"""The minilm plugin's :class:`~embedline.contracts.TokenCounter`: the model folder's own
``tokenizer.json`` run by ``tokenizers`` (no torch, no weights read), so that the core can pack
chunks to the model's limit before, or without, loading the model."""

from __future__ import annotations

from typing import Any

from embedline.toolkit import resolve_model_source, tokenizer_file_counter

from embedline_minilm import model_name


def counter(spec) -> Any:
    """The token counter of the model ``spec`` names, or None when its folder has no
    ``tokenizer.json`` (then the core counts words).  Its limit is the max sequence length less
    the special tokens and the document prompt."""
    from embedline_minilm._backend import prompt_for
    from embedline_minilm._onnx import STConfig

    name = model_name(spec)
    resolved = resolve_model_source(name, revision=spec.revision, base_dir=spec.base_dir)
    config = STConfig(resolved.path, name)
    path = config.tokenizer_file()
    if path is None:
        return None
    length = spec.option("max_seq_length") or config.max_seq_length or 512
    if config.max_positions:
        length = min(length, config.max_positions)
    prompt = prompt_for(config.prompts, config.default_prompt_name, "document", spec.option("document_prompt"))
    return tokenizer_file_counter(path, length, prompt=prompt, lower=config.do_lower_case)
