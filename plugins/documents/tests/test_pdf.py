"""The PDF reader on real files written by fpdf2: paragraphs by page, outline sections, pages
without text, encryption, damaged files, and memory that stays flat on a large file."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import embedline_documents
import pytest
from embedline.contracts import Block
from embedline_documents import pdf

fpdf = pytest.importorskip("fpdf", reason="fpdf2 writes the test PDFs (requirements-dev.txt)")
from fpdf import FPDF  # noqa: E402

LOREM = (
    "Structured chunking keeps every paragraph whole when it fits, so that a search result reads "
    "like the page it came from and never starts in the middle of a sentence."
)


def _new_pdf() -> FPDF:
    doc = FPDF()
    doc.set_font("Helvetica", size=11)
    doc.set_auto_page_break(False)
    return doc


def _paragraph(doc: FPDF, text: str) -> None:
    """A paragraph as a word processor sets it: wrapped lines, then a blank line's gap."""
    doc.multi_cell(0, 5.5, text, new_x="LMARGIN", new_y="NEXT")
    doc.ln(5.5)


def _heading(doc: FPDF, text: str, level: int = 0) -> None:
    """A heading in a larger font that is also an outline (bookmark) entry."""
    doc.start_section(text, level=level)
    doc.set_font("Helvetica", "B", size=16)
    doc.cell(0, 10, text, new_x="LMARGIN", new_y="NEXT")
    doc.set_font("Helvetica", size=11)
    doc.ln(3)


def _write(doc: FPDF, path: Path) -> Path:
    doc.output(str(path))
    return path


def _three_pages(path: Path) -> Path:
    doc = _new_pdf()
    for number in (1, 2, 3):
        doc.add_page()
        _paragraph(doc, f"Page {number} opens here. {LOREM}")
        _paragraph(doc, f"Second paragraph of page {number}. {LOREM} {LOREM}")
    return _write(doc, path)


def test_paragraphs_page_by_page(tmp_path):
    blocks = list(pdf.read(_three_pages(tmp_path / "three.pdf")))

    assert [(b.kind, b.page, b.section) for b in blocks] == [
        ("paragraph", page, ()) for page in (1, 1, 2, 2, 3, 3)
    ]
    assert blocks[0].text == f"Page 1 opens here. {LOREM}"
    assert blocks[3].text == f"Second paragraph of page 2. {LOREM} {LOREM}"  # wrapped lines joined
    assert all(b.header == b.footer == "" for b in blocks)


def test_read_document_hook_dispatches_to_the_pdf_reader(tmp_path):
    path = _three_pages(tmp_path / "three.pdf")

    through_hook = list(embedline_documents.read_document(path=str(path), format="pdf", encoding="utf-8"))

    assert through_hook == list(pdf.read(str(path)))
    assert len(through_hook) == 6


def test_whitespace_collapsed_and_line_end_hyphens_joined(tmp_path):
    doc = _new_pdf()
    doc.add_page()
    _paragraph(doc, "Words   with    runs of   spaces between them.")
    _paragraph(
        doc,
        "The reader joins a word that was hyphen-\nated at the end of a line, keeps a well-known\n"
        "hyphen, and joins\nlines with a space.",
    )
    path = _write(doc, tmp_path / "spaces.pdf")

    texts = [b.text for b in pdf.read(path)]

    assert texts == [
        "Words with runs of spaces between them.",
        "The reader joins a word that was hyphenated at the end of a line, keeps a well-known hyphen, "
        "and joins lines with a space.",
    ]


def test_outline_entries_are_the_sections_of_their_pages(tmp_path):
    doc = _new_pdf()
    doc.add_page()
    _heading(doc, "Introduction")
    _paragraph(doc, "Why chunks should follow the structure of the document.")
    doc.add_page()
    _paragraph(doc, "The introduction goes on over a second page.")
    doc.add_page()
    _heading(doc, "Usage")
    _paragraph(doc, "Usage starts with a few words of its own.")
    _heading(doc, "Options", level=1)
    _paragraph(doc, "Every option of the reader, one by one.")
    path = _write(doc, tmp_path / "outline.pdf")

    blocks = list(pdf.read(path))

    assert [(b.page, b.section, b.text) for b in blocks] == [
        (1, ("Introduction",), "Introduction"),
        (1, ("Introduction",), "Why chunks should follow the structure of the document."),
        (2, ("Introduction",), "The introduction goes on over a second page."),
        (3, ("Usage",), "Usage"),
        (3, ("Usage",), "Usage starts with a few words of its own."),
        (3, ("Usage", "Options"), "Options"),
        (3, ("Usage", "Options"), "Every option of the reader, one by one."),
    ]


def test_outline_entry_whose_title_is_not_on_its_page_covers_the_whole_page(tmp_path):
    doc = _new_pdf()
    doc.add_page()
    _paragraph(doc, "Main text.")
    doc.add_page()
    doc.start_section("Appendix")  # a bookmark, but the page prints no such heading
    _paragraph(doc, "Tables of figures.")
    _paragraph(doc, "More figures.")
    path = _write(doc, tmp_path / "appendix.pdf")

    assert [(b.page, b.section) for b in pdf.read(path)] == [(1, ()), (2, ("Appendix",)), (2, ("Appendix",))]


