"""The package's layers: imports point one way (base <- models <- io <- data <- train, deploy <- lab <- cli), and no
module imports itself back through others. Read from the source's import statements, so it fails on a new cycle or
an arrow pointing up before anything runs."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mlpvision"

# the layer of every top-level module or subpackage: an import may only point to its own layer or a lower one
LAYERS = {
    "_version": 0,
    "errors": 0,
    "runtime": 0,
    "plotting": 0,
    "fields": 0,
    "limits": 0,
    "layers": 0,
    "reparam": 0,
    "models": 1,
    "io": 2,
    "data": 3,
    "train": 4,
    "deploy": 4,
    "lab": 5,
    "cli": 6,
    "__main__": 7,
    "__init__": 7,  # the package's face re-exports the public API of the layers below
}
SIBLINGS_APART = {frozenset({"train", "deploy"})}  # same layer, and neither may import the other


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The mlpvision modules ``path`` imports (absolute names), at any depth of the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "mlpvision":  # `from . import x` imports module x, not the package's face
                found.update(f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "mlpvision")
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (names that are not modules, e.g. functions, are dropped)."""
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for t in _imports(path):
            while t not in MODULES and "." in t:  # `from .io import write_json` -> mlpvision.io
                t = t.rsplit(".", 1)[0]
            if t in MODULES and t != name:
                targets.add(t)
        graph[name] = targets
    return graph


def _top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer():
    assert {_top(n) for n in MODULES} <= set(LAYERS), "add the new module or subpackage to LAYERS"


def test_imports_point_down():
    wrong = []
    for name, targets in _graph().items():
        here = _top(name)
        for target in sorted(targets):
            there = _top(target)
            if there != here and LAYERS[there] > LAYERS[here]:
                wrong.append(f"{name} (layer {here}) imports {target} (higher layer {there})")
            elif frozenset({here, there}) in SIBLINGS_APART:
                wrong.append(f"{name} imports its sibling layer {target}")
    assert not wrong, "; ".join(wrong)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for t in sorted(graph[n]):
            if state.get(t) == 1:
                cycle = [*stack[stack.index(t) :], t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_the_checker_sees_a_cycle_and_an_upward_arrow(tmp_path, monkeypatch):
    """The rules can fail: a fake package where base imports cli, and two modules import each other."""
    fake = tmp_path / "mlpvision"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "errors.py").write_text("from .cli import main\n")
    (fake / "cli.py").write_text("from .errors import MlpVisionError\n")
    here = sys.modules[__name__]
    monkeypatch.setattr(here, "PACKAGE", fake)
    monkeypatch.setattr(here, "MODULES", {_module_name(p): p for p in sorted(fake.rglob("*.py"))})
    with pytest.raises(AssertionError, match="higher layer"):
        test_imports_point_down()
    with pytest.raises(AssertionError, match="import cycle"):
        test_no_import_cycles()


def _readme_layout() -> dict[str, set[str]]:
    """The README's Layout block: folder (relative to the package) -> the .py files it lists there."""
    text = (PACKAGE.parents[1] / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed: dict[str, set[str]] = {}
    folder = None
    for line in block.splitlines():
        name = line.split()[0] if line.strip() else ""
        indent = len(line) - len(line.lstrip())
        if name == "src/mlpvision/":
            folder = ""
        elif folder is None or not name or (indent == 0 and name != "src/mlpvision/"):
            folder = None if indent == 0 and name else folder
        elif name.endswith("/") and indent == 2:
            folder = name.rstrip("/")
        elif name.endswith(".py"):
            key = folder if indent == 4 else ""
            listed.setdefault(key, set()).add(name)
    return listed


def test_the_readme_layout_lists_every_module_where_it_is():
    on_disk: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py", "_version.py"):
            on_disk.setdefault(path.parent.relative_to(PACKAGE).as_posix().replace(".", ""), set()).add(path.name)
    assert _readme_layout() == on_disk
