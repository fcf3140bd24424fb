// The search page of `embedline serve`: plain JavaScript, no framework, nothing loaded from elsewhere.
// Hit text is only ever set with textContent (never innerHTML), so a document cannot inject markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const query = $("query");
  const button = $("search-button");
  const kind = $("kind");
  const kInput = $("k");
  const auth = $("auth");
  const tokenInput = $("token");
  const drop = $("drop");
  const choose = $("choose");
  const fileInput = $("file");
  const message = $("message");
  const hitsList = $("hits");
  const models = $("models");

  const TOKEN_KEY = "embedline.serve.token";
  let generation = 0; // a newer search makes the answers of older ones stale

  // -- the token: kept in sessionStorage (this tab only), sent as Authorization: Bearer ----------

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (err) {
      return "";
    }
  }

  function token() {
    return tokenInput.value.trim();
  }

  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (err) {
      /* storage disabled: the token lives in the field only */
    }
  }

  // -- talking to the server: relative URLs, so the page also works behind a path prefix ---------

  async function call(path, init = {}) {
    const headers = new Headers(init.headers || {});
    const bearer = token();
    if (bearer) headers.set("Authorization", "Bearer " + bearer);
    let response;
    try {
      response = await fetch(path, { ...init, headers, cache: "no-store" });
    } catch (err) {
      throw Object.assign(new Error("Cannot reach the server."), { status: 0 });
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const error = body && typeof body === "object" ? body.error : null;
      const text = error && typeof error.message === "string" ? error.message : `HTTP ${response.status}`;
      throw Object.assign(new Error(text), { status: response.status });
    }
    return body;
  }

  function say(text, kindOfMessage = "") {
    message.textContent = text;
    message.className = "message" + (kindOfMessage ? " " + kindOfMessage : "");
  }

  function askForToken() {
    auth.open = true;
    tokenInput.focus();
  }

  function limit() {
    const k = Number.parseInt(kInput.value, 10);
    return Number.isFinite(k) && k > 0 ? k : 10;
  }

  function where() {
    return kind.value ? { modality: kind.value } : null;
  }

  // -- searching ----------------------------------------------------------------------------------

  function searchText(text) {
    const body = { query: text, k: limit() };
    const filter = where();
    if (filter) body.where = filter;
    const url = new URL(window.location.href);
    url.searchParams.set("q", text);
    window.history.replaceState(null, "", url);
    return run(`“${text}”`, () =>
      call("search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
    );
  }

  function searchFile(file) {
    const data = new FormData();
    data.append("file", file, file.name || "query");
    data.append("k", String(limit()));
    const filter = where();
    if (filter) data.append("where", JSON.stringify(filter));
    return run(`the file ${file.name || "dropped"}`, () => call("search", { method: "POST", body: data }));
  }

  async function run(label, request) {
    const mine = ++generation;
    button.disabled = true;
    drop.classList.add("busy");
    say(`Searching ${label}…`);
    try {
      const result = await request();
      const hits = result && Array.isArray(result.hits) ? result.hits : [];
      const links = await mediaLinks(hits);
      if (mine !== generation) return;
      render(hits, links);
      say(hits.length ? `${hits.length} ${hits.length === 1 ? "hit" : "hits"} for ${label}` : `No hits for ${label}.`);
    } catch (err) {
      if (mine !== generation) return;
      render([], new Map());
      if (err.status === 401) {
        say(`${err.message} (enter the server's token in the token field)`, "error");
        askForToken();
      } else {
        say(err.message, "error");
      }
    } finally {
      if (mine === generation) {
        button.disabled = false;
        drop.classList.remove("busy");
      }
    }
  }

  // Media elements cannot send a header: with a token, ask the server for signed links.
  async function mediaLinks(hits) {
    const wanted = [...new Set(hits.map((h) => h.media).filter((m) => typeof m === "string" && m.startsWith("/media/")))];
    const links = new Map(wanted.map((m) => [m, m]));
    if (!wanted.length || !token()) return links;
    try {
      const answer = await call("media-links", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ media: wanted }),
      });
      wanted.forEach((m, i) => {
        const signed = answer && Array.isArray(answer.links) ? answer.links[i] : null;
        if (typeof signed === "string" && signed.startsWith("/media/")) links.set(m, signed);
      });
    } catch (err) {
      /* an older server: the plain links (they work without a token) */
    }
    return links;
  }

  // -- showing hits -------------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  function clock(seconds) {
    const m = Math.floor(seconds / 60);
    const s = seconds - m * 60;
    return `${m}:${s < 10 ? "0" : ""}${s.toFixed(1)}`;
  }

  // "media/x.wav?..." resolved against the page, so a path prefix in front of the server is kept.
  function mediaUrl(link, hit) {
    let url = link.replace(/^\//, "");
    if (isNumber(hit.start)) url += `#t=${hit.start}` + (isNumber(hit.end) ? `,${hit.end}` : "");
    return url;
  }

  function renderHit(hit, rank, links) {
    const modality = typeof hit.modality === "string" ? hit.modality : "text";
    const item = el("li", `hit hit-${modality.replace(/[^a-z]/g, "")}`);
    item.dataset.modality = modality;
    item.dataset.uri = String(hit.uri ?? "");
    if (isNumber(hit.start)) item.dataset.start = String(hit.start);
    if (isNumber(hit.end)) item.dataset.end = String(hit.end);

    const head = el("div", "hit-head");
    head.append(el("span", "rank", rank), el("span", "score", isNumber(hit.score) ? hit.score.toFixed(3) : ""));
    head.append(el("span", "uri", hit.uri));
    if (modality !== "text") head.append(el("span", "badge", modality));
    item.append(head);

    const where = [];
    if (hit.section) where.push(el("span", "section", hit.section));
    if (Number.isInteger(hit.page)) where.push(el("span", "page", `page ${hit.page}`));
    if (isNumber(hit.start)) {
      where.push(el("span", "moment", clock(hit.start) + (isNumber(hit.end) ? ` – ${clock(hit.end)}` : "")));
    }
    if (where.length) {
      const line = el("div", "where");
      line.append(...where);
      item.append(line);
    }

    const link = typeof hit.media === "string" ? links.get(hit.media) : null;
    if (link && modality === "image") {
      const anchor = el("a", "thumb");
      anchor.href = link.replace(/^\//, "");
      anchor.target = "_blank";
      anchor.rel = "noopener noreferrer";
      const img = el("img");
      img.alt = String(hit.uri ?? "image");
      img.decoding = "async";
      img.src = link.replace(/^\//, "");
      anchor.append(img);
      item.append(anchor);
    } else if (link && (modality === "audio" || modality === "video")) {
      const player = el(modality, "player");
      player.controls = true;
      player.preload = "metadata";
      player.src = mediaUrl(link, hit);
      item.append(player);
    } else if (link) {
      const anchor = el("a", "file", "open the file");
      anchor.href = link.replace(/^\//, "");
      anchor.target = "_blank";
      anchor.rel = "noopener noreferrer";
      item.append(anchor);
    }
    const text = hit.snippet || (modality === "text" ? hit.text : "");
    if (text) item.append(el("p", "snippet", text));
    return item;
  }

  function render(hits, links) {
    for (const media of hitsList.querySelectorAll("audio, video")) media.pause();
    hitsList.replaceChildren(...hits.map((hit, i) => renderHit(hit, i + 1, links)));
  }

  // -- the models line ----------------------------------------------------------------------------

  async function showModels() {
    try {
      const answer = await call("v1/models");
      const data = answer && Array.isArray(answer.data) ? answer.data : [];
      models.textContent = data
        .map((m) => `${m.id} (${Array.isArray(m.modalities) ? m.modalities.join(", ") : ""})`)
        .join(" · ");
    } catch (err) {
      if (err.status === 401) {
        models.textContent = "This server needs a token.";
        askForToken();
      }
    }
  }

  // -- events -------------------------------------------------------------------------------------

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = query.value.trim();
    if (!text) {
      say("Type something to search for, or drop a file.", "error");
      query.focus();
      return;
    }
    searchText(text);
  });

  tokenInput.value = storedToken();
  tokenInput.addEventListener("input", () => setToken(token()));
  tokenInput.addEventListener("change", () => showModels());

  choose.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    const file = fileInput.files && fileInput.files[0];
    if (file) searchFile(file);
    fileInput.value = "";
  });

  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer && event.dataTransfer.files ? event.dataTransfer.files[0] : null;
    if (file) searchFile(file);
    else say("Drop a file (an image, a sound, a video).", "error");
  });
  // A file dropped next to the zone must not make the browser leave the page to open it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  showModels();
  const initial = new URL(window.location.href).searchParams.get("q");
  if (initial) {
    query.value = initial;
    searchText(initial);
  }
  document.documentElement.dataset.ready = "true";
})();
