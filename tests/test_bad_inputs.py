"""The bad-input suite: one folder holding every kind of bad input next to good files, run through a
pipeline that routes text, images and audio to three real plugins (tiny random models), into a real
Milvus Lite database.  Each bad input has its expected outcome; every good file is stored.

Every test here checks the one mixed pipeline, so all are cross-plugin: they are skipped when the
core is installed without the plugins.  Each plugin's own bad-file tests live in its folder
(plugins/resnet, plugins/whisper; decoding itself in plugins/media)."""

import io
import math
import os
import socket
import struct
import wave
import zlib

import numpy as np
import pytest

from embedline.pipeline import Pipeline
from embedline.testing import fresh_plugin_manager, lite_store

pytestmark = pytest.mark.plugins("resnet", "whisper", "minilm", "milvus")


def png_bytes(size=(48, 40), color=(200, 40, 40), mode="RGB"):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(mode="RGB", color=(30, 120, 220)):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (64, 48), color).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def bomb_png(width=40_000, height=40_000):
    """A valid PNG header claiming 1.6 gigapixels (a few bytes of data): a decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def wav_bytes(seconds=1.0, rate=16000, frequency=440.0):
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.4 * np.sin(2 * math.pi * frequency * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buffer.getvalue()


GOOD = {  # file name -> (modality, its bytes, made when the suite runs: Pillow may not be installed)
    "notes.md": ("text", lambda: b"Milvus stores vectors.\n\nSearch finds the nearest ones."),
    "my notes \u00e9t\u00e9.txt": ("text", lambda: "Caf\u00e9 notes with spaces and accents.".encode()),
    "\u65e5\u672c\u8a9e.md": ("text", lambda: "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8".encode()),
    "photo.png": ("image", png_bytes),
    "photo.jpg": ("image", jpeg_bytes),
    "cmyk.jpg": ("image", lambda: jpeg_bytes("CMYK", (10, 200, 30, 0))),
    "picture.txt": ("image", lambda: png_bytes(color=(1, 2, 3))),  # the extension lies: bytes say PNG
    "tone.wav": ("audio", wav_bytes),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from embedline_minilm.testing import build_tiny_sentence_transformer
    from embedline_resnet.testing import build_tiny_resnet
    from embedline_whisper.testing import build_tiny_whisper

    root = tmp_path_factory.mktemp("models")
    return {
        "text": build_tiny_sentence_transformer(root / "st"),
        "image": build_tiny_resnet(root / "resnet"),
        "audio": build_tiny_whisper(root / "whisper"),
    }


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("bad")
    folder = root / "in"
    folder.mkdir()
    for name, (_, data) in GOOD.items():
        (folder / name).write_bytes(data())
    bad = {
        "empty.txt": b"",
        "binary.txt": b"\x00\x01\x02\x03" + os.urandom(2048),
        "latin1.txt": "caf\xe9 cr\xe8me".encode("latin-1"),
        "truncated.jpg": jpeg_bytes()[:300],
        "truncated.png": png_bytes((300, 300))[:200],
        "zero.png": b"",
        "bomb.png": bomb_png(),
        "truncated.wav": wav_bytes(2.0)[:3000],
        "nosamples.wav": wav_bytes(0.0),
        "fake.mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(512),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    (folder / "big.txt").write_text(" ".join(f"word{i % 997}" for i in range(1_700_000)))  # ~10 MB, one line
    os.symlink(folder / "loop-b", folder / "loop-a")
    os.symlink(folder / "loop-a", folder / "loop-b")
    unreadable = socket.socket(socket.AF_UNIX)  # open() fails even for root: ENXIO
    unreadable.bind(str(folder / "socket.txt"))
    config = {
        "source": {"path": "in", "chunk": {"by": "tokens", "max_tokens": 2000}},
        "models": [
            {"plugin": "minilm", "name": str(tiny["text"]), "collection": "texts", "batch_size": 64},
            {"plugin": "resnet", "name": str(tiny["image"]), "collection": "images", "modalities": ["image"]},
            {"plugin": "whisper", "name": str(tiny["audio"]), "collection": "sounds"},
        ],
        "store": lite_store(root),
    }
    try:
        with Pipeline.from_dict(config, base_dir=root, pm=fresh_plugin_manager()) as p:
            summary = p.run()
            stored = {c: {uri for _, uri in p.store.scan(c)} for c in ("texts", "images", "sounds")}
    finally:
        unreadable.close()
    return summary, stored, {e.uri: e for e in summary.failed}


def test_every_good_file_is_stored(outcome):
    _, stored, _ = outcome
    collection = {"text": "texts", "image": "images", "audio": "sounds"}
    for name, (modality, _) in GOOD.items():
        assert f"in/{name}" in stored[collection[modality]], name
    assert "in/big.txt" in stored["texts"]


EXPECTED = {  # uri -> (stage, words the reason must contain)
    "in/empty.txt": ("read", "empty file"),
    "in/zero.png": ("read", "empty file"),
    "in/binary.txt": ("read", "binary content"),
    "in/latin1.txt": ("read", "not valid utf-8"),
    "in/loop-a": ("read", "symbolic links"),
    "in/loop-b": ("read", "symbolic links"),
    "in/socket.txt": ("read", "No such device"),
    "in/truncated.jpg": ("preprocess", "truncated"),
    "in/truncated.png": ("preprocess", "truncated"),
    "in/bomb.png": ("preprocess", "pixels"),
    "in/truncated.wav": ("read", "truncated"),
    "in/nosamples.wav": ("read", "no audio samples"),
    "in/fake.mp3": ("read", "not a readable audio file"),
}


@pytest.mark.parametrize("uri", sorted(EXPECTED))
def test_each_bad_input_fails_alone_with_its_reason(outcome, uri):
    _, _, failures = outcome
    stage, words = EXPECTED[uri]
    assert uri in failures, f"{uri} was not reported; failures: {sorted(failures)}"
    assert failures[uri].stage == stage and words in failures[uri].reason, str(failures[uri])


def test_nothing_else_failed_and_the_big_line_was_chunked(outcome):
    summary, _, failures = outcome
    assert set(failures) == set(EXPECTED)
    assert summary.embedded >= len(GOOD) + 800  # ~1.7M words in windows of 2000 tokens
    assert summary.counters.get("truncated", 0) >= 800  # each window is longer than the model's limit
