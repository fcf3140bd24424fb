"""Sources: globs, sniffing, chunking, content ids, JSONL/CSV rows, per-unit errors."""

import json
import os
from pathlib import Path

import pytest

from embedline.config import ChunkSpec, SourceSpec
from embedline.sources import SeenUris, Source, chunk_text, sniff_modality, walk_files


def source(path, **kw):
    return Source(SourceSpec(path=path, base_dir=path if path.is_dir() else path.parent, **kw))


def units(path, **kw):
    return list(source(path, **kw))


def test_globs_include_exclude_and_pruning(tmp_path):
    for rel in ["a.md", "b.txt", "docs/c.md", "docs/deep/d.md", ".venv/lib/e.md", "docs/skip/f.md"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    found = walk_files(tmp_path, ["**/*.md"], [".venv/**", "docs/skip/**"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.md", "docs/c.md", "docs/deep/d.md"]
    assert [p.name for p in walk_files(tmp_path, ["*.md"], [])] == ["a.md"]  # * does not cross folders
    assert [p.name for p in walk_files(tmp_path, ["docs/?.md"], [])] == ["c.md"]


def test_folders_no_include_pattern_reaches_are_not_walked(tmp_path, monkeypatch):
    for rel in ["README.md", "docs/a.md", "docs/x/b.md", "plugins/p/README.md", "plugins/p/src/c.md",
                "bench/.venv-peers/lib/d.md", "notes/e.md"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    walked = []
    real_walk = os.walk

    def walk(top, **kwargs):
        for folder, dirs, files in real_walk(top, **kwargs):
            walked.append(Path(folder).relative_to(tmp_path).as_posix())
            yield folder, dirs, files

    monkeypatch.setattr(os, "walk", walk)
    found = walk_files(tmp_path, ["README.md", "docs/**/*.md", "plugins/*/README.md"], [])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "README.md", "docs/a.md", "docs/x/b.md", "plugins/p/README.md"
    ]
    assert sorted(walked) == [".", "docs", "docs/x", "plugins", "plugins/p"]  # not bench/, notes/, src/
    walked.clear()
    assert [p.name for p in walk_files(tmp_path, ["docs/**"], [])] == ["a.md", "b.md"]  # ** last: any depth
    assert sorted(walked) == [".", "docs", "docs/x"]


def test_symlinked_folder_loop_is_not_followed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "t.txt").write_text("hello")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    assert [p.name for p in walk_files(tmp_path, ["**/*"], [])] == ["t.txt"]


@pytest.mark.parametrize(
    "head,modality",
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "image"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "image"),
        (b"GIF89a....", "image"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image"),
        (b"RIFF\0\0\0\0WAVEfmt ", "audio"),
        (b"fLaC\0\0\0\x22", "audio"),
        (b"ID3\x04\0\0\0\0", "audio"),
        (b"\xff\xfb\x90\x64\0\0", "audio"),  # MP3 frame, no tag
        (b"\xff\xfe h\0i\0", None),  # UTF-16 with BOM is not MPEG audio
        (b"\0\0\0\x20ftypisom\0\0\x02\0", "video"),
        (b"\0\0\0\x20ftypM4A \0\0\0\0", "audio"),
        (b"\x1aE\xdf\xa3\x9fB\x86\x81", "video"),
        ("plain text, café".encode(), "text"),
        (b"BMW makes cars, this is text", "text"),
        (b"\0\x01\x02\x03binary", None),
    ],
)
def test_sniff_modality(head, modality):
    assert sniff_modality(head) == modality


def test_paragraph_chunks_pack_paragraphs_and_window_long_ones():
    text = "one two three\n\nfour five\n\n" + " ".join(f"w{i}" for i in range(10))
    assert chunk_text(text, ChunkSpec("paragraph", 5, 0)) == [
        "one two three\n\nfour five",
        "w0 w1 w2 w3 w4",
        "w5 w6 w7 w8 w9",
    ]


def test_token_windows_overlap_and_cover_everything():
    words = [f"w{i}" for i in range(10)]
    chunks = chunk_text(" ".join(words), ChunkSpec("tokens", 4, 1))
    assert chunks == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert chunk_text("   ", ChunkSpec("tokens", 4, 1)) == []
    assert chunk_text("a  b\n c", ChunkSpec("none")) == ["a  b\n c"]


def test_ids_depend_on_content_and_chunking_not_on_path(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\n\nbeta")
    (tmp_path / "b.txt").write_text("alpha\n\nbeta")
    (tmp_path / "c.txt").write_text("alpha\n\ngamma")
    a, b, c = units(tmp_path, chunk=ChunkSpec("paragraph", 1, 0))
    assert [it.id for it in a.items] == [it.id for it in b.items]
    assert a.items[0].id.endswith(":0") and a.items[1].id.endswith(":1")
    assert a.items[0].id != c.items[0].id
    again = units(tmp_path, chunk=ChunkSpec("paragraph", 1, 0))
    assert [it.id for it in again[0].items] == [it.id for it in a.items]
    other = units(tmp_path, chunk=ChunkSpec("paragraph", 2, 0))
    assert other[0].items[0].id != a.items[0].id
    assert a.items[1].text == "beta" and a.items[1].chunk == 1 and a.items[0].uri == "a.txt"


def test_bad_files_become_errors_that_name_the_file(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)))
    (tmp_path / "blank.txt").write_text("  \n\n ")
    (tmp_path / "good.txt").write_text("fine")
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    got = {u.uri: u for u in units(tmp_path)}
    assert got["empty.txt"].error.reason == "empty file"
    assert got["latin1.txt"].error.reason == "not valid utf-8 text (byte 3)"
    assert got["binary.txt"].error.reason == "binary content of an unknown type"
    assert got["blank.txt"].error.reason == "no text (only whitespace)"
    assert "symbolic links" in got["loop1"].error.reason
    assert got["good.txt"].error is None and got["good.txt"].items[0].text == "fine"
    assert str(got["empty.txt"].error) == "empty.txt: read: empty file"


