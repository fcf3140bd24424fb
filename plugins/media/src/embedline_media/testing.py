"""Sample media files for tests: written here in seconds, nothing checked in, no download.

* :func:`tone` — a sine (or white noise) as float32 samples.
* :func:`write_good_images` — one image file per format and colour mode the decoder must handle,
  each with what it must decode to (:class:`Expect`).
* :func:`write_bad_images` / :func:`write_broken_audio` — files that must fail, with the words
  their failure reason must contain (images) or by name (audio).
* :func:`png_claiming` — a PNG header claiming any size: a decompression bomb in a few bytes.
* :func:`image_fixtures` — the session fixtures ``good_images`` and ``bad_images`` for a conftest.

The decoding tests of this distribution use them, and so do the plugins' tests (resnet, whisper),
which feed the same files through a pipeline.  Pillow and numpy are imported inside the functions.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import attrs

from embedline_media.audio import write_audio

__all__ = [
    "Expect",
    "image_fixtures",
    "png_claiming",
    "tone",
    "write_bad_images",
    "write_broken_audio",
    "write_good_images",
]

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def tone(seconds: float, freq: float = 440.0, rate: int = 16000, amplitude: float = 0.3) -> Any:
    """``seconds`` of a sine at ``freq`` Hz as float32 samples at ``rate``; ``freq=0`` gives white noise."""
    import numpy as np

    n = int(round(seconds * rate))
    if freq == 0:
        return (amplitude * np.random.default_rng(0).uniform(-1, 1, n)).astype(np.float32)
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


# -- images ------------------------------------------------------------------------------------


@attrs.frozen
class Expect:
    """What a good file decodes to: its size, and pixels ((x, y), rgb) within ``tolerance``."""

    size: tuple[int, int]
    pixels: tuple = ()
    tolerance: int = 40


def _halves(size, left, right, mode="RGB"):
    from PIL import Image

    im = Image.new(mode, size, left)
    im.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return im


def write_good_images(folder: Path) -> dict[str, Expect]:
    """One file per format and colour mode the decoder must handle."""
    import numpy as np
    from PIL import Image, features

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Expect] = {}

    def save(name, im, expect, **params):
        im.save(folder / name, **params)
        out[name] = expect

    lr = ((2, 2), RED), ((37, 27), BLUE)  # left half red, right half blue, 40x30
    save("rgb.jpg", _halves((40, 30), RED, BLUE), Expect((40, 30), lr), quality=95)
    # Stored 40 wide x 20 high with red top-left; EXIF orientation 6 means "rotate 90 degrees clockwise
    # to display": upright it is 20 x 40 and the red corner is top-right.
    stored = Image.new("RGB", (40, 20), GREEN)
    stored.paste(RED, (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif_rotated.jpg", stored, Expect((20, 40), (((17, 2), RED), ((2, 37), GREEN))), exif=exif, quality=95)
    save("cmyk.jpg", _halves((40, 30), (0, 255, 255, 0), (255, 255, 0, 0), "CMYK"), Expect((40, 30), lr), quality=95)
    save("gray.png", Image.new("L", (30, 20), 128), Expect((30, 20), (((5, 5), (128, 128, 128)),), 2))
    save("bilevel.png", _halves((30, 20), 0, 1, "1"), Expect((30, 20), (((2, 2), (0, 0, 0)), ((27, 2), WHITE)), 2))
    # 16-bit: 65535 must become 255 and 32896 become 128 (Pillow's own convert would clip both to 255).
    deep = np.zeros((20, 30), dtype=np.uint16)
    deep[:, :15], deep[:, 15:] = 65535, 32896
    save("gray16.png", Image.fromarray(deep), Expect((30, 20), (((2, 2), WHITE), ((27, 2), (128, 128, 128))), 2))
    save("gray16.tiff", Image.fromarray(deep), Expect((30, 20), (((2, 2), WHITE), ((27, 2), (128, 128, 128))), 2))
    unit = np.full((20, 30), 0.5, dtype=np.float32)
    save("float.tiff", Image.fromarray(unit, mode="F"), Expect((30, 20), (((5, 5), (128, 128, 128)),), 2))
    palette = _halves((30, 20), RED, BLUE).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    save("palette.png", palette, Expect((30, 20), (((2, 2), RED), ((27, 2), BLUE)), 2))
    see_through = palette.copy()
    red_index = see_through.getpixel((2, 2))
    save("palette_transparent.png", see_through, Expect((30, 20), (((2, 2), WHITE), ((27, 2), BLUE)), 2),
         transparency=red_index)  # fmt: skip
    save("palette_transparent.gif", see_through, Expect((30, 20), (((2, 2), WHITE), ((27, 2), BLUE)), 2),
         transparency=red_index)  # fmt: skip
    rgba = _halves((30, 20), (255, 0, 0, 0), (0, 0, 255, 255), "RGBA")  # invisible red, opaque blue
    save("rgba.png", rgba, Expect((30, 20), (((2, 2), WHITE), ((27, 2), BLUE)), 2))
    save(
        "la.png",
        _halves((30, 20), (0, 0), (0, 255), "LA"),
        Expect((30, 20), (((2, 2), WHITE), ((27, 2), (0, 0, 0))), 2),
    )
    frames = [Image.new("RGB", (30, 20), c) for c in (GREEN, RED, BLUE)]
    save("animated.gif", frames[0], Expect((30, 20), (((5, 5), GREEN),), 2), save_all=True,
         append_images=frames[1:], duration=100, loop=0)  # fmt: skip
    save("animated.png", frames[0], Expect((30, 20), (((5, 5), GREEN),), 2), save_all=True,
         append_images=frames[1:], duration=100)  # fmt: skip
    if features.check("webp"):
        save("photo.webp", _halves((40, 30), RED, BLUE), Expect((40, 30), lr), quality=95)
        save("animated.webp", frames[0], Expect((30, 20), (((5, 5), GREEN),), 2), save_all=True,
             append_images=frames[1:], duration=100, lossless=True)  # fmt: skip
    save("photo.bmp", _halves((40, 30), RED, BLUE), Expect((40, 30), lr, 2))
    save("photo.tiff", _halves((40, 30), RED, BLUE), Expect((40, 30), lr, 2))
    return out


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (valid CRCs) with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def write_bad_images(folder: Path) -> dict[str, str]:
    """Files that must fail, each with a word its reason must contain."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(noise).save(jpeg, "JPEG", quality=90)
    Image.fromarray(noise).save(png, "PNG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "random.jpg").write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (folder / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    return {
        "truncated.jpg": "truncated",
        "truncated.png": "truncated",
        "empty.jpg": "empty",
        "random.jpg": "unknown",
        "bomb.png": "decompression bomb",
    }


