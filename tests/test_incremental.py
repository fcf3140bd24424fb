"""Re-runs: what is stored is not embedded or even loaded again; changed files replace their rows;
--prune removes rows whose source is gone; failures go to a report; an interrupt keeps what was done."""

import json

import pytest

from embedline import hookimpl
from embedline.pipeline import Pipeline
from embedline.testing import FakeTextModel, fresh_plugin_manager, memory_store


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("alpha one\n\nalpha two\n\nalpha three")
    (folder / "b.md").write_text("beta one\n\nbeta two")
    (folder / "c.md").write_text("gamma")
    (tmp_path / "weights").mkdir()  # a model folder: its stamp lets a re-run skip loading the model
    (tmp_path / "weights" / "w.bin").write_bytes(b"\0" * 16)
    return folder


def config(tmp_path, **pipeline):
    return {
        "pipeline": pipeline,
        "source": {"path": "docs", "chunk": {"by": "paragraph", "max_tokens": 2}},
        "model": {"plugin": "fake", "name": "weights", "batch_size": 2},
        "store": memory_store(tmp_path),
    }


def run(tmp_path, pm, **kw):
    prune = kw.pop("prune", False)
    with Pipeline.from_dict(config(tmp_path, **kw), base_dir=tmp_path, pm=pm) as p:
        summary = p.run(prune=prune)
        rows = sorted(p.store.scan("test"))
    return summary, rows


def test_unchanged_rerun_loads_no_model(tmp_path, corpus, pm, fake_model):
    first, rows = run(tmp_path, pm)
    assert (first.embedded, fake_model.loads) == (6, 1)
    again, rows_again = run(tmp_path, pm)
    assert (again.embedded, again.skipped, fake_model.loads) == (0, 6, 1)
    assert rows_again == rows
    (corpus / "d.md").write_text("delta")  # something new: the model loads and is checked
    third, _ = run(tmp_path, pm)
    assert (third.embedded, third.skipped, fake_model.loads) == (1, 6, 2)


def test_changed_weights_are_not_trusted_without_loading(tmp_path, corpus, pm, fake_model):
    run(tmp_path, pm)
    (tmp_path / "weights" / "w.bin").write_bytes(b"\1" * 32)  # new stamp: the model must be loaded
    again, _ = run(tmp_path, pm)
    assert again.embedded == 0 and fake_model.loads == 2


def test_a_changed_file_replaces_its_rows(tmp_path, corpus, pm):
    _, before = run(tmp_path, pm)
    (corpus / "a.md").write_text("alpha one\n\nalpha changed")
    summary, after = run(tmp_path, pm)
    assert (summary.embedded, summary.removed) == (2, 3)
    assert [uri for _, uri in after].count("docs/a.md") == 2
    assert len(after) == 5


def test_prune_removes_rows_whose_source_is_gone(tmp_path, corpus, pm):
    run(tmp_path, pm)
    (corpus / "b.md").unlink()
    kept, rows = run(tmp_path, pm)
    assert kept.removed == 0 and "docs/b.md" in {uri for _, uri in rows}
    pruned, rows = run(tmp_path, pm, prune=True)
    assert pruned.removed == 2 and "docs/b.md" not in {uri for _, uri in rows}
    assert len(rows) == 4


def test_prune_keeps_rows_of_files_that_failed_to_read(tmp_path, corpus, pm):
    run(tmp_path, pm)
    (corpus / "c.md").write_bytes(b"\xff\xfe\xfa broken")
    summary, rows = run(tmp_path, pm, prune=True)
    assert [e.uri for e in summary.failed] == ["docs/c.md"]
    assert "docs/c.md" in {uri for _, uri in rows}  # its old rows stay until it reads again


def test_failures_go_to_a_report_that_the_next_clean_run_removes(tmp_path, corpus, pm):
    (corpus / "bad.md").write_bytes(b"")
    summary, _ = run(tmp_path, pm, failures="embedline.failures.jsonl")  # a dict pipeline: only when named
    report = tmp_path / "embedline.failures.jsonl"
    assert summary.report == str(report)
    assert [json.loads(line) for line in report.read_text().splitlines()] == [
        {"uri": "docs/bad.md", "stage": "read", "reason": "empty file"}
    ]
    assert f"failures written to {report}" in summary.format()
    (corpus / "bad.md").unlink()
    clean, _ = run(tmp_path, pm, failures="embedline.failures.jsonl")
    assert clean.report is None and not report.exists()


class InterruptingModel(FakeTextModel):
    """Raises KeyboardInterrupt (as Ctrl-C would) on its third embed call."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    @hookimpl
    def embed(self, model, inputs, mode):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return super().embed(model, inputs, mode)


def test_interrupt_keeps_what_was_embedded_and_a_rerun_completes(tmp_path, corpus):
    model = InterruptingModel()
    pm = fresh_plugin_manager(model)
    stopped, rows = run(tmp_path, pm)
    assert stopped.interrupted and stopped.embedded == 4 and len(rows) == 4
    assert "interrupted" in stopped.format()
    finished, rows = run(tmp_path, pm)
    assert not finished.interrupted and (finished.embedded, finished.skipped) == (2, 4)
    assert len(rows) == 6 and len({row_id for row_id, _ in rows}) == 6


def test_identical_content_across_batches_is_embedded_once(tmp_path, corpus, pm, fake_model):
    (corpus / "copy.md").write_text("alpha one\n\nalpha two\n\nalpha three")
    summary, rows = run(tmp_path, pm)
    assert (summary.items, summary.embedded, summary.skipped, len(rows)) == (9, 6, 3, 6)
    assert fake_model.embedded == 6


def test_rows_of_a_jsonl_file_are_replaced_line_by_line(tmp_path, pm):
    rows_file = tmp_path / "docs" / "rows.jsonl"
    rows_file.parent.mkdir()
    lines = [{"text": f"row {word}"} for word in ("one", "two", "three", "four")]

    def write(rows):
        rows_file.write_text("".join((json.dumps(r) if isinstance(r, dict) else r) + "\n" for r in rows))

    def run_rows(prune=False):
        cfg = {**config(tmp_path), "source": {"path": "docs/rows.jsonl", "chunk": {"by": "none"}}}
        with Pipeline.from_dict(cfg, base_dir=tmp_path, pm=pm) as p:
            summary = p.run(prune=prune)
            return summary, {uri: row_id for row_id, uri in p.store.scan("test")}

    write(lines)
    _, first = run_rows()
    assert sorted(first) == [f"docs/rows.jsonl:{n}" for n in (1, 2, 3, 4)]
    # Line 2 changes, line 3 is corrupt, line 4 is gone.
    write([lines[0], {"text": "row two, edited"}, "{not json"])
    summary, after = run_rows()
    assert (summary.embedded, summary.removed) == (1, 1)
    assert after["docs/rows.jsonl:2"] != first["docs/rows.jsonl:2"]
    assert after["docs/rows.jsonl:3"] == first["docs/rows.jsonl:3"]  # a line that fails keeps its row
    assert after["docs/rows.jsonl:4"] == first["docs/rows.jsonl:4"]  # kept until --prune
    summary, pruned = run_rows(prune=True)
    assert summary.removed == 1 and sorted(pruned) == [f"docs/rows.jsonl:{n}" for n in (1, 2, 3)]