def test_encoding_option(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (unit,) = units(tmp_path, encoding="latin-1")
    assert unit.items[0].text == "café"


def test_media_files_are_lazy_items(tmp_path):
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(64)
    (tmp_path / "pic.bin").write_bytes(data)
    (unit,) = units(tmp_path)
    (item,) = unit.items
    assert item.modality == "image" and item.text is None
    assert item.read_bytes() == data


def test_jsonl_rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [
        json.dumps({"text": "first row", "title": "a", "n": 1}),
        "",
        "{not json",
        json.dumps({"title": "no text"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"text": "second row", "title": "b", "n": 2}),
    ]
    path.write_text("\n".join(lines) + "\n")
    got = units(path)
    assert [u.uri for u in got] == [f"rows.jsonl:{n}" for n in (1, 3, 4, 5, 6)]
    assert got[0].items[0].text == "first row" and got[0].items[0].metadata == {"title": "a", "n": 1}
    assert "invalid JSON" in got[1].error.reason
    assert got[2].error.reason == "text field 'text' is missing"
    assert "expected an object" in got[3].error.reason
    only_title = units(path, metadata_fields=("title",))
    assert only_title[-1].items[0].metadata == {"title": "b"}


def test_jsonl_ids_include_metadata(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"text": "same", "lang": "en"}) + "\n" + json.dumps({"text": "same", "lang": "fr"}) + "\n")
    a, b = units(path)
    assert a.items[0].id != b.items[0].id


def test_csv_rows_and_missing_column(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('body,lang\n"hello, world",en\n"multi\nline",fr\n')
    got = units(path, text_field="body")
    assert [u.items[0].text for u in got] == ["hello, world", "multi\nline"]
    assert got[1].items[0].metadata == {"lang": "fr"}
    (bad,) = units(path, text_field="text")
    assert "no column 'text' (columns: body, lang)" in bad.error.reason


def test_missing_source_path(tmp_path):
    from embedline.errors import ItemError

    with pytest.raises(ItemError, match="does not exist"):
        source(tmp_path / "nope").files()


def test_seen_uris_hold_files_and_row_lines():
    seen = SeenUris()
    seen.add("docs/a.md")
    seen.add("rows.jsonl:3", "rows.jsonl", 3)
    seen.add("rows.jsonl:1000", "rows.jsonl", 1000)
    seen.add("odd:name:7", "odd:name", 7)
    seen.add("x.csv:5", "other.csv", 5)  # not origin:line, so kept as it is
    assert "docs/a.md" in seen and "rows.jsonl:3" in seen and "rows.jsonl:1000" in seen
    assert "odd:name:7" in seen and "x.csv:5" in seen
    for uri in ("docs/b.md", "rows.jsonl:2", "rows.jsonl:4", "rows.jsonl:999", "rows.jsonl:100000",
                "rows.jsonl", "rows.jsonl:x", "other.csv:5", "docs/a.md:1", None):
        assert uri not in seen
