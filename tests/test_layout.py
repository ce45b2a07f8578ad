"""The package's shape: no import cycles, and the product never imports the simulator or the
benchmark. Imports are read from the source with ``ast``, function-local ones included."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "batchllm"
APART = ("batchllm.simulate", "batchllm.bench")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (never executed)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for child in node.body:
                found.update(id(inner) for inner in ast.walk(child))
    return found


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The batchllm modules an import statement loads."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module if module in _PACKAGES else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}".rstrip(".")
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in MODULES else base


_PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def imports(module: str, *, executed_only: bool) -> set[str]:
    """The batchllm modules ``module`` imports anywhere in its source."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree) if executed_only else set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skipped:
            found.update(t for t in _targets(module, node) if t.startswith("batchllm"))
    return found


def _is_apart(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in APART)


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path start -> ... -> start in ``graph``, or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for target in sorted(graph.get(node, ())):
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def _graph() -> dict[str, set[str]]:
    """Executed imports between modules; a module importing one of its own parent packages
    (``from batchllm import __version__``) is left out: Python runs the parent first anyway."""
    return {
        module: {
            target
            for target in imports(module, executed_only=True)
            if target != module and not module.startswith(target + ".")
        }
        for module in MODULES
    }


def test_the_import_reader_sees_function_local_imports() -> None:
    """The reader finds an import inside a function body, not only at the top of a module."""
    assert "batchllm.simulate.command" in MODULES
    tree = ast.parse("def f():\n    from batchllm.simulate import start_server\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert set(_targets("batchllm.cli", node)) == {"batchllm.simulate"}


def test_the_package_has_no_import_cycles() -> None:
    """No module imports itself through others, counting function-local imports."""
    graph = _graph()
    cycles = [cycle for module in MODULES if (cycle := _cycle_from(module, graph))]
    assert cycles == [], " ; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_product_never_imports_the_simulator_or_the_benchmark() -> None:
    """Outside batchllm.simulate and batchllm.bench nothing imports them, even lazily."""
    found = {
        module: sorted(filter(_is_apart, imports(module, executed_only=False)))
        for module in MODULES
        if not _is_apart(module)
    }
    assert {module: targets for module, targets in found.items() if targets} == {}
