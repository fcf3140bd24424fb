"""PDF into paragraph blocks, page by page, with pypdf.

Each page's text layer is extracted in reading order (the order of the content stream) and cut
into paragraphs where the gap between two lines is clearly wider than the page's line spacing
(or where the text starts again higher up: a new column).  Inside a paragraph, lines are joined
with a space, a word hyphenated across a line end is joined again (``exam-`` + ``ple``), runs of
whitespace are collapsed and ligature characters (``ﬁ``) are spelled out.  Every block carries its
page number; its ``section`` is the path of the PDF's outline (bookmarks) in force there, or ``()``
for a PDF without an outline.

A page without text (a scanned image, a blank page) is a ``missing`` block, so the core reports
it: nothing on it can be searched until it is run through OCR.  A page whose content cannot be
decoded is a ``missing`` block too, with the reason.  The whole file fails with a
:class:`ValueError` when it cannot be opened: encrypted with a password, not a PDF, truncated or
damaged beyond what pypdf repairs.

Memory stays about one page whatever the file's size: the file is read through an open handle
(``PdfReader(path)`` would copy all of it into memory first), and the objects pypdf parsed for a
page are dropped once its text is out (pypdf would otherwise keep every object it ever parsed).
"""

from __future__ import annotations

import os
import re
import statistics
from collections.abc import Iterator
from typing import IO, Any

from embedline.contracts import Block
from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError

#: The reason of a page that has no text layer.
NO_TEXT = "no text layer (a scanned page? run OCR first)"

#: A line gap this many times the page's usual line spacing starts a new paragraph.
PARAGRAPH_GAP = 1.3
#: Bytes at the end of the file searched for the ``%%EOF`` marker a complete PDF ends with.
_TAIL_BYTES = 2048
#: The longest reason quoted from pypdf (its messages may embed object dumps).
_MAX_REASON = 200

_LIGATURES = str.maketrans(
    {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"}
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u00ad]")
_SPACES = re.compile(r"\s+")
_HYPHENATED = re.compile(r"[^\W\d_]-$")


def read(path: str | os.PathLike[str]) -> Iterator[Block]:
    """The blocks of the PDF at ``path``, a page at a time.

    A generator: the file is opened when iteration starts, so a whole-file failure (encrypted,
    damaged) raises :class:`ValueError` from the first ``next()``.
    """
    with open(path, "rb") as fh:
        reader = _open(fh)
        outline = _outline(reader)
        yield from _pages(reader, outline)


def _open(fh: IO[bytes]) -> PdfReader:
    """A reader over ``fh`` that can read every page, or a ValueError saying why there is none."""
    try:
        reader = PdfReader(fh)
        readable = not reader.is_encrypted or reader.decrypt("") != PasswordType.NOT_DECRYPTED
    except DependencyError as exc:  # AES needs the `cryptography` package
        raise ValueError(f"encrypted PDF: {_reason(exc)}") from None
    except FileNotDecryptedError:
        readable = False
    except MemoryError:
        raise
    except Exception as exc:  # pypdf's parser raises more than its own error classes
        raise ValueError(_damaged(fh, exc)) from None
    if not readable:
        raise ValueError("encrypted PDF: a password is needed to read it")
    return reader


def _damaged(fh: IO[bytes], exc: BaseException) -> str:
    """The reason a file pypdf could not open is not a readable PDF, in one line."""
    try:
        fh.seek(0)
        head = fh.read(1024)
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - _TAIL_BYTES))
        tail = fh.read()
    except OSError:
        return f"not a PDF or damaged: {_reason(exc)}"
    if not head:
        return "not a PDF: the file is empty"
    if b"%PDF-" not in head:
        return "not a PDF: no %PDF- header at its start"
    if b"%%EOF" not in tail:
        return f"not a PDF or damaged: it ends without the %%EOF marker (truncated?): {_reason(exc)}"
    return f"not a PDF or damaged: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    """A library's error as one short line: its message, else its class name."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _pages(reader: PdfReader, outline: list[tuple[int, tuple[str, ...]]]) -> Iterator[Block]:
    """The blocks of every page in order."""
    try:
        count = len(reader.pages)
    except MemoryError:
        raise
    except Exception as exc:
        raise ValueError(f"not a PDF or damaged: its page tree cannot be read: {_reason(exc)}") from None
    sections = _Sections(outline)
    for index in range(count):
        yield from _page_blocks(reader, index, sections)


