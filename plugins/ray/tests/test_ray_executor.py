"""The ray executor against the reference executor `local`: on the same corpus, the same ids, the
same vectors (within 1e-5), the same summary, the same failures and failure report.

One local Ray for the whole module (``ray_session``), started with the logical CPUs the
executor gives a Ray of its own (cores + 1): pipelines with ``address`` unset join it, and
their actors ask for whole CPUs, two per model, on this 2-core machine; a stall would show as a
test that never ends (pytest's own timeout is the CI's; each run here takes seconds).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from embedline.errors import ConfigError, EmbedlineError, ItemError
from embedline.pipeline import Pipeline
from embedline.testing import FakeTextModel, fresh_plugin_manager

DOCS = {
    "a.md": "Cats purr and sleep all day.\n\nA cat chases mice in the garden.",
    "b.md": "Rockets fly to orbit.\n\nThe moon orbits the earth.",
    "c.md": "Boil the pasta in salted water.",
    "copy.md": "Boil the pasta in salted water.",  # identical content: one row
    "bad.md": "this one has a poison word",  # the fake model's embed fails on it
    "more.md": "\n\n".join(f"Note {i}: the {w} is near the river." for i, w in enumerate("dog car tree book door".split())),
}
RAY = {"plugin": "ray", "actors": 2, "cpus_per_actor": 1.0}  # whole CPUs: the case that stalls a naive pool


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    (folder / "latin1.md").write_bytes(b"caf\xe9 \xff\xfe broken utf-8")  # fails in the reader
    return folder


def text_pipeline(tmp_path, corpus, name, executor=None, pm=None, **pipeline):
    data = {
        "pipeline": {"failures": str(tmp_path / f"{name}.failures.jsonl"), **pipeline},
        "source": {"path": str(corpus), "chunk": {"by": "paragraph", "max_tokens": 8}},
        "model": {"plugin": "fake", "batch_size": 2},
        "store": {"plugin": "memory", "collection": "docs", "path": str(tmp_path / f"{name}.npz")},
    }
    if executor:
        data["executor"] = executor
    return Pipeline.from_dict(data, base_dir=tmp_path, pm=pm or fresh_plugin_manager())


def saved_rows(path: Path) -> dict[str, dict[str, tuple[np.ndarray, tuple]]]:
    """collection -> id -> (vector, (uri, modality, chunk, text, metadata, model)) from a memory store file."""
    out = {}
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(bytes(data["header"]).decode("utf-8"))
        for number, entry in enumerate(header["collections"]):
            vectors = data[f"vectors_{number}"].reshape(-1, entry["dim"])
            fields = zip(entry["uris"], entry["modalities"], entry["chunks"], entry["texts"],
                         [json.dumps(m, sort_keys=True) for m in entry["metadata"]], entry["models"])  # fmt: skip
            out[entry["name"]] = {i: (v, f) for i, v, f in zip(entry["ids"], vectors, fields)}
    return out


def same_rows(a: Path, b: Path) -> int:
    left, right = saved_rows(a), saved_rows(b)
    assert sorted(left) == sorted(right)
    n = 0
    for collection in left:
        assert sorted(left[collection]) == sorted(right[collection]), collection
        for row_id, (vector, fields) in left[collection].items():
            other_vector, other_fields = right[collection][row_id]
            assert fields == other_fields
            np.testing.assert_allclose(vector, other_vector, atol=1e-5, rtol=0)
            n += 1
    return n


def failures(summary):
    return [(e.uri, e.stage, e.reason) for e in summary.failed]


# -- no Ray needed --------------------------------------------------------------------------------


def test_the_plugin_is_listed_without_importing_ray():
    code = (
        "import sys, json\n"
        "from embedline.testing import FakeTextModel, fresh_plugin_manager\n"
        "rows = {r['name']: r for r in fresh_plugin_manager().describe()}\n"
        "print(json.dumps([rows['ray']['kind'], 'ray' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert json.loads(out) == ["executor", False]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"actors": 0}, r"executor\.actors: expected a positive integer, got 0"),
        ({"cpus_per_actor": 0}, r"executor\.cpus_per_actor: expected a positive number, got 0"),
        ({"cpus_per_actor": "half"}, r"executor\.cpus_per_actor: expected int or float"),
        ({"write": "nobody"}, r"executor\.write: expected one of 'auto', 'driver', 'workers'"),
        ({"actor": 2}, r"executor\.actor: unknown key; did you mean 'actors'"),
        ({"address": " "}, r"executor\.address: expected a Ray address"),
    ],
)
def test_options_are_checked_before_anything_starts(tmp_path, corpus, options, message):
    with pytest.raises(ConfigError, match=message):
        text_pipeline(tmp_path, corpus, "x", {"plugin": "ray", **options}, pm=fresh_plugin_manager(FakeTextModel()))


def test_local_ray_gets_enough_logical_cpus_for_its_actors():
    from embedline_ray._executor import Settings, local_cpus

    cores = len(__import__("os").sched_getaffinity(0))
    assert local_cpus(Settings(), models=1) == cores + 1
    assert local_cpus(Settings(actors=8, cpus_per_actor=1.0), models=2) >= 17  # every actor fits, plus one
    assert local_cpus(Settings(actors=3, cpus_per_actor=0.5), models=1) == max(cores + 1, 3)
    assert local_cpus(Settings(num_cpus=5), models=1) == 5
    assert Settings(cpus_per_actor=0.5).threads == 1 and Settings(cpus_per_actor=2).threads == 2


# -- against local, on one Ray ----------------------------------------------------------------------


def test_text_same_ids_vectors_summary_and_failures_as_local(ray_session, tmp_path, corpus):
    summaries = {}
    for name, executor in (("local", None), ("ray", {**RAY, "batch_size": 3})):  # 3 items per call: many calls
        with text_pipeline(tmp_path, corpus, name, executor) as p:
            summaries[name] = p.run()
    local, ray_ = summaries["local"], summaries["ray"]
    assert (local.units, local.items, local.embedded, local.skipped) == (7, 12, 10, 1)
    for field in ("units", "items", "embedded", "skipped", "removed", "unrouted", "counters", "interrupted"):
        assert getattr(ray_, field) == getattr(local, field), field
    assert sorted(failures(ray_)) == sorted(failures(local))
    assert {(uri, stage) for uri, stage, _ in failures(local)} == {("docs/bad.md", "embed"), ("docs/latin1.md", "read")}
    assert sorted((tmp_path / "ray.failures.jsonl").read_text().splitlines()) == sorted(
        (tmp_path / "local.failures.jsonl").read_text().splitlines()
    )
    assert same_rows(tmp_path / "local.npz", tmp_path / "ray.npz") == 10

    # Unchanged: the same again (the failed items are tried again, by both).
    for name, executor in (("local", None), ("ray", RAY)):
        with text_pipeline(tmp_path, corpus, name, executor) as p:
            summaries[name] = p.run()
    assert failures(summaries["ray"]) == failures(summaries["local"])
    for field in ("units", "items", "embedded", "skipped", "removed"):
        assert getattr(summaries["ray"], field) == getattr(summaries["local"], field), field
    assert (summaries["ray"].embedded, summaries["ray"].skipped) == (0, 11)

    # Nothing left to embed: no actor is started.
    (corpus / "bad.md").unlink()
    with text_pipeline(tmp_path, corpus, "ray", RAY) as p:
        assert p.run().embedded == 0
        assert p.executor._pools == {}


def test_on_error_fail_stops_at_the_same_failure_and_stores_the_same_rows(ray_session, tmp_path, corpus):
    stored = {}
    for name, executor in (("local", None), ("ray", RAY)):
        with text_pipeline(tmp_path, corpus, name, executor, on_error="fail") as p:
            with pytest.raises(ItemError) as raised:
                p.run()
        stored[name] = (raised.value.uri, raised.value.stage)
    assert stored["ray"] == stored["local"]
    same_rows(tmp_path / "local.npz", tmp_path / "ray.npz")


def test_actors_that_cannot_be_placed_fail_with_one_clear_message(ray_session, tmp_path, corpus):
    too_many = {"plugin": "ray", "actors": 64, "cpus_per_actor": 1.0, "ready_timeout": 1}
    with text_pipeline(tmp_path, corpus, "big", too_many) as p:
        with pytest.raises(EmbedlineError, match=r"actors of model 0 \(model\) were not ready after 1 s: \d+ of 64"):
            p.run()


# -- real models: a text model and an image model, one actor pool each ------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A tiny sentence-transformer (8 tokens at most: long texts are truncated and counted), a
    tiny ResNet, and a folder of short texts, long texts, photos and one broken image."""
    minilm = pytest.importorskip("embedline_minilm.testing")
    resnet = pytest.importorskip("embedline_resnet.testing")
    from PIL import Image

    root = tmp_path_factory.mktemp("media")
    text_model = minilm.build_tiny_sentence_transformer(root / "minilm", dim=32, seed=0, max_seq_length=8)
    image_model = resnet.build_tiny_resnet(root / "resnet")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rng.integers(0, 255, size=(24 + 4 * i, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / f"photo{i}.png")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    texts = [f"the dog runs to the {w} and the cat sits by the {w} near the old house" for w in
             ("river", "tree", "car", "door")] + ["a red ball", "the sea", "hot bread"]  # fmt: skip
    for i, text in enumerate(texts):
        (data / f"note{i}.txt").write_text(text)
    return root, text_model, image_model


def media_pipeline(root, text_model, image_model, name, executor=None):
    data = {
        "pipeline": {"failures": str(root / f"{name}.failures.jsonl")},
        "source": {"path": str(root / "data"), "include": ["*.png", "*.txt"], "chunk": {"by": "none"}},
        "models": [
            {"plugin": "minilm", "name": str(text_model), "modalities": ["text"], "batch_size": 4,
             "collection": "texts", "device": "cpu"},
            {"plugin": "resnet", "name": str(image_model), "modalities": ["image"], "batch_size": 4,
             "collection": "images", "device": "cpu"},
        ],  # fmt: skip
        "store": {"plugin": "memory", "path": str(root / f"{name}.npz")},
    }
    if executor:
        data["executor"] = executor
    return Pipeline.from_dict(data, base_dir=root, pm=fresh_plugin_manager())


def test_text_and_image_models_same_rows_counters_and_failures_as_local(ray_session, media):
    root, text_model, image_model = media
    summaries = {}
    for name, executor in (("local", None), ("ray", {"plugin": "ray", "actors": 1, "cpus_per_actor": 0.5})):
        with media_pipeline(root, text_model, image_model, name, executor) as p:
            summaries[name] = p.run()
    local, ray_ = summaries["local"], summaries["ray"]
    assert local.embedded == 13 and local.counters.get("truncated") == 4, local.format()
    for field in ("units", "items", "embedded", "skipped", "unrouted", "counters"):
        assert getattr(ray_, field) == getattr(local, field), field
    assert failures(ray_) == failures(local)
    assert [(uri, stage) for uri, stage, _ in failures(local)] == [("data/broken.png", "preprocess")]
    assert (root / "ray.failures.jsonl").read_text() == (root / "local.failures.jsonl").read_text()
    assert same_rows(root / "local.npz", root / "ray.npz") == 13


# -- a server every worker reaches: the workers write ---------------------------------------------


@pytest.fixture
def lite_server(tmp_path):
    """Milvus Lite serving a folder over gRPC (``milvus-lite server``): a server URI for the test."""
    import shutil
    import signal
    import socket
    import time

    command = shutil.which("milvus-lite", path=str(Path(sys.executable).parent)) or shutil.which("milvus-lite")
    if command is None:
        pytest.skip("milvus-lite (with its `server` command) is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "lite-server.log", "w")
    server = subprocess.Popen(
        [command, "server", "--data-dir", str(tmp_path / "lite"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"milvus-lite server did not start: {(tmp_path / 'lite-server.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def server_rows(pipeline, collection):
    found = pipeline.store.client.query(
        collection, filter='id != ""', output_fields=["vector", "uri", "chunk", "text"], limit=16384
    )
    return {r["id"]: (np.asarray(r["vector"], dtype=np.float32), r["uri"], r["chunk"], r["text"]) for r in found}


def test_workers_write_to_a_server_the_same_rows_as_local(ray_session, tmp_path, corpus, lite_server):
    summaries, stored = {}, {}
    for name, executor in (("local", None), ("ray", RAY)):
        data = {
            "source": {"path": str(corpus), "chunk": {"by": "paragraph", "max_tokens": 8}},
            "model": {"plugin": "fake", "batch_size": 2, "collection": f"docs_{name}"},
            "store": {"plugin": "milvus", "uri": lite_server},
        }
        if executor:
            data["executor"] = executor
        with Pipeline.from_dict(data, base_dir=tmp_path, pm=fresh_plugin_manager()) as p:
            summaries[name] = p.run()
            if executor:
                assert p.executor._store_specs == {0: p.config.store}  # `write = "auto"`: the workers wrote
            stored[name] = server_rows(p, f"docs_{name}")
    for field in ("units", "items", "embedded", "skipped"):
        assert getattr(summaries["ray"], field) == getattr(summaries["local"], field), field
    assert failures(summaries["ray"]) == failures(summaries["local"])
    assert sorted(stored["ray"]) == sorted(stored["local"]) and len(stored["local"]) == 10
    for row_id, (vector, *fields) in stored["local"].items():
        assert stored["ray"][row_id][1:] == tuple(fields)
        np.testing.assert_allclose(stored["ray"][row_id][0], vector, atol=1e-5, rtol=0)


def test_workers_write_a_lite_file_through_its_shared_engine_the_same_rows_as_local(ray_session, tmp_path, corpus):
    from embedline_milvus.testing import lite_engines, wait_lite_engines_gone

    stored = {}
    for name, executor in (("local", None), ("ray", {**RAY, "write": "workers"})):
        data = {
            "source": {"path": str(corpus), "chunk": {"by": "paragraph", "max_tokens": 8}},
            "model": {"plugin": "fake", "batch_size": 2, "collection": f"docs_{name}"},
            "store": {"plugin": "milvus", "uri": str(tmp_path / "shared.db")},
        }
        if executor:
            data["executor"] = executor
        with Pipeline.from_dict(data, base_dir=tmp_path, pm=fresh_plugin_manager()) as p:
            p.run()
            if executor:
                assert p.executor._store_specs == {0: p.config.store}  # the actors wrote
                assert len(lite_engines(tmp_path / "shared.db")) == 1  # one engine for driver and actors
            stored[name] = server_rows(p, f"docs_{name}")
    assert sorted(stored["ray"]) == sorted(stored["local"]) and len(stored["local"]) == 10
    for row_id, (vector, *fields) in stored["local"].items():
        assert stored["ray"][row_id][1:] == tuple(fields)
        np.testing.assert_allclose(stored["ray"][row_id][0], vector, atol=1e-5, rtol=0)
    assert not wait_lite_engines_gone(tmp_path / "shared.db", timeout=60)  # actors killed with the pipeline


# -- the model in the workers is not the driver's ---------------------------------------------------


def test_a_model_the_workers_cannot_load_stops_the_run_naming_file_and_key(ray_session, tmp_path, corpus, monkeypatch):
    from embedline.errors import ModelSourceError

    monkeypatch.setenv("EMBEDLINE_TEST_DRIVER_PID", str(__import__("os").getpid()))  # actors get EMBEDLINE_*
    monkeypatch.setenv("EMBEDLINE_TEST_IN_WORKER", "fail")
    with text_pipeline(tmp_path, corpus, "w", RAY) as p:
        with pytest.raises(ModelSourceError) as raised:
            p.run()
        assert p.executor._pools == {}
    assert str(raised.value) == "<dict>: model: the weights are not on this worker"  # as `local` would say it
    if sys.version_info >= (3, 11):
        assert "raised in a Ray worker loading model 'model'" in raised.value.__notes__[0]


def test_workers_with_another_model_than_the_collection_s_are_refused(ray_session, tmp_path, corpus, monkeypatch):
    from embedline.errors import ModelMismatchError

    monkeypatch.setenv("EMBEDLINE_TEST_DRIVER_PID", str(__import__("os").getpid()))
    monkeypatch.setenv("EMBEDLINE_TEST_IN_WORKER", "other")
    with text_pipeline(tmp_path, corpus, "w", RAY) as p:
        with pytest.raises(ModelMismatchError, match=r"collection 'docs': the Ray workers' model has identity"):
            p.run()
        assert p.store.count("docs") == 0


def test_starting_ray_leaves_the_host_environment_as_it_was(ray_session):
    # ray_session started Ray through start_local_ray, which gives Ray's processes a longer GCS
    # start-up wait through the environment, during ray.init only.
    assert "RAY_gcs_server_port_wait_time_s" not in __import__("os").environ
