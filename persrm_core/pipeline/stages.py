"""The stage registry: what each stage reads, needs and writes, declared where the stage is written.

Each stage function carries `@stage(reads=..., deps=..., outs=...)`:

* `reads`: the params.yaml sections it may read (and `seed`). The function is handed a
  `StageSettings` view of the settings in which every other section is missing, so a stage that
  starts reading `base_model` without declaring it fails at once, in its first test, instead of
  DVC silently not rerunning it when that section changes.
* `deps` / `outs`: its data, as `paths` keys with an optional sub-path (`corpus/train.parquet`).

From the registry come `stage_sections()` (the stage-to-params map) and `dvc.yaml`
(`python -m persrm_core.pipeline.dvc_yaml --write`, `make dvc-yaml`): each DVC stage's params are the
sections it reads, in `defaults` and in every profile, and its deps are its input data plus the
source files of the code it runs, found from the import graph (`code_deps`). tests/test_dvc.py holds
dvc.yaml equal to what the registry renders.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from persrm_core.config import SECTIONS

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # persrm_core/
# Settings attributes that belong to a section without being the section itself
FLATTENED = {"min_texts_per_author": "ingest", "max_texts_per_author": "synthesis"}
ALWAYS = ("profile", "paths", "raw")  # every stage may read these (paths are DVC params of every stage)


@dataclass(frozen=True)
class Stage:
    name: str
    reads: tuple[str, ...]
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    module: str
    function: str


STAGES: dict[str, Stage] = {}


class StageSettings:
    """The settings a stage declared: its sections (and `seed`), `profile`, `paths` and `raw`;
    any other section is an AttributeError that names the stage and what to declare."""

    def __init__(self, settings, stage: str, reads: tuple[str, ...]):
        object.__setattr__(self, "_settings", settings)
        object.__setattr__(self, "_stage", stage)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str):
        section = "seed" if name == "seed" else FLATTENED.get(name, name)
        if name not in ALWAYS and (section in SECTIONS or section == "seed") and section not in self._reads:
            raise AttributeError(f"stage {self._stage} reads settings {name!r} but declares only "
                                 f"{list(self._reads)}: add {section!r} to its @stage(reads=...), so DVC "
                                 f"reruns it when that section changes")
        return getattr(self._settings, name)

    def __setattr__(self, name, value):
        raise AttributeError("stage settings are read-only")


def stage(reads: tuple[str, ...], deps: tuple[str, ...] = (), outs: tuple[str, ...] = ()):
    """Register a stage function (named as its asset) and hand it a `StageSettings` view."""
    for section in reads:
        if section not in SECTIONS and section != "seed":
            raise ValueError(f"unknown settings section {section!r} (known: seed, {', '.join(SECTIONS)})")

    def register(fn: Callable) -> Callable:
        STAGES[fn.__name__] = Stage(fn.__name__, tuple(reads), tuple(deps), tuple(outs), fn.__module__,
                                    fn.__name__)

        @functools.wraps(fn)
        def run(s, *args, **kwargs):
            view = s if isinstance(s, StageSettings) else StageSettings(s, fn.__name__, tuple(reads))
            return fn(view, *args, **kwargs)

        return run

    return register


def stage_sections() -> dict[str, tuple[str, ...]]:
    """Stage -> the params sections it reads (without `seed`), every stage registered."""
    import persrm_core.pipeline  # noqa: F401  (registers every stage)

    return {name: tuple(r for r in st.reads if r != "seed") for name, st in STAGES.items()}


# -- the code a stage runs -------------------------------------------------------------------------

PIPELINE = "persrm_core.pipeline"
NOT_CODE_DEPS = {"persrm_core.config", PIPELINE}  # its values are the params DVC tracks; its imports reach everything


def _module_file(module: str) -> Path | None:
    rel = Path(*module.split("."))
    for cand in (PACKAGE_DIR.parent / rel.with_suffix(".py"), PACKAGE_DIR.parent / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(tree: ast.AST) -> set[str]:
    """The persrm_core modules imported anywhere in `tree` (module level and inside functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("persrm_core"):
            found.add(node.module)
            for alias in node.names:  # `from persrm_core.data import neardup`
                if _module_file(f"{node.module}.{alias.name}"):
                    found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("persrm_core")}
    return found


