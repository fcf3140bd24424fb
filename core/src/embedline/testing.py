"""Helpers for testing embedline and its plugins the way the project tests itself.

* :func:`fresh_plugin_manager` — a plugin manager that ignores the environment's plugin settings.
* :class:`FakeTextModel` — a deterministic text model plugin (hashed bag of words, no weights):
  similar texts get similar vectors, and it counts what it embeds.
* :func:`lite_store` — a ``[store]`` section for a Milvus Lite file in a temporary folder.
* :func:`load_plugin_model` — load a model through its plugin exactly as a pipeline does.
* :func:`read_sts_pairs` — scored sentence pairs from an STS-benchmark TSV file.
* :func:`write_plugin_distribution` — a real installed-looking distribution (``.dist-info`` with an
  entry point) in a folder, to test entry-point discovery without pip.
* ``build_tiny_sentence_transformer`` / ``build_tiny_static_model`` (from :mod:`embedline.tinymodels`)
  — tiny random-weight models saved to a folder, loadable by the real loading code.
"""

from __future__ import annotations

import hashlib
import os
import re
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from embedline import hookimpl
from embedline.contracts import Failed, Item, Model, Option, PluginInfo
from embedline.plugins import PluginManager

__all__ = [
    "FakeTextModel",
    "build_tiny_sentence_transformer",
    "build_tiny_static_model",
    "fresh_plugin_manager",
    "lite_store",
    "load_plugin_model",
    "read_sts_pairs",
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
    config = bind_plugins(parse_config({"model": section}, origin="<test>", base_dir=base_dir), pm)
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


def __getattr__(name: str) -> Any:
    if name in ("build_tiny_sentence_transformer", "build_tiny_static_model"):
        from embedline import tinymodels

        return getattr(tinymodels, name)
    raise AttributeError(f"module 'embedline.testing' has no attribute {name!r}")
