"""Sources: where items come from.

A source yields *units* (one file, or one JSONL/CSV row) in a stable order; each unit becomes one or
more :class:`~embedline.contracts.Item` (text chunks) or an :class:`~embedline.errors.ItemError`
saying why it could not be read.  Nothing is embedded here and nothing heavy is imported.

Item ids are content hashes: ``<32 hex>:<chunk>``, from the unit's bytes (plus the chunking
settings for text), so unchanged input always gives the same ids and identical content is stored once.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from embedline.chunking import count_words, pack, text_blocks
from embedline.config import ChunkSpec, SourceSpec
from embedline.contracts import Block, Item, TokenCounter
from embedline.errors import ItemError
from embedline.modalities import sniff_modality

# ---------------------------------------------------------------------------------------------
# Globs: ``**`` crosses folders, ``*`` and ``?`` do not.
# ---------------------------------------------------------------------------------------------


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
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


def walk_files(root: Path, include: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    """Files under ``root`` matching the globs, sorted, without following symlinked folders.

    A folder whose every file an exclude pattern matches (``.venv/**``) is not walked at all.
    """
    inc = [_glob_to_regex(p) for p in include]
    exc = [_glob_to_regex(p) for p in exclude]
    folders = [_folder_matchers(p) for p in include]
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        rel_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel_folder == "." else rel_folder + "/"
        # "\0" cannot occur in a file name: if a pattern matches it, it matches everything below.
        dirs[:] = sorted(
            d
            for d in dirs
            if not any(r.match(f"{prefix}{d}/\0") for r in exc)
            and any(_may_hold(m, f"{prefix}{d}".split("/")) for m in folders)
        )
        for name in sorted(files):
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if any(r.match(rel) for r in inc) and not any(r.match(rel) for r in exc):
                found.append(path)
    return found


def _folder_matchers(pattern: str) -> list[re.Pattern[str] | None]:
    """One matcher per folder level of an include pattern (None: ``**``, anything below)."""
    *parts, last = pattern.split("/")  # the last part names files, unless it is "**" (files at any depth)
    levels = [None if "**" in part else _glob_to_regex(part) for part in parts]
    return levels + [None] if "**" in last else levels


def _may_hold(levels: list[re.Pattern[str] | None], folder: list[str]) -> bool:
    """Whether a file under ``folder`` (its path parts) can match the include pattern of ``levels``:
    folders no include pattern reaches (``bench/.venv-peers`` for ``docs/**/*.md``) are not walked."""
    for depth, name in enumerate(folder):
        if depth >= len(levels):
            return False
        if levels[depth] is None:
            return True
        if not levels[depth].match(name):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Chunking, as a stream: text arrives in pieces, chunks come out as soon as they are whole
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"\S+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


class _Windows:
    """Windows of ``max_tokens`` whitespace tokens sharing ``overlap``, original spacing kept, over
    text fed in pieces that never cut a word.  Holds the text from the current window's start."""

    def __init__(self, max_tokens: int, overlap: int):
        self.size, self.step = max_tokens, max_tokens - overlap
        self.text = ""
        self.spans: list[tuple[int, int]] = []  # the words of ``text``

    def feed(self, text: str) -> list[str]:
        base = len(self.text)
        self.text += text
        self.spans += [(base + m.start(), base + m.end()) for m in _WORD.finditer(text)]
        out, start, spans = [], 0, self.spans
        while len(spans) - start > self.size:  # a word follows this window: it is not the last
            out.append(self.text[spans[start][0] : spans[start + self.size - 1][1]])
            start += self.step
        if start:
            cut = spans[start][0]
            self.text = self.text[cut:]
            self.spans = [(s - cut, e - cut) for s, e in spans[start:]]
        elif not spans:
            self.text = ""  # whitespace before the first word is in no window
        return out

    def finish(self) -> list[str]:
        out = [self.text[self.spans[0][0] : self.spans[-1][1]]] if self.spans else []
        self.text, self.spans = "", []
        return out


