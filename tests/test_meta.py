"""Hooks, tests and docs cannot drift apart: every hook has a test named after it and a docs entry
with its exact signature."""

import inspect
import re
from pathlib import Path

from embedline import hookspecs

ROOT = Path(__file__).resolve().parents[1]


def hook_signature(name: str) -> str:
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({params}) -> {sig.return_annotation}"


def declared_hooks() -> list[str]:
    return sorted(
        name
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "embedline_spec")
    )


def test_hook_list_is_complete():
    assert declared_hooks() == sorted(hookspecs.HOOKS) == ["embed", "load_model", "preprocess", "store"]


def test_every_hook_has_a_test_named_after_it():
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    missing = [h for h in declared_hooks() if not re.search(rf"def test_hook_{h}(\b|_)", sources)]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_every_hook_is_documented_with_its_exact_signature():
    docs = (ROOT / "docs" / "hooks.md").read_text()
    for hook in declared_hooks():
        assert f"## {hook}" in docs, f"docs/hooks.md has no section for {hook}"
        assert hook_signature(hook) in docs, f"docs/hooks.md lacks the signature {hook_signature(hook)}"


def test_every_hook_spec_documents_who_is_called():
    for hook in declared_hooks():
        doc = getattr(hookspecs, hook).__doc__
        assert "Called" in doc and "Stops at first non-None result" in doc
