"""The search page at ``/``.

In a real browser: Debian's chromium (``/usr/bin/chromium``), driven by Playwright for Python,
against the real server (uvicorn on a free loopback port) over a pipeline of a tiny random CLIP
(images and text in one space) and a tiny random Whisper (audio in 2 s windows), run over real
files: PNGs, markdown, and an 8 s WAV.  A text query shows text hits with their section; a dropped
PNG shows image hits whose thumbnails load through ``/media``; a WAV chosen in the file input
shows audio players that stand at their hit's moment (``#t=start,end``) once loaded.  The same
again on a server with a token: the page loads without it, asks for it, and shows media through
signed links.  The browser tests are skipped, with the reason, only when chromium or Playwright is
missing.  ``EMBEDLINE_SCREENSHOT=docs/serve-page.png`` writes the README's screenshot there.

Without a browser: the page's files and their headers, the token rule for them, and signed media
links (``POST /media-links``) with the in-process client.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--mute-audio",
]
TOKEN = "page-test-token"
NOTES = {
    "notes/cats.md": "# Cats\n\nCats purr and sleep all day in the sun.\n\n"
                     "## Hunting\n\nA cat chases mice in the garden at night.\n",
    "notes/space.md": "# Space\n\nRockets fly to orbit from the launch pad.\n\n"
                      "## The moon\n\nThe moon orbits the earth once a month.\n",
}
SHAPES = {"red-circle": (220, 40, 40), "green-square": (40, 170, 70), "blue-triangle": (40, 90, 220),
          "orange-ring": (240, 150, 30)}
TONES = (220.0, 440.0, 880.0, 1760.0)  # 2 s each: one per Whisper window
WINDOW = 2.0


# -- a pipeline over real files, its server, a browser ---------------------------------------------


def _write_shape(path: Path, name: str, colour: tuple[int, int, int]) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (120, 90), (248, 248, 246))
    draw = ImageDraw.Draw(image)
    if "circle" in name:
        draw.ellipse((33, 18, 87, 72), fill=colour)
    elif "square" in name:
        draw.rectangle((35, 20, 85, 70), fill=colour)
    elif "triangle" in name:
        draw.polygon([(60, 12), (95, 78), (25, 78)], fill=colour)
    else:
        draw.ellipse((30, 15, 90, 75), outline=colour, width=9)
    image.save(path)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A pipeline file over ``library/`` (4 PNGs, 2 markdown files, an 8 s WAV), run once; yields
    the open pipeline and the folder with the query files."""
    pytest.importorskip("embedline_clip", reason="the page test needs embedline-clip (a tiny random CLIP)")
    pytest.importorskip("embedline_whisper", reason="the page test needs embedline-whisper (a tiny random Whisper)")
    pytest.importorskip("embedline_media", reason="the page test needs embedline-media (writing the WAV)")
    import numpy as np
    from embedline import Pipeline
    from embedline_clip.testing import build_tiny_clip
    from embedline_media.audio import write_audio
    from embedline_media.testing import tone
    from embedline_whisper.testing import build_tiny_whisper

    root = tmp_path_factory.mktemp("page")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setenv("TRANSFORMERS_OFFLINE", "1")
        build_tiny_clip(root / "models" / "clip")
        build_tiny_whisper(root / "models" / "whisper", chunk_length=int(WINDOW))
        source = root / "library"
        (source / "images").mkdir(parents=True)
        for name, colour in SHAPES.items():
            _write_shape(source / "images" / f"{name}.png", name, colour)
        for name, text in NOTES.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_text(text)
        (source / "sounds").mkdir()
        write_audio(source / "sounds" / "tones.wav", np.concatenate([tone(WINDOW, f) for f in TONES]), 16000)
        queries = root / "queries"
        queries.mkdir()
        write_audio(queries / "whistle.wav", tone(WINDOW, 880.0), 16000)
        (root / "embed.toml").write_text(
            """\
[source]
path = "library"
include = ["**/*.png", "**/*.md", "**/*.wav"]
chunk = { by = "structure" }

[[models]]
plugin = "clip"
name = "models/clip"
modalities = ["image", "text"]
collection = "pictures_and_notes"

[[models]]
plugin = "whisper"
name = "models/whisper"
collection = "sounds"

[store]
plugin = "memory"
collection = "unused"
"""
        )
        with Pipeline.from_toml(root / "embed.toml") as pipeline:
            summary = pipeline.run()
            assert not summary.failed, summary.format()
            assert summary.embedded == len(SHAPES) + 4 + len(TONES), summary.format()  # 4 sections
            yield pipeline, source, queries


