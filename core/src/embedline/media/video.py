"""Video decoding with PyAV: duration, and frames sampled from a time window."""

from __future__ import annotations

import os
from typing import Any

from embedline.media import MediaError


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
