"""Video through an image model: the core cuts windows, the plugin averages sampled frames."""

from __future__ import annotations

import numpy as np
from embedline.contracts import Item
from embedline_media.video import sample_frames
from embedline.pipeline import Pipeline
from embedline.testing import lite_store


def test_one_row_per_window_with_its_moment(tmp_path, tiny_clip, pm, make_video):
    (tmp_path / "videos").mkdir()
    make_video(tmp_path / "videos" / "colours.mp4", seconds=3.5)
    config = {
        "source": {"path": "videos"},
        "model": {
            "plugin": "clip", "name": str(tiny_clip), "device": "cpu", "modalities": ["video"],
            "clip_seconds": 1.0, "frames_per_second": 2.0,
        },
        "store": lite_store(tmp_path, metric="COSINE"),
    }  # fmt: skip
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
        assert summary.units == 1 and summary.embedded == 4 and not summary.failed, summary.format()
        assert pipeline.store.count("test") == 4
        hits = pipeline.search(file=tmp_path / "videos" / "colours.mp4", k=4)  # the whole video as the query
        windows = sorted((h.metadata["start"], h.metadata["end"]) for h in hits)
        assert windows == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 3.5)]
        assert {h.modality for h in hits} == {"video"} and {h.chunk for h in hits} == {0, 1, 2, 3}
        model = pipeline.model("video").model
        assert model.segment == (1.0, 0.0) and model.settings["frames_per_second"] == 2.0


def test_a_window_is_the_mean_of_its_frames(tmp_path, load, pm, make_video):
    path = make_video(tmp_path / "v.mp4", seconds=2.0)
    model = load(frames_per_second=2.0, max_frames=8)
    window = Item(id="v:1", uri="v.mp4", modality="video", path=str(path), chunk=1, metadata={"start": 1.0, "end": 2.0})
    inputs = pm.call("preprocess", "clip", model=model, items=[window], mode="document")
    assert inputs[0].shape[0] == 2  # 1 s at 2 frames per second
    vector = pm.call("embed", "clip", model=model, inputs=inputs, mode="document")[0]
    frames = sample_frames(path, 1.0, 2.0, fps=2.0, max_frames=8)
    pixels = model.impl.image_processor(images=frames, return_tensors="np")["pixel_values"]
    per_frame = pm.call("embed", "clip", model=model, inputs=[p[None] for p in pixels], mode="document")
    mean = per_frame.mean(axis=0)
    assert np.allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)


def test_an_undecodable_video_fails_alone(tmp_path, load, pm):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    model = load()
    item = Item(id="b:0", uri="broken.mp4", modality="video", path=str(tmp_path / "broken.mp4"))
    out = pm.call("preprocess", "clip", model=model, items=[item], mode="document")
    assert "video" in out[0].reason
