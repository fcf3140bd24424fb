"""Evaluate a pipeline's text model: STS correlation and retrieval quality.

* STS: cosine similarity of each sentence pair against gold scores (Spearman, Pearson), on an
  STS-benchmark TSV (:func:`read_sts`).
* Retrieval: embed queries and a corpus in memory (no store), rank the corpus by cosine and score
  the rankings against relevance judgements: recall@k, MRR@k and nDCG@10. Data comes from JSONL
  queries/corpus plus TSV qrels (:func:`read_retrieval`, which also reads the BEIR layout), or from
  STS pairs (:func:`retrieval_from_sts`).
* Sections: search the pipeline's *stored* rows with each query and score which sections of the
  source's markdown files come back, against judgements that name sections
  (``path#Heading > Subheading``): :func:`read_queries_qrels`, :func:`evaluate_sections`.  It
  measures the pipeline as stored, chunking included, not the model alone.

numpy is imported when a function needs it, scipy (exact reference statistics) only if installed.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from embedline.contracts import Hit, Item
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
# Sections: which part of a markdown file a stored hit comes from
# ---------------------------------------------------------------------------------------------

#: Separates the headings of a section path, e.g. ``Hooks > preprocess``.
SECTION_SEP = " > "
#: Hits fetched per query: enough that about 10 distinct sections remain once repeats are dropped.
SECTION_HITS = 50
#: Non-space characters of a chunk looked up in its file first; more when that start is not unique.
CHUNK_PROBE = 60

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
_LINK = re.compile(r"!?\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_EMPHASIS = re.compile(r"\*+|~~|(?<![0-9A-Za-z])_+|_+(?![0-9A-Za-z])")


def heading_text(raw: str) -> str:
    """A heading's plain text, as section paths spell it: ``## Using `embed()` *fast* ##`` ->
    ``Using embed() fast``.

    Judgements are written by hand, so the spelling must not depend on markup: the closing ``#``
    run, backticks, emphasis marks (``*``, ``~~``, and ``_`` not inside a word, so ``on_error``
    stays) and link syntax go (a link keeps its text), backslash escapes are resolved, whitespace
    is collapsed.  Text inside a code span is kept as written.
    """
    text = re.sub(r"(?:^|[ \t]+)#+[ \t]*$", "", raw.strip())  # the optional closing sequence
    kept: list[str] = []  # code span contents and escaped characters, out of reach of the markup rules

    def hold(literal: str) -> str:
        kept.append(literal)
        return f"\0{len(kept) - 1}\0"

    text = _CODE_SPAN.sub(lambda m: hold(m.group(2)), text)
    text = _ESCAPE.sub(lambda m: hold(m.group(1)), text)
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub("", text.replace("`", ""))
    text = re.sub(r"\0(\d+)\0", lambda m: kept[int(m.group(1))], text)
    return " ".join(text.split())


def heading_paths(text: str) -> list[tuple[int, str]]:
    """``(offset, section path)`` of each ATX heading of a markdown text, in order.

    The path is every enclosing heading's plain text from the top of the file down to this one,
    joined by :data:`SECTION_SEP`.  Lines inside backtick or tilde fences (three or more) are code,
    not headings (a ``# comment`` in a TOML example is no section); a fence closes with a run of
    the same character at least as long and nothing after it.  Lines end at ``\n`` only, as in
    markdown (``str.splitlines`` would also cut at form feeds and Unicode separators).
    """
    out: list[tuple[int, str]] = []
    stack: list[tuple[int, str]] = []  # (level, plain text) of the enclosing headings
    fence = ""
    for match in re.finditer(r"[^\n]*\n?", text):
        start, line = match.start(), match.group().rstrip("\r\n")
        opened = _FENCE.match(line)
        if fence:
            marks, rest = (opened.group(1), opened.group(2)) if opened else ("", "")
            if marks[:1] == fence[0] and len(marks) >= len(fence) and not rest.strip():
                fence = ""
            continue
        if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
            fence = opened.group(1)
            continue
        heading = _ATX.match(line)
        if heading is None:
            continue
        level = len(heading.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading_text(heading.group(2) or "")))
        out.append((start, SECTION_SEP.join(title for _, title in stack)))
    return out


def section_at(headings: Sequence[tuple[int, str]], offset: int) -> str:
    """The section path in force at ``offset`` (``""`` before the first heading)."""
    current = ""
    for start, path in headings:
        if start > offset:
            break
        current = path
    return current


def section_matches(judged: str, found: str) -> bool:
    """Whether the hit section ``found`` answers for the judged section ``judged``: the same file,
    and ``judged``'s heading path equal to ``found``'s or above it (a prefix on whole headings).

    Both are docids, ``path#Heading > Subheading``.  A hit in a subsection of the judged section
    counts: the judgement names the deepest section holding the whole answer, and a finer chunker
    may store its parts under their own headings.
    """
    judged_path, _, judged_section = judged.partition("#")
    found_path, _, found_section = found.partition("#")
    if judged_path != found_path:
        return False
    want = judged_section.split(SECTION_SEP) if judged_section else []
    have = found_section.split(SECTION_SEP) if found_section else []
    return have[: len(want)] == want


class SectionLocator:
    """Places stored hits in the sections of their source files (see :meth:`docid`).

    ``base`` is the folder hit uris are relative to (the pipeline file's).  A docid's path is the
    hit's uri; an absolute uri (a file outside the pipeline file's folder) is written relative to
    ``root``, the source folder, when it lies there, so that judgements written as
    ``docs/hooks.md`` also hold for a pipeline file kept elsewhere that reads the repository by
    an absolute path.  Each file is read and parsed once.
    """

    def __init__(self, base: str | Path, root: str | Path | None = None):
        self.base = Path(base)
        self.root = Path(root).resolve() if root is not None else None
        self._files: dict[str, _ParsedFile | None] = {}

    def docid(self, hit: Hit) -> str | None:
        """``<path>#<section path>`` of a hit, or None when its section cannot be told.

        A chunker that knows the headings stores the path as ``metadata["section"]``; for other
        chunks the section is the one in force where the chunk's text starts in the file, found
        by its first :data:`CHUNK_PROBE` non-space characters (whitespace is not compared: a
        chunk may join or trim the file's spacing).
        """
        path = self._path(hit.uri)
        section = hit.metadata.get("section") if hit.metadata else None
        if isinstance(section, str) and section.strip():
            return f"{path}#{section}"
        parsed = self._parsed(hit.uri)
        if parsed is None or not hit.text:
            return None
        start = parsed.find(hit.text)
        return None if start is None else f"{path}#{section_at(parsed.headings, start)}"

    def _path(self, uri: str) -> str:
        if self.root is None or not Path(uri).is_absolute():
            return uri
        try:
            return Path(uri).resolve().relative_to(self.root).as_posix()
        except (ValueError, OSError):
            return uri

    def _parsed(self, uri: str) -> _ParsedFile | None:
        if uri not in self._files:
            try:
                self._files[uri] = _ParsedFile((self.base / uri).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                self._files[uri] = None
        return self._files[uri]


class _ParsedFile:
    """A markdown file's headings, and its text without whitespace for locating chunks in it."""

    def __init__(self, text: str):
        self.headings = heading_paths(text)
        self._offsets = [i for i, ch in enumerate(text) if not ch.isspace()]  # squeezed index -> text offset
        self._squeezed = "".join(text[i] for i in self._offsets)

    def find(self, chunk: str) -> int | None:
        """Offset in the text where ``chunk`` starts, comparing non-space characters only.

        The chunk's first :data:`CHUNK_PROBE` characters are looked up; when they occur more than
        once, a longer start of the chunk decides (the first match of the longest start found).
        """
        whole = "".join(chunk.split())
        found, probe = None, CHUNK_PROBE
        while whole:
            at = self._squeezed.find(whole[:probe])
            if at < 0:
                break
            found = at
            if probe >= len(whole) or self._squeezed.find(whole[:probe], at + 1) < 0:
                break
            probe *= 4
        return None if found is None else self._offsets[found]


@attrs.frozen
class SectionData:
    queries: dict[str, str]  # qid -> text
    qrels: dict[str, dict[str, float]]  # qid -> {"path#Heading > Sub": grade}
    name: str = ""


def read_queries_qrels(queries: str | Path, qrels: str | Path) -> SectionData:
    """Queries (JSONL, as for retrieval) and judgements naming sections (``qid<TAB>path#heading
    path<TAB>grade``).  A judged qid without a query, or a docid that names no section, is an
    error: a typo would otherwise quietly leave a question out."""
    texts = _read_jsonl(queries)
    judged = _read_qrels(qrels)
    if not judged:
        raise EmbedlineError(f"{qrels}: no judgements")
    for qid, docs in judged.items():
        if qid not in texts:
            raise EmbedlineError(f"{qrels}: query id {qid!r} is not in {queries}")
        for docid in docs:
            if "#" not in docid:
                raise EmbedlineError(
                    f"{qrels}: {docid!r} (query {qid}) is no section: expected path#Heading > Subheading"
                )
    return SectionData(texts, judged, name=Path(qrels).name)


def rank_sections(docids: Sequence[str | None], judged: Mapping[str, float]) -> list[str]:
    """A query's hits (their docids, best first) as a ranking of distinct sections.

    A hit below a judged section stands for that section, and any judged section stands for all
    of them: sections judged for one question are alternatives, each answering it fully, so the
    question is answered at the rank of the first hit in any of them.  Repeats keep their first
    (best) rank; a hit with no section is a miss that takes its rank.
    """
    relevant = [d for d, grade in judged.items() if grade > 0]
    ranked: list[str] = []
    for rank, docid in enumerate(docids):
        if docid is None:
            ranked.append(f"\0unplaced {rank}")  # matches nothing, never repeats
            continue
        key = _ANSWER if any(section_matches(d, docid) for d in relevant) else docid
        if key not in ranked:
            ranked.append(key)
    return ranked


_ANSWER = "\0answer"


class EmptyStoreError(EmbedlineError):
    """The pipeline's store gave no hit at all: nothing has been ingested (or it was deleted)."""


def evaluate_sections(pipeline: Any, data: SectionData, hits: int = SECTION_HITS) -> dict[str, Any]:
    """Search ``pipeline``'s store with each query and score the sections found: recall@1,
    recall@5, MRR@10 and nDCG@10 over questions (see :func:`rank_sections` for what counts).

    Hit uris are resolved against the pipeline file's folder, docid paths made relative to the
    source folder (:class:`SectionLocator`).  Raises :class:`EmptyStoreError` when no query gets a
    hit, and the store's ``CollectionNotFoundError`` when nothing was ever stored.
    """
    started = time.perf_counter()
    config = pipeline.config
    source = config.source
    base = source.base_dir if source is not None else config.base_dir
    root = source.path if source is not None and source.path.is_dir() else None
    locator = SectionLocator(base, root)
    qids = list(data.qrels)
    found = pipeline.search([data.queries[q] for q in qids], k=hits)
    if not any(found):
        raise EmptyStoreError(f"{config.origin}: the store has no rows to search")
    rankings: dict[str, list[str]] = {}
    unplaced = 0
    for qid, row in zip(qids, found):
        docids = [locator.docid(hit) for hit in row]
        unplaced += docids.count(None)
        rankings[qid] = rank_sections(docids, data.qrels[qid])
    answers = {qid: {_ANSWER: 1.0} for qid in qids}
    at1, at5, at10 = (retrieval_metrics(rankings, answers, k) for k in (1, 5, 10))
    return {
        "task": "sections",
        "data": data.name,
        "queries": len(qids),
        "hits": hits,
        "recall@1": at1["recall@1"],
        "recall@5": at5["recall@5"],
        "mrr@10": at10["mrr@10"],
        "ndcg@10": at10["ndcg@10"],
        "unlocated": unplaced,
        "first_answer": {qid: _first(rankings[qid]) for qid in qids},
        "seconds": time.perf_counter() - started,
    }


def _first(ranked: Sequence[str]) -> int | None:
    """Rank (from 1) of the first answering section, None if none came back."""
    return ranked.index(_ANSWER) + 1 if _ANSWER in ranked else None


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
    for r in (r for r in results if r["task"] == "sections"):
        lines += [
            "",
            f"{'sections':<40} {'queries':>7} {'recall@1':>9} {'recall@5':>9} {'mrr@10':>8} {'ndcg@10':>8}",
            (
                f"{r['data'][:40]:<40} {r['queries']:>7} {100 * r['recall@1']:>9.2f} {100 * r['recall@5']:>9.2f} "
                f"{100 * r['mrr@10']:>8.2f} {100 * r['ndcg@10']:>8.2f}"
            ),
        ]
        if r.get("unlocated"):
            lines.append(f"  {r['unlocated']} hit(s) not placed in a section of their file (counted as misses)")
    return "\n".join(lines)


__all__ = [
    "EmptyStoreError",
    "RetrievalData",
    "SectionData",
    "SectionLocator",
    "StsData",
    "evaluate_retrieval",
    "evaluate_sections",
    "evaluate_sts",
    "format_results",
    "heading_paths",
    "heading_text",
    "pearson",
    "rank_corpus",
    "rankdata",
    "rank_sections",
    "read_beir",
    "read_queries_qrels",
    "read_retrieval",
    "read_sts",
    "retrieval_from_sts",
    "retrieval_metrics",
    "section_at",
    "section_matches",
    "spearman",
]
