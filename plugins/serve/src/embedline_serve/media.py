"""Which file ``GET /media/<uri>`` may send: only media files of the pipeline's source.

A hit's ``uri`` is its file's path relative to the pipeline file's folder.  :func:`resolve_media`
turns it back into a file and refuses, with None, anything that is not plainly one of the
source's media files:

* not relative (an absolute path, a drive letter, a backslash), a ``..`` or ``.`` or empty
  segment, a NUL, or a percent sign left after the URL was decoded (``%2e%2e`` encoded twice);
* a file that, once symbolic links are followed, is outside the source root (``[source] path``),
  or is not a regular file;
* a file the source's ``include``/``exclude`` globs leave out (so ``/media/.env`` is refused even
  when the source root is the whole project);
* a file whose type (from its extension) is not image, audio or video: text is in the hits already.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

MEDIA_KINDS = ("image/", "audio/", "video/")
_DRIVE = re.compile(r"^[A-Za-z]:")
_EXTRA_TYPES = {".opus": "audio/ogg", ".flac": "audio/flac", ".m4a": "audio/mp4", ".webp": "image/webp",
                ".mkv": "video/x-matroska", ".webm": "video/webm"}


def media_type(path: str | Path) -> str | None:
    """The MIME type of a media file from its extension (``image/png``), or None for anything else."""
    suffix = Path(path).suffix.lower()
    kind = _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0]
    return kind if kind and kind.startswith(MEDIA_KINDS) else None


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A source glob as a regex over a posix relative path: ``**`` crosses folders, ``*`` does not."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _selected(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if not any(glob_regex(p).match(relative) for p in include):
        return False
    return not any(glob_regex(p).match(relative) for p in exclude)


def safe_relative(uri: str) -> PurePosixPath | None:
    """``uri`` as a plain relative path, or None when it tries to be anything else."""
    if not uri or "\x00" in uri or "\\" in uri or "%" in uri or uri.startswith("/") or _DRIVE.match(uri):
        return None
    parts = uri.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return PurePosixPath(uri)


def resolve_media(
    uri: str,
    *,
    base: Path,
    root: Path,
    include: Sequence[str] = ("**/*",),
    exclude: Sequence[str] = (),
) -> Path | None:
    """The file to send for ``uri`` (relative to ``base``), or None when it must not be sent.

    ``root`` is the source's path (a folder, or one file); ``include``/``exclude`` its globs,
    relative to it."""
    relative = safe_relative(uri)
    if relative is None or media_type(relative.name) is None:
        return None
    try:
        real_root = root.resolve(strict=True)
        real = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop
        return None
    if real_root.is_file():
        return real if real == real_root and real.is_file() else None
    if real_root not in real.parents or not real.is_file():
        return None
    # The globs apply to the path as the source walked it (symlinks inside the root not followed).
    try:
        walked = (base / relative).absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        return None
    if not _selected(walked, include, exclude):
        return None
    return real


__all__ = ["media_type", "resolve_media", "safe_relative"]
