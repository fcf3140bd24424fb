"""The command line, run as a user runs it: a subprocess, plugins found through entry points, the
built-in memory store saved to a file (so that each command sees what the previous one wrote)."""

import json
import os
import subprocess
import sys

import pytest

from embedline.testing import write_plugin_distribution

FAKE = """
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = _model.plugin_info
load_model, preprocess, embed = _model.load_model, _model.preprocess, _model.embed
"""
BROKEN = "raise RuntimeError('this plugin is broken on purpose')\n"

PIPELINE = """
[source]
path = "docs"
chunk = {{ by = "paragraph", max_tokens = 20 }}

[model]
plugin = "fake"
dim = {dim}

[store]
plugin = "memory"
path = "cli.npz"
collection = "docs"
"""


@pytest.fixture
def project(tmp_path):
    site = write_plugin_distribution(tmp_path / "site", "fake", FAKE)
    write_plugin_distribution(site, "broken", BROKEN)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "one.md").write_text("Milvus Lite keeps vectors in a local file.\n\nSearch finds the nearest ones.")
    (docs / "two.md").write_text("Plugins are found through entry points.")
    (docs / "bad.md").write_bytes(b"\xc3\x28 invalid utf-8")
    (tmp_path / "embed.toml").write_text(PIPELINE.format(dim=16))
    return tmp_path


def cli(project, *args, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(project / "site"), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "embedline", *args], cwd=project, env=full_env, capture_output=True, text=True, timeout=300
    )


def plugins_json(project):
    """``embedline plugins --json`` in a fresh interpreter, and the heavy libraries it imported."""
    code = (
        "import sys, json, io, contextlib\n"
        "from embedline.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    main(['plugins', '--json'])\n"
        "heavy = ('torch', 'transformers', 'sentence_transformers', 'pymilvus', 'model2vec', 'numpy')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print(json.dumps({'rows': json.loads(out.getvalue()), 'heavy': heavy}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(project / "site")})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return {r["name"]: r for r in data["rows"]}, data["heavy"]


def test_plugins_json_lists_built_in_and_installed_plugins_without_importing_heavy_libraries(project):
    rows, heavy = plugins_json(project)
    assert heavy == []
    assert rows["memory"]["kind"] == "store" and rows["memory"]["hooks"] == ["store"]
    assert rows["fake"]["kind"] == "model" and rows["fake"]["modalities"] == ["text"]
    assert "this plugin is broken on purpose" in rows["broken"]["error"]


@pytest.mark.plugins("minilm", "model2vec", "milvus")
def test_plugins_json_lists_the_bundled_plugins_without_importing_torch(project):
    rows, heavy = plugins_json(project)
    assert set(heavy) <= {"numpy"}
    assert {"minilm", "model2vec", "milvus"} <= set(rows)
    assert rows["minilm"]["kind"] == "model" and rows["minilm"]["modalities"] == ["text"]
    assert rows["milvus"]["kind"] == "store" and rows["milvus"]["hooks"] == ["store"]


def test_help_does_not_import_heavy_libraries():
    code = "import sys\nfrom embedline.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().endswith("False")


def test_run_rerun_search_check(project):
    first = cli(project, "run")
    assert first.returncode == 3, first.stderr  # one item failed
    assert first.stderr == ""
    assert "read 3 source item(s) -> 2 item(s): embedded 2, skipped as unchanged 0, failed 1" in first.stdout
    assert "failed: docs/bad.md: read: not valid utf-8 text (byte 0)" in first.stdout
    (project / "docs" / "bad.md").unlink()

    again = cli(project, "run", "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["embedded"], summary["skipped"]) == (0, 2)

    found = cli(project, "search", "Plugins are found through entry points.", "-k", "2")
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].endswith("docs/two.md#0") and lines[1].strip() == "Plugins are found through entry points."

    checked = cli(project, "check", "embed.toml")
    assert checked.returncode == 0 and checked.stdout.startswith("ok: embed.toml")


def test_a_broken_plugin_only_breaks_pipelines_that_use_it(project):
    assert cli(project, "check").returncode == 0
    (project / "broken.toml").write_text(PIPELINE.format(dim=16).replace('plugin = "fake"', 'plugin = "broken"'))
    result = cli(project, "check", "broken.toml")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "embedline: error: broken.toml: model.plugin: Error importing plugin 'broken' (embedline_broken): "
        "RuntimeError: this plugin is broken on purpose"
    )


def test_user_errors_are_one_line_and_debug_adds_the_traceback(project):
    (project / "typo.toml").write_text(PIPELINE.format(dim=16).replace('plugin = "fake"', 'plugin = "fakee"'))
    result = cli(project, "run", "typo.toml")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("embedline: error: typo.toml: model.plugin: plugin 'fakee' not found")
    assert "not installed or misspelled" in line and "fake" in line
    debug = cli(project, "--debug", "run", "typo.toml")
    assert "Traceback" in debug.stderr


