"""Hooks, tests and docs cannot drift apart: every hook has a test named after it and a docs entry
with its exact signature."""

import ast
import inspect
import re
from pathlib import Path

import embedline
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
    assert declared_hooks() == sorted(hookspecs.HOOKS) == [
        "embed", "executor", "load_model", "preprocess", "read_document", "store"
    ]


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


# ---------------------------------------------------------------------------------------------
# The plugin API: what plugins may import from the core (docs/hooks.md, "The plugin API")
# ---------------------------------------------------------------------------------------------

PLUGIN_API = (
    "embedline",
    "embedline.contracts",
    "embedline.errors",
    "embedline.filters",
    "embedline.hookspecs",
    "embedline.snippets",
    "embedline.stages",
    "embedline.testing",
    "embedline.toolkit",
)
CORE = ROOT / "core" / "src" / "embedline"


def _imports(path: Path):
    """(line, module, names) of every import in a file, wherever it is (lazy ones included)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, tuple(alias.name for alias in node.names)


def _plugin_sources() -> list[Path]:
    roots = [*sorted((ROOT / "plugins").glob("*/src")), *sorted((ROOT / "tests" / "thirdparty").glob("*/src"))]
    return [p for root in roots for p in sorted(root.rglob("*.py"))]


def test_plugins_import_only_the_declared_plugin_api():
    assert _plugin_sources(), "no plugin sources found"
    offences = []
    for path in _plugin_sources():
        for line, module, names in _imports(path):
            if module != "embedline" and not module.startswith("embedline."):
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if module not in PLUGIN_API:
                offences.append(f"{where} imports {module}")
            elif module == "embedline":
                offences += [f"{where} imports embedline.{n}" for n in names if n not in embedline.__all__]
    assert not offences, "plugins may only import the plugin API (docs/hooks.md):\n" + "\n".join(offences)


def test_the_plugin_api_is_documented():
    docs = (ROOT / "docs" / "hooks.md").read_text()
    section = docs[docs.index("## The plugin API") :]
    for module in PLUGIN_API:
        assert f"`{module}`" in section, f"docs/hooks.md does not list {module} in 'The plugin API'"


def _core_module(name: str) -> str | None:
    if name == "embedline" or not name.startswith("embedline."):
        return name if name == "embedline" else None
    parts = name.split(".")
    for n in range(len(parts), 1, -1):  # embedline.a.b -> the deepest module that exists
        candidate = CORE.joinpath(*parts[1:n])
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts[:n])
    return None


def core_import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in CORE.rglob("*.py"):
        rel = path.relative_to(CORE.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        edges = graph.setdefault(module, set())
        for _, imported, names in _imports(path):
            target = _core_module(imported)
            if target == "embedline":  # `from embedline import x`: x may be a submodule
                subs = [_core_module(f"embedline.{n}") for n in names]
                edges.update(s for s in subs if s and s != "embedline")
                if not all(subs):
                    edges.add("embedline")
            elif target:
                edges.add(target)
        edges.discard(module)
    return graph


def test_the_core_has_no_import_cycles_not_even_type_only_or_lazy_ones():
    graph = core_import_graph()
    assert "embedline.pipeline" in graph and "embedline.contracts" in graph
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles in the core:\n" + "\n".join(cycles)


#: Optional libraries the toolkit uses when the plugin calling it has them (and the serve
#: distribution `embedline serve` runs); imported inside the functions that need them, never at
#: module level.
OPTIONAL = {
    "devices.py": {"torch"},
    "modelsource.py": {"huggingface_hub"},
    "evaluate.py": {"scipy"},
    "toolkit.py": {"tokenizers"},
    "testing.py": {"pytest"},
    "cli.py": {"embedline_serve"},
}
#: The store conformance suite is a pytest module (the `embedline[testing]` extra), imported only
#: through `embedline.testing.StoreConformance`.
TEST_ONLY = {"_store_suite.py": {"pytest"}}


def test_the_core_imports_no_library_it_does_not_declare():
    declared = {"pluggy", "attrs", "numpy", "tomli", "tqdm", "embedline", "__future__"}
    allowed = declared | set(__import__("sys").stdlib_module_names)
    offences = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "level", 0):
                continue
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                root = module.split(".")[0]
                optional = root in OPTIONAL.get(path.name, set()) | TEST_ONLY.get(path.name, set())
                if root not in allowed and not optional:
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                (a.name if isinstance(node, ast.Import) else node.module or "").split(".")[0] in OPTIONAL.get(path.name, ())
                for a in node.names
            ):
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno} imports an optional library at module level")
    assert not offences, "\n".join(offences)
