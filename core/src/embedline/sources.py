"""Sources: where items come from.

A source yields *units* (one file, or one JSONL/CSV row) in a stable order; each unit becomes one or
more :class:`~embedline.contracts.Item` (text chunks) or an :class:`~embedline.errors.ItemError`
saying why it could not be read.  Nothing is embedded here and nothing heavy is imported.

Item ids are content hashes: ``<32 hex>:<chunk>``, from the unit's bytes (plus the chunking
settings for text), so unchanged input always gives the same ids and identical content is stored once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from embedline.config import ChunkSpec, SourceSpec
from embedline.contracts import Item
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
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        rel_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel_folder == "." else rel_folder + "/"
        # "\0" cannot occur in a file name: if a pattern matches it, it matches everything below.
        dirs[:] = sorted(d for d in dirs if not any(r.match(f"{prefix}{d}/\0") for r in exc))
        for name in sorted(files):
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if any(r.match(rel) for r in inc) and not any(r.match(rel) for r in exc):
                found.append(path)
    return found


# ---------------------------------------------------------------------------------------------
# Chunking
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"\S+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


def _windows(text: str, max_tokens: int, overlap: int) -> list[str]:
    """Windows of ``max_tokens`` whitespace tokens, ``overlap`` shared, original spacing kept."""
    spans = [m.span() for m in _WORD.finditer(text)]
    if not spans:
        return []
    step = max_tokens - overlap
    out = []
    for start in range(0, len(spans), step):
        window = spans[start : start + max_tokens]
        out.append(text[window[0][0] : window[-1][1]])
        if start + max_tokens >= len(spans):
            break
    return out


def chunk_text(text: str, spec: ChunkSpec) -> list[str]:
    """Split ``text`` into chunks.  Tokens are whitespace-separated words (model independent)."""
    if spec.by == "none":
        return [text] if text.strip() else []
    if spec.by == "tokens":
        return _windows(text, spec.max_tokens, spec.overlap)
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for para in _PARAGRAPH_BREAK.split(text):
        para = para.strip()
        if not para:
            continue
        n = len(_WORD.findall(para))
        if n > spec.max_tokens:  # a paragraph too long for one chunk is windowed on its own
            if current:
                chunks.append("\n\n".join(current))
                current, size = [], 0
            chunks.extend(_windows(para, spec.max_tokens, spec.overlap))
            continue
        if current and size + n > spec.max_tokens:
            chunks.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += n
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def content_id(*parts: bytes | str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


def _chunk_key(spec: ChunkSpec) -> str:
    return f"chunk={spec.by}/{spec.max_tokens}/{spec.overlap}"


def text_items(
    text: str, *, key: str, uri: str, spec: ChunkSpec, metadata: dict[str, Any]
) -> list[Item]:
    """Items for one text: a content hash ``key`` shared by its chunks, plus the chunk index."""
    return [
        Item(id=f"{key}:{i}", uri=uri, modality="text", chunk=i, text=chunk, metadata=metadata)
        for i, chunk in enumerate(chunk_text(text, spec))
    ]


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class Unit:
    """One file or row: the items it produced, or the error that stopped it."""

    uri: str
    items: tuple[Item, ...] = ()
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


def _display(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def read_file(path: Path, spec: SourceSpec) -> Unit:
    """One file into items: text is decoded and chunked; other media become one lazy item."""
    uri = _display(path, spec.base_dir)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Unit(uri, error=ItemError(uri, "read", exc.strerror or str(exc)))
    if not data:
        return Unit(uri, error=ItemError(uri, "read", "empty file"))
    modality = sniff_modality(data[:4096])
    metadata = {"path": _display(path, spec.path) if spec.path.is_dir() else path.name}
    if modality is None:
        return Unit(uri, error=ItemError(uri, "read", "binary content of an unknown type"))
    if modality != "text":
        item = Item(id=f"{content_id(modality, data)}:0", uri=uri, modality=modality, path=str(path), metadata=metadata)
        return Unit(uri, items=(item,))
    try:
        text = data.decode(spec.encoding)
    except UnicodeDecodeError as exc:
        return Unit(uri, error=ItemError(uri, "read", f"not valid {spec.encoding} text (byte {exc.start})"))
    except LookupError:
        return Unit(uri, error=ItemError(uri, "read", f"unknown encoding {spec.encoding!r}"))
    items = text_items(text, key=content_id("text", data, _chunk_key(spec.chunk)), uri=uri, spec=spec.chunk, metadata=metadata)
    if not items:
        return Unit(uri, error=ItemError(uri, "read", "no text (only whitespace)"))
    return Unit(uri, items=tuple(items))


def _row_unit(row: Any, uri: str, spec: SourceSpec, origin: str, line: int) -> Unit:
    if not isinstance(row, dict):
        return Unit(uri, error=ItemError(uri, "read", f"expected an object, got {type(row).__name__}"))
    text = row.get(spec.text_field)
    if not isinstance(text, str) or not text.strip():
        what = "missing" if text is None else "empty" if isinstance(text, str) else f"not a string ({type(text).__name__})"
        return Unit(uri, error=ItemError(uri, "read", f"text field {spec.text_field!r} is {what}"))
    fields = spec.metadata_fields if spec.metadata_fields is not None else [k for k in row if k != spec.text_field]
    metadata = {k: row.get(k) for k in fields}
    canonical = json.dumps(metadata, sort_keys=True, ensure_ascii=False, default=str)
    key = content_id("text", text, canonical, _chunk_key(spec.chunk))
    items = text_items(text, key=key, uri=uri, spec=spec.chunk, metadata=metadata)
    return Unit(uri, items=tuple(items), origin=origin, line=line)


def read_jsonl(path: Path, spec: SourceSpec) -> Iterator[Unit]:
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
            yield _row_unit(row, uri, spec, base, lineno)


def read_csv(path: Path, spec: SourceSpec) -> Iterator[Unit]:
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
            yield _row_unit(dict(row), uri, spec, base, reader.line_num)


class Source:
    """The units of a ``[source]`` section, in a stable order."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec
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
                yield read_file(path, self.spec)
            elif self.format == "jsonl":
                yield from read_jsonl(path, self.spec)
            else:
                yield from read_csv(path, self.spec)
