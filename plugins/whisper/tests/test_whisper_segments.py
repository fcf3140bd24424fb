"""Long audio becomes windows with start/end times: stored, searched, shown by the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from embedline_media.audio import write_audio
from embedline.pipeline import Pipeline
from embedline.testing import lite_store

RATE = 16000


@pytest.fixture
def long_audio(tmp_path, tone):
    """70 s: a 300 Hz tone, noise, then a 2 kHz tone, so that the windows differ."""
    folder = tmp_path / "sounds"
    folder.mkdir()
    samples = np.concatenate([tone(25, 300), tone(25, 0), tone(20, 2000)])
    write_audio(folder / "long.wav", samples, RATE)
    write_audio(tmp_path / "query.wav", samples[25 * RATE : 55 * RATE], RATE)  # exactly the second window
    return samples


def config(tmp_path, model_folder):
    return {
        "source": {"path": "sounds"},
        "model": {
            "plugin": "whisper",
            "name": str(model_folder),
            "device": "cpu",
            "window_seconds": 30.0,
            "window_overlap": 5.0,
        },
        "store": lite_store(tmp_path),
    }


def test_seventy_seconds_become_three_overlapping_windows(tmp_path, long_audio, tiny_whisper_30, pm):
    with Pipeline.from_dict(config(tmp_path, tiny_whisper_30), base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
        assert (summary.units, summary.items, summary.embedded, summary.failed) == (1, 3, 3, [])
        hits = pipeline.search(tmp_path / "query.wav", k=3)
        again = pipeline.run()
    assert [(h.chunk, h.metadata["start"], h.metadata["end"]) for h in sorted(hits, key=lambda h: h.chunk)] == [
        (0, 0.0, 30.0),
        (1, 25.0, 55.0),
        (2, 50.0, 70.0),
    ]
    best = hits[0]
    assert (best.uri, best.chunk, best.metadata["start"], best.metadata["end"]) == ("sounds/long.wav", 1, 25.0, 55.0)
    assert best.score == pytest.approx(1.0, abs=1e-4)  # the query is that window's very samples
    assert (again.embedded, again.skipped) == (0, 3)  # unchanged windows are not embedded again


def test_the_search_command_shows_start_and_end(tmp_path, long_audio, tiny_whisper_30, pm):
    with Pipeline.from_dict(config(tmp_path, tiny_whisper_30), base_dir=tmp_path, pm=pm) as pipeline:
        assert pipeline.run().embedded == 3
    model = config(tmp_path, tiny_whisper_30)["model"]
    (tmp_path / "audio.toml").write_text(
        '[source]\npath = "sounds"\n\n'
        f'[model]\nplugin = "whisper"\nname = "{model["name"]}"\ndevice = "cpu"\n'
        "window_seconds = 30.0\nwindow_overlap = 5.0\n\n"
        f'[store]\nplugin = "milvus"\nuri = "test.db"\ncollection = "test"\n'
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "embedline", "search", "audio.toml", "--file", "query.wav", "-k", "3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith(" 1. 1.0000  sounds/long.wav  0:25.0-0:55.0"), result.stdout
    assert {line.split("  ")[-1] for line in lines} == {"0:00.0-0:30.0", "0:25.0-0:55.0", "0:50.0-1:10.0"}
