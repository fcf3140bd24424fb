"""POST /search (a text query, an uploaded file) and GET /media (only the source's media files)."""

from __future__ import annotations

import os

import pytest
from embedline import Pipeline
from embedline.testing import FakeTextModel, fresh_plugin_manager
from embedline_serve.media import resolve_media

HIT_FIELDS = {"id", "uri", "score", "modality", "chunk", "section", "snippet", "text", "metadata", "start", "end",
              "page", "media"}


def test_a_text_query_finds_the_matching_document(client, pipeline):
    response = client.post("/search", json={"query": "cats purr", "k": 3})
    assert response.status_code == 200
    hits = response.json()["hits"]
    assert len(hits) == 3
    assert set(hits[0]) == HIT_FIELDS
    assert hits[0]["uri"] == "docs/cats.md"
    assert hits[0]["modality"] == "text" and hits[0]["media"] is None
    assert "Cats purr" in hits[0]["snippet"] and "Cats purr" in hits[0]["text"]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    local = pipeline.search("cats purr", k=3)
    assert [h["id"] for h in hits] == [h.id for h in local]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in local])


def test_k_defaults_to_10(client):
    hits = client.post("/search", json={"query": "cats"}).json()["hits"]
    assert 4 <= len(hits) <= 10


def test_a_portable_filter_as_a_mapping_or_as_where_strings(client):
    mapping = client.post("/search", json={"query": "cats", "k": 10, "where": {"uri": {"prefix": "docs/notes/"}}})
    assert [h["uri"] for h in mapping.json()["hits"]] == ["docs/notes/music.txt"]
    strings = client.post("/search", json={"query": "cats", "where": ["uri^=docs/notes/"]})
    assert strings.json()["hits"] == mapping.json()["hits"]
    none = client.post("/search", json={"query": "cats", "where": {"uri": "no-such-file"}})
    assert none.json()["hits"] == []


def test_a_bad_filter_or_body_is_422(client):
    for body, param in [
        ({"query": "cats", "where": {"year": {"between": [1, 2]}}}, "where"),
        ({"query": "cats", "where": "chunk == 0"}, "where"),  # a store's own syntax: not over HTTP
        ({"query": "", "k": 3}, "query"),
        ({"k": 3}, "query"),
        ({"query": "cats", "limit": 3}, "limit"),
    ]:
        response = client.post("/search", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["param"] == param, body
    garbage = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert garbage.status_code == 422
    form = client.post("/search", content=b"query=cats", headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415


def test_an_uploaded_file_is_the_query_and_is_deleted_after(client, tmp_path, monkeypatch):
    import tempfile

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(uploads))
    response = client.post(
        "/search",
        files={"file": ("question.txt", b"The moon orbits the earth and rockets fly.", "text/plain")},
        data={"k": "2", "where": '{"uri": {"prefix": "docs/"}}'},
    )
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert len(hits) == 2 and hits[0]["uri"] == "docs/space.md"
    assert list(uploads.iterdir()) == []  # the temporary file is gone
    empty = client.post("/search", files={"file": ("empty.txt", b"", "text/plain")})
    assert empty.status_code == 422 and empty.json()["error"]["param"] == "file"
    missing = client.post("/search", files={"other": ("q.txt", b"cats", "text/plain")})
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "file"
    bad_where = client.post("/search", files={"file": ("q.txt", b"cats", "text/plain")}, data={"where": "{oops"})
    assert bad_where.status_code == 422 and bad_where.json()["error"]["param"] == "where"
    assert list(uploads.iterdir()) == []


def test_a_file_no_model_embeds_is_a_400_without_the_temporary_path(client):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    response = client.post("/search", files={"file": ("cat.png", png, "image/png")})
    assert response.status_code == 400
    assert "image" in response.json()["error"]["message"]
    assert "embedline-query-" not in response.text and "/tmp" not in response.text


# -- media ----------------------------------------------------------------------------------------


@pytest.fixture
def media_tree(tmp_path):
    """A pipeline folder whose source holds a picture, a sound, a text and a symlink out."""
    root = tmp_path / "site"
    source = root / "media"
    (source / "pics").mkdir(parents=True)
    (source / "pics" / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (source / "sound.wav").write_bytes(b"RIFF" + b"\x00" * 100)
    (source / "notes.txt").write_text("text is in the hits already")
    (source / "skip").mkdir()
    (source / "skip" / "hidden.png").write_bytes(b"\x89PNG")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"\x89PNG secret")
    (root / "secret.png").write_bytes(b"\x89PNG beside the source")
    os.symlink(outside, source / "link.png")
    return root, source


def media_client(media_tree, make_client):
    root, source = media_tree
    config = {
        "source": {"path": "media", "exclude": ["skip/**"]},
        "model": {"plugin": "fake"},
        "store": {"plugin": "memory", "collection": "docs"},
    }
    pipeline = Pipeline.from_dict(config, base_dir=root, pm=fresh_plugin_manager(FakeTextModel()))
    return make_client(pipeline), pipeline


def test_media_sends_the_sources_media_files_with_range_support(media_tree, make_client):
    client, pipeline = media_client(media_tree, make_client)
    with pipeline:
        whole = client.get("/media/media/pics/cat.png")
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "image/png"
        assert whole.content == (media_tree[1] / "pics" / "cat.png").read_bytes()
        assert whole.headers["accept-ranges"] == "bytes"
        part = client.get("/media/media/pics/cat.png", headers={"Range": "bytes=8-15"})
        assert part.status_code == 206
        assert part.content == bytes(range(8))
        assert part.headers["content-range"] == f"bytes 8-15/{len(whole.content)}"
        assert client.get("/media/media/sound.wav").headers["content-type"].startswith("audio/")
        head = client.head("/media/media/pics/cat.png")  # what a player asks before it seeks
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(whole.content))
        assert head.headers["accept-ranges"] == "bytes" and head.headers["content-type"] == "image/png"
        assert client.head("/media/secret.png").status_code == 404