def test_page_without_text_layer_is_a_missing_block(tmp_path):
    doc = _new_pdf()
    doc.add_page()
    _paragraph(doc, "A page with text.")
    doc.add_page()
    doc.rect(20, 20, 100, 60, style="F")  # drawn, no text: what a scan looks like to a text layer
    doc.add_page()
    _paragraph(doc, "Text again on the third page.")
    path = _write(doc, tmp_path / "scan.pdf")

    blocks = list(pdf.read(path))

    assert blocks == [
        Block("A page with text.", "paragraph", (), page=1),
        Block("no text layer (a scanned page? run OCR first)", "missing", (), page=2),
        Block("Text again on the third page.", "paragraph", (), page=3),
    ]


def test_pdf_of_images_only_is_all_missing_blocks(tmp_path):
    from PIL import Image

    doc = _new_pdf()
    for shade in (40, 200):
        doc.add_page()
        image = io.BytesIO()
        Image.new("L", (64, 64), shade).save(image, "PNG")
        doc.image(image, x=20, y=20, w=100)
    path = _write(doc, tmp_path / "images.pdf")

    blocks = list(pdf.read(path))

    assert [(b.kind, b.page, b.text) for b in blocks] == [("missing", 1, pdf.NO_TEXT), ("missing", 2, pdf.NO_TEXT)]


def _encrypted(path: Path, user_password: str | None, method: str = "RC4") -> Path:
    from fpdf.enums import EncryptionMethod

    doc = _new_pdf()
    doc.add_page()
    _paragraph(doc, "Confidential but readable by anyone when the user password is empty.")
    doc.set_encryption(owner_password="owner", user_password=user_password, encryption_method=EncryptionMethod[method])
    return _write(doc, path)


def test_encrypted_with_a_password_fails_naming_encryption(tmp_path):
    path = _encrypted(tmp_path / "locked.pdf", user_password="secret")

    blocks = pdf.read(path)  # lazy: nothing is opened before iteration

    with pytest.raises(ValueError) as caught:
        list(blocks)
    assert str(caught.value) == "encrypted PDF: a password is needed to read it"


def test_encrypted_with_empty_user_password_reads(tmp_path):
    path = _encrypted(tmp_path / "owner-only.pdf", user_password=None)

    assert [b.text for b in pdf.read(path)] == ["Confidential but readable by anyone when the user password is empty."]


def test_aes_encrypted_with_empty_user_password_reads(tmp_path):
    pytest.importorskip("cryptography", reason="AES encryption needs the cryptography package")
    path = _encrypted(tmp_path / "aes.pdf", user_password=None, method="AES_256")

    assert [b.text for b in pdf.read(path)] == ["Confidential but readable by anyone when the user password is empty."]


def _one_line_error(path: Path) -> str:
    with pytest.raises(ValueError) as caught:
        list(pdf.read(path))
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300
    return message


def test_truncated_pdf_fails_with_one_line_reason(tmp_path):
    good = _three_pages(tmp_path / "good.pdf").read_bytes()
    path = tmp_path / "half.pdf"
    path.write_bytes(good[: len(good) // 2])

    message = _one_line_error(path)

    assert message.startswith("not a PDF or damaged: it ends without the %%EOF marker (truncated?)")


def test_garbage_after_pdf_header_fails_with_one_line_reason(tmp_path):
    path = tmp_path / "garbage.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 64 + b"\n%%EOF\n")

    message = _one_line_error(path)

    assert message.startswith("not a PDF or damaged: ")
    assert "%%EOF" not in message  # the marker is there: the reason is pypdf's


def test_not_a_pdf_at_all(tmp_path):
    path = tmp_path / "notes.pdf"
    path.write_text("just some notes, saved with the wrong extension\n")

    assert _one_line_error(path) == "not a PDF: no %PDF- header at its start"


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        list(pdf.read(tmp_path / "absent.pdf"))


PAGES = 300

_MEASURE = textwrap.dedent(
    """
    import resource, sys
    from embedline_documents import pdf

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    before = peak()
    pages = set()
    kinds = set()
    for block in pdf.read(sys.argv[1]):
        pages.add(block.page)
        kinds.add(block.kind)
    print(len(pages), max(pages), ",".join(sorted(kinds)), peak() - before)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_memory_stays_flat_on_a_large_pdf(tmp_path):
    """A 20+ MB PDF (a page of text and an incompressible image on each of 300 pages) is read
    with a peak memory growth far below its size: pages are parsed one at a time and dropped."""
    from PIL import Image

    doc = _new_pdf()
    noise = os.urandom(384 * 256)
    for number in range(1, PAGES + 1):
        doc.add_page()
        _paragraph(doc, f"Page {number} of the large document. {LOREM}")
        image = io.BytesIO()
        # A different image on each page (fpdf2 stores identical images once).
        Image.frombytes("L", (384, 256), noise[number:] + noise[:number]).save(image, "JPEG", quality=90)
        doc.image(image, x=20, y=60, w=120)
    path = _write(doc, tmp_path / "large.pdf")
    size = path.stat().st_size
    assert size > 20 << 20

    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=120, check=True
    )

    count, last, kinds, growth = result.stdout.split()
    assert (int(count), int(last), kinds) == (PAGES, PAGES, "paragraph")
    assert int(growth) < size / 4, f"peak memory grew by {int(growth) >> 20} MiB reading {size >> 20} MiB"
