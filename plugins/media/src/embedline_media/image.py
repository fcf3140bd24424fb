"""Image decoding with Pillow: any common image file into one upright 8-bit RGB picture.

:func:`load_image` accepts JPEG, PNG, WebP, BMP, GIF and TIFF in every colour mode Pillow reads and
returns an RGB image a model's processor can take as is: EXIF orientation applied, transparency
composited on white, 16-bit data scaled (not clipped) to 8 bits, animated files reduced to their
first frame.  Anything it cannot decode (truncated, corrupt, empty, too many pixels) raises
:class:`~embedline_media.MediaError` whose message is the reason; the caller adds the file name.

Thread safety: nothing here touches Pillow's global settings (``Image.MAX_IMAGE_PIXELS``,
``ImageFile.LOAD_TRUNCATED_IMAGES``, warning filters), so plugins may decode in worker threads.
Pillow and numpy are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from embedline_media import MediaError

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

#: Pillow's own default limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89.5 megapixels).  Pillow
#: itself still refuses images above twice its global limit, whatever ``max_pixels`` says.
DEFAULT_MAX_PIXELS = 89_478_485

_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Decode ``path`` into an upright RGB image, or raise :class:`MediaError` saying why not.

    ``max_pixels`` refuses images with more pixels (width x height, read from the header before
    anything is decoded), so a small file claiming a huge size cannot exhaust memory.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            raise MediaError("empty file (0 bytes)")
    except OSError as exc:
        raise MediaError(f"cannot read the file ({exc.strerror or exc})") from None
    fmt = "image"
    try:
        with Image.open(path) as im:
            fmt = im.format or fmt
            width, height = im.size
            if width * height > max_pixels:
                raise MediaError(_too_big(width, height, max_pixels))
            im.load()  # decodes the first frame only: animated files stay cheap
            return _to_rgb(_upright(im))
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's global limit, lower than max_pixels
        raise MediaError(f"refused as a possible decompression bomb ({exc})") from None
    except Image.DecompressionBombWarning as exc:  # only raised when warnings are errors
        raise MediaError(f"refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise MediaError("not an image Pillow can read (unknown format or corrupt header)") from None
    except MemoryError:
        raise MediaError("not enough memory to decode the image") from None
    except (OSError, SyntaxError, EOFError, ValueError, IndexError, TypeError, KeyError) as exc:
        # Pillow reports damaged data with all of these, depending on the format and the damage.
        raise MediaError(f"truncated or corrupt {fmt} data ({_first_line(exc)})") from None


def _too_big(width: int, height: int, limit: int) -> str:
    return (
        f"image is {width}x{height} = {width * height:,} pixels, more than the limit of {limit:,} "
        f"(a decompression bomb?); raise max_pixels if the image is genuine"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _upright(im: Image) -> Image:
    """Apply the EXIF orientation; a file without one (or with unreadable EXIF) is kept as it is."""
    from PIL import ImageOps

    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - broken EXIF must not lose an otherwise good picture
        return im
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return im  # no copy for the common case
    return ImageOps.exif_transpose(im)


def _to_rgb(im: Image) -> Image:
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        return Image.fromarray(_gray_to_uint8(im), mode="L").convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in im.info:
        # Transparent pixels often hold junk colours: show them as white, as a viewer on a page would.
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # L, 1, P, CMYK, YCbCr, HSV, ...: Pillow converts these itself (CMYK without colour management).
    return im.convert("RGB")


def _gray_to_uint8(im: Image) -> Any:
    """16-bit, 32-bit integer and float grayscale scaled into 0-255 (Pillow's convert would clip)."""
    import numpy as np

    data = np.asarray(im)
    if im.mode in _SIXTEEN_BIT:
        scaled = data.astype(np.float32) / 257.0  # 65535 -> 255
    elif im.mode == "I":
        # 32-bit ints: 16-bit files decoded as "I" go up to 65535; small values are already 8-bit.
        peak = float(data.max()) if data.size else 0.0
        scaled = data.astype(np.float32) / 257.0 if peak > 255 else data.astype(np.float32)
    else:  # "F": floats in 0-1 (the usual convention), else taken as 0-255
        peak = float(np.nanmax(data)) if data.size else 0.0
        scaled = np.nan_to_num(data.astype(np.float32)) * (255.0 if peak <= 1.0 else 1.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def item_frames(
    item: Any,
    *,
    fps: float = 1.0,
    max_frames: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Image]:
    """The pictures an image model sees for an item: the image itself, or frames of a video window.

    Video items carry ``metadata["start"]``/``["end"]`` (seconds) when the core has cut the file
    into windows (``Model.segment``); frames are sampled from that window at ``fps``.
    """
    if item.path is None:
        raise MediaError(f"{item.modality} item has no file to decode")
    if item.modality == "image":
        return [load_image(item.path, max_pixels=max_pixels)]
    if item.modality == "video":
        from embedline_media.video import sample_frames

        start = float(item.metadata.get("start", 0.0))
        end = item.metadata.get("end")
        try:
            return sample_frames(item.path, start, None if end is None else float(end), fps=fps, max_frames=max_frames)
        except ImportError as exc:
            raise MediaError(f"cannot decode video: {exc}") from None
    raise MediaError(f"not an image or a video ({item.modality})")
