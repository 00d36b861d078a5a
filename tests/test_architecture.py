"""The shape of the package, read with ast (issue 20): no class over 400 lines, no runtime module over 600,
no import cycles, and runtime modules that never import the tools (bench, modelbuild, train).

Every import counts for the graph, wherever it is written: at the top, inside a function or under
`if TYPE_CHECKING:` (a loop through a lazy import is still two modules that each need the other).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edge_ocr"
TOOLS = ("edge_ocr.bench", "edge_ocr.modelbuild", "edge_ocr.train")
MAX_CLASS_LINES = 400
MAX_RUNTIME_MODULE_LINES = 600
# The command line is the front door of the tools too (`edge-ocr bench`, `models build`, `train`): it
# may import them, but only inside the command that needs them, never when it is imported.
FRONT_DOORS = {"edge_ocr.cli", "edge_ocr.__main__"}
# Loops once known inside the tools' wing (bench.meter <-> train.render, modelbuild.build/calibrate <->
# modelbuild.meter) are broken; a loop listed here would be tolerated, and none is.
KNOWN_TOOL_CYCLES: set[frozenset[str]] = set()


@cache
def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(encoding="utf-8"), filename=str(modules()[name]))


def length(node: ast.stmt) -> int:
    return (node.end_lineno or node.lineno) - node.lineno + 1


def is_tool(name: str) -> bool:
    return any(name == t or name.startswith(t + ".") for t in TOOLS)


def _resolve(name: str) -> str | None:
    """The edge_ocr module an imported name lives in (a package for a name defined in its __init__)."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str, *, top_level_only: bool = False) -> set[str]:
    """The edge_ocr modules `name` imports (with `top_level_only`: those run when it is imported)."""
    package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree(name).body if top_level_only else list(ast.walk(tree(name)))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {r for a in node.names if (r := _resolve(a.name))}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                target = full if full in modules() else _resolve(base)
                if target:
                    out.add(target)
    out.discard(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_the_checker_finds_a_loop_and_a_lazy_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []
    # `from edge_ocr.daemon.core import run_daemon` inside cmd_run: counted, though not run at import.
    assert "edge_ocr.daemon.core" in imports("edge_ocr.cli")
    assert "edge_ocr.daemon.core" not in imports("edge_ocr.cli", top_level_only=True)
    # `if TYPE_CHECKING:` imports count too.
    assert "edge_ocr.region_values" in imports("edge_ocr.evidence")


def test_no_class_is_longer_than_400_lines() -> None:
    long = [
        f"{name}.{node.name}: {length(node)} lines"
        for name in modules()
        for node in ast.walk(tree(name))
        if isinstance(node, ast.ClassDef) and length(node) > MAX_CLASS_LINES
    ]
    assert not long, long


def test_no_runtime_module_is_longer_than_600_lines() -> None:
    long = []
    for name, path in modules().items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if not is_tool(name) and n > MAX_RUNTIME_MODULE_LINES:
            long.append(f"{name}: {n} lines")
    assert not long, long


def test_no_import_cycles() -> None:
    graph = {name: imports(name) for name in modules()}
    found = cycles(graph)
    runtime = [sorted(c) for c in found if not all(is_tool(m) for m in c)]
    assert not runtime, f"import loops through the runtime: {runtime}"
    unknown = [sorted(c) for c in found if c not in KNOWN_TOOL_CYCLES]
    assert not unknown, f"new import loops: {unknown}"


def test_the_daemon_rooms_do_not_import_each_other() -> None:
    """Each room imports only the shared state, the settings and the signal handling; `core` wires them."""
    shared = {f"edge_ocr.daemon{m}" for m in ("", ".state", ".settings", ".signals")}
    assert {"edge_ocr.daemon.core", "edge_ocr.daemon.lifecycle", "edge_ocr.daemon.folder"} <= set(modules())
    for room in modules():
        if not room.startswith("edge_ocr.daemon.") or room in shared or room == "edge_ocr.daemon.core":
            continue
        siblings = {m for m in imports(room) if m.startswith("edge_ocr.daemon")} - shared
        assert not siblings, f"{room} imports {sorted(siblings)}"


def test_runtime_modules_never_import_the_tools() -> None:
    bad = {}
    for name in modules():
        if is_tool(name):
            continue
        lazy_ok = name in FRONT_DOORS
        tools = {m for m in imports(name, top_level_only=lazy_ok) if is_tool(m)}
        if tools:
            bad[name] = sorted(tools)
    assert not bad, bad


def test_nothing_imports_the_daemon_or_the_cli_but_the_front_door_and_the_tools() -> None:
    bad = {}
    for name in modules():
        if name in FRONT_DOORS or is_tool(name) or name.startswith("edge_ocr.daemon"):
            continue
        up = {m for m in imports(name) if m.startswith(("edge_ocr.daemon", "edge_ocr.cli"))}
        if up:
            bad[name] = sorted(up)
    assert not bad, bad


def test_every_command_line_is_built_without_the_tools_code() -> None:
    """`edge-ocr run` builds the whole command line first, `bench`'s options included: those come from
    bench.options (the standard library only), so a daemon loads none of the bench's code (it did, and
    numpy with it, before it had read its configuration)."""
    code = (
        "import sys, json; from edge_ocr import cli; cli.build_parser(); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('edge_ocr.', 'numpy')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert [m for m in loaded if is_tool(m) and m not in ("edge_ocr.bench", "edge_ocr.bench.options")] == []
    assert "numpy" not in loaded


def test_runtime_modules_never_draw_from_numpy_random() -> None:
    """numpy.random's extension modules load on first use and cost a meter-only daemon's first start
    3 MB of peak RSS; the runtime has no use for random numbers (the precision probe's input is a fixed
    pattern)."""
    bad = []
    for name in modules():
        if is_tool(name):
            continue
        for node in ast.walk(tree(name)):
            owner = node.value if isinstance(node, ast.Attribute) and node.attr == "random" else None
            if isinstance(owner, ast.Name) and owner.id in ("np", "numpy"):
                bad.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
            else:
                continue
            if any(n == "numpy.random" or n.startswith("numpy.random.") for n in names):
                bad.append(f"{name}:{node.lineno}")
    assert not bad, bad
