"""Fixtures for the resnet plugin tests: a tiny random ResNet, and image files in every mode.

The images are written by Pillow here (no fixtures checked in): each good file comes with what it
must decode to, each bad file with the words its failure reason must contain.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import attrs
import numpy as np
import pytest
from embedline.testing import fresh_plugin_manager, load_plugin_model

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Without these a hub id spends ~78 s in retries before failing.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_resnet(tmp_path_factory) -> Path:
    from embedline.tinymodels import build_tiny_resnet

    return build_tiny_resnet(tmp_path_factory.mktemp("models") / "resnet")


@pytest.fixture(scope="session")
def pm():
    return fresh_plugin_manager()


@pytest.fixture
def load(pm, tmp_path, tiny_resnet):
    """Load the tiny ResNet (or ``name``) through the plugin manager exactly as a pipeline does."""

    def load(name: str | None = None, **keys):
        keys.setdefault("device", "cpu")
        return load_plugin_model("resnet", str(tiny_resnet) if name is None else name, pm=pm, base_dir=tmp_path, **keys)

    return load


# -- image files -------------------------------------------------------------------------------


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
    from PIL import Image, features

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
    from PIL import Image

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


@pytest.fixture(scope="session")
def good_images(tmp_path_factory) -> tuple[Path, dict[str, Expect]]:
    folder = tmp_path_factory.mktemp("good")
    return folder, write_good_images(folder)


@pytest.fixture(scope="session")
def bad_images(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("bad")
    return folder, write_bad_images(folder)


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """The public-domain photos scikit-image ships, as PNG files."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea", "rocket", "horse", "camera", "coins", "clock", "moon",
                 "hubble_deep_field", "immunohistochemistry", "colorwheel", "logo", "grass", "brick", "page"):  # fmt: skip
        array = getattr(data, name)()
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        Image.fromarray(array).save(folder / f"{name}.png")
    return folder
