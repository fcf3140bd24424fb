"""plugin_info, validate() and the cheap import: no database needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

import embedline_milvus
from embedline_milvus._options import LITE_INDEX_TYPES


def options(**overrides):
    values = {name: opt.default for name, opt in embedline_milvus.plugin_info.options.items()}
    values.update(overrides)
    return values


def test_plugin_info_declares_a_store_with_every_option():
    info = embedline_milvus.plugin_info
    assert info.kind == "store"
    assert info.modalities == ()
    assert set(info.options) == {
        "uri", "token", "db_name", "index", "metric", "index_params", "search_params",
        "write_batch_size", "write_concurrency", "text_max_length", "lite_engine",
    }  # fmt: skip
    assert info.options["token"].secret
    assert info.options["uri"].default == "embed.db"
    assert info.options["index"].default == "AUTOINDEX"
    assert info.options["metric"].choices == ("COSINE", "IP", "L2")


def test_defaults_are_valid():
    embedline_milvus.plugin_info.validate(options())


@pytest.mark.parametrize("index", ["HNSW", "IVF_FLAT", "AUTOINDEX", "FLAT", "IVF_SQ8", "HNSW_SQ"])
def test_lite_accepts_the_indexes_it_can_build(index):
    embedline_milvus.plugin_info.validate(options(index=index))


@pytest.mark.parametrize("index", ["IVF_PQ", "DISKANN", "SCANN", "GPU_CAGRA"])
def test_lite_rejects_indexes_it_cannot_load(index):
    with pytest.raises(ValueError) as err:
        embedline_milvus.plugin_info.validate(options(index=index, uri="data/embed.db"))
    message = str(err.value)
    assert message.startswith("index: ")  # "KEY: message" so the core can name store.index
    assert index in message and "Milvus Lite" in message
    assert all(name in message for name in LITE_INDEX_TYPES)


@pytest.mark.parametrize("uri", ["http://localhost:19530", "https://in01-x.zillizcloud.com", "tcp://h:19530"])
def test_servers_accept_every_index(uri):
    for index in ("IVF_PQ", "DISKANN", "GPU_CAGRA"):
        embedline_milvus.plugin_info.validate(options(index=index, uri=uri))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"index": "HNSWW"}, "index"),
        ({"uri": "embed.sqlite"}, "uri"),
        ({"write_batch_size": 0}, "write_batch_size"),
        ({"write_concurrency": 0}, "write_concurrency"),
        ({"text_max_length": 70000}, "text_max_length"),
    ],
)
def test_validate_names_the_key_at_fault(overrides, key):
    with pytest.raises(ValueError, match=rf"^{key}: "):
        embedline_milvus.plugin_info.validate(options(**overrides))


def test_importing_the_plugin_does_not_import_pymilvus():
    code = "import embedline_milvus, sys; assert 'pymilvus' not in sys.modules, 'pymilvus imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "store,message",
    [
        ({"collection": "my-docs"}, "store.collection: 'my-docs' is not a valid Milvus collection name"),
        ({"uri": "data/x.db", "index": "IVF_PQ"}, "store.index: Milvus Lite cannot build IVF_PQ"),
        ({"metric": "HAMMING"}, "store.metric: expected one of 'COSINE', 'IP', 'L2', got 'HAMMING'"),
    ],
)
def test_a_pipeline_naming_the_store_gets_the_key_at_fault(store, message):
    from embedline.config import bind_plugins, parse_config
    from embedline.errors import ConfigError
    from embedline.testing import FakeTextModel, fresh_plugin_manager

    config = parse_config({"model": {"plugin": "fake"}, "store": {"plugin": "milvus", **store}}, origin="bad.toml")
    with pytest.raises(ConfigError) as err:
        bind_plugins(config, fresh_plugin_manager(FakeTextModel()))
    assert str(err.value).startswith(f"bad.toml: {message}")
