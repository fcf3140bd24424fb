"""Audio decoding: duration, and a time window as mono float32 at a chosen sample rate.

WAV, FLAC, Ogg (and the other formats libsndfile knows by their header) are read with soundfile,
seeking to the window so that a 2-hour file costs only the window; MP3, M4A/MP4, Matroska and
anything else go through PyAV.  Channels are averaged to mono and the result is resampled with
soxr.  Every decoding problem is a :class:`MediaError` whose message is the reason.

Silence: a file whose every sample stays below :data:`SILENCE_PEAK` (-70 dBFS) is an error ("only
silence": there is nothing to embed).  A silent window inside a file that has sound elsewhere is
returned as it is: a pause is a moment of the recording, and dropping it would leave a hole in
the timeline.

Everything here is re-entrant: no state is shared between calls except a small thread-safe cache
of "is this whole file silent" answers, keyed by the file's path, size and modification time.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from embedline_media import MediaError

#: Peak amplitude (full scale = 1.0) at or below which audio counts as silence: -70 dBFS.  Real
#: recordings have a noise floor above it; dithered 16-bit digital silence (about -90 dBFS) is below.
SILENCE_PEAK = 10 ** (-70 / 20)

# Containers libsndfile reads natively, by their first bytes.
_SOUNDFILE_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"FORM", b"BW64")
# libsndfile logs "data : 96000 (should be 47978)" for a WAV whose data chunk is cut short.
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


class NoAudioStream(MediaError):
    """The file is a container without an audio stream (a silent video, for instance)."""


class EmptyWindow(MediaError):
    """The requested time window holds no samples (it starts after the audio ends)."""


def _uses_soundfile(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(12)
    if not head:
        raise MediaError("empty file")
    return head[:4] in _SOUNDFILE_MAGIC and not (head[:4] == b"RIFF" and head[8:12] == b"AVI ")


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "strerror", None) or exc).strip()
    # libsndfile prefixes "Error opening '/path': " - the pipeline names the file itself.
    text = re.sub(r"^Error opening .*?: ", "", text)
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Duration
# ---------------------------------------------------------------------------------------------


def audio_duration(path: str | os.PathLike[str]) -> float:
    """Seconds of audio in the file, from its headers (PyAV decodes only if the headers say nothing).

    Raises :class:`MediaError` for unreadable, truncated WAV, or sample-less files.
    """
    path = os.fspath(path)
    if _uses_soundfile(path):
        info = _soundfile_info(path)
        if info is not None:
            if info.frames <= 0:
                raise MediaError("no audio samples")
            return info.frames / info.samplerate
    return _av_duration(path)


def _soundfile_info(path: str) -> Any:
    """soundfile's header info, or None when libsndfile does not know the format (PyAV then tries)."""
    import soundfile as sf

    try:
        info = sf.info(path, verbose=True)
    except sf.LibsndfileError as exc:
        if "unknown format" in str(exc).lower() or "format not recognised" in str(exc).lower():
            return None
        raise MediaError(f"cannot read audio ({_reason(exc)})") from None
    except RuntimeError as exc:  # older soundfile raises RuntimeError
        raise MediaError(f"cannot read audio ({_reason(exc)})") from None
    short = _SHORT_DATA.search(info.extra_info or "")
    if short:
        declared, present = int(short.group(1)), int(short.group(2))
        raise MediaError(f"truncated: the header declares {declared} bytes of samples, the file holds {present}")
    return info


def _av_open(path: str) -> Any:
    import av

    try:
        return av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise MediaError(f"not a readable audio file ({_reason(exc)})") from None


def _av_duration(path: str) -> float:
    import av

    with _av_open(path) as container:
        if not container.streams.audio:
            raise NoAudioStream("no audio stream")
        stream = container.streams.audio[0]
        declared = _header_duration(container, stream)
        if declared is not None:
            return declared
        samples = 0  # no duration in the headers: count the samples
        try:
            for frame in container.decode(stream):
                samples += frame.samples
        except av.error.FFmpegError as exc:
            raise MediaError(f"audio cannot be decoded ({_reason(exc)})") from None
        if samples == 0:
            raise MediaError("no audio samples")
        return samples / (stream.rate or stream.codec_context.sample_rate)


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------


