"""Evaluate a pipeline's text model: STS correlation and retrieval quality.

* STS: cosine similarity of each sentence pair against gold scores (Spearman, Pearson), on an
  STS-benchmark TSV (:func:`read_sts`).
* Retrieval: embed queries and a corpus in memory (no store), rank the corpus by cosine and score
  the rankings against relevance judgements: recall@k, MRR@k and nDCG@10. Data comes from JSONL
  queries/corpus plus TSV qrels (:func:`read_retrieval`, which also reads the BEIR layout), or from
  STS pairs (:func:`retrieval_from_sts`).

numpy is imported when a function needs it, scipy (exact reference statistics) only if installed.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from embedline.contracts import Item
from embedline.errors import EmbedlineError

NDCG_AT = 10

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class StsData:
    first: list[str]
    second: list[str]
    gold: list[float]
    name: str = ""


@attrs.frozen
class RetrievalData:
    queries: dict[str, str]  # qid -> text
    corpus: dict[str, str]  # docid -> text
    qrels: dict[str, dict[str, float]]  # qid -> {docid: grade}
    name: str = ""


def read_sts(path: str | Path) -> StsData:
    """Scored pairs from an STS-benchmark TSV: genre, file, year, id, score, sentence1, sentence2.

    Fields after sentence2 are ignored; quotes are literal text; blank lines are skipped. A first
    line whose score is not a number is taken as a header. Any other malformed line is an error.
    """
    first, second, gold = [], [], []
    for lineno, row in enumerate(_tsv_rows(path), start=1):
        if not any(row):
            continue
        if len(row) < 7:
            raise EmbedlineError(
                f"{path}:{lineno}: expected at least 7 tab-separated fields (STS benchmark), got {len(row)}"
            )
        try:
            score = float(row[4])
        except ValueError:
            if lineno == 1:
                continue  # header
            raise EmbedlineError(f"{path}:{lineno}: score (5th field) is not a number: {row[4]!r}") from None
        gold.append(score)
        first.append(row[5])
        second.append(row[6])
    if not gold:
        raise EmbedlineError(f"{path}: no scored pairs")
    return StsData(first, second, gold, name=Path(path).name)


def _tsv_rows(path: str | Path):
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            yield from csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
    except OSError as exc:
        raise EmbedlineError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise EmbedlineError(f"{path}: not valid UTF-8 (byte {exc.start})") from None


def _read_jsonl(path: str | Path) -> dict[str, str]:
    """``{"id": ..., "text": ...}`` per line (BEIR: ``_id``, and ``title`` put before the text)."""
    out: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EmbedlineError(f"cannot read {path}: {exc}") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = row.get("id", row.get("_id"))
            text = " ".join(t for t in (row.get("title") or "", row.get("text") or "") if t.strip())
        except (ValueError, AttributeError, TypeError):
            raise EmbedlineError(f"{path}:{lineno}: expected a JSON object with 'id' and 'text'") from None
        if key is None:
            raise EmbedlineError(f"{path}:{lineno}: no 'id' (or '_id') field")
        out[str(key)] = text
    return out


def _read_qrels(path: str | Path) -> dict[str, dict[str, float]]:
    """``qid<TAB>docid<TAB>grade`` (BEIR, a header line allowed) or TREC ``qid 0 docid grade``."""
    qrels: dict[str, dict[str, float]] = {}
    for lineno, row in enumerate(_tsv_rows(path), start=1):
        fields = row if len(row) > 1 else (row[0].split() if row else [])
        if not fields:
            continue
        if len(fields) not in (3, 4):
            raise EmbedlineError(f"{path}:{lineno}: expected qid, docid, grade (or TREC qid 0 docid grade)")
        qid, docid, grade = (fields[0], fields[1], fields[2]) if len(fields) == 3 else (fields[0], fields[2], fields[3])
        try:
            value = float(grade)
        except ValueError:
            if lineno == 1:
                continue  # header, e.g. "query-id corpus-id score"
            raise EmbedlineError(f"{path}:{lineno}: grade is not a number: {grade!r}") from None
        qrels.setdefault(qid, {})[docid] = value
    return qrels


def read_retrieval(queries: str | Path, corpus: str | Path, qrels: str | Path) -> RetrievalData:
    return RetrievalData(_read_jsonl(queries), _read_jsonl(corpus), _read_qrels(qrels), name=Path(qrels).name)


def read_beir(folder: str | Path, split: str = "test") -> RetrievalData:
    """A BEIR dataset folder: ``queries.jsonl``, ``corpus.jsonl``, ``qrels/<split>.tsv``."""
    folder = Path(folder)
    data = read_retrieval(folder / "queries.jsonl", folder / "corpus.jsonl", folder / "qrels" / f"{split}.tsv")
    return attrs.evolve(data, name=f"{folder.name}/{split}")


def retrieval_from_sts(sts: StsData, threshold: float = 4.0) -> RetrievalData:
    """Pairs scored >= ``threshold`` become queries (sentence1) whose relevant document is their
    sentence2, searched among all distinct second sentences. Identical query texts are merged (all
    their partners are relevant); identical second sentences are one document."""
    corpus: dict[str, str] = {}
    doc_of: dict[str, str] = {}
    for text in sts.second:
        if text not in doc_of:
            doc_of[text] = f"d{len(corpus)}"
            corpus[doc_of[text]] = text
    queries: dict[str, str] = {}
    qid_of: dict[str, str] = {}
    qrels: dict[str, dict[str, float]] = {}
    for a, b, score in zip(sts.first, sts.second, sts.gold):
        if score < threshold:
            continue
        if a not in qid_of:
            qid_of[a] = f"q{len(queries)}"
            queries[qid_of[a]] = a
        qrels.setdefault(qid_of[a], {})[doc_of[b]] = 1.0
    if not queries:
        raise EmbedlineError(f"{sts.name}: no pair is scored >= {threshold:g}: no queries")
    return RetrievalData(queries, corpus, qrels, name=f"{sts.name} (score >= {threshold:g})")


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def rankdata(values: Sequence[float]) -> Any:
    """Ranks from 1, ties sharing their average rank (scipy's ``rankdata(method="average")``)."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0  # mean of ranks start+1 .. end
            start = end
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    import numpy as np

    a = np.asarray(x, dtype=np.float64) - np.mean(x)
    b = np.asarray(y, dtype=np.float64) - np.mean(y)
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom else float("nan")


def spearman(x: Sequence[float], y: Sequence[float], *, use_scipy: bool = True) -> float:
    """Spearman's rho: scipy's when installed, else Pearson of average ranks (the same value)."""
    if use_scipy:
        try:
            from scipy.stats import spearmanr
        except ImportError:
            pass
        else:
            return float(spearmanr(x, y).statistic)
    return pearson(rankdata(x), rankdata(y))


def retrieval_metrics(
    rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, float]], k: int = 10
) -> dict[str, float]:
    """Mean recall@k, MRR@k and nDCG@10 over the queries that have a relevant document (grade > 0).

    ``rankings`` maps a query id to document ids, best first. nDCG uses the grade as gain and
    ``log2(rank + 1)`` as discount, as trec_eval and BEIR do.
    """
    recall = mrr = ndcg = 0.0
    n = 0
    for qid, judged in qrels.items():
        relevant = {d: g for d, g in judged.items() if g > 0}
        if not relevant or qid not in rankings:
            continue
        n += 1
        ranked = list(rankings[qid])
        recall += sum(d in relevant for d in ranked[:k]) / len(relevant)
        mrr += next((1.0 / r for r, d in enumerate(ranked[:k], start=1) if d in relevant), 0.0)
        dcg = sum(relevant.get(d, 0.0) / math.log2(r + 1) for r, d in enumerate(ranked[:NDCG_AT], start=1))
        ideal = sorted(relevant.values(), reverse=True)[:NDCG_AT]
        ndcg += dcg / sum(g / math.log2(r + 1) for r, g in enumerate(ideal, start=1))
    if not n:
        raise EmbedlineError("no query has a relevant document in the judgements (check that the ids match)")
    return {f"recall@{k}": recall / n, f"mrr@{k}": mrr / n, f"ndcg@{NDCG_AT}": ndcg / n, "evaluated": n}


