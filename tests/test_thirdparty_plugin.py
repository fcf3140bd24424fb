"""Third-party plugin distributions (tests/thirdparty/embedline-wordhash, a model, and
tests/thirdparty/embedline-sqlitestore, a store), built and installed with pip, found through their
entry points and used from a pipeline file by name, through the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _can_build_offline() -> bool:
    """pip builds without isolation (no index here): setuptools>=68 must be installed, with a
    bdist_wheel command (built in since setuptools 70.1, else from the wheel package)."""
    import importlib.metadata as md
    import importlib.util

    try:
        version = tuple(int(part) for part in md.version("setuptools").split(".")[:2])
    except (md.PackageNotFoundError, ValueError):
        return False
    return version >= (70, 1) or (version >= (68, 0) and importlib.util.find_spec("wheel") is not None)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not _can_build_offline():
        pytest.skip("building the distributions needs setuptools>=70.1 here: pip install 'setuptools>=70.1'")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(HERE / "thirdparty" / "embedline-wordhash"),
         str(HERE / "thirdparty" / "embedline-sqlitestore")],
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
plugin = "memory"
path = "notes.npz"
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


STORE_PIPELINE = """
[source]
path = "notes.jsonl"

[model]
plugin = "wordhash"
dim = 64

[store]
plugin = "sqlitestore"
path = "data/notes.sqlite"
collection = "notes"
metric = "L2"
"""


def test_thirdparty_store_from_toml(site, tmp_path):
    rows = [("the quick brown fox jumps over the lazy dog", "en"), ("milvus stores vectors and searches them", "en"),
            ("des vecteurs dans sqlite", "fr")]  # fmt: skip
    (tmp_path / "notes.jsonl").write_text("".join(json.dumps({"text": t, "lang": lang}) + "\n" for t, lang in rows))
    (tmp_path / "embed.toml").write_text(STORE_PIPELINE)

    listed = embedline(site, "plugins", "--json", cwd=tmp_path)
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "sqlitestore")
    assert (row["version"], row["kind"], row["hooks"]) == ("0.2.0", "store", ["store"])
    assert row["options"] == ["metric", "path"]

    ran = embedline(site, "run", "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["embedded"] == 3 and (tmp_path / "data" / "notes.sqlite").is_file()
    again = embedline(site, "run", "--json", cwd=tmp_path)
    assert json.loads(again.stdout)["skipped"] == 3

    found = embedline(site, "search", "milvus searches vectors", "-k", "2", "--json", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits[0]["text"] == rows[1][0] and hits[0]["score"] >= hits[1]["score"]  # L2: minus a distance
    french = embedline(site, "search", "vectors", "--where", "lang=fr", "--json", cwd=tmp_path)
    assert french.returncode == 0, french.stderr
    assert [h["text"] for h in json.loads(french.stdout)] == [rows[2][0]]
    native = embedline(site, "search", "vectors", "--filter", "json_extract(metadata, '$.lang') = 'fr'", "--json",
                       cwd=tmp_path)  # fmt: skip
    assert [h["text"] for h in json.loads(native.stdout)] == [rows[2][0]]
    bad = embedline(site, "search", "vectors", "--filter", "no_such_column = 1", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("embedline: error: searching collection 'notes'")
    assert len(bad.stderr.strip().splitlines()) == 1