@pytest.fixture(scope="module")
def servers(library: Any) -> Any:
    """``servers(token)``: the URL of the real server for the pipeline (one per token, kept for the module)."""
    from embedline_serve import BackgroundServer, create_app
    from embedline_serve.service import Service

    pipeline = library[0]
    service = Service(pipeline)  # both apps share the models and the locks
    service.warm()
    running: dict[Any, Any] = {}

    def url(token: str | None = None) -> str:
        if token not in running:
            app = create_app(pipeline, token=token, service=service)
            running[token] = BackgroundServer(app).start()
        return running[token].url

    yield url
    for server in running.values():
        server.stop()
    service.close()


@pytest.fixture(scope="module")
def browser() -> Any:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1000, "height": 700}, device_scale_factor=1,
                                  color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def problems(page: Any) -> list[str]:
    """The page's script errors and the console's error lines (a failed request is one), as they come."""
    seen: list[str] = []
    page.on("pageerror", lambda error: seen.append(f"page error: {error}"))
    page.on("console", lambda m: seen.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    return seen


def _open(page: Any, url: str) -> None:
    response = page.goto(url + "/")
    assert response is not None and response.status == 200
    page.wait_for_selector("html[data-ready=true]", state="attached")


def _search(page: Any, text: str) -> None:
    page.fill("#query", text)
    page.press("#query", "Enter")
    page.wait_for_function("t => document.getElementById('message').textContent.includes(t)", arg=f"for “{text}”")


def _drop(page: Any, path: Path, mime: str) -> None:
    """A real drop event on the drop zone, carrying the file's bytes in its DataTransfer."""
    page.evaluate(
        """([name, type, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type }));
            const zone = document.getElementById("drop");
            for (const kind of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
        }""",
        [path.name, mime, base64.b64encode(path.read_bytes()).decode("ascii")],
    )
    _wait_for_file(page, path.name)


def _wait_for_file(page: Any, name: str) -> None:
    page.wait_for_function("t => document.getElementById('message').textContent.includes(t)",
                           arg=f"for the file {name}")


def _hits(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        "#hits > li",
        """items => items.map((li) => ({
            modality: li.dataset.modality, uri: li.dataset.uri,
            start: li.dataset.start === undefined ? null : Number(li.dataset.start),
            section: li.querySelector(".section")?.textContent ?? null,
            snippet: li.querySelector(".snippet")?.textContent ?? null,
            score: li.querySelector(".score")?.textContent ?? null,
        }))""",
    )


def _loaded_images(page: Any) -> list[dict[str, Any]]:
    """Each image hit's thumbnail once it has loaded or failed: its src and natural width."""
    page.wait_for_function("() => [...document.querySelectorAll('#hits img')].every((img) => img.complete)")
    return page.eval_on_selector_all(
        "#hits img", "imgs => imgs.map((img) => ({src: img.getAttribute('src'), width: img.naturalWidth}))"
    )


def _player_time(page: Any, start: float) -> dict[str, Any]:
    """The first audio player of a hit starting at ``start``: its src and ``currentTime`` after
    ``loadedmetadata`` (awaited, unless it already fired)."""
    return page.evaluate(
        """async (start) => {
            const item = [...document.querySelectorAll("#hits > li.hit-audio")]
                .find((li) => Number(li.dataset.start) === start);
            const audio = item.querySelector("audio");
            if (audio.readyState < 1) {
                await new Promise((resolve, reject) => {
                    audio.addEventListener("loadedmetadata", resolve, { once: true });
                    audio.addEventListener("error", () => reject(new Error("audio error " + audio.error?.code)),
                                           { once: true });
                    setTimeout(() => reject(new Error("no loadedmetadata in 15 s")), 15000);
                });
            }
            return { src: audio.getAttribute("src"), currentTime: audio.currentTime, duration: audio.duration };
        }""",
        start,
    )


# -- in the browser --------------------------------------------------------------------------------


def test_the_page_searches_text_images_and_sounds(
    page: Any, problems: list[str], servers: Any, library: Any, tmp_path: Path
) -> None:
    _, source, queries = library
    media: list[tuple[int, str]] = []  # what the browser got from /media: (status, path)
    page.on("response", lambda r: media.append((r.status, r.url.split("/", 3)[3])) if "/media/" in r.url else None)
    _open(page, servers(None))
    page.wait_for_function("() => document.getElementById('models').textContent.includes('sounds (audio)')")
    assert "pictures_and_notes (image, text)" in page.text_content("#models")

    # A text query: text hits with their section and snippet (and, CLIP sharing one space, images).
    _search(page, "a cat chases mice")
    hits = _hits(page)
    texts = [h for h in hits if h["modality"] == "text"]
    assert len(texts) == 4, hits
    assert {h["section"] for h in texts} == {"Cats", "Cats > Hunting", "Space", "Space > The moon"}
    hunting = next(h for h in texts if h["section"] == "Cats > Hunting")
    assert hunting["uri"] == "library/notes/cats.md"
    assert hunting["snippet"] == "A cat chases mice in the garden at night."
    assert [h["modality"] for h in hits].count("image") == len(SHAPES)
    assert all(image["width"] > 0 for image in _loaded_images(page))
    assert page.url.endswith("?q=a+cat+chases+mice")
    wanted = os.environ.get("EMBEDLINE_SCREENSHOT")  # docs/serve-page.png for the README
    screenshot = Path(wanted) if wanted else tmp_path / "serve-page.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 0

    # A PNG dropped on the drop zone: image hits, their thumbnails served by /media.
    _drop(page, source / "images" / "red-circle.png", "image/png")
    hits = _hits(page)
    assert hits[0]["uri"] == "library/images/red-circle.png" and hits[0]["modality"] == "image"
    images = _loaded_images(page)
    assert len(images) == len(SHAPES)
    assert all(image["width"] == 120 for image in images), images  # decoded: the media route sent the PNG
    assert images[0]["src"] == "media/library/images/red-circle.png"

    # A WAV chosen in the file input: audio hits, each player at its hit's moment once loaded.
    page.set_input_files("#file", str(queries / "whistle.wav"))
    _wait_for_file(page, "whistle.wav")
    hits = _hits(page)
    assert sorted(h["start"] for h in hits) == [i * WINDOW for i in range(len(TONES))]
    assert all(h["modality"] == "audio" and h["uri"] == "library/sounds/tones.wav" for h in hits)
    later = max(h["start"] for h in hits)  # 6 s: the last window
    player = _player_time(page, later)
    assert player["src"] == f"media/library/sounds/tones.wav#t={later:g},{later + WINDOW:g}"
    assert player["currentTime"] == pytest.approx(later, abs=0.05), player
    assert player["duration"] == pytest.approx(len(TONES) * WINDOW, abs=0.05)
    assert page.text_content("#hits > li[data-start='6'] .moment") == "0:06.0 – 0:08.0"
    assert (206, "media/library/sounds/tones.wav") in media, media  # the player asked for byte ranges

    assert not problems, problems

    # An error from the server is shown in the message line (an OpenAI-style error's message).
    page.fill("#k", "5000")
    _search_expecting_error(page, "a cat", "k: must be an integer from 1 to 1000")
    assert page.eval_on_selector_all("#hits > li", "items => items.length") == 0


def _search_expecting_error(page: Any, text: str, error: str) -> None:
    page.fill("#query", text)
    page.press("#query", "Enter")
    page.wait_for_function("t => document.getElementById('message').textContent.includes(t)", arg=error)
    assert "error" in (page.get_attribute("#message", "class") or "")


def test_with_a_token_the_page_asks_for_it_and_shows_media_through_signed_links(
    page: Any, problems: list[str], servers: Any, library: Any
) -> None:
    _, source, queries = library
    _open(page, servers(TOKEN))  # the page itself needs no token
    page.wait_for_function("() => document.getElementById('models').textContent.includes('needs a token')")
    assert page.get_attribute("#auth", "open") is not None  # the token field is shown

    _search_expecting_error(page, "moon", "missing bearer token")
    page.fill("#token", TOKEN)
    page.dispatch_event("#token", "change")
    page.wait_for_function("() => document.getElementById('models').textContent.includes('sounds (audio)')")
    assert page.evaluate("() => sessionStorage.getItem('embedline.serve.token')") == TOKEN

    _drop(page, source / "images" / "blue-triangle.png", "image/png")
    assert _hits(page)[0]["uri"] == "library/images/blue-triangle.png"
    images = _loaded_images(page)
    assert images and all(image["width"] == 120 for image in images), images
    assert all("?expires=" in image["src"] and "&signature=" in image["src"] for image in images)
    assert TOKEN not in page.content()

    page.set_input_files("#file", str(queries / "whistle.wav"))
    _wait_for_file(page, "whistle.wav")
    player = _player_time(page, WINDOW)
    assert "signature=" in player["src"] and player["src"].endswith(f"#t={WINDOW:g},{2 * WINDOW:g}")
    assert player["currentTime"] == pytest.approx(WINDOW, abs=0.05), player

    page.reload()  # the same tab keeps the token
    page.wait_for_selector("html[data-ready=true]", state="attached")
    assert page.input_value("#token") == TOKEN
    unexpected = [p for p in problems if "status of 401" not in p]  # asking without the token: 401s
    assert not unexpected, unexpected


def test_hits_are_shown_as_text_never_as_markup(page: Any, servers: Any) -> None:
    """Answers made up for the page (through Playwright's routing): markup in a hit stays text, a
    PDF hit shows its page, a video hit gets a player at its moment, a proxy's error page a status."""
    import json

    evil = '<img src=x onerror="window.pwned=1">'
    hits = [
        {"id": "1:0", "uri": f"docs/{evil}.md", "score": 0.9, "modality": "text", "chunk": 0, "section": evil,
         "snippet": f"before {evil} after", "text": "", "metadata": {}, "start": None, "end": None, "page": None,
         "media": None},
        {"id": "2:4", "uri": "papers/report.pdf", "score": 0.8, "modality": "text", "chunk": 4,
         "section": "Results", "snippet": "The table on page three.", "text": "", "metadata": {}, "start": None,
         "end": None, "page": 3, "media": None},
        {"id": "3:1", "uri": "clips/talk.webm", "score": 0.7, "modality": "video", "chunk": 1, "section": "",
         "snippet": "", "text": "", "metadata": {}, "start": 1.5, "end": 3.0, "page": None,
         "media": "/media/clips/talk.webm"},
        {"id": "4:0", "uri": "javascript:alert(1)", "score": 0.6, "modality": "image", "chunk": 0, "section": "",
         "snippet": "", "text": "", "metadata": {}, "start": None, "end": None, "page": None,
         "media": "javascript:alert(1)"},
    ]
    answers = iter([
        {"status": 200, "content_type": "application/json", "body": json.dumps({"hits": hits})},
        {"status": 502, "content_type": "text/html", "body": "<h1>Bad Gateway</h1>"},
    ])
    page.route("**/search", lambda route: route.fulfill(**next(answers)))
    _open(page, servers(None))
    _search(page, "anything")
    assert page.evaluate("() => window.pwned") is None
    assert page.eval_on_selector_all("#hits img", "imgs => imgs.length") == 0  # nor the javascript: "image"
    first = "#hits > li:nth-child(1)"
    assert page.text_content(f"{first} .section") == evil
    assert page.text_content(f"{first} .snippet") == f"before {evil} after"
    assert page.text_content(f"{first} .uri") == f"docs/{evil}.md"
    assert page.text_content("#hits > li:nth-child(2) .page") == "page 3"
    video = page.get_attribute("#hits > li:nth-child(3) video", "src")
    assert video == "media/clips/talk.webm#t=1.5,3"
    assert page.text_content("#hits > li:nth-child(3) .moment") == "0:01.5 – 0:03.0"
    _search_expecting_error(page, "again", "HTTP 502")


# -- without a browser ------------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_with_strict_headers(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'src="page/app.js"' in page.text and 'href="page/style.css"' in page.text
    assert client.get("/page/app.js").headers["content-type"] == "text/javascript; charset=utf-8"
    assert client.get("/page/style.css").headers["content-type"] == "text/css; charset=utf-8"
    for other in ("/page/index.html", "/page/../app.py", "/page/nothing.js"):
        response = client.get(other)
        assert response.status_code == 404 and "error" in response.json(), other
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/media-links" in paths


def _page_file(name: str) -> str:
    from importlib.resources import files

    return (files("embedline_serve") / "page" / name).read_text(encoding="utf-8")


def test_the_page_works_offline_and_never_writes_hit_text_as_markup() -> None:
    for name in ("index.html", "app.js", "style.css"):
        text = _page_file(name)
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
        assert "@import" not in text and "url(" not in text, name
    script = _page_file("app.js")
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML(", "document.write", "eval(", "new Function",
                 "setAttribute(\"on"):
        assert sink not in script, sink
    assert script.count(".textContent =") >= 4  # how text reaches the page


def test_the_page_is_installed_with_the_package() -> None:
    from importlib.resources import files

    page = files("embedline_serve") / "page"
    assert all((page / name).is_file() for name in ("index.html", "app.js", "style.css"))


@pytest.fixture
def media_pipeline(tmp_path: Path, fake_config: Any, fake_model: Any) -> Any:
    """A pipeline whose source holds two PNGs, a WAV and an excluded PNG (nothing embedded: /media
    only looks at the source's files and globs)."""
    from embedline import Pipeline
    from embedline.testing import fresh_plugin_manager

    source = tmp_path / "media"
    (source / "skip").mkdir(parents=True)
    for name in ("a.png", "b c.png", "skip/hidden.png"):
        (source / name).write_bytes(b"\x89PNG\r\n\x1a\n" + name.encode() * 20)
    (source / "sound.wav").write_bytes(b"RIFF" + bytes(200))
    config = fake_config(None)
    config["source"] = {"path": "media", "exclude": ["skip/**"]}
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(fake_model)) as pipeline:
        yield pipeline, source


def test_the_token_rule_for_the_page_and_signed_media_links(make_client: Any, media_pipeline: Any) -> None:
    pipeline, source = media_pipeline
    client = make_client(pipeline, token=TOKEN)
    good = {"Authorization": f"Bearer {TOKEN}"}
    # The page is public; everything else still needs the token.
    for path in ("/", "/page/app.js", "/page/style.css"):
        assert client.get(path).status_code == 200, path
    assert client.post("/", json={}).status_code == 405  # public, but only GET
    assert client.get("/page/other.js").status_code == 401
    assert client.get("/media/media/a.png").status_code == 401
    assert client.post("/media-links", json={"media": ["/media/media/a.png"]}).status_code == 401

    answer = client.post("/media-links", headers=good,
                         json={"media": ["/media/media/a.png", "/media/media/b%20c.png", "/media/media/sound.wav",
                                         "/media/media/skip/hidden.png"]})
    assert answer.status_code == 200
    body = answer.json()
    a, bc, wav, hidden = body["links"]
    assert a.startswith("/media/media/a.png?expires=") and "&signature=" in a
    assert bc.startswith("/media/media/b%20c.png?expires=")
    assert isinstance(body["expires"], int)

    # A signed link opens its file without a header, with Range support; the route's checks remain.
    assert client.get(a).content == (source / "a.png").read_bytes()
    assert client.get(bc).content == (source / "b c.png").read_bytes()
    head = client.head(a)  # past the token check: the headers a player asks for before it seeks
    assert head.status_code == 200 and head.content == b"" and head.headers["accept-ranges"] == "bytes"
    part = client.get(wav, headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == b"RIFF"
    assert client.get(hidden).status_code == 404  # excluded by the source's globs: signed or not

    # It opens nothing else: another file, a changed expiry or signature, another route, another app.
    query = a.partition("?")[2]
    expires = query.split("&")[0].split("=")[1]
    signature = query.split("signature=")[1]
    for bad in (
        f"/media/media/sound.wav?{query}",
        a.replace(f"expires={expires}", f"expires={int(expires) + 1}"),
        a.replace(signature, signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")),
        a.partition("&")[0],
        f"/media/media/a.png?signature={signature}",
        f"{a}&expires={expires}",
        "/v1/models?" + query,
        "/openapi.json?" + query,
    ):
        response = client.get(bad)
        assert response.status_code == 401, bad
    assert client.post(a).status_code == 401  # GET and HEAD only
    other = make_client(pipeline, token=TOKEN)
    assert other.get(a).status_code == 401  # each app draws its own key

    # Expired links stop working.
    signer = client.app.state.media_signer
    later = signer._clock() + signer.seconds + 1
    signer._clock = lambda: later
    assert client.get(a).status_code == 401
    assert client.get(a, headers=good).status_code == 200  # the token still works

    # Only media links are signed, and not too many at once.
    for media in (["/v1/models"], ["/media/x.png?x=1"], ["/media/x.png#t=1"], ["media/x.png"], "x"):
        response = client.post("/media-links", headers=good, json={"media": media})
        assert response.status_code == 422, media
        assert response.json()["error"]["param"] == "media"
    many = {"media": ["/media/media/a.png"] * 1001}
    assert client.post("/media-links", headers=good, json=many).status_code == 422
    assert "key" not in repr(signer).replace("key='***'", "") and TOKEN not in repr(client.app.user_middleware)


def test_without_a_token_media_links_are_signed_but_not_needed(make_client: Any, media_pipeline: Any) -> None:
    pipeline, source = media_pipeline
    client = make_client(pipeline)
    assert client.get("/media/media/a.png").status_code == 200
    links = client.post("/media-links", json={"media": ["/media/media/a.png"]}).json()["links"]
    assert client.get(links[0]).content == (source / "a.png").read_bytes()
