"""The layers import only downward: `persrm_core` (the logic) knows nothing of Dagster but the
child-side Pipes client a training process reports through; `assets/` (the Dagster wrapping) does
not reach up into `orchestration/` (jobs, sensors, the CLI); `scripts/` never borrow from `tests/`.
Read from the sources' import statements, function-local imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_MODULES = {"tests", "conftest"} | {p.stem for p in (REPO / "tests").glob("*.py")}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in a file; `from x import y` gives x."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def violations(folder: str, forbidden) -> list[str]:
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, f"no sources under {folder}/"
    return [f"{p.relative_to(REPO)}:{line} imports {mod}" for p in files for line, mod in imported_modules(p)
            if forbidden(mod)]


def _top(mod: str) -> str:
    return mod.split(".")[0]


def test_the_core_never_imports_dagster_but_the_pipes_client():
    assert not violations("persrm_core", lambda m: _top(m) == "dagster" or
                          (_top(m).startswith("dagster_") and _top(m) != "dagster_pipes"))


def test_assets_never_import_orchestration():
    assert not violations("assets", lambda m: _top(m) == "orchestration")


def test_the_core_never_imports_the_dagster_layers():
    assert not violations("persrm_core", lambda m: _top(m) in ("assets", "orchestration"))


def test_scripts_never_import_tests():
    assert not violations("scripts", lambda m: _top(m) in TEST_MODULES)


@pytest.mark.parametrize("source, bad", [
    ("import dagster\n", True), ("from dagster import asset\n", True), ("from dagster_pipes import open_dagster_pipes\n", False),
    ("def f():\n    from dagster._core import x\n", True), ("import dagster_webserver\n", True), ("import polars\n", False),
])
def test_the_scan_sees_imports_anywhere_in_a_file(tmp_path, source, bad):
    (tmp_path / "m.py").write_text(source)
    found = [m for _, m in imported_modules(tmp_path / "m.py")
             if _top(m) == "dagster" or (_top(m).startswith("dagster_") and _top(m) != "dagster_pipes")]
    assert bool(found) is bad