@pytest.mark.parametrize("uri", [
    "media/notes.txt",             # not a media file
    "media/skip/hidden.png",       # excluded by the source's globs
    "media/link.png",              # a symlink leading out of the source
    "secret.png",                  # beside the source, not in it
    "media/../secret.png",
    "media/pics/../../secret.png",
    "media/%2e%2e/secret.png",     # encoded twice: still encoded once decoded
    "media/%252e%252e/secret.png",
    "media/no-such.png",
])
def test_media_refuses_anything_else(media_tree, make_client, uri):
    client, pipeline = media_client(media_tree, make_client)
    with pipeline:
        response = client.get(f"/media/{uri}")
        assert response.status_code == 404, uri
        assert response.json()["error"]["code"] == "not_found"


def raw_get(app, path: str) -> int:
    """The status of a GET whose path reaches the app exactly as given (an HTTP client would
    normalise ``..`` and ``.`` away before sending)."""
    import asyncio

    sent, asked = [], []

    async def receive():
        if not asked:
            asked.append(1)
            return {"type": "http.request", "body": b"", "more_body": False}
        while not any(m["type"] == "http.response.body" and not m.get("more_body") for m in sent):
            await asyncio.sleep(0.001)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_media_refuses_traversal_as_the_server_receives_it(media_tree, make_client):
    client, pipeline = media_client(media_tree, make_client)
    with pipeline:
        assert raw_get(client.app, "/media/media/pics/cat.png") == 200
        for path in ["/media/media/../secret.png", "/media/media/pics/../../secret.png", "/media/../secret.png",
                     "/media/media/./pics/cat.png", "/media/media//pics/cat.png", "/media//etc/passwd",
                     "/media/media/%2e%2e/secret.png", "/media/" + str(media_tree[1] / "pics" / "cat.png")]:
            assert raw_get(client.app, path) == 404, path


def test_media_paths_are_checked_before_the_file_system(media_tree):
    root, source = media_tree
    args = {"base": root, "root": source}
    assert resolve_media("media/pics/cat.png", **args) == (source / "pics" / "cat.png").resolve()
    for uri in ["/etc/passwd.png", str(source / "pics" / "cat.png"), "C:/x.png", "media\\pics\\cat.png",
                "media/pics/cat.png\x00.png", "media/%2e%2e/secret.png", "", "..", "media/.."]:
        assert resolve_media(uri, **args) is None, uri
    assert resolve_media("media/skip/hidden.png", **args) is not None  # no globs given: the folder is in
    assert resolve_media("media/skip/hidden.png", exclude=["skip/**"], **args) is None
    one = source / "pics" / "cat.png"
    assert resolve_media("media/pics/cat.png", base=root, root=one) == one.resolve()  # a one-file source
    assert resolve_media("media/sound.wav", base=root, root=one) is None


def test_non_text_hits_link_to_their_media():
    from embedline.contracts import Hit
    from embedline_serve.app import _hit

    hit = Hit(id="x:0", score=0.5, uri="clips/a b.mp4", modality="video", metadata={"start": 30, "end": 60.5})
    out = _hit(hit, None)
    assert out["media"] == "/media/clips/a%20b.mp4"
    assert (out["start"], out["end"], out["page"]) == (30.0, 60.5, None)
    page = _hit(Hit(id="y:1", score=0.1, uri="a.pdf", modality="text", text="A > B\n\nsome words",
                    metadata={"page": 3, "section": "A > B"}), "words")
    assert page["page"] == 3 and page["section"] == "A > B" and page["snippet"] == "some words"
    assert page["media"] is None


def test_media_without_a_source_is_404(make_client, tmp_path):
    config = {"model": {"plugin": "fake"}, "store": {"plugin": "memory", "collection": "docs"}}
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(FakeTextModel())) as pipeline:
        client = make_client(pipeline)
        assert client.get("/media/a.png").status_code == 404


