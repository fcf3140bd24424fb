"""Portable search filters: the mapping form, the command line's --where, what a row matches."""

import pytest

from embedline.errors import ConfigError, StoreError
from embedline.filters import Clause, Filter, Native, as_filter, only_portable, parse_where


def test_the_mapping_form_becomes_clauses():
    parsed = as_filter({"modality": "image", "year": {"gte": 2000, "lt": 2010}, "lang": {"in": ["en", "fr"]}})
    assert parsed == Filter((
        Clause("modality", "eq", "image"),
        Clause("year", "gte", 2000),
        Clause("year", "lt", 2010),
        Clause("lang", "in", ("en", "fr")),
    ))  # fmt: skip
    assert [c.on_metadata for c in parsed.clauses] == [False, True, True, True]
    assert parsed.to_dict() == {
        "modality": {"eq": "image"}, "year": {"gte": 2000, "lt": 2010}, "lang": {"in": ["en", "fr"]}
    }  # fmt: skip
    assert as_filter(parsed.to_dict()) == parsed and as_filter(parsed) is parsed


def test_none_strings_and_native_expressions():
    assert as_filter(None) is None and as_filter({}) is None and as_filter("  ") is None
    assert as_filter("chunk >= 1") == Native("chunk >= 1")  # a plain string is the store's own syntax
    native = Native('metadata["k"] == 4')
    assert as_filter(native) is native and str(native) == 'metadata["k"] == 4'


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"year": {"gteq": 2000}}, "filter.year: unknown operator 'gteq'; expected one of eq, in, gt, gte, lt, lte"),
        ({"lang": ["en", "fr"]}, "filter.lang: a list needs an operator: {'in': ['en', 'fr']}"),
        ({"lang": {"in": []}}, "filter.lang: 'in' expects a non-empty list"),
        ({"lang": {"in": "en"}}, "filter.lang: 'in' expects a non-empty list, got str 'en'"),
        ({"year": {}}, "filter.year: no operator given"),
        ({"tags": {"eq": None}}, "filter.tags: expected text, a number or true/false, got NoneType None"),
        ({"nested": {"eq": {"a": 1}}}, "filter.nested: expected text, a number or true/false, got dict {'a': 1}"),
        ({"uri": {"prefix": 3}}, "filter.uri: 'prefix' expects text, got int 3"),
        ({"draft": {"gt": True}}, "filter.draft: 'gt' expects a number or text, got bool True"),
        ({"chunk": "0"}, "filter.chunk: chunk is an integer, got str '0'"),
        ({"chunk": 1.5}, "filter.chunk: chunk is an integer"),
        ({"modality": 1}, "filter.modality: modality is text, got int 1"),
        ({"score": float("nan")}, "filter.score: expected a finite number"),
        (["lang", "en"], "filter: expected a mapping such as {'lang': 'en'}"),
    ],
)
def test_bad_filters_are_config_errors_naming_the_key(bad, message):
    with pytest.raises(ConfigError) as err:
        as_filter(bad)
    assert str(err.value).startswith(message)


def test_what_a_row_matches():
    metadata = {"lang": "en", "year": 2005, "score": 0.5, "draft": True, "tags": ["a"], "when": "2021-03-01"}

    def keeps(mapping, **row):
        uri, modality, chunk = row.get("uri", "docs/a.md"), row.get("modality", "text"), row.get("chunk", 0)
        return as_filter(mapping).matches(uri, modality, chunk, metadata)

    assert keeps({"uri": {"prefix": "docs/"}, "chunk": 0, "lang": "en"})
    assert not keeps({"uri": {"prefix": "docs/"}}, uri="img/a.png")
    assert keeps({"year": {"gte": 2005, "lt": 2006}}) and not keeps({"year": {"gt": 2005}})
    assert keeps({"year": 2005.0}) and keeps({"score": {"in": [0.5, 2]}})
    assert keeps({"when": {"gte": "2021-01-01"}}) and not keeps({"when": {"gte": 2021}})  # text is not a number
    assert not keeps({"year": "2005"}) and not keeps({"draft": 1}) and keeps({"draft": True})
    assert not keeps({"missing": {"lt": 10}}) and not keeps({"tags": {"prefix": "a"}})  # missing, or a list


def test_parse_where_reads_every_operator():
    parsed = parse_where([
        "modality=image", "year>=2000", "year<2010", "score>0.5", "rank<=3", "uri^=docs/", "lang:in=en,fr",
        "draft=false", 'code="02139"', "title=hello world", "chunk=2", "uri=123",
    ])  # fmt: skip
    assert parsed.clauses == (
        Clause("modality", "eq", "image"),
        Clause("year", "gte", 2000),
        Clause("year", "lt", 2010),
        Clause("score", "gt", 0.5),
        Clause("rank", "lte", 3),
        Clause("uri", "prefix", "docs/"),
        Clause("lang", "in", ("en", "fr")),
        Clause("draft", "eq", False),
        Clause("code", "eq", "02139"),
        Clause("title", "eq", "hello world"),
        Clause("chunk", "eq", 2),
        Clause("uri", "eq", "123"),  # uri and modality are always text
    )
    assert parse_where([]) is None
    assert parse_where(['{"lang": {"in": ["en", "fr,be"]}}', "year=2001"]).clauses == (
        Clause("lang", "in", ("en", "fr,be")),
        Clause("year", "eq", 2001),
    )


@pytest.mark.parametrize(
    "text,message",
    [
        ("lang", "--where 'lang': expected KEY=VALUE, KEY>N"),
        ("lang!=en", "!= is not portable: use --filter"),
        ("=en", "--where '=en': expected KEY=VALUE"),
        ("chunk=first", "--where 'chunk=first': chunk is an integer"),
        ("{not json", "--where '{not json': not valid JSON"),
        ('{"year": {"after": 2000}}', "unknown operator 'after'"),
    ],
)
def test_parse_where_errors(text, message):
    with pytest.raises(ConfigError) as err:
        parse_where([text])
    assert message in str(err.value)


def test_a_store_without_syntax_of_its_own_refuses_native_filters():
    assert only_portable(None, "x store") is None
    assert only_portable({"lang": "en"}, "x store") == as_filter({"lang": "en"})
    with pytest.raises(StoreError, match="x store has no filter syntax of its own, so it cannot read 'chunk == 1'"):
        only_portable("chunk == 1", "x store")
