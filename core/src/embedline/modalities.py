"""The kinds of data embedline knows, as data: adding a modality means adding one entry here.

Each :class:`Modality` says how the core recognises a file of that kind from its first bytes, and
how the run treats its items: text is decoded and chunked by the source and gathered into large
windows that are ordered by size before batching; timed media (audio, video) can be cut into
windows of seconds by a model that declares a ``segment``; everything else is read lazily by the
model's plugin, one batch at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

Signature = Callable[[bytes], bool]


def magic(prefix: bytes, offset: int = 0) -> Signature:
    """Matches files whose bytes at ``offset`` are ``prefix``."""
    return lambda head: head[offset : offset + len(prefix)] == prefix


def riff(form: bytes) -> Signature:
    """A RIFF container of the given form type (``WAVE``, ``WEBP``, ``AVI ``)."""
    return lambda head: len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == form


_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B ")


def _iso_media(audio: bool) -> Signature:
    """An ISO base media file (MP4, MOV, M4A): audio-only brands are audio, the rest video."""
    return lambda head: len(head) >= 12 and head[4:8] == b"ftyp" and (head[8:12] in _AUDIO_BRANDS) == audio


def _bmp(head: bytes) -> bool:
    # "BM" is also how plenty of text starts: require a plausible BMP header size field.
    return head[:2] == b"BM" and len(head) >= 18 and head[14] in (12, 40, 52, 56, 64, 108, 124)


def _mp3_frame(head: bytes) -> bool:
    """An MPEG audio layer III frame header (an MP3 without ID3 tag); strict, text must not match."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0x3, (head[1] >> 1) & 0x3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 0x3
    return version != 1 and layer == 1 and bitrate not in (0, 15) and rate != 3


@attrs.frozen
class Modality:
    name: str
    signatures: tuple[Signature, ...] = ()  # how its files start; text is what is left
    timed: bool = False  # has a duration: a model with a `segment` cuts files into windows
    size_batched: bool = False  # gathered into windows of ~LENGTH_GROUP_ITEMS, ordered by size

    def matches(self, head: bytes) -> bool:
        return any(sig(head) for sig in self.signatures)


MODALITY: Mapping[str, Modality] = {
    m.name: m
    for m in (
        Modality("text", size_batched=True),
        Modality(
            "image",
            (
                magic(b"\x89PNG\r\n\x1a\n"), magic(b"\xff\xd8\xff"), magic(b"GIF87a"), magic(b"GIF89a"),
                _bmp, magic(b"II*\x00"), magic(b"MM\x00*"), riff(b"WEBP"),
            ),
        ),
        Modality(
            "audio",
            (magic(b"fLaC"), magic(b"OggS"), magic(b"ID3"), riff(b"WAVE"), _iso_media(audio=True), _mp3_frame),
            timed=True,
        ),
        Modality("video", (magic(b"\x1aE\xdf\xa3"), riff(b"AVI "), _iso_media(audio=False)), timed=True),
    )
}

#: Every modality name, in a stable order.
MODALITIES: tuple[str, ...] = tuple(MODALITY)


def sniff_modality(head: bytes) -> str | None:
    """The modality of a file from its first bytes (4 KiB is plenty): ``text`` when no binary
    signature matches and there is no NUL byte, None for binary data of an unknown kind."""
    for modality in MODALITY.values():
        if modality.matches(head):
            return modality.name
    if head[:4] == b"RIFF" or b"\x00" in head:  # a RIFF form or binary data we do not know
        return None
    return "text"


def is_timed(modality: str) -> bool:
    return MODALITY[modality].timed if modality in MODALITY else False


def is_size_batched(modality: str) -> bool:
    return MODALITY[modality].size_batched if modality in MODALITY else False
