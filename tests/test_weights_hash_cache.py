"""The weights hash kept between processes: what invalidates it, and that a bad cache only costs time."""

import hashlib
import os

import pytest

from embedline import modelsource
from embedline.modelsource import HASHES_CACHED_FROM, cache_root, file_sha256, weights_hash


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDLINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(modelsource, "_hash_cache", {})  # as in a new process
    return tmp_path / "cache" / "hashes"


def big_file(path, fill=b"w"):
    path.write_bytes(fill * HASHES_CACHED_FROM + b"tail")
    return path


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EMBEDLINE_CACHE", str(tmp_path / "c"))
    assert cache_root("minilm") == tmp_path / "c" / "minilm"
    monkeypatch.delenv("EMBEDLINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root("hashes") == tmp_path / "xdg" / "embedline" / "hashes"


def test_a_second_process_reads_the_hash_instead_of_the_file(tmp_path, cache):
    weights = big_file(tmp_path / "model.safetensors")
    true = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert file_sha256(weights) == true
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].read_text().strip() == true
    # Prove the next process takes the entry, not the bytes: plant another value in it.
    planted = "ab" * 32
    entries[0].write_text(planted + "\n")
    modelsource._hash_cache.clear()
    assert file_sha256(weights) == planted


def test_changed_bytes_with_the_old_size_and_mtime_are_hashed_again(tmp_path, cache):
    weights = big_file(tmp_path / "model.safetensors")
    before = os.stat(weights)
    first = file_sha256(weights)
    big_file(weights, fill=b"x")  # same size
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime: ctime still moves
    modelsource._hash_cache.clear()
    again = file_sha256(weights)
    assert again != first and again == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_a_corrupt_entry_or_an_unwritable_cache_only_means_hashing_again(tmp_path, cache, monkeypatch):
    weights = big_file(tmp_path / "model.safetensors")
    true = hashlib.sha256(weights.read_bytes()).hexdigest()
    file_sha256(weights)
    (entry,) = cache.iterdir()
    entry.write_bytes(b"\xff not a hash")
    modelsource._hash_cache.clear()
    assert file_sha256(weights) == true and entry.read_text().strip() == true  # rewritten
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("EMBEDLINE_CACHE", str(blocker))
    modelsource._hash_cache.clear()
    assert file_sha256(weights) == true
    assert blocker.read_text() == ""


def test_small_files_are_not_cached_and_the_folder_hash_is_unchanged(tmp_path, cache):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tiny.safetensors").write_bytes(b"123")
    big_file(folder / "model.safetensors")
    expected = hashlib.sha256()
    for name in ("model.safetensors", "tiny.safetensors"):
        expected.update(f"{name}\0{hashlib.sha256((folder / name).read_bytes()).hexdigest()}\0".encode())
    assert weights_hash(folder) == "sha256:" + expected.hexdigest()
    assert len(list(cache.iterdir())) == 1  # the 1 MiB file only
    modelsource._hash_cache.clear()
    assert weights_hash(folder) == "sha256:" + expected.hexdigest()