def _page_blocks(reader: PdfReader, index: int, sections: _Sections) -> list[Block]:
    """The blocks of one page; pypdf's parsed objects are dropped once its text is out."""
    number = index + 1
    try:
        lines = _page_lines(reader, index)
    except DependencyError as exc:
        if reader.is_encrypted:  # AES needs the `cryptography` package, for every page alike
            raise ValueError(f"encrypted PDF: {_reason(exc)}") from None
        # else a filter pypdf cannot decode without an extra package (Brotli, JBIG2)
        return [_missing(f"text could not be extracted: {_reason(exc)}", index, sections)]
    except FileNotDecryptedError:
        raise ValueError("encrypted PDF: a password is needed to read it") from None
    except _PageMissing as exc:
        raise ValueError(f"not a PDF or damaged: page {number} cannot be read: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # a broken content stream spoils this page only
        return [_missing(f"text could not be extracted: {_reason(exc)}", index, sections)]
    finally:
        # pypdf keeps every object it ever parsed; the page tree re-reads what it needs later.
        reader.resolved_objects.clear()
    paragraphs = _paragraphs(lines)
    if not paragraphs:
        return [_missing(NO_TEXT, index, sections)]
    return [Block(text, "paragraph", section, page=number) for section, text in sections.assign(index, paragraphs)]


def _missing(reason: str, index: int, sections: _Sections) -> Block:
    """The block of a page without text: the core reports ``reason`` against the page."""
    sections.start_page(index, [])
    return Block(reason, "missing", sections.end_page(), page=index + 1)


class _PageMissing(Exception):
    """The page object itself (not its content) cannot be loaded: the file's structure is broken."""


class _Line:
    """One line of a page's extracted text, with its baseline height and font size when known."""

    __slots__ = ("text", "y", "size")

    def __init__(self) -> None:
        self.text = ""
        self.y: float | None = None
        self.size = 0.0


def _page_lines(reader: PdfReader, index: int) -> list[_Line]:
    """The lines of page ``index`` as pypdf extracts them, each with where it sits on the page.

    The positions come from pypdf's ``visitor_text`` callback, whose pieces add up to the
    extracted text; should they ever not, the lines keep no position (blank lines then are the
    only paragraph breaks).
    """
    try:
        page = reader.pages[index]
    except (MemoryError, DependencyError, FileNotDecryptedError):
        raise
    except Exception as exc:
        raise _PageMissing(_reason(exc)) from None
    lines = [_Line()]

    def visit(text: Any, cm: Any, tm: Any, font: Any, size: Any) -> None:
        if not isinstance(text, str) or not text:
            return
        pieces = text.split("\n")
        for n, piece in enumerate(pieces):
            if n:
                lines.append(_Line())
            line = lines[-1]
            if piece.strip() and line.y is None:
                line.y, line.size = _position(cm, tm, size)
            line.text += piece

    text = page.extract_text(visitor_text=visit)
    if "\n".join(line.text for line in lines) != text:
        plain = []
        for row in text.split("\n"):
            line = _Line()
            line.text = row
            plain.append(line)
        return plain
    return lines


def _position(cm: Any, tm: Any, size: Any) -> tuple[float | None, float]:
    """The baseline height and the rendered font size of text drawn with these matrices."""
    try:
        c = tm[2] * cm[0] + tm[3] * cm[2]
        d = tm[2] * cm[1] + tm[3] * cm[3]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        scale = (c * c + d * d) ** 0.5
        return float(y), float(size or 0) * scale
    except (TypeError, IndexError, ValueError):
        return None, 0.0


def _paragraphs(lines: list[_Line]) -> list[str]:
    """The page's lines grouped into paragraphs, each cleaned into one line of text."""
    spacing = _line_spacing(lines)
    groups: list[list[str]] = []
    current: list[str] = []
    previous: _Line | None = None
    for line in lines:
        text = _clean(line.text)
        if not text:
            if current:  # a blank line is a paragraph break
                groups.append(current)
                current, previous = [], None
            continue
        if current and previous is not None and _breaks(previous, line, spacing):
            groups.append(current)
            current = []
        current.append(text)
        previous = line
    if current:
        groups.append(current)
    return [_join(group) for group in groups]


def _line_spacing(lines: list[_Line]) -> float | None:
    """The page's usual distance between two lines of one paragraph (the median step down).

    Steps over 2.5 font sizes are gaps between paragraphs, not line spacing, and are left out;
    without any, single-spaced text (1.2 font sizes) is assumed.
    """
    steps, sizes = [], []
    for above, below in zip(lines, lines[1:]):
        if above.y is None or below.y is None or not above.text.strip() or not below.text.strip():
            continue
        step = above.y - below.y
        size = max(above.size, below.size)
        sizes.append(size)
        if 0 < step <= 2.5 * size:
            steps.append(step)
    if steps:
        return statistics.median(steps)
    if sizes and max(sizes) > 0:
        return 1.2 * statistics.median(sizes)
    return None


def _breaks(above: _Line, below: _Line, spacing: float | None) -> bool:
    """Whether ``below`` starts a new paragraph: a wide gap, a jump up, or a new font size."""
    if spacing is None or above.y is None or below.y is None:
        return False
    step = above.y - below.y
    if step < -0.5 * spacing or step > PARAGRAPH_GAP * spacing:
        return True
    small, large = sorted((above.size, below.size))
    return small > 0 and large > 1.25 * small


def _clean(text: str) -> str:
    """A line without control characters, ligatures spelled out, whitespace collapsed."""
    return _SPACES.sub(" ", _CONTROL.sub("", text.translate(_LIGATURES))).strip()


def _join(lines: list[str]) -> str:
    """Lines of one paragraph as one text; a word hyphenated at a line end is joined again."""
    text = lines[0]
    for line in lines[1:]:
        if _HYPHENATED.search(text) and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}"
    return text


