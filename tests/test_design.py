"""docs/design.md says only what is true of the code: its module table lists every module of
the package and nothing else, every name it cites exists, and its table of third-party
libraries names exactly the modules that import each one."""

from __future__ import annotations

import ast
import builtins
import importlib
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "design.md"
PACKAGE = ROOT / "jatos_sync"
_FILE_NAME = re.compile(r"\.(py|csv|json|yaml|md|jzip|jas|txt|lock)$")


def _text() -> str:
    return DESIGN.read_text(encoding="utf-8")


def _modules_on_disk() -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for p in PACKAGE.rglob("*.py")
        if "__pycache__" not in p.parts and "sample_project" not in p.parts
    }


def _table_rows(heading: str) -> list[list[str]]:
    """The rows of the first table after `heading`, as lists of cells."""
    section = _text().split(heading, 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("| ---"):
            continue
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[1:]  # without the header


def test_the_module_table_lists_every_module_of_the_package_once() -> None:
    listed = [row[0].strip("`") for row in _table_rows("## 6. The modules")]
    assert len(listed) == len(set(listed)), "a module is listed twice"
    on_disk = _modules_on_disk()
    assert set(listed) - on_disk == set(), "listed, but there is no such module"
    assert on_disk - set(listed) == set(), "a module of the package is missing from the table"
    assert all(len(row) == 2 and row[1] for row in _table_rows("## 6. The modules"))


def _resolves(dotted: str) -> bool:
    """Whether `dotted` (`plan.make_plan`, `sync.MappingSync.full_pass`, `results.zips`)
    names a module of the package, or an attribute of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module("jatos_sync." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


@cache
def _top_level_names() -> frozenset[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return frozenset(names)


def test_every_module_function_and_class_it_names_exists() -> None:
    cited = set(re.findall(r"`([a-z_]+(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`", _text()))
    dotted = {c for c in cited if not _FILE_NAME.search(c)}
    assert "plan.make_plan" in dotted  # the reader finds the citations
    missing = sorted(c for c in dotted if not _resolves(c))
    assert not missing, f"docs/design.md names what does not exist: {missing}"
    types = set(re.findall(r"`([A-Z][a-z][A-Za-z]*)`", _text())) - set(dir(builtins))
    assert "LocalSnapshot" in types
    assert types <= _top_level_names(), types - _top_level_names()
    paths = set(re.findall(r"`(jatos_sync/[\w/]+\.py)`", _text()))
    assert {p for p in paths if not (ROOT / p).is_file()} == set()


def _runtime_imports(path: Path) -> set[str]:
    """The top-level names of the packages `path` imports when it runs (imports under
    `if TYPE_CHECKING:` are for the type checker only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_each_third_party_library_enters_only_through_the_modules_it_lists() -> None:
    rows = _table_rows("**Third-party libraries**")
    assert rows, "the table of libraries is missing"
    importers = {m: _runtime_imports(ROOT / m) for m in _modules_on_disk()}
    for libraries, modules in rows:
        listed = set(re.findall(r"`([\w/]+\.py)`", modules))
        for library in (name.strip() for name in libraries.split(",")):
            actual = {m for m, found in importers.items() if library in found}
            assert actual == listed, f"{library} is imported by {sorted(actual)}"


def test_it_stays_short_enough_to_read() -> None:
    assert len(_text().splitlines()) <= 300
