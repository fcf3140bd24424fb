"""Helpers for testing embedline and its plugins the way the project tests itself.

* :func:`fresh_plugin_manager` — a plugin manager that ignores the environment's plugin settings.
* :class:`FakeTextModel` — a deterministic text model plugin (hashed bag of words, no weights):
  similar texts get similar vectors, and it counts what it embeds.
* :func:`lite_store` — a ``[store]`` section for a Milvus Lite file in a temporary folder.
* :func:`memory_store` — a ``[store]`` section for the built-in ``memory`` store, saved in a folder.
* :class:`NullStore` — a store that keeps nothing (``NULL_STORE_PLUGIN``): a pipeline's own cost.
* :class:`StoreConformance` — the store conformance suite: subclass it in a store plugin's tests.
* :func:`load_plugin_model` — load a model through its plugin exactly as a pipeline does.
* :func:`model_plugin_fixtures` — ``offline_hub``, ``pm`` and ``load``: what a model plugin's
  ``conftest.py`` starts from; :func:`import_cost` — the heavy libraries importing a plugin pulls in.
* :func:`read_sts_pairs` — scored sentence pairs from an STS-benchmark TSV file.
* :func:`write_plugin_distribution` — a real installed-looking distribution (``.dist-info`` with an
  entry point) in a folder, to test entry-point discovery without pip.
* :func:`word_vocabulary` — special tokens, common English words and punctuation: a whole-word
  vocabulary for the tokenizer of a tiny test model.

Tiny random-weight models for a plugin's own library come with that plugin, in
``embedline_<plugin>.testing`` (``embedline_minilm.testing.build_tiny_sentence_transformer``, ...).
"""

from __future__ import annotations

import hashlib
import os
import re
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from embedline import hookimpl
from embedline.contracts import Failed, Item, Model, Option, PluginInfo, VectorStore
from embedline.plugins import PluginManager

__all__ = [
    "FAKE_TEXT_PLUGIN",
    "FakeTextModel",
    "NULL_STORE_PLUGIN",
    "NullStore",
    "StoreConformance",
    "fresh_plugin_manager",
    "import_cost",
    "lite_store",
    "load_plugin_model",
    "memory_store",
    "model_plugin_fixtures",
    "read_sts_pairs",
    "word_vocabulary",
    "write_plugin_distribution",
]


def fresh_plugin_manager(*plugins: object, autoload: bool = True, blocked: Iterable[str] = ()) -> PluginManager:
    """A new manager with ``plugins`` registered (under their ``name`` attribute) before entry points.

    Unlike :func:`embedline.plugins.get_plugin_manager` it ignores ``EMBEDLINE_*`` variables, so
    tests do not depend on the shell they run in.
    """
    pm = PluginManager(autoload=autoload, blocked=blocked)
    for plugin in plugins:
        pm.register(plugin, name=getattr(plugin, "name", None))
    return pm


_TOKEN = re.compile(r"\w+")


class FakeTextModel:
    """A text model plugin for tests: each word adds a fixed pseudo-random ±1 to one dimension.

    Register an instance with :func:`fresh_plugin_manager` and use ``plugin = "fake"`` in a
    pipeline.  ``embedded`` counts inputs embedded; inputs containing a string from ``fail_on`` make
    ``embed`` raise, to test how failures are isolated.
    """

    name = "fake"
    __version__ = "1.0"
    plugin_info = PluginInfo(
        kind="model",
        modalities=("text",),
        options={"dim": Option(int, 16, "vector size")},
        description="deterministic hashed bag-of-words model for tests",
    )

    def __init__(self, name: str = "fake", fail_on: Sequence[str] = ()):
        self.name = name
        self.fail_on = tuple(fail_on)
        self.embedded = 0
        self.loads = 0

    @hookimpl
    def load_model(self, spec: Any) -> Model:
        self.loads += 1
        dim = spec.option("dim", 16)
        return Model(
            dim=dim,
            modalities=("text",),
            source=spec.name or "fake-bow",
            revision="fake-1",
            normalized=spec.normalize,
            settings={"dim": dim},
        )

    @hookimpl
    def preprocess(self, model: Model, items: Sequence[Item], mode: str) -> list[Any]:
        return [it.text if it.text and it.text.strip() else Failed("no text to embed") for it in items]

    @hookimpl
    def embed(self, model: Model, inputs: Sequence[str], mode: str) -> Any:
        import numpy as np

        for text in inputs:
            for marker in self.fail_on:
                if marker in text:
                    raise RuntimeError(f"fake model cannot embed text containing {marker!r}")
        out = np.zeros((len(inputs), model.dim), dtype=np.float32)
        for row, text in enumerate(inputs):
            for word in _TOKEN.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % model.dim] += 1.0 if (h >> 32) & 1 else -1.0
            if not out[row].any():
                out[row, 0] = 1.0
        if model.normalized:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        self.embedded += len(inputs)
        return out


