"""The layering ARCHITECTURE.md draws, checked on the source: every import of `triton_mysql/`
(module level and inside functions) goes to the same layer or one under it, there is no import
cycle, `ha/` and `supervisor/` never import each other, and `ha/decide.py` does no I/O.

The graph is read with `ast` (nothing is imported), so this runs in milliseconds.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "triton_mysql"

# ARCHITECTURE.md, top to bottom: a module may import from its own layer and the layers below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry points", ("cli", "hooks")),
    ("HA", ("ha", "supervisor_client")),
    ("jobs", ("backup", "bootstrap", "supervisor")),
    ("records", ("records", "view")),
    ("dialect", ("mysql",)),
    ("contracts", ("discovery", "storage")),
    ("ground", ("config", "keys", "node_state", "log", "errors", "files", "hook_env", "timestamps", "__init__")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The triton_mysql modules `path` imports, relative imports resolved (`from . import x` counts
    as importing the module `x` when it is one, else the package)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "triton_mysql"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "triton_mysql":
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return {m for m in found if m in MODULES} - {name}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for index, (_, members) in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{module} is in no layer of ARCHITECTURE.md: add it there and here")


def test_the_graph_is_read():
    assert "triton_mysql.ha.decide" in GRAPH and "triton_mysql.hooks.health" in GRAPH
    assert "triton_mysql.ha.decide" in GRAPH["triton_mysql.hooks.health"]
    assert len(GRAPH) > 60


def test_every_module_is_in_a_layer_and_imports_only_its_own_or_lower_layers():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in GRAPH.items() for t in sorted(targets) if layer_of(t) < layer_of(m)]
    assert upward == []


def test_no_import_cycle():
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("source, forbidden", [("triton_mysql.ha", "triton_mysql.supervisor."),
                                               ("triton_mysql.supervisor", "triton_mysql.ha.")])
def test_ha_and_supervisor_never_import_each_other(source, forbidden):
    crossing = [f"{m} -> {t}" for m, targets in GRAPH.items() if m.startswith(source + ".")
                for t in targets if t.startswith(forbidden)]
    assert crossing == []


def test_decide_is_pure():
    """`ha/decide.py` decides from the view and the node's facts it is given: no discovery, database,
    process, file or clock access of its own (the view carries the clock)."""
    tree = ast.parse((PACKAGE / "ha" / "decide.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
    io = {"os", "time", "socket", "subprocess", "threading", "pymysql", "requests", "etcd3gw", "consul", "boto3",
          "shutil", "pathlib", "signal", "random"}
    assert imported & io == set()
    local = {m for m in GRAPH["triton_mysql.ha.decide"]}
    assert not {m for m in local if m.startswith(("triton_mysql.discovery", "triton_mysql.mysql.connection",
                                                   "triton_mysql.storage", "triton_mysql.ha.act"))}