class _Sections:
    """The outline's heading path for each paragraph, page by page.

    An outline entry points at a page; the paragraphs of that page switch to the entry's path at
    the paragraph that starts with its title, or from the top of the page when its title is not
    found there (a heading drawn as an image, a title worded otherwise).
    """

    def __init__(self, outline: list[tuple[int, tuple[str, ...]]]) -> None:
        self._entries = sorted(outline, key=lambda entry: entry[0])  # stable: outline order kept
        self._next = 0
        self._current: tuple[str, ...] = ()
        self._pending: list[tuple[str, ...]] = []

    def start_page(self, index: int, paragraphs: list[str]) -> None:
        """Take the entries that point at or before page ``index``; apply those not found on it."""
        self._pending = []
        while self._next < len(self._entries) and self._entries[self._next][0] <= index:
            page, path = self._entries[self._next]
            self._next += 1
            if page < index:
                self._current = path
            else:
                self._pending.append(path)
        if self._pending and not _find(self._pending[0][-1], paragraphs):
            self._current = self._pending.pop(0)

    def end_page(self) -> tuple[str, ...]:
        """The path at the end of the page: that of its last entry."""
        if self._pending:
            self._current = self._pending[-1]
            self._pending = []
        return self._current

    def assign(self, index: int, paragraphs: list[str]) -> Iterator[tuple[tuple[str, ...], str]]:
        """Each paragraph of page ``index`` with its heading path."""
        self.start_page(index, paragraphs)
        for text in paragraphs:
            for n, path in enumerate(self._pending):
                if _find(path[-1], [text]):
                    self._current = path
                    del self._pending[: n + 1]
                    break
            yield self._current, text
        self.end_page()


def _find(title: str, paragraphs: list[str]) -> bool:
    """Whether a paragraph starts with the title (give or take a number before it)."""
    wanted = " ".join(title.split()).casefold()
    if not wanted:
        return False
    return any(wanted in text[: len(wanted) + 12].casefold() for text in paragraphs)


def _outline(reader: PdfReader) -> list[tuple[int, tuple[str, ...]]]:
    """The outline's entries as (page index, heading path), in outline order.

    The outline is optional decoration: an unreadable one gives no sections, never an error.
    """
    entries: list[tuple[int, tuple[str, ...]]] = []
    try:
        _walk_outline(reader, reader.outline, (), entries)
    except MemoryError:
        raise
    except Exception:
        return []
    return entries


def _walk_outline(reader: PdfReader, items: Any, parent: tuple[str, ...], entries: list) -> None:
    """Append the entries of one outline level and, depth first, of the levels below them."""
    path = parent
    for item in items:
        if isinstance(item, list):  # the children of the entry just before
            _walk_outline(reader, item, path, entries)
            continue
        title = " ".join(str(getattr(item, "title", "") or "").split())
        path = (*parent, title) if title else parent
        page = reader.get_destination_page_number(item)
        if title and page is not None and page >= 0:
            entries.append((page, path))
