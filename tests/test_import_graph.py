"""The core's modules import each other without a cycle, so none needs a function-local import to
dodge one (a cycle once ran specs → suites → runner → plugins → registry → specs)."""
from __future__ import annotations

import ast
from pathlib import Path

import disentbench

CORE = Path(disentbench.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = ("disentbench", *path.relative_to(CORE).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imported(node: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The core modules an import statement loads (``from disentbench import config``: the submodule)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
        named_only_submodules = len(subs) == len(node.names)
        return subs | ({node.module} if node.module in modules and not named_only_submodules else set())
    return set()


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """Statements run on import: module level, inside if/try blocks, but not ``if TYPE_CHECKING:``."""
    out, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, ast.If):
            stack.extend(node.orelse if "TYPE_CHECKING" in ast.unparse(node.test) else node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])
    return out


def import_graph(*, function_local: bool = False) -> dict[str, set[str]]:
    """Module → the core modules it imports at import time (``function_local``: anywhere in it)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        nodes = list(ast.walk(tree)) if function_local else _top_level(tree)
        if function_local:  # type-checking-only imports never run
            guarded = {id(n) for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for n in ast.walk(node)}
            nodes = [n for n in nodes if id(n) not in guarded]
        graph[name] = set().union(*(_imported(n, modules) for n in nodes)) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first = last), or None if it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_the_core_imports():
    graph = import_graph()
    assert "disentbench.config" in graph["disentbench.suites"]
    assert "disentbench.specs" in graph["disentbench"]
    assert "disentbench.training" not in graph["disentbench.runner"]  # torch is imported only when a run trains
    assert "disentbench.training" in import_graph(function_local=True)["disentbench.runner"]


def test_no_import_cycle_among_core_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle among core modules: " + " → ".join(cycle)


def test_no_cycle_even_through_function_local_imports():
    """Function-local imports are for heavy libraries (torch, pandas) and a fast start, never to
    dodge a cycle: with them counted as imports the graph is still acyclic."""
    cycle = find_cycle(import_graph(function_local=True))
    assert cycle is None, "import cycle through a function-local import: " + " → ".join(cycle)
