"""Exact nearest neighbours in NumPy, for stores that keep the vectors themselves.

The built-in ``memory`` store uses it; store plugins import it from :mod:`embedline.toolkit` (the
plugin API), for a database with no vector search of its own (see ``docs/writing-plugins.md``).  Scores follow the
store contract: higher is closer, whatever the metric.

* ``COSINE``: the cosine similarity (1 for the same direction).
* ``IP``: the inner product.
* ``L2``: the negated squared Euclidean distance (0 for the same vector), as Milvus measures it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

METRICS = ("COSINE", "IP", "L2")


def scores(vectors: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """The ``(len(queries), len(vectors))`` scores of every stored vector for every query."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    dots = queries @ vectors.T
    if metric == "IP":
        return dots
    if metric == "COSINE":
        norms = np.linalg.norm(vectors, axis=1)
        query_norms = np.linalg.norm(queries, axis=1)
        denominator = np.outer(query_norms, norms)
        return np.divide(dots, denominator, out=np.zeros_like(dots), where=denominator > 0)
    if metric == "L2":
        squared = (queries**2).sum(axis=1)[:, None] - 2 * dots + (vectors**2).sum(axis=1)[None, :]
        return -np.maximum(squared, 0)
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


def nearest(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str) -> list[list[tuple[int, float]]]:
    """For each query, up to ``k`` ``(row, score)`` pairs, best first (ties: lower row first)."""
    import numpy as np

    if k < 1 or len(vectors) == 0:
        return [[] for _ in range(len(queries))]
    table = scores(vectors, queries, metric)
    k = min(k, table.shape[1])
    out = []
    for row_scores in table:
        if k < len(row_scores):
            candidates = np.argpartition(-row_scores, k - 1)[:k]
            threshold = row_scores[candidates].min()
            candidates = np.flatnonzero(row_scores >= threshold)  # every tie at the cut, for a stable order
        else:
            candidates = np.arange(len(row_scores))
        order = candidates[np.lexsort((candidates, -row_scores[candidates]))][:k]
        out.append([(int(i), float(row_scores[i])) for i in order])
    return out
