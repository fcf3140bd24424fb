"""The whisper plugin in a pipeline over a folder of good and broken audio files: each broken file
fails alone with its reason, every good one is stored.  (Decoding itself is tested in
plugins/media.)"""

from __future__ import annotations

import numpy as np
from embedline.pipeline import Pipeline
from embedline.testing import lite_store
from embedline_media.audio import write_audio
from embedline_media.testing import write_broken_audio

FORMATS = ("wav", "flac", "ogg", "mp3", "m4a")


def test_a_pipeline_reports_each_bad_file_and_stores_the_good_ones(tmp_path, tone, tiny_whisper, pm):
    folder = tmp_path / "sounds"
    folder.mkdir()
    for i, fmt in enumerate(FORMATS):
        write_audio(folder / f"good-{i}.{fmt}", tone(1.5, 300 + 150 * i), 16000)
    for name, path in write_broken_audio(tmp_path).items():
        (folder / name).write_bytes(path.read_bytes())
    (folder / "empty.wav").write_bytes(b"")
    write_audio(folder / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    config = {
        "source": {"path": "sounds"},
        "model": {"plugin": "whisper", "name": str(tiny_whisper), "device": "cpu"},
        "store": lite_store(tmp_path),
    }
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
        stored = pipeline.store.count("test")
    reasons = {err.uri: err.reason for err in summary.failed}
    assert summary.embedded == stored == len(FORMATS)
    assert set(reasons) == {
        f"sounds/{n}"
        for n in ("empty.wav", "nosamples.wav", "truncated.wav", "truncated.flac", "truncated.mp3", "corrupt.mp3", "silent.wav")
    }
    assert reasons["sounds/empty.wav"] == "empty file"
    assert "no audio samples" in reasons["sounds/nosamples.wav"]
    assert "truncated" in reasons["sounds/truncated.wav"]
    assert "truncated or corrupt" in reasons["sounds/truncated.flac"]
    assert "truncated" in reasons["sounds/truncated.mp3"]
    assert "not a readable audio file" in reasons["sounds/corrupt.mp3"]
    assert "only silence" in reasons["sounds/silent.wav"]
    assert all(str(err).startswith(err.uri) for err in summary.failed)
