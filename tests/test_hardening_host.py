"""embedline as a library in a host's process, and its command line in a shell pipeline (issue 11):
no output the host did not ask for, no guessing whether a query is a file, exception types a host
can catch, and quiet exits when the reader of the output goes away."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from embedline import hookimpl
from embedline.contracts import Item
from embedline import errors  # by attribute: on older versions only the tests of new types fail
from embedline.pipeline import Pipeline
from embedline.testing import FakeTextModel, fresh_plugin_manager, memory_store, write_plugin_distribution

DOCS = {
    "games.md": "Chess is a board game for two players.",
    "cooking.md": "Boil the pasta in salted water.",
}
FAKE_PLUGIN = """
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = _model.plugin_info
load_model, preprocess, embed = _model.load_model, _model.preprocess, _model.embed
"""
PIPELINE_TOML = """
[source]
path = "docs"

[model]
plugin = "fake"

[store]
plugin = "memory"
path = "vectors.npz"
collection = "docs"
"""


@pytest.fixture
def project(tmp_path):
    """A folder with docs, a pipeline file, and a file named ``chess`` whose text is about pasta."""
    (tmp_path / "docs").mkdir()
    for name, text in DOCS.items():
        (tmp_path / "docs" / name).write_text(text)
    (tmp_path / "chess").write_text(DOCS["cooking.md"])
    (tmp_path / "embed.toml").write_text(PIPELINE_TOML)
    write_plugin_distribution(tmp_path / "site", "fake", FAKE_PLUGIN)
    return tmp_path


def pipeline(project, pm=None, **source):
    config = {
        "source": {"path": "docs", **source},
        "model": {"plugin": "fake"},
        "store": memory_store(project, collection="docs"),
    }
    return Pipeline.from_dict(config, base_dir=project, pm=pm or fresh_plugin_manager(FakeTextModel()))


def run_python(code, cwd, **kwargs):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs
    )


def cli(project, *args, **kwargs):
    """``embedline ARGS`` in ``project`` with the plugins of ``project/site`` only (PYTHONPATH is
    kept: it may name the core to test)."""
    path = os.pathsep.join(p for p in (str(project / "site"), os.environ.get("PYTHONPATH")) if p)
    only_ours = {"EMBEDLINE_DISABLE_PLUGIN_AUTOLOAD": "1", "EMBEDLINE_PLUGINS": "fake,broken"}
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", **only_ours}
    kwargs.setdefault("capture_output", True)
    return subprocess.run(
        [sys.executable, "-m", "embedline", *args], cwd=project, env=env, text=True, timeout=300, **kwargs
    )


# -- 13: only the command line configures logging ---------------------------------------------------


def test_a_host_without_logging_set_up_gets_nothing_on_stderr(project):
    done = run_python(
        f"""
        from embedline.pipeline import Pipeline
        from embedline.testing import FakeTextModel, fresh_plugin_manager, memory_store

        config = {{"source": {{"path": "docs"}}, "model": {{"plugin": "fake"}}, "store": memory_store(None)}}
        pm = fresh_plugin_manager(FakeTextModel(fail_on=["pasta"]))
        with Pipeline.from_dict(config, base_dir={str(project)!r}, pm=pm) as p:
            summary = p.run()
        assert [e.uri for e in summary.failed] == ["docs/cooking.md"], summary.failed
        print("ran")
        """,
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran\n"
    assert done.stderr == ""


# -- 15: a str is a text, a file is said so -----------------------------------------------------------


def test_a_text_query_that_names_a_file_is_searched_as_text(project, monkeypatch):
    monkeypatch.chdir(project)  # "chess" names a file here
    with pipeline(project) as p:
        p.run()
        assert p.search("chess", k=1)[0].uri == "docs/games.md"
        assert p.search(["chess"], k=1)[0][0].uri == "docs/games.md"
        as_text = p.model().embed_items([Item(id="q:0", uri="<input>", modality="text", text="chess")]).vectors
        np.testing.assert_array_equal(p.embed(["chess"]), as_text)


def test_a_file_query_is_explicit_file_or_a_path(project, monkeypatch):
    monkeypatch.chdir(project)
    with pipeline(project) as p:
        p.run()
        assert p.search(file="chess", k=1)[0].uri == "docs/cooking.md"
        assert p.search(file=[project / "chess"], k=1)[0][0].uri == "docs/cooking.md"
        assert p.search(Path("chess"), k=1)[0].uri == "docs/cooking.md"  # a Path says "file" too
        assert p.embed([Path("chess")]).tolist() == p.embed([DOCS["cooking.md"]]).tolist()
        for wrong in ({}, {"query": "chess", "file": "chess"}):
            with pytest.raises(TypeError, match="exactly one"):
                p.search(**wrong)


def test_cli_search_takes_a_file_only_with_file(project):
    assert cli(project, "run").returncode == 0
    as_text = cli(project, "search", "chess", "-k", "1", "--json")
    assert as_text.returncode == 0, as_text.stderr
    assert json.loads(as_text.stdout)[0]["uri"] == "docs/games.md"
    as_file = cli(project, "search", "embed.toml", "--file", "chess", "-k", "1", "--json")
    assert as_file.returncode == 0, as_file.stderr
    assert json.loads(as_file.stdout)[0]["uri"] == "docs/cooking.md"
    both = cli(project, "search", "embed.toml", "chess", "--file", "chess")
    assert both.returncode == 2 and "not both" in both.stderr


# -- 16: exceptions a host can tell apart ---------------------------------------------------------------


class WrongShape(FakeTextModel):
    @hookimpl
    def embed(self, model, inputs, mode):
        return np.zeros((len(inputs), model.dim + 1))


class WrongCount(FakeTextModel):
    @hookimpl
    def preprocess(self, model, items, mode):
        return [it.text for it in items][:-1]


@pytest.mark.parametrize("plugin", [WrongShape(), WrongCount()], ids=["embed-shape", "preprocess-count"])
def test_a_plugin_breaking_its_contract_at_run_time_is_a_plugin_error_not_a_load_error(project, plugin):
    assert issubclass(errors.PluginLoadError, errors.PluginError)  # `except PluginError` catches every plugin fault
    with pipeline(project, pm=fresh_plugin_manager(plugin)) as p:
        with pytest.raises(errors.PluginError, match="plugin 'fake': (embed|preprocess) returned") as err:
            p.run()
    assert not isinstance(err.value, errors.PluginLoadError)


def test_searching_a_missing_collection_is_typed_and_names_no_command(project):
    with pipeline(project) as p:
        with pytest.raises(errors.CollectionNotFoundError) as err:
            p.search("chess")
        with pytest.raises(errors.CollectionNotFoundError, match="collection 'nope' does not exist in memory store"):
            p.store.search("nope", np.ones((1, 16), np.float32), k=1)
    assert isinstance(err.value, errors.StoreError) and err.value.collection == "docs"
    assert "embedline run" not in str(err.value)
    searched = cli(project, "search", "chess")  # the command line adds what to do
    assert searched.returncode == 1
    assert "collection 'docs' does not exist" in searched.stderr
    assert "run `embedline run embed.toml` first" in searched.stderr


def test_a_closed_pipeline_raises_instead_of_reopening(project):
    with pipeline(project) as p:
        p.run()
    saved = (project / "vectors.npz").stat().st_mtime_ns
    for use in (lambda: p.search("chess"), p.run, lambda: p.embed(["chess"]), lambda: p.store, p.model):
        with pytest.raises(errors.PipelineClosedError, match="this pipeline is closed"):
            use()
    assert issubclass(errors.PipelineClosedError, errors.EmbedlineError)
    p.close()  # closing again is fine
    assert (project / "vectors.npz").stat().st_mtime_ns == saved


# -- 17: the command line in a shell pipeline -------------------------------------------------------------


def closed_pipe_run(project, *args):
    """``embedline ARGS | head -0``: the reader is gone before anything is written."""
    read, write = os.pipe()
    os.close(read)
    try:
        return cli(project, *args, stdout=write, stderr=subprocess.PIPE, capture_output=False)
    finally:
        os.close(write)


@pytest.mark.parametrize("args", [("plugins", "--json"), ("plugins",), ("search", "chess", "-k", "2")])
def test_output_to_a_closed_pipe_ends_quietly_with_141(project, args):
    assert cli(project, "run").returncode == 0
    done = closed_pipe_run(project, *args)
    assert done.stderr == ""
    assert done.returncode == 141


def test_plugins_exits_non_zero_when_a_plugin_failed_to_load(project):
    assert cli(project, "plugins").returncode == 0
    write_plugin_distribution(project / "site", "broken", "raise RuntimeError('broken on purpose')\n")
    listed = cli(project, "plugins")
    assert listed.returncode == 1
    assert "broken" in listed.stdout and "ERROR" in listed.stdout and "fake" in listed.stdout
    assert listed.stderr == "embedline: error: plugin(s) failed to load: broken\n"
    as_json = cli(project, "plugins", "--json")
    assert as_json.returncode == 1
    rows = {row["name"]: row for row in json.loads(as_json.stdout)}
    assert "broken on purpose" in rows["broken"]["error"] and "error" not in rows["fake"]