class NullStore(VectorStore):
    """A store that keeps nothing, only counts the rows it is given: what a pipeline costs without a
    database (memory benchmarks and tests).  Register it with :data:`NULL_STORE_PLUGIN`."""

    def __init__(self) -> None:
        self.fingerprints: dict[str, dict[str, Any]] = {}
        self.rows = 0

    def get_fingerprint(self, collection: str) -> dict[str, Any] | None:
        return self.fingerprints.get(collection)

    def create_collection(self, collection: str, fingerprint: Any) -> None:
        self.fingerprints[collection] = dict(fingerprint)

    def existing_ids(self, collection: str, ids: Sequence[str], model: str) -> set[str]:
        return set()

    def upsert(self, collection: str, records: Sequence[Any]) -> None:
        self.rows += len(records)

    def search(self, collection: str, vectors: Any, k: int, filter: Any = None) -> list[list[Any]]:
        return [[] for _ in vectors]

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        pass

    def scan(self, collection: str) -> Iterator[tuple[str, str]]:
        return iter(())

    def count(self, collection: str) -> int:
        return self.rows


#: A plugin module for the store ``null`` (:class:`NullStore`): register it with
#: ``fresh_plugin_manager(types.ModuleType(...))`` or write it with :func:`write_plugin_distribution`.
NULL_STORE_PLUGIN = """
from embedline import hookimpl
from embedline.contracts import PluginInfo
from embedline.testing import NullStore

plugin_info = PluginInfo(kind="store", description="keeps nothing: measures the pipeline without a database")


@hookimpl
def store(spec):
    return NullStore()
"""


#: A plugin module serving :class:`FakeTextModel`: write it with :func:`write_plugin_distribution`
#: (``write_plugin_distribution(site, "fake", FAKE_TEXT_PLUGIN)``) to test what finds plugins by
#: entry point, such as the command line in a subprocess.
FAKE_TEXT_PLUGIN = """
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = _model.plugin_info
load_model, preprocess, embed = _model.load_model, _model.preprocess, _model.embed
"""


#: Like :data:`FAKE_TEXT_PLUGIN`, with ``EMBEDLINE_TEST_SLOW`` seconds of sleep per ``embed`` call:
#: a run that lasts long enough for a test to do something while it writes.
SLOW_TEXT_PLUGIN = """
import os, time
from embedline import hookimpl
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = _model.plugin_info
load_model, preprocess = _model.load_model, _model.preprocess

@hookimpl
def embed(model, inputs, mode):
    time.sleep(float(os.environ.get("EMBEDLINE_TEST_SLOW", "0")))
    return _model.embed(model, inputs, mode)
"""


def load_plugin_model(
    plugin: str,
    name: str | None = None,
    *,
    pm: PluginManager | None = None,
    base_dir: str | os.PathLike[str] = ".",
    **keys: Any,
) -> Model:
    """The :class:`Model` a ``[model]`` section with these keys loads: options checked, defaults
    filled, ``plugin``/``plugin_version``/``spec`` set, just as in a pipeline."""
    from embedline.config import bind_plugins, parse_config
    from embedline.pipeline import EmbeddingModel

    pm = pm or fresh_plugin_manager()
    section = {"plugin": plugin, **({"name": name} if name is not None else {}), **keys}
    data = {"model": section, "store": {"plugin": "memory"}}  # a model alone: bind no database plugin
    config = bind_plugins(parse_config(data, origin="<test>", base_dir=base_dir), pm)
    return EmbeddingModel.load(pm, config.models[0]).model


def read_sts_pairs(path: str | os.PathLike[str]) -> tuple[list[str], list[str], list[float]]:
    """sentence1, sentence2 and gold score (0-5) of an STS-benchmark TSV file.

    Columns: genre, file, year, id, score, sentence1, sentence2; some lines carry extra fields after
    sentence2, and quotes are literal text.
    """
    import csv

    first, second, gold = [], [], []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) >= 7:
                gold.append(float(row[4]))
                first.append(row[5])
                second.append(row[6])
    return first, second, gold


def lite_store(folder: str | os.PathLike[str], collection: str = "test", **options: Any) -> dict[str, Any]:
    """A ``[store]`` section for a Milvus Lite database inside ``folder``."""
    return {"plugin": "milvus", "collection": collection, "uri": str(Path(folder) / "test.db"), **options}


def memory_store(
    folder: str | os.PathLike[str] | None = None, collection: str = "test", **options: Any
) -> dict[str, Any]:
    """A ``[store]`` section for the built-in ``memory`` store, saved to ``vectors.npz`` in ``folder``
    when the store closes (so a second pipeline on the same folder sees the rows), or kept in
    memory only when ``folder`` is None."""
    saved = {"path": str(Path(folder) / "vectors.npz")} if folder is not None else {}
    return {"plugin": "memory", "collection": collection, **saved, **options}