def test_searching_with_another_model_is_refused(project):
    assert cli(project, "run").returncode == 3
    (project / "other.toml").write_text(PIPELINE.format(dim=8))
    result = cli(project, "search", "other.toml", "vectors")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "collection 'docs' was filled by fake 0.0.1 fake-bow@fake-1 dim=16" in line
    assert "this pipeline's model is fake 0.0.1 fake-bow@fake-1 dim=8" in line


def test_bad_toml_syntax_points_at_the_line(project):
    (project / "bad.toml").write_text("[model\nplugin = 'fake'\n")
    result = cli(project, "check", "bad.toml")
    assert result.returncode == 1
    assert "bad.toml: invalid TOML" in result.stderr and "line 1" in result.stderr


def test_usage_errors_exit_2(project):
    assert cli(project, "search").returncode == 2
    assert cli(project, "search", "a", "b", "c").returncode == 2
    assert cli(project, "frobnicate").returncode == 2


def test_search_where_and_filter(project):
    assert cli(project, "run").returncode == 3
    found = cli(project, "search", "vectors", "--where", "path=two.md", "--where", "chunk<1", "--json")
    assert found.returncode == 0, found.stderr
    assert [h["uri"] for h in json.loads(found.stdout)] == ["docs/two.md"]
    none = cli(project, "search", "vectors", "--where", "path:in=three.md,four.md")
    assert none.returncode == 0 and none.stdout.strip() == "no hits"

    native = cli(project, "search", "vectors", "--filter", "chunk == 0")  # the memory store has no syntax
    assert native.returncode == 1
    assert native.stderr.startswith("embedline: error: memory store ")
    assert "has no filter syntax of its own" in native.stderr
    assert len(native.stderr.strip().splitlines()) == 1

    both = cli(project, "search", "vectors", "--filter", "chunk == 0", "--where", "chunk=0")
    assert both.returncode == 2 and "use either --filter" in both.stderr
    bad = cli(project, "search", "vectors", "--where", "chunk!=0")
    assert bad.returncode == 2 and "--where 'chunk!=0'" in bad.stderr and "!= is not portable" in bad.stderr


@pytest.mark.plugins("milvus")
def test_a_token_from_the_environment_is_never_printed(project):
    secret = "tok-3f9a1c7e-never-print-me"
    (project / "server.toml").write_text(
        PIPELINE.format(dim=16).replace(
            'plugin = "memory"\npath = "cli.npz"',
            'plugin = "milvus"\nuri = "http://127.0.0.1:9"\ntoken = "${EMBEDLINE_TEST_TOKEN}"',
        )
    )
    env = {"EMBEDLINE_TEST_TOKEN": secret}
    outputs = [
        cli(project, "check", "server.toml", env=env),
        cli(project, "check", "--json", "server.toml", env=env),
        cli(project, "run", "server.toml", env=env),
        cli(project, "--debug", "run", "server.toml", env=env),
        cli(project, "--debug", "search", "server.toml", "hello", env=env),
    ]
    assert outputs[0].returncode == 0 and outputs[2].returncode == 1  # nothing listens on port 9
    assert '"token": "***"' in outputs[1].stdout
    for result in outputs:
        assert secret not in result.stdout + result.stderr


def test_search_shows_the_heading_path_and_the_sentence_that_matches(project):
    """With ``by = "structure"`` (the documents plugin parses the markdown), a hit shows its
    section, and a snippet around the matching sentence rather than the chunk's first words."""
    (project / "docs" / "guide.md").write_text(
        "# Guide\n\n## Cats\n\n" + "Filler words about nothing much. " * 12 + "Cats purr when they are happy.\n"
    )
    (project / "docs" / "bad.md").unlink()
    (project / "embed.toml").write_text(PIPELINE.format(dim=64).replace('by = "paragraph", max_tokens = 20', 'by = "structure"'))
    assert cli(project, "run").returncode == 0
    result = cli(project, "search", "do cats purr?", "-k", "1")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()[:2]
    assert "docs/guide.md#0" in first and first.endswith("(Guide > Cats)")
    assert second.strip().startswith("…") and second.strip().endswith("Cats purr when they are happy.")
    (row,) = json.loads(cli(project, "search", "do cats purr?", "-k", "1", "--json").stdout)
    assert row["section"] == row["metadata"]["section"] == "Guide > Cats"
    assert row["text"].startswith("Guide > Cats\n\n") and row["snippet"].endswith("Cats purr when they are happy.")