@functools.lru_cache(maxsize=None)
def _module_imports(module: str) -> frozenset[str]:
    path = _module_file(module)
    return frozenset(_imports(ast.parse(path.read_text(encoding="utf-8")))) if path else frozenset()


@functools.lru_cache(maxsize=None)
def _parse(module: str) -> ast.Module:  # read-only: callers wrap bodies, never edit the tree
    return ast.parse(_module_file(module).read_text(encoding="utf-8"))


def _reached(module: str, function: str, seen: set[tuple[str, str]]) -> set[str]:
    """Modules a function of a pipeline module uses: the module-level imports it (or a helper of
    that module it calls) names, and the imports inside those functions. A name taken from another
    pipeline module is followed into that function, not the whole module."""
    tree = _parse(module)
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    top: dict[str, str] = {}  # a name imported at module level -> the module it comes from
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("persrm_core"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                top[alias.asname or alias.name] = sub if _module_file(sub) else node.module
    todo, modules = [function], {module}
    while todo:
        name = todo.pop()
        if (module, name) in seen or name not in defs:
            continue
        seen.add((module, name))
        node = defs[name]
        body = ast.Module(body=node.body, type_ignores=[])  # not its decorators: @stage is the registry
        modules |= _imports(body)
        for n in ast.walk(body):
            if not isinstance(n, ast.Name):
                continue
            if n.id in defs:
                todo.append(n.id)
            elif (m := top.get(n.id)) and m.startswith(PIPELINE + ".") and m != module:
                modules |= _reached(m, n.id, seen)
            elif m:
                modules.add(m)
    return modules


def settings_read(st: Stage) -> set[str]:
    """The settings sections (and `seed`) that the stage function and the pipeline helpers it calls
    read as `s.<name>` (a static check that its declaration is complete, tests/test_stages.py)."""
    found: set[str] = set()
    seen: set[tuple[str, str]] = set()

    def visit(module: str, function: str) -> None:
        if (module, function) in seen:
            return
        seen.add((module, function))
        tree = _parse(module)
        defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        if function not in defs:
            return
        top = {}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PIPELINE + "."):
                top.update({a.asname or a.name: node.module for a in node.names})
        for n in ast.walk(ast.Module(body=defs[function].body, type_ignores=[])):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "s":
                name = FLATTENED.get(n.attr, n.attr)
                if name in SECTIONS or name == "seed":
                    found.add(name)
            elif isinstance(n, ast.Name):
                if n.id in defs:
                    visit(module, n.id)
                elif n.id in top:
                    visit(top[n.id], n.id)

    visit(st.module, st.function)
    return found


def _function_closure(module: str, function: str) -> set[str]:
    """Every module the stage function runs code of: `_reached`, then everything those import."""
    closure, todo = set(), sorted(_reached(module, function, set()))
    while todo:
        m = todo.pop()
        if m in closure or m in NOT_CODE_DEPS:
            continue
        closure.add(m)
        if not m.startswith(PIPELINE + "."):  # a pipeline module's own imports were followed by use
            todo += sorted(_module_imports(m))
    return closure


def code_deps(st: Stage) -> list[str]:
    """The source files (relative to the repository) of the code `st` runs."""
    root = PACKAGE_DIR.parent
    files = {_module_file(m) for m in _function_closure(st.module, st.function)} - {None}
    out = sorted(str(f.relative_to(root)) for f in files if f.name != "__init__.py")  # the packages' are docstrings
    if "persrm_core/synthesis/swap.py" in out:
        out.append("persrm_core/resources/synonyms.tsv")  # the lexicon swap reads it
    return out
