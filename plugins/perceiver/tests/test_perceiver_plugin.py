"""The perceiver plugin on a tiny random multimodal Perceiver and synthetic videos with a tone."""

from __future__ import annotations

import numpy as np
import pytest
from embedline.contracts import Failed, Item
from embedline.errors import ConfigError, ModelSourceError
from embedline.pipeline import Pipeline
from embedline.testing import import_cost, lite_store
from embedline_perceiver._clips import Layout, read_clip, window_starts


def video_item(path, start=None, end=None) -> Item:
    meta = {} if start is None else {"start": start, "end": end}
    return Item(id=f"{path.name}:{start}", uri=path.name, modality="video", path=str(path), metadata=meta)


def test_importing_the_plugin_loads_no_heavy_library():
    heavy, _ = import_cost("perceiver")
    assert heavy == []


def test_load_reads_the_window_from_the_model(load, tiny_perceiver):
    model = load(tiny_perceiver, clip_seconds=1.5, clip_overlap=0.5)
    assert model.dim == 32 and model.modalities == ("video",)
    assert model.segment == (1.5, 0.5)
    assert model.settings == {
        "num_frames": 2,
        "image_size": 16,
        "fps": 25.0,
        "audio_rate": 1600,  # 25 fps x 64 samples per frame, as 25 x 1920 = 48 kHz for the real model
        "crop": "centre square",
        "pooling": "mean over latents, then over the clip's windows",
    }
    assert load(tiny_perceiver, fps=8, num_frames=4, image_size=24).settings["audio_rate"] == 512


@pytest.mark.parametrize(
    ("keys", "message"),
    [({"image_size": 18}, "multiple of 4"), ({"clip_seconds": 1.0, "clip_overlap": 1.0}, "clip_overlap"), ({"fps": 0}, "fps")],
)
def test_bad_options_are_refused_before_loading(load, tiny_perceiver, keys, message):
    with pytest.raises(ConfigError, match=message):
        load(tiny_perceiver, **keys)


def test_an_uncached_hub_id_fails_at_once_and_says_how_to_get_a_local_copy(load):
    with pytest.raises(ModelSourceError, match="huggingface-cli download deepmind/multimodal-perceiver"):
        load("deepmind/multimodal-perceiver")


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0.0, 0.64, [0.0]),  # exactly one window
        (0.0, 2.0, [0.0, 0.45333, 0.90667, 1.36]),  # four windows spread over the clip
        (10.0, 10.3, [9.66]),  # the tail of a video: the last full window
        (0.0, 0.3, [0.0]),  # a video shorter than one window
    ],
)
def test_window_starts_cover_the_clip(start, end, expected):
    assert window_starts(start, end, 0.64) == pytest.approx(expected, abs=1e-4)


def test_a_clip_holds_frames_in_0_1_and_its_sound(tmp_path, make_video):
    path = make_video(tmp_path / "v.mp4", 2.0, fps=10, tone=200)
    layout = Layout(num_frames=4, image_size=16, fps=10.0, audio_samples_per_frame=160)  # audio at 1600 Hz
    clip = read_clip(str(path), 0.5, 1.3, layout)
    assert clip.images.shape == (2, 4, 3, 16, 16) and clip.audio.shape == (2, 640, 1)
    assert clip.images.dtype == np.float32 and 0.0 <= clip.images.min() and clip.images.max() <= 1.0
    # the background brightens frame by frame: the red channel grows along each window
    red = clip.images[0, :, 0, 0, 0]
    assert np.all(np.diff(red) > 0)
    spectrum = np.abs(np.fft.rfft(clip.audio[0, :, 0]))
    assert np.fft.rfftfreq(640, 1 / 1600)[spectrum.argmax()] == pytest.approx(200, abs=5)
    assert not clip.no_audio


def test_the_encoder_path_matches_the_models_own_forward(load, tiny_perceiver, pm, tmp_path, make_video):
    """Skipping the decoder gives exactly the latents the full model computes before decoding."""
    import torch
    from transformers import PerceiverForMultimodalAutoencoding

    model = load(tiny_perceiver, normalize=False, clip_seconds=0.08)
    path = make_video(tmp_path / "v.mp4", 1.0)
    [clip] = pm.call("preprocess", "perceiver", model=model, items=[video_item(path, 0.2, 0.28)], mode="document")
    vector = pm.call("embed", "perceiver", model=model, inputs=[clip], mode="document")[0]

    full = PerceiverForMultimodalAutoencoding.from_pretrained(tiny_perceiver).eval()
    inputs = {
        "image": torch.from_numpy(clip.images),
        "audio": torch.from_numpy(clip.audio),
        "label": torch.zeros((1, full.config.num_labels)),
    }
    subsample = {"image": torch.arange(4), "audio": torch.arange(2), "label": None}
    with torch.inference_mode():
        # PerceiverModel.forward runs preprocessor, encoder and the decoders; it returns the latents too
        latents = full.perceiver(inputs=inputs, subsampled_output_points=subsample).last_hidden_state
    np.testing.assert_allclose(vector, latents[0].mean(dim=0).numpy(), atol=1e-5)


