"""A third-party plugin distribution (tests/thirdparty/embedline-wordhash), built and installed with
pip, found through its entry point and used from a pipeline file by name, through the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(HERE / "thirdparty" / "embedline-wordhash")],
        check=True,
        capture_output=True,
    )
    return target


def embedline(site, *args, cwd):
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "embedline", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


PIPELINE = """
[source]
path = "notes"
chunk = { by = "none" }

[model]
plugin = "wordhash"
dim = 64

[store]
plugin = "milvus"
uri = "notes.db"
collection = "notes"
"""


def test_thirdparty_plugin_from_toml(site, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("the quick brown fox jumps over the lazy dog")
    (notes / "b.txt").write_text("milvus stores vectors and searches them")
    (tmp_path / "embed.toml").write_text(PIPELINE)

    listed = embedline(site, "plugins", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "wordhash")
    assert row["version"] == "0.3.0" and row["kind"] == "model" and row["modalities"] == ["text"]
    assert sorted(row["hooks"]) == ["embed", "load_model", "preprocess"]

    checked = embedline(site, "check", cwd=tmp_path)
    assert checked.returncode == 0 and "wordhash" in checked.stdout, checked.stderr

    ran = embedline(site, "run", "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["embedded"] == 2

    found = embedline(site, "search", "embed.toml", "milvus searches vectors", "-k", "1", "--json", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["uri"] == "notes/b.txt"


def test_thirdparty_plugin_options_are_checked(site, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "embed.toml").write_text(PIPELINE.replace("dim = 64", "dim = 1"))
    result = embedline(site, "check", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "embedline: error: embed.toml: model.dim: must be at least 2"
