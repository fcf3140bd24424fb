"""Character n-gram hashing as an embedline model plugin."""

from __future__ import annotations

import hashlib

from embedline import hookimpl
from embedline.contracts import Failed, Model, Option, PluginInfo


def _validate(options):
    # Runs at `embedline check` time, before anything is loaded.
    if options["dim"] < 2:
        raise ValueError("dim: must be at least 2")
    if options["ngram"] < 1:
        raise ValueError("ngram: must be at least 1")


plugin_info = PluginInfo(
    kind="model",
    modalities=("text",),
    options={
        "dim": Option(int, 256, "number of hash buckets (the vector size)"),
        "ngram": Option(int, 3, "characters per n-gram"),
    },
    description="character n-gram hashing (no weights)",
    validate=_validate,
)


@hookimpl
def load_model(spec):
    dim, ngram = spec.option("dim"), spec.option("ngram")
    return Model(
        dim=dim,
        modalities=("text",),
        source="wordhash",
        revision="v1",  # the hashing scheme: bump when vectors would change
        normalized=spec.normalize,
        settings={"dim": dim, "ngram": ngram},
    )


@hookimpl
def preprocess(model, items, mode):
    out = []
    for item in items:
        text = " ".join((item.text or "").lower().split())
        out.append(text if text else Failed("no text"))
    return out


@hookimpl
def embed(model, inputs, mode):
    import numpy as np  # inside the hook: importing the plugin stays cheap

    n = model.settings["ngram"]
    vectors = np.zeros((len(inputs), model.dim), dtype=np.float32)
    for row, text in enumerate(inputs):
        padded = f" {text} "
        for i in range(max(1, len(padded) - n + 1)):
            digest = hashlib.blake2b(padded[i : i + n].encode(), digest_size=8).digest()
            h = int.from_bytes(digest, "little")
            vectors[row, h % model.dim] += 1.0 if h >> 63 else -1.0
    if model.normalized:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms == 0, 1, norms)
    return vectors
