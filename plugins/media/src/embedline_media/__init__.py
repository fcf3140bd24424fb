"""Decoding media files for embedline's plugins: images, audio, video.

A library, not a plugin: the image, audio and video plugins (resnet, clip, whisper, perceiver)
depend on it.  The libraries (Pillow, soundfile, PyAV, soxr, numpy) are imported inside the
functions, so importing this package (or a plugin that uses it) imports none of them.  Every
decoding failure is a :class:`MediaError` whose message says what is wrong with the file
(truncated, no samples, ...); the pipeline reports it against the item and goes on.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"


class MediaError(ValueError):
    """A file could not be decoded; the message is the reason, without the path."""


def duration(path: str | os.PathLike[str], modality: str) -> float:
    """Length of an audio or video file in seconds, read from its headers (no full decode)."""
    if modality == "audio":
        from embedline_media.audio import audio_duration

        return audio_duration(path)
    if modality == "video":
        from embedline_media.video import video_duration

        return video_duration(path)
    raise MediaError(f"{modality} has no duration")