def write_plugin_distribution(
    root: str | os.PathLike[str], name: str, module_source: str, *, version: str = "0.0.1", module: str | None = None
) -> Path:
    """Write module ``embedline_<name>`` plus a ``.dist-info`` declaring entry point ``name``.

    Put ``root`` on ``sys.path`` (or ``PYTHONPATH`` for a subprocess) and
    ``importlib.metadata`` finds it exactly as it finds a pip-installed plugin.
    """
    root = Path(root)
    module = module or f"embedline_{name.replace('-', '_')}"
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(module_source))
    dist = root / f"embedline_{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: embedline-{name}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[embedline]\n{name} = {module}\n")
    return root


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Enough everyday English that short test sentences are mostly in-vocabulary.
COMMON_WORDS = tuple(
    """
    the be to of and a in that have i it for not on with he as you do at this but his by from they we
    say her she or an will my one all would there their what so up out if about who get which go me when
    make can like time no just him know take people into year your good some could them see other than then
    now look only come its over think also back after use two how our work first well way even new want
    because any these give day most us is are was were has had been did does said made went got
    man woman child children dog dogs cat cats horse bird fish car cars bus train plane boat house home
    city street road river sea water tree trees field park table chair door window book books room food
    bread cheese apple music song guitar piano ball game team player players school student students
    teacher doctor police market money price world country government president minister news report
    red blue green black white brown small big large little old young long short high low hot cold
    happy sad fast slow open close run runs running walk walks walking sit sits sitting stand stands
    standing eat eats eating drink play plays playing read reads reading write talk talks cook cooks
    ride rides riding swim swims jump jumps fly flies sleep sleeps sing sings dance dances wear wears
    down near under between across through while before again very more less
    much many each every another same different today yesterday tomorrow morning night week month
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def word_vocabulary() -> list[str]:
    """:data:`SPECIAL_TOKENS`, then :data:`COMMON_WORDS` (lower case, once each), then ``. , ! ? ' -``.

    The vocabulary of the whole-word tokenizers of the tiny text models the plugins build for their
    tests (``embedline_minilm.testing``, ``embedline_model2vec.testing``): a token's id is its index.
    """
    words = list(dict.fromkeys(w.lower() for w in COMMON_WORDS))
    return [*SPECIAL_TOKENS, *words, ".", ",", "!", "?", "'", "-"]


#: Libraries a plugin module must not import when it is imported (listing plugins stays fast).
HEAVY_MODULES = (
    "torch", "transformers", "sentence_transformers", "model2vec", "tokenizers", "pymilvus",
    "PIL", "av", "soundfile", "soxr", "ctranslate2", "numpy",
)


def import_cost(plugin: str, heavy: Sequence[str] = HEAVY_MODULES) -> tuple[list[str], float]:
    """Import plugin ``plugin`` and read its ``plugin_info`` in a fresh interpreter, as
    ``embedline plugins`` does: which of ``heavy`` got imported, and how many seconds it took."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "from embedline.plugins import get_plugin_manager\n"
        f"get_plugin_manager().info({plugin!r})\n"
        f"heavy = [m for m in {tuple(heavy)!r} if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'seconds': time.perf_counter() - t}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    return out["heavy"], out["seconds"]


def model_plugin_fixtures(plugin: str, *, default: str | None = None, device: str | None = "cpu") -> tuple[Any, Any, Any]:
    """The fixtures every model plugin's tests start from, for its ``conftest.py``::

        offline_hub, pm, load = model_plugin_fixtures("clip", default="tiny_clip")

    ``offline_hub`` (autouse) sets ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``, so a hub id fails
    at once instead of retrying for a minute; ``pm`` is a session-wide :func:`fresh_plugin_manager`;
    ``load(name=None, **keys)`` loads a model through the plugin exactly as a pipeline does (keys
    as in a ``[model]`` section; ``options={...}`` merged in), with ``device`` unless given, and
    the path the fixture named ``default`` returns when ``name`` is None (else the plugin's
    default model).
    """
    import pytest

    @pytest.fixture(autouse=True, name="offline_hub")
    def offline_hub(monkeypatch: Any) -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    @pytest.fixture(scope="session", name="pm")
    def pm() -> PluginManager:
        return fresh_plugin_manager()

    @pytest.fixture(name="load")
    def load(pm: PluginManager, tmp_path: Path, request: Any) -> Any:
        fallback = str(request.getfixturevalue(default)) if default else None

        def load(name: str | os.PathLike[str] | None = None, **keys: Any) -> Model:
            keys = {**keys.pop("options", {}), **keys}
            if device is not None:
                keys.setdefault("device", device)
            source = fallback if name is None else str(name)
            return load_plugin_model(plugin, source, pm=pm, base_dir=tmp_path, **keys)

        return load

    return offline_hub, pm, load


def __getattr__(name: str) -> Any:
    if name == "StoreConformance":  # imports pytest and numpy: only for the tests that use it
        import sys

        if "embedline._store_suite" not in sys.modules:
            import pytest

            pytest.register_assert_rewrite("embedline._store_suite")  # plain asserts, pytest's messages
        from embedline._store_suite import StoreConformance

        return StoreConformance
    raise AttributeError(f"module 'embedline.testing' has no attribute {name!r}")
