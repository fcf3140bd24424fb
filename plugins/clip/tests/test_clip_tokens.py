"""The clip plugin's token counter: chunks for CLIP's text tower fit its 77-token context."""

from embedline.contracts import ModelSpec
from embedline.pipeline import Pipeline
from embedline_clip import plugin_info


def counter(name):
    return plugin_info.tokenizer(ModelSpec(plugin="clip", name=str(name)))


def test_counts_match_the_models_tokenizer_and_the_limit_is_the_context(tiny_clip):
    from transformers import CLIPTokenizerFast

    tokens = counter(tiny_clip)
    reference = CLIPTokenizerFast.from_pretrained(str(tiny_clip))
    texts = ["a photo of a cat", "", "Ünïcode and punctuation!?"]
    assert tokens.count(texts) == [len(reference(t)["input_ids"]) - 2 for t in texts]
    assert tokens.limit == 77 - 2  # the context less the start and end tokens


def test_a_structure_run_with_clip_truncates_nothing(tmp_path, tiny_clip):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "captions.md").write_text("# Captions\n\n" + " ".join(f"A photo of cat number {i}." for i in range(40)) + "\n")
    config = {
        "source": {"path": str(docs), "chunk": {"by": "structure"}},
        "model": {"plugin": "clip", "name": str(tiny_clip), "modalities": ["text"]},
        "store": {"plugin": "memory", "collection": "captions"},
    }
    with Pipeline.from_dict(config) as pipeline:
        summary = pipeline.run()
        hits = pipeline.search("cat", k=50)
    assert summary.counters.get("truncated", 0) == 0 and not summary.failed
    assert len(hits) == summary.embedded > 5
    assert max(counter(tiny_clip).count([h.text for h in hits])) <= 75