# ---------------------------------------------------------------------------------------------
# Running a model
# ---------------------------------------------------------------------------------------------


def embed_texts(model: Any, texts: Sequence[str], mode: str = "document", *, what: str = "text") -> Any:
    """Unit-length float32 vectors for ``texts`` with an :class:`~embedline.pipeline.EmbeddingModel`.

    Distinct texts are embedded once, longest first (less padding per batch), then put back in
    order. A text the model cannot embed is an error naming it.
    """
    import numpy as np

    unique = sorted(set(texts), key=len, reverse=True)
    items = [Item(id=f"eval:{i}", uri=f"<{what} {i}>", modality="text", text=t) for i, t in enumerate(unique)]
    result = model.embed_items(items, mode=mode)
    if result.failures:
        bad = result.failures[0]
        text = {it.uri: it.text for it in items}[bad.uri]
        raise EmbedlineError(f"the model cannot embed {len(result.failures)} {what}(s), e.g. {text[:80]!r}: {bad.reason}")
    vectors = np.asarray(result.vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, np.finfo(np.float32).tiny)
    row = {t: i for i, t in enumerate(unique)}
    return vectors[[row[t] for t in texts]]


def evaluate_sts(model: Any, data: StsData) -> dict[str, Any]:
    import numpy as np

    started = time.perf_counter()
    vectors = embed_texts(model, data.first + data.second, "document", what="sentence")
    seconds = time.perf_counter() - started
    n = len(data.gold)
    cosine = (vectors[:n] * vectors[n:]).sum(axis=1).astype(np.float64)
    sentences = len(set(data.first) | set(data.second))
    return {
        "task": "sts",
        "data": data.name,
        "pairs": n,
        "spearman": spearman(cosine, data.gold),
        "pearson": pearson(cosine, data.gold),
        "sentences": sentences,
        "seconds": seconds,
        "sentences_per_s": sentences / seconds if seconds > 0 else None,
    }


