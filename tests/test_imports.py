"""The package's shape: no import circle in ``tinyfast/`` (imports inside functions included) and no
source file over 500 lines.

The import graph is read from the source with :mod:`ast`, not by importing: every ``import`` and
``from ... import`` statement anywhere in a module (top level, functions, ``if`` blocks) is an edge,
and so is ``importlib.import_module("<literal>")``. ``from pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``. Importing ``a.b.c`` runs ``a/b/__init__.py``
first, so it is also an edge to each package above the target that does not already hold the
importer. A registry's import of its plugins by a computed
name (``tinyfast.models``' zoo, the loaders) is not visible here, by design: the plugins import the
registry, the registry finds them at run time.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500


def module_names(root: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` of every ``.py`` file of ``root/package``."""
    mods = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _parents(module: str) -> list[str]:
    """The packages above ``module``: ``a.b.c`` -> ``["a", "a.b"]``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: the package's modules it imports}``, from every import statement in it."""
    mods = module_names(root, package)
    graph = {}
    for name, path in mods.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[:len(here.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    out.add(f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "import_module" and node.args
                  and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                out.add(node.args[0].value)
        out |= {parent for target in out for parent in _parents(target)
                if not (name == parent or name.startswith(parent + "."))}
        graph[name] = {m for m in out if m in mods and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle ``[a, b, ..., a]`` of ``graph``, or ``None`` (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node):
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


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_the_walker_sees_function_level_relative_and_package_imports(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from pkg.sub import helper\n",
        "pkg/sub/__init__.py": "from . import leaf\n",
        "pkg/sub/leaf.py": "import os\nif True:\n    from .. import b\n",
        "pkg/b.py": "from pkg import a  # the circle closes here\n",
        "pkg/c.py": "import importlib\nimportlib.import_module('pkg.b')\n",
    })
    graph = import_graph(root, "pkg")
    assert graph == {"pkg": set(), "pkg.a": {"pkg.sub"}, "pkg.sub": {"pkg.sub.leaf"},
                     "pkg.sub.leaf": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.b"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub", "pkg.sub.leaf", "pkg.b", "pkg.a"]
    (root / "pkg/b.py").write_text("X = 1\n")
    assert find_cycle(import_graph(root, "pkg")) is None


def test_the_walker_counts_the_package_a_submodule_import_runs(tmp_path):
    # pkg.x imports pkg.sub.leaf, which runs pkg/sub/__init__.py first, which imports pkg.x.
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/x.py": "def f():\n    from pkg.sub.leaf import g\n",
        "pkg/sub/__init__.py": "from pkg import x\n",
        "pkg/sub/leaf.py": "from pkg.sub import other\n",
        "pkg/sub/other.py": "",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.x"] == {"pkg.sub", "pkg.sub.leaf"}
    assert graph["pkg.sub.leaf"] == {"pkg.sub.other"}  # its own package is already running
    assert find_cycle(graph) == ["pkg.sub", "pkg.x", "pkg.sub"]


def test_tinyfast_has_no_import_circle():
    graph = import_graph(ROOT, "tinyfast")
    assert len(graph) > 40 and graph["tinyfast.train"]  # the walk did read the package
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_source_file_over_500_lines():
    files = [p for d in ("tinyfast", "benchmarks", "csrc", "tests") for p in sorted((ROOT / d).rglob("*"))
             if p.suffix in (".py", ".sh", ".cpp", ".cu", ".h")]
    assert len(files) > 60
    limit = {p: 400 if p.parts[len(ROOT.parts)] == "benchmarks" and p.suffix == ".py" else MAX_LINES
             for p in files}  # a benchmark reads top to bottom: 400
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > limit[p]}
    assert not long, f"over the line limit (500; benchmarks' Python 400): {long}"
