"""embedline_media.audio: every format to 16 kHz mono float32, windows, silence, broken files."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from embedline_media import MediaError
from embedline_media.audio import EmptyWindow, audio_duration, load_audio, write_audio
from embedline_media.testing import write_broken_audio

FORMATS = ("wav", "flac", "ogg", "mp3", "m4a")
# Lossy encoders pad: AAC adds 1024 priming samples, which PyAV's decoder does not trim.
SLACK = {"wav": 0.0, "flac": 0.0, "ogg": 0.0, "mp3": 0.03, "m4a": 0.05}


def dominant_hz(samples: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_decodes_to_16k_mono_float32_of_the_right_length(fmt, tmp_path, tone):
    path = write_audio(tmp_path / f"a.{fmt}", tone(2.0, 440, rate=22050), 22050)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / 16000 - 2.0) <= SLACK[fmt] + 1e-3
    assert abs(audio_duration(path) - 2.0) <= SLACK[fmt] + 1e-3
    assert abs(dominant_hz(samples) - 440) < 5
    assert 0.25 < np.abs(samples).max() < 0.36


@pytest.mark.parametrize("fmt", ["wav", "m4a"])
def test_stereo_is_mixed_down_to_mono(fmt, tmp_path, tone):
    left = tone(1.0, 440, rate=16000, amplitude=0.4)
    path = write_audio(tmp_path / f"stereo.{fmt}", np.stack([left, np.zeros_like(left)], axis=1), 16000)
    samples = load_audio(path)
    assert samples.ndim == 1
    assert np.abs(samples).max() == pytest.approx(0.2, abs=0.02)  # the average of the two channels


@pytest.mark.parametrize("rate", [44100, 8000])
def test_resampling_keeps_pitch_and_length(rate, tmp_path, tone):
    path = write_audio(tmp_path / f"r{rate}.wav", tone(2.0, 440, rate=rate), rate, subtype="FLOAT")
    samples = load_audio(path)
    assert len(samples) == 32000
    expected = tone(2.0, 440, rate=16000)
    inner = slice(800, -800)  # the resampler's filter rings at the edges
    assert np.corrcoef(samples[inner], expected[inner])[0, 1] > 0.999


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_window_is_the_matching_slice_of_the_whole_file(fmt, tmp_path, tone):
    signal = np.concatenate([tone(1.0, 300), tone(1.0, 600), tone(1.0, 900)])
    path = write_audio(tmp_path / f"w.{fmt}", signal, 16000)
    window = load_audio(path, 1.0, 2.0)
    assert abs(len(window) - 16000) <= 1
    assert abs(dominant_hz(window) - 600) < 10
    if fmt in ("wav", "flac"):  # lossless: sample-exact
        np.testing.assert_allclose(window, load_audio(path)[16000:32000], atol=1e-4)


def test_a_window_after_the_end_has_no_samples(tmp_path, tone):
    path = write_audio(tmp_path / "short.wav", tone(1.0), 16000)
    with pytest.raises(EmptyWindow, match="no audio samples"):
        load_audio(path, 5.0, 6.0)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_a_file_of_only_silence_is_an_error(fmt, tmp_path):
    path = write_audio(tmp_path / f"silent.{fmt}", np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(MediaError, match="only silence"):
        load_audio(path)
    assert load_audio(path, allow_silence=True).any() == False  # noqa: E712 - numpy bool


def test_a_silent_window_inside_a_file_with_sound_is_kept(tmp_path, tone):
    signal = np.concatenate([tone(1.0), np.zeros(32000, dtype=np.float32), tone(1.0)])
    path = write_audio(tmp_path / "pause.flac", signal, 16000)
    window = load_audio(path, 1.2, 2.8)
    assert len(window) == 25600 and not window.any()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("nosamples.wav", "no audio samples"),
        ("truncated.wav", "truncated"),
        ("truncated.flac", "truncated or corrupt"),
        ("truncated.mp3", "truncated"),
        ("corrupt.mp3", "not a readable audio file"),
    ],
)
def test_broken_files_raise_media_errors_with_the_reason(name, reason, tmp_path):
    path = write_broken_audio(tmp_path)[name]
    with pytest.raises(MediaError, match=reason):
        audio_duration(path)
        load_audio(path)


def test_decoding_is_thread_safe(tmp_path, tone):
    paths = [write_audio(tmp_path / f"t{i}.{fmt}", tone(1.0, 200 + 100 * i), 16000) for i, fmt in enumerate(FORMATS)]
    alone = [load_audio(p, 0.25, 0.75) for p in paths]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: load_audio(p, 0.25, 0.75), paths * 4))
    for i, samples in enumerate(together):
        np.testing.assert_array_equal(samples, alone[i % len(paths)])