def pipeline_config(tmp_path, model_folder, **keys):
    return {
        "source": {"path": "videos"},
        "model": {"plugin": "perceiver", "name": str(model_folder), "device": "cpu", "fps": 5.0, **keys},
        "store": lite_store(tmp_path),
    }


def test_a_video_with_a_tone_becomes_one_row_per_clip(tmp_path, tiny_perceiver, pm, make_video):
    (tmp_path / "videos").mkdir()
    path = make_video(tmp_path / "videos" / "tone.mp4", 2.5, fps=10)
    config = pipeline_config(tmp_path, tiny_perceiver, clip_seconds=1.0)
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
        hits = pipeline.search(path, k=5)
    assert (summary.items, summary.embedded, summary.failed, summary.counters) == (3, 3, [], {})
    moments = sorted((h.chunk, h.metadata["start"], h.metadata["end"]) for h in hits)
    assert moments == [(0, 0.0, 1.0), (1, 1.0, 2.0), (2, 2.0, 2.5)]
    # the query is the file's first clip: the stored first clip is its own nearest neighbour
    assert (hits[0].chunk, hits[0].uri) == (0, "videos/tone.mp4") and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_a_video_without_sound_is_embedded_with_silence_and_counted(tmp_path, tiny_perceiver, pm, make_video):
    (tmp_path / "videos").mkdir()
    make_video(tmp_path / "videos" / "silent.mp4", 2.0, tone=None)
    # fps 5 x 64 samples per frame: the tiny model hears 320 Hz audio, so the tone must stay below 160 Hz
    make_video(tmp_path / "videos" / "tone.mp4", 2.0, tone=100)
    config = pipeline_config(tmp_path, tiny_perceiver, clip_seconds=1.0)
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
        model = pipeline.model()
        vectors = model.embed([tmp_path / "videos" / "silent.mp4", tmp_path / "videos" / "tone.mp4"])
        silent, toned = pm.call(
            "preprocess", "perceiver", model=model.model, mode="query",
            items=[video_item(tmp_path / "videos" / n, 0.0, 1.0) for n in ("silent.mp4", "tone.mp4")],
        )
    assert (summary.embedded, summary.failed) == (4, [])
    assert summary.counters == {"no_audio": 2}  # one per clip of the silent video
    assert silent.no_audio and not silent.audio.any() and np.abs(toned.audio).max() > 0.2
    np.testing.assert_array_equal(silent.images, toned.images)
    # Same frames, so only the sound separates them (a small effect with random weights, but far
    # above float32 rounding).
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-6


def test_unreadable_videos_fail_alone(tmp_path, tiny_perceiver, pm, make_video, load):
    (tmp_path / "videos").mkdir()
    make_video(tmp_path / "videos" / "good.mp4", 1.0)
    good = (tmp_path / "videos" / "good.mp4").read_bytes()
    (tmp_path / "videos" / "cut.mp4").write_bytes(good[: len(good) // 3])
    config = pipeline_config(tmp_path, tiny_perceiver, clip_seconds=1.0)
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
    assert summary.embedded == 1
    assert [e.uri for e in summary.failed] == ["videos/cut.mp4"]
    model = load(tiny_perceiver)
    text = Item(id="t:0", uri="t.txt", modality="text", text="hello")
    [out] = pm.call("preprocess", "perceiver", model=model, items=[text], mode="document")
    assert isinstance(out, Failed) and "not text" in out.reason


def test_the_device_follows_the_core_rules_without_mps(monkeypatch):
    import torch
    from embedline_perceiver._backend import _device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert _device("auto", "model") == "cpu"  # never mps, even where torch has it
    assert _device("cpu", "model") == "cpu"
    with pytest.raises(ConfigError, match=r"model\.device: device 'mps' is not available"):
        _device("mps", "model")
    with pytest.raises(ConfigError, match=r"models\.v\.device: device 'cuda:1' is not available"):
        _device("cuda:1", "models.v")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        _device("tpu", "model")