def rank_corpus(query_vectors: Any, doc_vectors: Any, depth: int, block: int = 1024) -> Any:
    """Indices of the ``depth`` most cosine-similar documents per query, best first (ties: lower index)."""
    import numpy as np

    depth = min(depth, doc_vectors.shape[0])
    out = np.empty((query_vectors.shape[0], depth), dtype=np.int64)
    for start in range(0, query_vectors.shape[0], block):
        scores = query_vectors[start : start + block] @ doc_vectors.T
        if depth < scores.shape[1]:
            top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        else:
            top = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)  # by score, then by index
        out[start : start + block] = np.take_along_axis(top, order, axis=1)
    return out


def evaluate_retrieval(model: Any, data: RetrievalData, k: int = 10) -> dict[str, Any]:
    started = time.perf_counter()
    qids = [q for q in data.queries if q in data.qrels]
    if not qids:
        raise EmbedlineError(f"{data.name}: no query id appears in the relevance judgements")
    docids = list(data.corpus)
    if not docids:
        raise EmbedlineError(f"{data.name}: the corpus is empty")
    docs = embed_texts(model, [data.corpus[d] for d in docids], "document", what="document")
    queries = embed_texts(model, [data.queries[q] for q in qids], "query", what="query")
    top = rank_corpus(queries, docs, max(k, NDCG_AT))
    rankings = {qid: [docids[j] for j in row] for qid, row in zip(qids, top)}
    metrics = retrieval_metrics(rankings, {q: data.qrels[q] for q in qids}, k)
    return {
        "task": "retrieval",
        "data": data.name,
        "queries": metrics.pop("evaluated"),
        "corpus": len(docids),
        "k": k,
        **metrics,
        "seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def format_results(model: str, results: Sequence[Mapping[str, Any]]) -> str:
    """The results as aligned text tables (scores x 100)."""
    lines = [f"model: {model}"]
    sts = [r for r in results if r["task"] == "sts"]
    if sts:
        lines += ["", f"{'STS':<40} {'pairs':>6} {'spearman':>9} {'pearson':>8} {'sent/s':>8}"]
        for r in sts:
            rate = f"{r['sentences_per_s']:.0f}" if r.get("sentences_per_s") else "-"
            lines.append(
                f"{r['data'][:40]:<40} {r['pairs']:>6} {100 * r['spearman']:>9.2f} {100 * r['pearson']:>8.2f} {rate:>8}"
            )
    for r in (r for r in results if r["task"] == "retrieval"):
        k = r["k"]
        lines += [
            "",
            f"{'retrieval':<40} {'queries':>7} {'corpus':>7} {f'recall@{k}':>10} {f'mrr@{k}':>8} {f'ndcg@{NDCG_AT}':>8}",
            (
                f"{r['data'][:40]:<40} {r['queries']:>7} {r['corpus']:>7} {100 * r[f'recall@{k}']:>10.2f} "
                f"{100 * r[f'mrr@{k}']:>8.2f} {100 * r[f'ndcg@{NDCG_AT}']:>8.2f}"
            ),
        ]
    return "\n".join(lines)


__all__ = [
    "RetrievalData",
    "StsData",
    "evaluate_retrieval",
    "evaluate_sts",
    "format_results",
    "pearson",
    "rank_corpus",
    "rankdata",
    "read_beir",
    "read_retrieval",
    "read_sts",
    "retrieval_from_sts",
    "retrieval_metrics",
    "spearman",
]