def image_fixtures() -> tuple[Any, Any]:
    """pytest session fixtures over temporary folders: ``good_images`` gives ``(folder, {name:
    Expect})`` (:func:`write_good_images`), ``bad_images`` gives ``(folder, {name: reason word})``
    (:func:`write_bad_images`).  In a conftest: ``good_images, bad_images = image_fixtures()``."""
    import pytest

    @pytest.fixture(scope="session")
    def good_images(tmp_path_factory) -> tuple[Path, dict[str, Expect]]:
        folder = tmp_path_factory.mktemp("good")
        return folder, write_good_images(folder)

    @pytest.fixture(scope="session")
    def bad_images(tmp_path_factory) -> tuple[Path, dict[str, str]]:
        folder = tmp_path_factory.mktemp("bad")
        return folder, write_bad_images(folder)

    return good_images, bad_images


# -- audio -------------------------------------------------------------------------------------


def write_broken_audio(folder: Path) -> dict[str, Path]:
    """Audio files that must fail, by name: ``nosamples.wav`` (``no audio samples``),
    ``truncated.wav``/``.mp3`` (``truncated``), ``truncated.flac`` (``truncated or corrupt``) and
    ``corrupt.mp3`` (``not a readable audio file``).  The good sources they are cut from are
    written next to them as ``source.*``."""
    import numpy as np

    folder = Path(folder)
    good = tone(1.5)
    wav = write_audio(folder / "source.wav", good, 16000)
    mp3 = write_audio(folder / "source.mp3", good, 16000)
    flac = write_audio(folder / "source.flac", tone(3.0), 16000)
    files = {
        "nosamples.wav": write_audio(folder / "x.wav", np.zeros(0, dtype=np.float32), 16000),
        "truncated.wav": Path(wav).read_bytes()[:20000],
        "truncated.flac": Path(flac).read_bytes()[:9000],
        "truncated.mp3": Path(mp3).read_bytes()[:3000],
        "corrupt.mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00" + np.random.default_rng(1).bytes(6000),
    }
    out = {}
    for name, data in files.items():
        out[name] = folder / name
        out[name].write_bytes(data if isinstance(data, bytes) else Path(data).read_bytes())
    return out