def load_audio(
    path: str | os.PathLike[str],
    start: float = 0.0,
    end: float | None = None,
    *,
    sample_rate: int = 16000,
    allow_silence: bool = False,
) -> Any:
    """Samples of ``[start, end)`` seconds (``end=None``: to the end) as mono float32 at ``sample_rate``.

    Raises :class:`MediaError` when the window holds no samples, the file is truncated or corrupt,
    or (unless ``allow_silence``) the whole file is silence; :class:`NoAudioStream` for a
    container without audio.
    """
    import numpy as np

    path = os.fspath(path)
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"bad audio window [{start}, {end})")
    samples, rate = _decode(path, start, end)
    if samples.size == 0:
        raise EmptyWindow(f"no audio samples between {start:.2f} s and {_when(end)}")
    if rate != sample_rate:
        import soxr

        samples = soxr.resample(samples, rate, sample_rate, quality="HQ")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if not allow_silence and _peak(samples) <= SILENCE_PEAK and _whole_file_silent(path):
        raise MediaError("only silence (no sample above -70 dBFS)")
    return samples


def _decode(path: str, start: float, end: float | None) -> tuple[Any, int]:
    """Mono float32 samples of the window at the file's own rate."""
    if _uses_soundfile(path) and _soundfile_info(path) is not None:
        return _read_soundfile(path, start, end)
    return _read_av(path, start, end)


def _when(end: float | None) -> str:
    return "the end" if end is None else f"{end:.2f} s"


def _peak(samples: Any) -> float:
    import numpy as np

    return float(np.max(np.abs(samples))) if samples.size else 0.0


def _mono(block: Any) -> Any:
    """(frames, channels) -> (frames,), by averaging the channels."""
    return block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)


