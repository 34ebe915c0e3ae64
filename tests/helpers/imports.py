"""Which project files a module needs: its imports, followed through the project (tests of the layout)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO

PROJECT_PACKAGES = ("misr", "pipelines")
# An extractor registry names its classes as "module:Class" strings, imported when used.
_MODULE_STRING = re.compile(r"^((?:misr|pipelines)(?:\.\w+)+):\w+$")


def module_file(name: str) -> Path | None:
    """The file of a project module or package (None for anything outside the project)."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported_names(path: Path, typing_only_too: bool = False) -> set[str]:
    """Every module this file imports, anywhere in it (functions too), plus registry strings.

    `if TYPE_CHECKING:` imports never run, so they are left out unless `typing_only_too`
    (a layering rule counts them: a type named from a higher floor is still a dependency on it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only and not typing_only_too:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _MODULE_STRING.match(node.value)
            if match:
                names.add(match.group(1))
    return names


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def closure(start: Path) -> set[Path]:
    """The project files `start` needs: imports followed transitively, with every parent package's __init__."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        name = module_name(path)
        parents = [".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))]
        for imported in [*imported_names(path), *parents]:
            for i in range(1, len(imported.split(".")) + 1):  # importing a.b.c runs a and a.b first
                target = module_file(".".join(imported.split(".")[:i]))
                if target is not None and target not in seen:
                    todo.append(target)
    return seen


def third_party_imports(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_names(path)}


def project_imports(path: Path, typing_only_too: bool = True) -> set[Path]:
    """The project files `path` imports directly (a module, or the package __init__ it names)."""
    out = set()
    for name in imported_names(path, typing_only_too):
        target = module_file(name)
        if target is not None and target != path:
            out.add(target)
    return out
