"""Issue 11, item 5: distillation draws no progress bar of its own when stderr is not a terminal,
and leaves the host's process as it was."""

from __future__ import annotations

import io
import sys

import pytest


def test_distilling_prints_nothing_when_stderr_is_not_a_terminal(load, tiny_teacher, capfd):
    from model2vec.distill import inference
    from transformers.utils import logging as hf_logging

    tqdm_before = inference.tqdm
    assert not sys.stderr.isatty()  # pytest captures it
    model = load(None, options={"distill_from": str(tiny_teacher), "pca_dims": 8, "cache_dir": "m2v"})
    assert model.dim == 8
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    # put back as it was: model2vec's tqdm, transformers' hook and bar switch, no environment variable
    assert inference.tqdm is tqdm_before
    assert hf_logging.set_tqdm_hook(None) is None
    assert hf_logging.is_progress_bar_enabled()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_distilling_keeps_its_progress_bar_on_a_terminal(load, tiny_teacher, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    load(None, options={"distill_from": str(tiny_teacher), "pca_dims": 8, "cache_dir": "m2v"})
    assert "Encoding tokens" in terminal.getvalue()


def test_the_bars_are_put_back_when_distillation_fails(load, tiny_teacher, monkeypatch):
    from embedline.errors import ModelSourceError
    from model2vec.distill import inference

    before = inference.tqdm

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(inference, "create_embeddings", broken)
    import model2vec.distill.distillation as distillation

    monkeypatch.setattr(distillation, "create_embeddings", broken)
    with pytest.raises(ModelSourceError, match="out of memory"):
        load(None, options={"distill_from": str(tiny_teacher), "pca_dims": 8, "cache_dir": "m2v"})
    assert inference.tqdm is before