class _Chunker:
    """:func:`chunk_text` over text that arrives in pieces: the same chunks, holding about one chunk
    (plus one piece) at a time, whatever the length of the text."""

    def __init__(self, spec: ChunkSpec):
        self.spec = spec
        self.paragraphs = spec.by == "paragraph"
        self.tail = ""  # text not split yet: a word, or a run of whitespace, that may go on
        self.pending: list[str] = []  # pieces not joined to ``tail`` yet
        self.pending_len = 0
        self.windows = None if self.paragraphs else _Windows(spec.max_tokens, spec.overlap)
        self.para: list[str] = []  # the current paragraph while it fits in one chunk
        self.para_words = 0
        self.current: list[str] = []  # paragraphs packed into the next chunk
        self.size = 0

    def feed(self, piece: str) -> list[str]:
        self.pending.append(piece)
        self.pending_len += len(piece)
        if self.pending_len < len(self.tail):  # a very long word or space: join when it has doubled
            return []
        return self._split(final=False)

    def finish(self, last: str = "") -> list[str]:
        """The chunks that remain once ``last``, the end of the text, is added."""
        self.pending.append(last)
        out = self._split(final=True)
        if self.paragraphs:
            self._end_paragraph(out)
            self._flush(out)
        else:
            out += self.windows.finish()
        return out

    def _split(self, final: bool) -> list[str]:
        text = self.tail + "".join(self.pending)
        self.pending, self.pending_len = [], 0
        out: list[str] = []
        pos = 0
        if self.paragraphs:
            for m in _PARAGRAPH_BREAK.finditer(text):  # a break lies in one run of whitespace
                self._add(text[pos : m.start()], out)
                self._end_paragraph(out)
                pos = m.end()
        cut = len(text)
        if not final and text:
            if not text[-1].isspace():  # the last word may go on in the next piece
                cut -= len(text.rsplit(None, 1)[-1])
            elif self.paragraphs:  # a paragraph break may begin in this whitespace
                cut = len(text.rstrip())
            cut = max(cut, pos)
        self._add(text[pos:cut], out)
        self.tail = text[cut:]
        return out

    def _add(self, text: str, out: list[str]) -> None:
        """Text of the current paragraph (all of it, for ``tokens``), cut between words."""
        if not text:
            return
        windows = self.windows
        if windows is not None:
            out += windows.feed(text)
            return
        self.para.append(text)
        self.para_words += len(text.split())
        if self.para_words > self.spec.max_tokens:  # too long for one chunk: windowed on its own
            self._flush(out)
            self.windows = _Windows(self.spec.max_tokens, self.spec.overlap)
            out += self.windows.feed("".join(self.para))
            self.para, self.para_words = [], 0

    def _end_paragraph(self, out: list[str]) -> None:
        if self.windows is not None:
            out += self.windows.finish()
            self.windows = None
            return
        para, n = "".join(self.para).strip(), self.para_words
        self.para, self.para_words = [], 0
        if not para:
            return
        if self.current and self.size + n > self.spec.max_tokens:
            self._flush(out)
        self.current.append(para)
        self.size += n

    def _flush(self, out: list[str]) -> None:
        if self.current:
            out.append("\n\n".join(self.current))
            self.current, self.size = [], 0


def iter_chunks(pieces: Iterable[str], spec: ChunkSpec) -> Iterator[str]:
    """The chunks of the text that ``pieces`` make up when joined, as :func:`chunk_text` cuts it,
    produced while the pieces are read.  ``by = "none"`` joins them: its one chunk is the text."""
    if spec.by == "none":
        text = "".join(pieces)
        if text.strip():
            yield text
        return
    chunker = _Chunker(spec)
    for piece in pieces:
        yield from chunker.feed(piece)
    yield from chunker.finish()


def chunk_text(text: str, spec: ChunkSpec) -> list[str]:
    """Split ``text`` into chunks.  Tokens are whitespace-separated words (model independent).

    ``paragraph``: blank-line-separated paragraphs, stripped, packed while they fit in
    ``max_tokens`` and joined by a blank line; a longer paragraph is windowed on its own.
    ``tokens``: windows of ``max_tokens`` words sharing ``overlap``, original spacing kept.
    ``none``: the text, unless it is only whitespace."""
    if spec.by == "none":
        return [text] if text.strip() else []
    return _Chunker(spec).finish(text)


