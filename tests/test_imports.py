"""zoo's modules import one another without a circle (issue 24): read with `ast`, every `import` and
`from ... import` of a zoo module counts, at the top of a module or inside a function (relative ones resolved).
Left out: `if TYPE_CHECKING:` blocks (they never run), the implicit import of a module's parent package, and a
reference by name resolved at run time (the registry's `BUILTIN_DATASETS`, like an entry point)."""
from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import zoo

ZOO = Path(zoo.__file__).parent
#: circles outside issue 24 that are no small fix: a model's refusal names the installed models (completion ->
#: api/plugins) while the registry checks a plugin's classes against zoo.Model (plugins -> model); zoo.settings
#: builds a LogitProcessor, which validates through zoo.settings. A module may not join them, and no new one may form.
KNOWN = [{"zoo.api", "zoo.completion", "zoo.model", "zoo.plugins"}, {"zoo.logits", "zoo.settings"}]


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under root (the package itself from __init__.py)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _walk(node: ast.AST):
    """Every node below `node` that runs: the bodies of `if TYPE_CHECKING:` are skipped (their else is kept)."""
    for child in ast.iter_child_nodes(node):
        if _type_checking(child):
            for sub in child.orelse:
                yield sub
                yield from _walk(sub)
            continue
        yield child
        yield from _walk(child)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that the module `name` (file `path`) imports, anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from . import masks` imports the module zoo.masks
                targets.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
    found = set()
    for target in targets:
        while target and target not in modules:  # `import zoo.a.b` of a name inside zoo.a: zoo.a
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_graph(root: Path = ZOO, package: str = "zoo") -> dict[str, set[str]]:
    modules = module_files(root, package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import one another in a circle (strongly connected, by Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (a path a -> ... -> a) through each tangle."""
    return [_circle_in(graph, group) for group in tangles(graph)]


def _circle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & group):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"no circle in {group}")  # a strongly connected group always has one


def _text(circle: list[str]) -> str:
    return " -> ".join(circle)


def test_the_datasets_modules_are_in_no_import_circle():
    graph = import_graph()
    assert "zoo.plugins" in graph["zoo.datasets"] and "zoo.data" not in graph["zoo.datasets"]
    assert graph["zoo.plugins"].isdisjoint({"zoo.data", "zoo.datasets"})  # zoo.data is named, not imported
    found = [c for c in circles(graph) if {"zoo.data", "zoo.datasets"} & set(c)]
    assert not found, "import circle: " + "; ".join(map(_text, found))
    three = {m: graph[m] & {"zoo.data", "zoo.datasets", "zoo.plugins"}
             for m in ("zoo.data", "zoo.datasets", "zoo.plugins")}
    assert not circles(three), "import circle: " + "; ".join(map(_text, circles(three)))


def test_no_new_import_circle_in_zoo():
    graph = import_graph()
    new = [g for g in tangles(graph) if not any(g <= known for known in KNOWN)]
    assert not new, "import circle: " + "; ".join(_text(_circle_in(graph, g)) for g in new)


def test_the_check_finds_a_circle_of_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
                              "def f():\n    from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("import pkg.c\n")
    (pkg / "c.py").write_text("def g():\n    from . import a\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"}  # the TYPE_CHECKING import of c is left out
    assert circles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]


def test_listing_datasets_imports_no_torch_and_the_old_names_still_read():
    code = ("import sys, zoo.data, zoo.plugins; zoo.plugins.reset(); reg = zoo.plugins.registry(); "
            "assert sorted(reg.datasets) == ['cifar10', 'cifar10-gray', 'mnist', 'mnist-bin'], reg.datasets; "
            "bad = {'torch', 'numpy'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    import zoo.data
    import zoo.datasets
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert zoo.datasets.NAMES == zoo.data.NAMES and zoo.datasets.IMAGE_SHAPES is zoo.data.IMAGE_SHAPES
    assert [str(w.message) for w in caught][0].startswith("zoo.datasets.NAMES moved to zoo.data.NAMES")
