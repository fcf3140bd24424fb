"""Search results that read well: the heading path, and the sentence that matches the query."""

from embedline.contracts import Hit
from embedline.snippets import body_of, section_of, snippet

TEXT = (
    "Hooks > preprocess\n\n"
    "The core calls each hook on one plugin. Wrappers run around it. "
    "The preprocess hook turns a batch of items into model inputs, one per item. "
    "It must be safe to run in a worker thread. Failures go in the slot of their item."
)


def test_the_snippet_is_the_sentence_that_matches_the_query():
    got = snippet(TEXT, "which hook turns items into model inputs?", section="Hooks > preprocess", width=100)
    assert "turns a batch of items into model inputs" in got
    assert len(got) <= 100
    assert "Hooks > preprocess" not in got  # the heading line is shown on its own


def test_without_a_match_or_a_query_the_snippet_is_the_start():
    assert snippet(TEXT, "zebra", section="Hooks > preprocess", width=40).startswith("The core calls each hook")
    assert snippet(TEXT, None, width=40).startswith("Hooks > preprocess The core")  # no section: all of it
    assert len(snippet(TEXT, None, width=40)) <= 40


def test_a_short_text_is_shown_whole_on_one_line():
    assert snippet("Cats\n\npurr  loudly.", "dogs") == "Cats purr loudly."


def test_words_match_on_their_stem_and_stop_words_do_not_count():
    text = "The of the and is how. Writing a plugin needs an entry point. " + "Filler sentence here. " * 20
    assert snippet(text, "how do I write plugins?", width=60) == "…Writing a plugin needs an entry point. Filler sentence…"


def test_section_and_body_of_a_hit():
    hit = Hit(id="x:0", score=1.0, uri="docs/hooks.md", text=TEXT, metadata={"section": "Hooks > preprocess"})
    assert section_of(hit) == "Hooks > preprocess"
    assert body_of(hit.text, section_of(hit)).startswith("The core calls")
    assert section_of(Hit(id="y:0", score=1.0, uri="a.txt")) == ""
    assert body_of("Other\n\ntext", "Hooks") == "Other\n\ntext"