def content_id(*parts: bytes | str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    _hash_parts(digest, parts)
    return digest.hexdigest()


def _hash_parts(digest: Any, parts: Iterable[bytes | str]) -> None:
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
        digest.update(b"\x00")


class _ContentHash:
    """``content_id(kind, data, *after)`` with ``data`` fed in blocks, never held whole."""

    def __init__(self, kind: str):
        self._digest = hashlib.blake2b(digest_size=16)
        self._digest.update(kind.encode("utf-8") + b"\x00")

    def update(self, block: bytes) -> None:
        self._digest.update(block)

    def hexdigest(self, *after: str) -> str:
        digest = self._digest.copy()
        digest.update(b"\x00")
        _hash_parts(digest, after)
        return digest.hexdigest()


def _chunk_key(spec: ChunkSpec) -> str:
    return f"chunk={spec.by}/{spec.max_tokens}/{spec.overlap}"


def text_items(
    text: str, *, key: str, uri: str, spec: ChunkSpec, metadata: dict[str, Any], documents: Documents | None = None
) -> list[Item]:
    """Items for one text: a content hash ``key`` shared by its chunks, plus the chunk index."""
    if spec.by == "structure":  # paragraphs packed to the model's tokens
        budget, count, _ = (documents or Documents()).budget(spec)
        chunks = [c.text for c in pack(text_blocks([text]), budget, count, heading=False)]
    else:
        chunks = chunk_text(text, spec)
    return [
        Item(id=f"{key}:{i}", uri=uri, modality="text", chunk=i, text=chunk, metadata=metadata)
        for i, chunk in enumerate(chunks)
    ]


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class Unit:
    """One file or row: the items it produced, or the error that stopped it."""

    uri: str
    items: Iterable[Item] = ()  # a text file's: a TextFile, chunked as it is iterated
    error: ItemError | None = None
    origin: str | None = None  # for a row: the file it is in (its uri is ``origin:line``)
    line: int | None = None


class SeenUris:
    """The uris read in a run, compactly: files by name, rows of a JSONL/CSV file as one bit per
    line (a set of ``file:line`` strings would take ~130 bytes a row)."""

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._lines: dict[str, bytearray] = {}

    def add(self, uri: str, origin: str | None = None, line: int | None = None) -> None:
        if origin is None or line is None or uri != f"{origin}:{line}":
            self._files.add(uri)
            return
        bits = self._lines.setdefault(origin, bytearray())
        if line >> 3 >= len(bits):
            bits.extend(bytes((line >> 3) + 1 - len(bits)))
        bits[line >> 3] |= 1 << (line & 7)

    def __contains__(self, uri: object) -> bool:
        if not isinstance(uri, str):
            return False
        if uri in self._files:
            return True
        origin, sep, line = uri.rpartition(":")
        bits = self._lines.get(origin) if sep and line.isdigit() else None
        if bits is None:
            return False
        n = int(line)
        return n >> 3 < len(bits) and bool(bits[n >> 3] & 1 << (n & 7))


def printable(text: str) -> str:
    """``text`` as valid UTF-8: each byte of a file name that is not UTF-8 (which Python keeps as a
    lone surrogate) is written ``\\xNN``, as Python's ``backslashreplace`` does.  Text that is valid
    UTF-8, every ordinary file name included, comes back unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _display(path: Path, base: Path) -> str:
    try:
        shown = path.relative_to(base).as_posix()
    except ValueError:
        shown = str(path)
    return printable(shown)


#: Bytes read at a time to hash a file and to chunk its text: memory does not grow with the file.
READ_BLOCK = 1 << 18
#: ``chunk.by = "none"`` makes a text file one item holding the whole text; a larger file fails.
MAX_WHOLE_TEXT = 16 << 20


def _blocks(fh: Any, head: bytes, digest: _ContentHash) -> Iterator[bytes]:
    """The file's bytes from ``head`` (already read) on, in blocks, each fed to ``digest``."""
    block = head or fh.read(READ_BLOCK)
    while block:
        digest.update(block)
        yield block
        block = fh.read(READ_BLOCK)


def _decoder(encoding: str) -> codecs.IncrementalDecoder:
    b"".decode(encoding)  # LookupError, as for a whole file, for a codec that does not make text
    return codecs.getincrementaldecoder(encoding)()


def _decoded(blocks: Iterator[bytes], encoding: str, uri: str) -> Iterator[str]:
    """Text pieces of ``blocks``; a decoding error names its byte, counted from the file's start."""
    decoder = _decoder(encoding)
    offset = 0
    for block in itertools.chain(blocks, (b"",)):  # the empty block ends the text
        held = len(decoder.getstate()[0])  # bytes of a character cut by the last block
        try:
            piece = decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            raise ItemError(uri, "read", f"not valid {encoding} text (byte {offset - held + exc.start})") from None
        offset += len(block)
        if piece:
            yield piece


# ---------------------------------------------------------------------------------------------
# Documents: formats a reader plugin parses, and chunks along their structure
# ---------------------------------------------------------------------------------------------

_MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd", ".mdx")
_HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def sniff_format(head: bytes, name: str) -> str | None:
    """The document format of a file, from its first bytes and its name: ``pdf`` (its bytes),
    ``html`` (its name, or text that starts like HTML), ``markdown`` (its name); None for plain
    text and everything else."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    suffix = os.path.splitext(name)[1].lower()
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:64].lower()
    if suffix in _HTML_SUFFIXES or start.startswith((b"<!doctype html", b"<html")):
        return "html"
    if suffix in _MARKDOWN_SUFFIXES:
        return "markdown"
    return None


#: Formats that cannot be read as plain text: without a reader plugin their files fail.
PARSED_ONLY = ("pdf", "html")


@attrs.frozen
class Documents:
    """What a source needs from plugins to read documents; the pipeline fills it in.

    ``read(path, format, encoding)`` is the reader plugin's ``read_document`` hook, for the
    ``formats`` it declares; ``reader`` names it and its version (part of the chunks' ids, so a
    new parser re-chunks).  ``counter`` is the text model's tokenizer (``by = "structure"``)."""

    read: Callable[[str, str, str], Iterable[Block]] | None = None
    formats: tuple[str, ...] = ()
    reader: str = ""
    counter: TokenCounter | None = attrs.field(default=None, eq=False)

    def parses(self, fmt: str | None) -> bool:
        return fmt is not None and self.read is not None and fmt in self.formats

    def budget(self, chunk: ChunkSpec) -> tuple[int, Callable[[Sequence[str]], list[int]], str]:
        """Tokens per chunk, how they are counted, and the counter's identity (for ids)."""
        if self.counter is None:
            return chunk.max_tokens or 256, count_words, "words"
        limit = self.counter.limit
        budget = min(chunk.max_tokens, limit) if chunk.max_tokens else limit
        return budget, self.counter.count, self.counter.identity


def _document_key(chunk: ChunkSpec, documents: Documents, fmt: str | None) -> str:
    reader = f"/reader={documents.reader}" if documents.parses(fmt) else ""
    if chunk.by != "structure":
        return _chunk_key(chunk) + reader
    budget, _, counted = documents.budget(chunk)
    return f"chunk=structure/{budget}/{counted}/heading={int(chunk.heading)}{reader}"


class DocumentFile:
    """The items of a document (a reader plugin's format, or any text with ``by = "structure"``),
    made while the file is read: blocks from the reader plugin (or paragraphs of plain text),
    packed into chunks along their sections by :mod:`embedline.chunking`.

    Iterating yields :class:`Item` and, for a part without text (a scanned PDF page),
    :class:`ItemError` naming ``<uri>#page=N``; it raises :class:`ItemError` when the whole file
    cannot be read (encrypted, damaged), the items before standing."""

    def __init__(
        self, path: Path, spec: SourceSpec, fmt: str | None, documents: Documents, *, key: str, uri: str,
        metadata: dict[str, Any],
    ):
        self.path, self.spec, self.format, self.documents = path, spec, fmt, documents
        self.key, self.uri, self.metadata = key, uri, metadata

    def _blocks(self) -> Iterable[Block]:
        if self.documents.parses(self.format):
            assert self.documents.read is not None
            return self.documents.read(str(self.path), self.format or "", self.spec.encoding)
        if self.format in PARSED_ONLY:
            raise ItemError(
                self.uri, "read",
                f"a {self.format.upper()} file needs a reader plugin for {self.format!r} "
                f"(`pip install embedline-documents`, or set [source] reader)",
            )
        return text_blocks(self._text())

    def _text(self) -> Iterator[str]:
        with open(self.path, "rb") as fh:
            yield from _decoded(_blocks(fh, b"", _ContentHash("text")), self.spec.encoding, self.uri)

    def __iter__(self) -> Iterator[Item | ItemError]:
        missing: list[ItemError] = []

        def present(blocks: Iterable[Block]) -> Iterator[Block]:
            for block in blocks:
                if block.kind == "missing":
                    where = f"{self.uri}#page={block.page}" if block.page is not None else self.uri
                    missing.append(ItemError(where, "read", block.text or "no text"))
                else:
                    yield block

        produced = 0
        try:
            blocks = present(self._blocks())
            for text, extra in self._chunks(blocks):
                meta = {**self.metadata, **extra}
                yield Item(id=f"{self.key}:{produced}", uri=self.uri, modality="text", chunk=produced, text=text, metadata=meta)
                produced += 1
                while missing:
                    yield missing.pop(0)
        except ItemError:
            raise
        except (ValueError, OSError) as exc:  # encrypted, damaged, unreadable: the reader's reason
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ItemError(self.uri, "read", reason.splitlines()[0]) from None
        yield from missing
        if not produced and not missing:
            raise ItemError(self.uri, "read", "no text")

    def _chunks(self, blocks: Iterable[Block]) -> Iterator[tuple[str, dict[str, Any]]]:
        chunk = self.spec.chunk
        if chunk.by != "structure":  # the text of the blocks, chunked as plain text would be
            for text in iter_chunks((f"{b.text}\n\n" for b in blocks), chunk):
                yield text, {}
            return
        budget, count, _ = self.documents.budget(chunk)
        for piece in pack(blocks, budget, count, heading=chunk.heading):
            extra: dict[str, Any] = {}
            if piece.section:
                extra["section"] = piece.section_text
            if piece.page is not None:
                extra["page"] = piece.page
            yield piece.text, extra

    def __getitem__(self, index: int) -> Item | ItemError:
        return tuple(self)[index]

    def __repr__(self) -> str:
        return f"<DocumentFile {self.uri!r} {self.format or 'text'} {self.key}>"


def read_file(path: Path, spec: SourceSpec, documents: Documents | None = None) -> Unit:
    """One file into items: text is chunked as it is read; other media become one lazy item.

    The file is read in blocks of :data:`READ_BLOCK`: once to hash it (and to check that its text
    decodes), then, for a text file larger than one block, again when its items are iterated
    (:class:`TextFile`); a smaller one is chunked from the text already read."""
    uri = _display(path, spec.base_dir)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
            if not head:
                return Unit(uri, error=ItemError(uri, "read", "empty file"))
            documents = documents or Documents()
            fmt = sniff_format(head, path.name)
            modality = "text" if fmt == "pdf" else sniff_modality(head)
            metadata = {"path": _display(path, spec.path) if spec.path.is_dir() else printable(path.name)}
            if modality is None:
                return Unit(uri, error=ItemError(uri, "read", "binary content of an unknown type"))
            digest = _ContentHash(modality)
            if modality != "text":
                for _ in _blocks(fh, head, digest):
                    pass
                item = Item(id=f"{digest.hexdigest()}:0", uri=uri, modality=modality, path=str(path), metadata=metadata)
                return Unit(uri, items=(item,))
            if fmt in PARSED_ONLY or spec.chunk.by == "structure":
                if fmt in PARSED_ONLY:  # bytes the reader decodes itself
                    for _ in _blocks(fh, head, digest):
                        pass
                else:  # text: checked to decode, as below
                    words = False
                    for piece in _decoded(_blocks(fh, head, digest), spec.encoding, uri):
                        words = words or not piece.isspace()
                    if not words:
                        return Unit(uri, error=ItemError(uri, "read", "no text (only whitespace)"))
                key = digest.hexdigest(_document_key(spec.chunk, documents, fmt))
                return Unit(uri, items=DocumentFile(path, spec, fmt, documents, key=key, uri=uri, metadata=metadata))
            size = os.fstat(fh.fileno()).st_size
            if spec.chunk.by == "none" and size > MAX_WHOLE_TEXT:
                reason = (
                    f'{size} bytes of text: too large for chunk by = "none" (one item holds the whole text, '
                    f'at most {MAX_WHOLE_TEXT} bytes); use by = "paragraph" or "tokens"'
                )
                return Unit(uri, error=ItemError(uri, "read", reason))
            words = False
            kept: list[str] | None = [] if size <= READ_BLOCK else None  # a small file's text, chunked below
            for piece in _decoded(_blocks(fh, head, digest), spec.encoding, uri):
                words = words or not piece.isspace()
                if kept is not None:
                    kept.append(piece)
    except OSError as exc:
        return Unit(uri, error=ItemError(uri, "read", exc.strerror or str(exc)))
    except ItemError as exc:
        return Unit(uri, error=exc)
    except LookupError:
        return Unit(uri, error=ItemError(uri, "read", f"unknown encoding {spec.encoding!r}"))
    if not words:
        return Unit(uri, error=ItemError(uri, "read", "no text (only whitespace)"))
    key = digest.hexdigest(_chunk_key(spec.chunk))
    if kept is not None:  # read in one block: chunk the text in hand instead of reading the file again
        return Unit(uri, items=tuple(text_items("".join(kept), key=key, uri=uri, spec=spec.chunk, metadata=metadata)))
    return Unit(uri, items=TextFile(path, spec, key=key, uri=uri, metadata=metadata))


class TextFile:
    """The items of a text file, chunked while the file is read (again), so that iterating holds
    about one chunk, never the whole file.  Each iteration reads the file anew; indexing reads it
    into a tuple (for small files and tests).

    Iterating raises :class:`ItemError` when the file cannot be read any more, or when its bytes
    are not those hashed into ``key`` (it changed since :func:`read_file` read it): the items
    given before that carry ids of the older content, which a later run replaces.
    """

    def __init__(self, path: Path, spec: SourceSpec, *, key: str, uri: str, metadata: dict[str, Any]):
        self.path, self.spec, self.key, self.uri, self.metadata = path, spec, key, uri, metadata

    def __iter__(self) -> Iterator[Item]:
        digest = _ContentHash("text")
        try:
            with open(self.path, "rb") as fh:
                pieces = _decoded(_blocks(fh, b"", digest), self.spec.encoding, self.uri)
                for i, chunk in enumerate(iter_chunks(pieces, self.spec.chunk)):
                    yield Item(id=f"{self.key}:{i}", uri=self.uri, modality="text", chunk=i, text=chunk, metadata=self.metadata)
        except OSError as exc:
            raise ItemError(self.uri, "read", exc.strerror or str(exc)) from None
        if digest.hexdigest(_chunk_key(self.spec.chunk)) != self.key:
            raise ItemError(self.uri, "read", "the file changed while it was read; the next run stores what it holds then")

    def __getitem__(self, index: int) -> Item:
        return tuple(self)[index]

    def __repr__(self) -> str:
        return f"<TextFile {self.uri!r} {self.key}>"


def _row_unit(row: Any, uri: str, spec: SourceSpec, origin: str, line: int, documents: Documents | None = None) -> Unit:
    if not isinstance(row, dict):
        return Unit(uri, error=ItemError(uri, "read", f"expected an object, got {type(row).__name__}"))
    text = row.get(spec.text_field)
    if not isinstance(text, str) or not text.strip():
        what = "missing" if text is None else "empty" if isinstance(text, str) else f"not a string ({type(text).__name__})"
        return Unit(uri, error=ItemError(uri, "read", f"text field {spec.text_field!r} is {what}"))
    fields = spec.metadata_fields if spec.metadata_fields is not None else [k for k in row if k != spec.text_field]
    metadata = {k: row.get(k) for k in fields}
    canonical = json.dumps(metadata, sort_keys=True, ensure_ascii=False, default=str)
    key = content_id("text", text, canonical, _document_key(spec.chunk, documents or Documents(), None))
    items = text_items(text, key=key, uri=uri, spec=spec.chunk, metadata=metadata, documents=documents)
    return Unit(uri, items=tuple(items), origin=origin, line=line)


def read_jsonl(path: Path, spec: SourceSpec, documents: Documents | None = None) -> Iterator[Unit]:
    base = _display(path, spec.base_dir)
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            uri = f"{base}:{lineno}"
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode(spec.encoding))
            except UnicodeDecodeError as exc:
                yield Unit(uri, error=ItemError(uri, "read", f"not valid {spec.encoding} (byte {exc.start})"))
                continue
            except json.JSONDecodeError as exc:
                yield Unit(uri, error=ItemError(uri, "read", f"invalid JSON: {exc.msg} (column {exc.colno})"))
                continue
            yield _row_unit(row, uri, spec, base, lineno, documents)


