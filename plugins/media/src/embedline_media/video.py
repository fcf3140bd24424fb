"""Video decoding with PyAV: duration, and frames sampled from a time window."""

from __future__ import annotations

import os
from typing import Any

from embedline_media import MediaError


def _open(path: str | os.PathLike[str]) -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - plugins depend on it
        raise ImportError("PyAV is not installed (pip install av)") from exc
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        raise MediaError(f"not a readable video ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__


def video_duration(path: str | os.PathLike[str]) -> float:
    """Seconds of the first video stream (container duration if the stream has none)."""
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError("no video stream")
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1_000_000  # av.time_base is microseconds
        # No duration in the headers: decode to find the last timestamp.
        last = 0.0
        for frame in container.decode(stream):
            if frame.time is not None:
                last = max(last, float(frame.time))
        return last


def sample_frames(
    path: str | os.PathLike[str], start: float = 0.0, end: float | None = None, *, fps: float = 1.0, max_frames: int = 64
) -> list[Any]:
    """RGB PIL images sampled at ``fps`` from ``[start, end)`` seconds (at least one frame).

    Seeks to the keyframe before ``start`` and decodes forward; raises :class:`MediaError` when the
    window holds no decodable frame.
    """
    import av

    if fps <= 0:
        raise ValueError("fps must be positive")
    frames: list[Any] = []
    next_time = start
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            if start > 0 and stream.time_base is not None:
                container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else next_time
                if end is not None and t >= end and frames:
                    break
                if t + 1e-6 < next_time:
                    continue
                frames.append(frame.to_image())
                next_time = max(next_time, t) + 1.0 / fps
                if len(frames) >= max_frames:
                    break
        except av.error.FFmpegError as exc:
            if not frames:
                raise MediaError(f"video cannot be decoded ({_reason(exc)})") from None
    if not frames:
        raise MediaError(f"no frames between {start:.2f} s and {end if end is not None else 'the end'} s")
    return frames


def frames_at(path: str | os.PathLike[str], times: Any) -> list[Any]:
    """The RGB PIL image on screen at each of ``times`` (seconds from the start, ascending).

    The frame shown at ``t`` is the last one whose timestamp is not after ``t``; before the first
    frame that is the first frame, after the last one the last frame is held.  So a 10 fps video
    sampled at 25 fps repeats frames, as a player would show them.  Raises :class:`MediaError`
    when the file has no video stream or no decodable frame.
    """
    import av

    wanted = [float(t) for t in times]
    if any(b < a for a, b in zip(wanted, wanted[1:])):
        raise ValueError("times must be in ascending order")
    out: list[Any] = []
    if not wanted:
        return out
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.time_base
        origin = float(stream.start_time * base) if stream.start_time is not None and base is not None else 0.0
        shown: Any = None  # (frame, its image once converted)
        try:
            if wanted[0] > 0 and base is not None:
                container.seek(int((wanted[0] + origin) / base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                t = float(frame.time) - origin if frame.time is not None else 0.0
                while len(out) < len(wanted) and t > wanted[len(out)] + 1e-3:
                    shown = shown or [frame, None]
                    out.append(_image(shown))
                if len(out) == len(wanted):
                    break
                shown = [frame, None]
        except av.error.FFmpegError as exc:
            if shown is None:
                raise MediaError(f"video cannot be decoded ({_reason(exc)})") from None
    if shown is None:
        raise MediaError(f"no frames after {wanted[0]:.2f} s")
    while len(out) < len(wanted):
        out.append(_image(shown))
    return out


def _image(shown: list[Any]) -> Any:
    if shown[1] is None:  # convert a held frame once, however often it is repeated
        shown[1] = shown[0].to_image()
    return shown[1]


def has_audio(path: str | os.PathLike[str]) -> bool:
    """Whether the container has an audio stream."""
    with _open(path) as container:
        return bool(container.streams.audio)


def write_video(
    path: str | os.PathLike[str],
    frames: Any,
    fps: float,
    *,
    audio: Any = None,
    audio_rate: int = 48000,
    codec: str = "libx264",
) -> str:
    """Encode ``frames`` (T x H x W x 3 uint8 RGB; even H and W) at ``fps``, plus optional mono
    ``audio`` (floats in [-1, 1]) as AAC, into an MP4.  For tests, examples and benchmarks.
    """
    from fractions import Fraction

    import av
    import numpy as np

    frames = np.asarray(frames, dtype=np.uint8)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height = int(frames.shape[2]), int(frames.shape[1])
        video.pix_fmt = "yuv420p"
        sound = None
        if audio is not None:
            sound = out.add_stream("aac", rate=audio_rate, layout="mono")
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            samples = np.ascontiguousarray(np.asarray(audio, dtype=np.float32)[None, :])
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.rate = audio_rate
            chunk.pts, chunk.time_base = 0, Fraction(1, audio_rate)  # so AAC's priming is marked
            for packet in sound.encode(chunk):
                out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return str(path)
