"""The documents plugin inside a real run: markdown, HTML and PDF files of one folder, found
through the plugin's entry point, chunked along their structure and stored; the bad ones fail
alone with their reason, a page without text is reported by its page."""

from __future__ import annotations

from pathlib import Path

import pytest
from embedline.pipeline import Pipeline
from embedline.testing import FakeTextModel, fresh_plugin_manager

fpdf = pytest.importorskip("fpdf", reason="fpdf2 writes the test PDFs (requirements-dev.txt)")
from fpdf import FPDF  # noqa: E402

HTML = """<!doctype html><html><head><title>Garden notes</title><script>var tracking = 1;</script></head>
<body><nav><a href="/">Home</a> <a href="/shop">Shop our store</a></nav>
<main><h1>Garden notes</h1><h2>Tomatoes</h2><p>Tomatoes need full sun and deep watering.</p></main>
<footer>Copyright the garden company</footer></body></html>"""


def _pdf(path: Path, pages: list[str | None], password: str | None = None) -> Path:
    doc = FPDF()
    doc.set_font("Helvetica", size=11)
    for text in pages:
        doc.add_page()
        if text is None:
            doc.rect(20, 20, 100, 60, style="F")  # a drawing and no text: a scan, to a text layer
        else:
            doc.multi_cell(0, 5.5, text)
    if password:
        doc.set_encryption(owner_password="owner", user_password=password)
    doc.output(str(path))
    return path


def test_a_folder_of_markdown_html_and_pdf(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\n## Install\n\nRun pip install.\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n")
    (docs / "garden.html").write_text(HTML)
    _pdf(docs / "report.pdf", ["Roses bloom in June.", None, "Lilies bloom in July."])
    _pdf(docs / "locked.pdf", ["A secret."], password="secret")
    (docs / "broken.pdf").write_bytes((docs / "report.pdf").read_bytes()[:400])
    config = {
        "source": {"path": str(docs), "chunk": {"by": "structure", "max_tokens": 60}},
        "model": {"plugin": "fake"},
        "store": {"plugin": "memory", "collection": "docs", "path": str(tmp_path / "store.npz")},
    }
    pm = fresh_plugin_manager(FakeTextModel())  # the documents plugin comes from its entry point
    with Pipeline.from_dict(config, pm=pm) as pipeline:
        summary = pipeline.run()
        hits = pipeline.search("bloom", k=50)
    failed = {Path(f.uri).name: f.reason for f in summary.failed}
    assert failed.pop("report.pdf#page=2") == "no text layer (a scanned page? run OCR first)"
    assert failed.pop("locked.pdf") == "encrypted PDF: a password is needed to read it"
    assert failed.pop("broken.pdf").startswith("not a PDF or damaged")
    assert not failed
    by_file = {}
    for hit in hits:
        by_file.setdefault(Path(hit.uri).name, []).append(hit)
    assert sorted(by_file) == ["garden.html", "guide.md", "report.pdf"]
    assert [(h.metadata["page"], h.text) for h in sorted(by_file["report.pdf"], key=lambda h: h.chunk)] == [
        (1, "Roses bloom in June."),
        (3, "Lilies bloom in July."),
    ]
    (garden,) = by_file["garden.html"]
    assert garden.metadata["section"] == "Garden notes > Tomatoes"
    assert garden.text == "Garden notes > Tomatoes\n\nTomatoes need full sun and deep watering."
    (guide,) = by_file["guide.md"]
    assert guide.text == "Guide > Install\n\nRun pip install.\n\n| a | b |\n| --- | --- |\n| 1 | 2 |"

    with Pipeline.from_dict(config, pm=fresh_plugin_manager(FakeTextModel())) as pipeline:  # a re-run
        again = pipeline.run()
    assert again.embedded == 0 and again.skipped == summary.embedded