def _read_soundfile(path: str, start: float, end: float | None) -> tuple[Any, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(path) as fh:
            rate, total = fh.samplerate, fh.frames
            first = min(int(round(start * rate)), total)
            last = total if end is None else min(int(round(end * rate)), total)
            if first >= total:
                raise EmptyWindow(f"no audio samples between {start:.2f} s and {_when(end)} (the file ends at {total / rate:.2f} s)")
            if fh.seekable():
                fh.seek(first)
            else:  # a few formats (some Ogg streams) cannot seek: read up to the window
                fh.read(first, dtype="float32", always_2d=True)
            block = fh.read(last - first, dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise MediaError(f"truncated or corrupt audio ({_reason(exc)})") from None
    except RuntimeError as exc:
        raise MediaError(f"truncated or corrupt audio ({_reason(exc)})") from None
    if len(block) < last - first:
        raise MediaError(
            f"truncated: {total / rate:.2f} s of audio declared, samples stop at {(first + len(block)) / rate:.2f} s"
        )
    return _mono(block), rate


def _read_av(path: str, start: float, end: float | None) -> tuple[Any, int]:
    """Decode ``[start, end)`` with PyAV: seek near ``start``, decode forward, cut at sample precision."""
    import av
    import numpy as np

    blocks: list[Any] = []
    first_time, decoded, failure = None, 0, None
    with _av_open(path) as container:
        if not container.streams.audio:
            raise NoAudioStream("no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        declared = _header_duration(container, stream)
        # Frame times count from the stream's start (an MP3's encoder delay, for instance).
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
        # Sample format only (to float planar); rate and channel layout stay as decoded.
        to_float = av.AudioResampler(format="fltp")
        try:
            if start > 0 and stream.time_base is not None:
                container.seek(int((start + origin) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if first_time is None:
                    first_time = float(frame.time) - origin if frame.time is not None else 0.0
                for converted in to_float.resample(frame):
                    blocks.append(converted.to_ndarray())
                    decoded += converted.samples
                if end is not None and first_time + decoded / rate >= end:
                    break
        except av.error.FFmpegError as exc:
            failure = _reason(exc)
    if not blocks:
        if failure:
            raise MediaError(f"audio cannot be decoded ({failure})")
        return np.zeros(0, dtype=np.float32), rate or 16000
    _check_complete(start, end, declared, first_time + decoded / rate, failure)
    samples = np.concatenate(blocks, axis=1).T  # (frames, channels)
    # Decoders fill the last frame (AAC: to 1024 samples); the header's duration is where the audio
    # ends, and the windows the core cuts are based on it.
    if declared is not None:
        end = declared if end is None else min(end, declared)
    offset = max(0, int(round((start - first_time) * rate)))
    stop = None if end is None else max(offset, int(round((end - first_time) * rate)))
    return _mono(samples[offset:stop]), rate


def _header_duration(container: Any, stream: Any) -> float | None:
    import av

    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _check_complete(start: float, end: float | None, declared: float | None, reached: float, failure: str | None) -> None:
    """Raise when decoding stopped well short of what the window asks and the headers promise.

    The tolerance (10% of the window, plus 0.1 s) absorbs codec padding and the bitrate-based
    duration estimates of MP3 files without a Xing header; a file cut in half is still caught.
    """
    target = declared if end is None else (end if declared is None else min(end, declared))
    if target is None or target <= start:
        return
    expected, got = target - start, reached - start
    if got < 0.9 * expected - 0.1:
        why = f"; {failure}" if failure else ""
        raise MediaError(f"truncated: {target:.2f} s of audio declared, samples stop at {reached:.2f} s{why}")


@functools.lru_cache(maxsize=64)
def _silent(path: str, size: int, mtime_ns: int) -> bool:
    """Whether the whole file stays below :data:`SILENCE_PEAK`; decoded in 60 s windows."""
    total = audio_duration(path)
    start = 0.0
    while start < total:
        end = min(start + 60.0, total)
        try:
            window, _ = _decode(path, start, end)
        except MediaError:
            window = None
        if window is not None and _peak(window) > SILENCE_PEAK:
            return False
        start = end
    return True


def _whole_file_silent(path: str) -> bool:
    stat = os.stat(path)
    return _silent(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


# ---------------------------------------------------------------------------------------------
# Writing (tests, examples and benchmarks make their audio with it)
# ---------------------------------------------------------------------------------------------

_AV_FORMATS = {".mp3": ("mp3", "libmp3lame"), ".m4a": ("ipod", "aac"), ".opus": ("ogg", "libopus")}


def write_audio(path: str | os.PathLike[str], samples: Any, sample_rate: int, *, subtype: str | None = None) -> str:
    """Encode ``samples`` (frames, or frames x channels, floats in [-1, 1]) by the file's suffix.

    ``.wav``/``.flac``/``.ogg`` (Vorbis) through soundfile (``subtype`` e.g. ``"PCM_16"``), ``.mp3``
    (LAME), ``.m4a`` (AAC, written with the M4A brand so it is sniffed as audio) and ``.opus``
    through PyAV.  Returns the path.
    """
    import numpy as np

    path = os.fspath(path)
    data = np.asarray(samples, dtype=np.float32)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _AV_FORMATS:
        import soundfile as sf

        sf.write(path, data, sample_rate, subtype=subtype)
        return path
    from fractions import Fraction

    import av

    fmt, codec = _AV_FORMATS[suffix]
    planar = data[None, :] if data.ndim == 1 else data.T
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    with av.open(path, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), format="fltp", layout=layout)
        frame.rate = sample_rate
        # With timestamps the encoder marks its priming samples, and the muxer writes an edit list
        # that tells decoders to drop them.
        frame.pts, frame.time_base = 0, Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


__all__ = ["SILENCE_PEAK", "EmptyWindow", "NoAudioStream", "audio_duration", "load_audio", "write_audio"]
