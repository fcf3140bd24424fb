"""`embedline eval --sections`: hits placed in markdown sections and judged against sections.

Heading paths (fences, closing #s, inline markup), the prefix rule, the metrics on hand-made hits,
the command end to end on a small stored pipeline, and the docs question set in bench/data.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from embedline import evaluate as ev
from embedline.contracts import Hit
from embedline.errors import EmbedlineError
from embedline.testing import write_plugin_distribution

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "bench" / "data" / "docs-questions.jsonl"
QRELS = ROOT / "bench" / "data" / "docs-qrels.tsv"

# -- heading paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("Hooks", "Hooks"),
        ("Hooks ##", "Hooks"),  # closing sequence
        ("C# #", "C#"),  # a '#' inside the text stays
        ("The pipeline file (`embed.toml`)", "The pipeline file (embed.toml)"),
        ("`[model]` and `[[models]]`", "[model] and [[models]]"),
        ("**Bold** and *it* and _under_ and ~~gone~~", "Bold and it and under and gone"),
        ("on_error stays, `__init__` stays", "on_error stays, __init__ stays"),
        ("[the README](../README.md#x) and ![logo](l.png)", "the README and logo"),
        ("a  \t spaced   heading ", "a spaced heading"),
        (r"escaped \# and \*", "escaped # and *"),
    ],
)
def test_heading_text_is_the_plain_text(raw, plain):
    assert ev.heading_text(raw) == plain


def test_heading_paths_skip_fences_and_nest_by_level():
    text = (
        "preamble\n"
        "# Top #\n"
        "```toml\n# a comment, not a heading\n```\n"
        "## First `one`\n"
        "~~~~\n## inside\n~~~\n## still inside: a shorter fence does not close\n~~~~\n"
        "### Deep\n"
        "#### Deeper\n"
        "    # indented code, not a heading\n"
        "#hashtag is no heading\n"
        "## Second\n"
        "# Other top\n"
        "### Skipped a level\n"
    )
    paths = [path for _, path in ev.heading_paths(text)]
    assert paths == [
        "Top",
        "Top > First one",
        "Top > First one > Deep",
        "Top > First one > Deep > Deeper",
        "Top > Second",
        "Other top",
        "Other top > Skipped a level",
    ]
    offsets = dict((path, at) for at, path in ev.heading_paths(text))
    assert text[offsets["Top > Second"] :].startswith("## Second")
    headings = ev.heading_paths(text)
    assert ev.section_at(headings, 0) == ""  # before the first heading
    assert ev.section_at(headings, text.index("a comment")) == "Top"
    assert ev.section_at(headings, text.index("indented code")) == "Top > First one > Deep > Deeper"


# -- matching ---------------------------------------------------------------------------------


def test_a_judged_section_matches_itself_and_what_lies_below_it():
    judged = "docs/hooks.md#Hook reference > store"
    assert ev.section_matches(judged, "docs/hooks.md#Hook reference > store")
    assert ev.section_matches(judged, "docs/hooks.md#Hook reference > store > Filters")
    assert not ev.section_matches(judged, "docs/hooks.md#Hook reference")  # above: too coarse
    assert not ev.section_matches(judged, "docs/hooks.md#Hook reference > stores")  # whole headings only
    assert not ev.section_matches(judged, "docs/other.md#Hook reference > store")


def test_rank_sections_drops_repeats_and_merges_alternatives():
    judged = {"a.md#T > X": 1.0, "b.md#U": 1.0}
    docids = ["c.md#V", "c.md#V", None, "a.md#T > X > deep", "b.md#U > more", "c.md#W"]
    ranked = ev.rank_sections(docids, judged)
    assert ranked[0] == "c.md#V" and len(ranked) == 4  # the repeat and the second answer are dropped
    assert ranked[1].startswith("\0unplaced")  # a hit with no section is a miss that takes its rank
    assert ev._first(ranked) == 3


# -- the metrics on hand-made hits ----------------------------------------------------------------


class _Config:
    def __init__(self, folder):
        self.origin = str(folder / "embed.toml")
        self.base_dir = folder
        self.source = None


class _StubPipeline:
    """What :func:`evaluate_sections` uses of a pipeline: ``config`` and ``search``."""

    def __init__(self, folder, hits):
        self.config = _Config(folder)
        self.hits = hits

    def search(self, queries, k):
        assert isinstance(queries, list) and k == ev.SECTION_HITS
        return [self.hits[q][:k] for q in queries]


def _hit(uri, section=None, text="", chunk=0):
    metadata = {"section": section} if section is not None else {}
    return Hit(
        id=f"{uri}:{chunk}:{section}", score=0.0, uri=uri, modality="text", chunk=chunk, text=text, metadata=metadata
    )


def test_evaluate_sections_by_hand(tmp_path):
    (tmp_path / "g.md").write_text(
        "# Guide\nintro text here\n\n## Setup\n\nrun   the\ninstaller now\n\n## Use\nsearch it\n"
    )
    data = ev.SectionData(
        queries={"q1": "one", "q2": "two", "q3": "three", "q4": "four"},
        qrels={
            "q1": {"g.md#Guide > Setup": 1.0},
            "q2": {"g.md#Guide > Use": 1.0, "h.md#H": 1.0},  # alternatives
            "q3": {"g.md#Guide": 1.0},
            "q4": {"g.md#Guide > Setup": 1.0},
        },
    )
    hits = {
        # rank 1: found from the text (whitespace differs from the file); its repeat is dropped
        "one": [_hit("g.md", text="run the installer"), _hit("g.md", text="run the installer now")],
        # Setup, Setup again (dropped), then h.md below the second alternative: rank 2
        "two": [_hit("g.md", "Guide > Setup"), _hit("g.md", "Guide > Setup"), _hit("h.md", "H > sub")],
        # a missing file, a chunk not in the file, then the preamble of Guide: rank 3
        "three": [_hit("gone.md", text="x"), _hit("g.md", text="not in the file"), _hit("g.md", text="intro text")],
        "four": [_hit("g.md", "Guide > Use")] * 3
        + [_hit(f"o{i}.md", "O") for i in range(12)]
        + [_hit("g.md", "Guide > Setup")],
    }
    result = ev.evaluate_sections(_StubPipeline(tmp_path, hits), data)
    assert result["first_answer"] == {"q1": 1, "q2": 2, "q3": 3, "q4": 14}
    assert result["recall@1"] == pytest.approx(1 / 4)
    assert result["recall@5"] == pytest.approx(3 / 4)
    assert result["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)
    assert result["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 4)
    assert (result["queries"], result["unlocated"]) == (4, 2)
    table = ev.format_results("fake", [result])
    assert table.splitlines()[2].split() == ["sections", "queries", "recall@1", "recall@5", "mrr@10", "ndcg@10"]
    assert "2 hit(s) not placed" in table


def test_an_empty_store_is_an_error(tmp_path):
    data = ev.SectionData(queries={"q1": "one"}, qrels={"q1": {"g.md#G": 1.0}})
    with pytest.raises(ev.EmptyStoreError, match="no rows to search"):
        ev.evaluate_sections(_StubPipeline(tmp_path, {"one": []}), data)


def test_absolute_uris_are_written_relative_to_the_source_folder(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "a.md").write_text("# A\n## B\nbody text\n")
    locator = ev.SectionLocator(tmp_path / "elsewhere", repo)
    assert locator.docid(_hit(str(repo / "docs" / "a.md"), text="body text")) == "docs/a.md#A > B"
    assert locator.docid(_hit("docs/a.md", "A > B")) == "docs/a.md#A > B"  # a relative uri stays


def test_read_queries_qrels_errors(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"id": "q1", "text": "a"}\n')
    (tmp_path / "r.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tdocs/a.md#A\t1\nq2\tdocs/a.md#A\t1\n")
    with pytest.raises(EmbedlineError, match="query id 'q2' is not in"):
        ev.read_queries_qrels(tmp_path / "q.jsonl", tmp_path / "r.tsv")
    (tmp_path / "r.tsv").write_text("q1\tdocs/a.md\t1\n")
    with pytest.raises(EmbedlineError, match="is no section"):
        ev.read_queries_qrels(tmp_path / "q.jsonl", tmp_path / "r.tsv")
    with pytest.raises(EmbedlineError, match="cannot read"):
        ev.read_queries_qrels(tmp_path / "missing.jsonl", tmp_path / "r.tsv")


# -- the command, end to end ----------------------------------------------------------------------

FAKE = """
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = _model.plugin_info
load_model, preprocess, embed = _model.load_model, _model.preprocess, _model.embed
"""

# Each paragraph is at most 8 words and two never fit in one chunk: one chunk per paragraph, and a
# heading written on the line above its text starts the chunk of its section.
PIPELINE = """
[source]
path = "docs"
include = ["*.md"]
chunk = { by = "paragraph", max_tokens = 8 }