def read_csv(path: Path, spec: SourceSpec, documents: Documents | None = None) -> Iterator[Unit]:
    base = _display(path, spec.base_dir)
    csv.field_size_limit(1 << 30)
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding=spec.encoding, errors="strict", newline="")
        reader = csv.DictReader(text)
        row_no = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                uri = f"{base}:{row_no + 1}"
                yield Unit(uri, error=ItemError(uri, "read", f"not valid {spec.encoding}; stopped reading ({exc.reason})"))
                return
            except csv.Error as exc:
                uri = f"{base}:{reader.line_num}"
                yield Unit(uri, error=ItemError(uri, "read", f"invalid CSV: {exc}"))
                return
            row_no += 1
            uri = f"{base}:{reader.line_num}"
            if reader.fieldnames and spec.text_field not in reader.fieldnames:
                yield Unit(base, error=ItemError(base, "read", f"no column {spec.text_field!r} (columns: {', '.join(reader.fieldnames)})"))
                return
            yield _row_unit(dict(row), uri, spec, base, reader.line_num, documents)


class Source:
    """The units of a ``[source]`` section, in a stable order."""

    def __init__(self, spec: SourceSpec, documents: Documents | None = None):
        self.spec = spec
        self.documents = documents or Documents()
        self.format = self._format()

    def _format(self) -> str:
        if self.spec.format != "auto":
            return self.spec.format
        suffix = self.spec.path.suffix.lower()
        if self.spec.path.is_file() and suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        if self.spec.path.is_file() and suffix == ".csv":
            return "csv"
        return "files"

    def files(self) -> list[Path]:
        """The files this source reads (a list of paths only: cheap even for 100k files)."""
        path = self.spec.path
        if not path.exists():
            raise ItemError(str(path), "read", "source path does not exist")
        if path.is_dir():
            return walk_files(path, self.spec.include, self.spec.exclude)
        return [path]

    def total(self) -> int | None:
        """Number of units if known up front (files), else None (rows)."""
        return len(self.files()) if self.format == "files" else None

    def __iter__(self) -> Iterator[Unit]:
        for path in self.files():
            if self.format == "files":
                yield read_file(path, self.spec, self.documents)
            elif self.format == "jsonl":
                yield from read_jsonl(path, self.spec, self.documents)
            else:
                yield from read_csv(path, self.spec, self.documents)
