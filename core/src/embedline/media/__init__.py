"""Decoding media files: images, audio, video.

The libraries (Pillow, soundfile, PyAV, soxr) are imported inside the functions, so the core
imports none of them; the plugins that embed media depend on them.  Every decoding failure is a
:class:`MediaError` whose message says what is wrong with the file (truncated, no samples, ...);
the pipeline reports it against the item and goes on.
"""

from __future__ import annotations

import os


class MediaError(ValueError):
    """A file could not be decoded; the message is the reason, without the path."""


def duration(path: str | os.PathLike[str], modality: str) -> float:
    """Length of an audio or video file in seconds, read from its headers (no full decode)."""
    if modality == "audio":
        from embedline.media.audio import audio_duration

        return audio_duration(path)
    if modality == "video":
        from embedline.media.video import video_duration

        return video_duration(path)
    raise MediaError(f"{modality} has no duration")