[model]
plugin = "fake"
dim = 65536

[store]
plugin = "memory"
path = "vectors.npz"
collection = "docs"
"""
FILES = {
    "a.md": "# Alpha guide\nalpha intro words here now\n\n## Install\napple banana cherry date elder fig\n\n"
    "## Configure\ngrape honey iris jade kiwi lemon\n",
    "b.md": "# Beta notes\nbeta opening text goes here\n\n## Errors\nmango nectar olive papaya quince raisin\n\n"
    "### Retry\nmango nectar plum cedar birch pine\n",
    # In the fence, "# zebra yak" is code: read as a heading, it would put the chunk outside "Gamma".
    "c.md": "# Gamma\ngamma first line for tests\n\n```text\n# zebra yak\n```\n\n"
    "## Usage\nwalnut xenon yam zucchini acorn bean\n",
}
# query -> (sections judged relevant, the rank of the first of them, by word overlap)
CASES = {
    "q1": ("apple banana cherry date elder fig", ["docs/a.md#Alpha guide > Install"], 1),  # the chunk itself
    # Errors shares 3 words, Retry 2: Errors (above the judged section: no match) first, Retry second
    "q2": ("mango nectar olive", ["docs/b.md#Beta notes > Errors > Retry"], 2),
    # Errors shares 4 words; Retry, below Errors, also matches but counts once
    "q3": ("olive papaya quince mango", ["docs/b.md#Beta notes > Errors"], 1),
    # the fenced chunk (2 shared words of 3) lies in Gamma, then Usage (1 of 7)
    "q4": ("zebra yak walnut", ["docs/c.md#Gamma > Usage"], 2),
    "q5": ("zebra yak", ["docs/c.md#Gamma"], 1),
    "q6": ("grape honey iris", ["docs/a.md#Alpha guide > Uninstall"], None),  # no such section: never found
    # Configure (3 shared) and Install (1 shared) are alternatives: found at rank 1
    "q7": ("grape honey kiwi apple", ["docs/a.md#Alpha guide > Install", "docs/a.md#Alpha guide > Configure"], 1),
}


@pytest.fixture
def project(tmp_path):
    write_plugin_distribution(tmp_path / "site", "fake", FAKE)
    (tmp_path / "docs").mkdir()
    for name, text in FILES.items():
        (tmp_path / "docs" / name).write_text(text)
    (tmp_path / "embed.toml").write_text(PIPELINE)
    with open(tmp_path / "q.jsonl", "w") as fh:
        for qid, (text, _, _) in CASES.items():
            fh.write(json.dumps({"id": qid, "text": text}) + "\n")
    rows = [f"{qid}\t{docid}\t1\n" for qid, (_, docids, _) in CASES.items() for docid in docids]
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(rows))
    return tmp_path


def cli(project, *args):
    env = {**os.environ, "PYTHONPATH": str(project / "site"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "embedline", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


SECTIONS = ("eval", "embed.toml", "--queries", "q.jsonl", "--qrels", "qrels.tsv", "--sections")


def test_eval_sections_end_to_end(project):
    before = cli(project, *SECTIONS)
    assert before.returncode == 1
    assert before.stderr.strip().endswith("run `embedline run embed.toml` first"), before.stderr
    assert len(before.stderr.strip().splitlines()) == 1

    ran = cli(project, "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "read 3 source item(s) -> 9 item(s)" in ran.stdout

    result = cli(project, *SECTIONS, "--json")
    assert result.returncode == 0, result.stderr
    (sections,) = json.loads(result.stdout)["results"]
    expected = {qid: rank for qid, (_, _, rank) in CASES.items()}
    assert sections["first_answer"] == expected
    ranks = [r for r in expected.values() if r]
    n = len(expected)
    assert sections["queries"] == n and sections["unlocated"] == 0
    assert sections["recall@1"] == pytest.approx(sum(r == 1 for r in ranks) / n)  # 4/7
    assert sections["recall@5"] == pytest.approx(len(ranks) / n)  # 6/7
    assert sections["mrr@10"] == pytest.approx(sum(1 / r for r in ranks) / n)  # 5/7
    assert sections["ndcg@10"] == pytest.approx(sum(1 / math.log2(r + 1) for r in ranks) / n)

    table = cli(project, *SECTIONS)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[2:4]
    assert header.split() == ["sections", "queries", "recall@1", "recall@5", "mrr@10", "ndcg@10"]
    assert row.split() == ["qrels.tsv", "7", "57.14", "85.71", "71.43", f"{100 * sections['ndcg@10']:.2f}"]


def test_eval_sections_usage_and_file_errors(project):
    with_corpus = cli(project, *SECTIONS, "--corpus", "q.jsonl")
    assert with_corpus.returncode == 2 and "no --corpus" in with_corpus.stderr
    no_qrels = cli(project, "eval", "embed.toml", "--queries", "q.jsonl", "--sections")
    assert no_qrels.returncode == 2 and "--sections takes --queries and --qrels" in no_qrels.stderr
    missing = cli(project, "eval", "embed.toml", "--queries", "nope.jsonl", "--qrels", "qrels.tsv", "--sections")
    assert missing.returncode == 1 and missing.stderr.startswith("embedline: error: cannot read nope.jsonl")
    (project / "extra.tsv").write_text("q9\tdocs/a.md#Alpha guide\t1\n")
    unknown = cli(project, "eval", "embed.toml", "--queries", "q.jsonl", "--qrels", "extra.tsv", "--sections")
    assert unknown.returncode == 1 and "query id 'q9' is not in q.jsonl" in unknown.stderr


# -- the docs question set ----------------------------------------------------------------------

#: What the default pipeline (embed.toml) reads.
INGESTED = re.compile(r"README\.md|docs/.+\.md|plugins/[^/]+/README\.md")


def test_every_docs_judgement_names_an_existing_section_and_a_question():
    data = ev.read_queries_qrels(QUESTIONS, QRELS)
    assert len(data.queries) >= 35
    assert set(data.queries) == set(data.qrels), "every question has a judgement, every judgement a question"
    assert all(text.strip() for text in data.queries.values())
    sections: dict[str, set[str]] = {}
    missing = []
    for qid, judged in data.qrels.items():
        for docid in judged:
            path, _, section = docid.partition("#")
            assert INGESTED.fullmatch(path), f"{qid}: {path} is not read by embed.toml"
            if path not in sections:
                file = ROOT / path
                text = file.read_text(encoding="utf-8") if file.is_file() else ""
                sections[path] = {p for _, p in ev.heading_paths(text)}
            if section not in sections[path]:
                missing.append(f"{qid}: {docid}")
    assert not missing, "judged sections that do not exist:\n" + "\n".join(missing)
    assert len(sections) >= 12, "the questions should cover many of the ingested files"
