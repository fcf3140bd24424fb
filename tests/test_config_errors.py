"""Every malformed or wrong pipeline file gives one line on stderr naming the file, the line/column
or key path, and what is expected or what to do; exit status 1; nothing is written."""

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

GOOD = """\
[source]
path = "docs"

[model]
plugin = "fake"
dim = 16

[store]
plugin = "memory"
path = "cfg.npz"
collection = "docs"
"""

# (name, how to break GOOD, what the one line must contain)
CASES = [
    ("toml-syntax", lambda t: t.replace('plugin = "fake"', 'plugin = "fake'), ["bad.toml: invalid TOML", "line 5"]),
    ("wrong-type", lambda t: t.replace("dim = 16", 'dim = "16"'), ["bad.toml: model.dim: expected int, got a string"]),
    ("wrong-type-core", lambda t: t + "[pipeline]\nworkers = 1.5\n", ["bad.toml: pipeline.workers: expected an integer"]),
    ("unknown-key", lambda t: t.replace("dim = 16", "dimm = 16"), ["bad.toml: model.dimm: unknown key; did you mean 'dim'?"]),
    ("unknown-section", lambda t: t.replace("[store]", "[stor]"), ["bad.toml: stor: unknown section; did you mean 'store'?"]),
    ("unknown-plugin", lambda t: t.replace('plugin = "fake"', 'plugin = "minilmm"'),
     ["bad.toml: model.plugin: plugin 'minilmm' not found", "not installed or misspelled", "Installed plugins:"]),
    ("modality", lambda t: t.replace("dim = 16", 'dim = 16\nmodalities = ["image"]'),
     ["bad.toml: model.modalities: plugin 'fake' cannot embed image; it supports text"]),
    ("store-option-type", lambda t: t.replace('path = "cfg.npz"', "path = 3"),
     ["bad.toml: store.path: expected str, got an integer (3)"]),
    ("store-unknown-key", lambda t: t.replace('path = "cfg.npz"', 'uri = "cfg.db"'), ["bad.toml: store.uri: unknown key"]),
    ("metric", lambda t: t.replace('collection = "docs"', 'collection = "docs"\nmetric = "HAMMING"'),
     ["bad.toml: store.metric: expected one of"]),
    ("missing-env", lambda t: t.replace('path = "cfg.npz"', 'path = "${EMBEDLINE_NO_SUCH_VAR}/cfg.npz"'),
     ["bad.toml: store.path: environment variable EMBEDLINE_NO_SUCH_VAR is not set"]),
    ("no-model", lambda t: t.replace("[model]", "[modell]"), ["bad.toml: modell: unknown section; did you mean 'model'?"]),
    ("missing-source", lambda t: t.replace('path = "docs"', 'path = "nowhere"'), ["bad.toml: source.path:", "does not exist"]),
]


@pytest.fixture
def project(tmp_path):
    write_plugin_distribution(tmp_path / "site", "fake", FAKE)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("hello world")
    return tmp_path


def cli(project, *args):
    env = {**os.environ, "PYTHONPATH": str(project / "site"), "HF_HUB_OFFLINE": "1"}
    env.pop("EMBEDLINE_NO_SUCH_VAR", None)
    return subprocess.run([sys.executable, "-m", "embedline", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name,breaks,expected", CASES, ids=[c[0] for c in CASES])
def test_config_error_is_one_clear_line(project, name, breaks, expected):
    (project / "bad.toml").write_text(breaks(GOOD))
    command = "run" if name == "missing-source" else "check"
    result = cli(project, command, "bad.toml")
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for part in expected:
        assert part in lines[0]
    assert not (project / "cfg.npz").exists()


def test_a_dim_that_differs_from_the_existing_collection(project):
    (project / "embed.toml").write_text(GOOD)
    assert cli(project, "run").returncode == 0
    (project / "bad.toml").write_text(GOOD.replace("dim = 16", "dim = 32"))
    result = cli(project, "run", "bad.toml")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "collection 'docs' was filled by fake" in line and "dim=16" in line and "dim=32" in line
    assert "Use the collection's model, or another `collection` name" in line
