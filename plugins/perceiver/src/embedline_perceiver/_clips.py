"""A clip of a video as the multimodal Perceiver reads it: windows of frames plus their sound.

The model was trained on Kinetics-700 clips of 16 consecutive frames at 25 fps (0.64 s), centre
cropped to a square, resized to 224 px and scaled to [0, 1], with the matching 48 kHz mono audio
(1920 samples per frame).  A clip longer than one window is covered by as many windows as it takes,
spread evenly from its start to its end; a clip shorter than a window (the end of a video) is read
from ``end - window`` when the video is long enough, else frames past the end repeat the last one
and the missing audio is silence.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np


@attrs.frozen
class Layout:
    """What one model window holds."""

    num_frames: int
    image_size: int
    fps: float
    audio_samples_per_frame: int

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps

    @property
    def audio_rate(self) -> int:
        # Audio samples per frame are fixed by the model, so the audio rate follows the frame rate
        # (25 fps x 1920 = the 48 kHz the model was trained on).
        return int(round(self.fps * self.audio_samples_per_frame))


@attrs.frozen
class Clip:
    """Model inputs for one clip: ``images`` (W, T, 3, S, S) and ``audio`` (W, T * samples per frame, 1)."""

    images: Any = attrs.field(repr=False)
    audio: Any = attrs.field(repr=False)
    no_audio: bool = False


def window_starts(start: float, end: float, window: float) -> list[float]:
    """Where the windows covering ``[start, end)`` begin."""
    length = end - start
    if length < window:  # the tail of a video: read the last full window before ``end``
        return [max(0.0, end - window)]
    count = max(1, math.ceil(length / window - 1e-6))
    if count == 1:
        return [start]
    return [float(x) for x in np.linspace(start, end - window, count)]


def read_clip(path: str, start: float, end: float, layout: Layout) -> Clip:
    """Frames and audio of the windows covering ``[start, end)``; raises ``MediaError``."""
    from embedline_media.audio import NoAudioStream
    from embedline_media.video import frames_at

    starts = window_starts(start, end, layout.seconds)
    times = np.array([s + k / layout.fps for s in starts for k in range(layout.num_frames)])
    order = np.argsort(times, kind="stable")  # overlapping windows interleave their frames
    shown = frames_at(path, times[order])
    images = np.empty((len(times), 3, layout.image_size, layout.image_size), dtype=np.float32)
    for slot, image in zip(order, shown):
        images[slot] = _square(image, layout.image_size)
    images = images.reshape(len(starts), layout.num_frames, 3, layout.image_size, layout.image_size)

    per_window = layout.num_frames * layout.audio_samples_per_frame
    audio = np.zeros((len(starts), per_window, 1), dtype=np.float32)
    try:
        sound = _sound(path, starts[0], starts[-1] + layout.seconds, layout.audio_rate)
    except NoAudioStream:
        return Clip(images, audio, no_audio=True)
    for w, s in enumerate(starts):
        first = int(round((s - starts[0]) * layout.audio_rate))
        piece = sound[first : first + per_window]
        audio[w, : len(piece), 0] = piece
    return Clip(images, audio)


def _sound(path: str, start: float, end: float, rate: int) -> np.ndarray:
    """The soundtrack of ``[start, end)``; silence where the audio stream has already ended."""
    from embedline_media import MediaError
    from embedline_media.audio import EmptyWindow, NoAudioStream, load_audio

    try:
        return load_audio(path, start, end, sample_rate=rate, allow_silence=True)
    except NoAudioStream:
        raise
    except EmptyWindow:  # the soundtrack ends before the video does
        return np.zeros(0, dtype=np.float32)
    except MediaError as exc:
        raise MediaError(f"audio track: {exc}") from None


def _square(image: Any, size: int) -> np.ndarray:
    """Centre square crop, resize (bilinear, as the reference code's cv2.resize), CHW in [0, 1]."""
    from PIL import Image

    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
