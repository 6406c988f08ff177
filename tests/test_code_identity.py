"""Code identity (`lib.code_identity`): the code version in every cache key survives moving code and
notices changing it. Known answers on a small package written here, then the rules on `lib` itself."""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from lib import code_identity as ci

LIB = Path(ci.__file__).resolve().parent

A = '''"""Module a."""
from .b import helper, Scale


def compute(x):
    """The root: what a cached result is."""
    return helper(x) + Scale(2).apply(x)  # a comment


def unrelated():
    return 7
'''
B = '''from __future__ import annotations


def helper(x):
    return x + 1


class Scale:
    def __init__(self, k):
        self.k = k

    def apply(self, x):
        return self.k * x

    def never_called(self):
        return 0
'''
NEUTRAL = '''CACHE_NEUTRAL = True


def say(x):
    return x
'''


def package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "lib"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    ci.definitions.cache_clear()
    return pkg


def identity(root: Path, files: dict[str, str], roots=("compute",)) -> str:
    return ci.identity(roots, package(root, files))


def test_documentation_and_unreached_code_do_not_change_the_identity(tmp_path):
    base = identity(tmp_path, {"a.py": A, "b.py": B, "talk.py": NEUTRAL})
    documented = A.replace('"""The root: what a cached result is."""', '"""Longer: $y = h(x) + 2x$.\n\n    Two lines."""')
    assert identity(tmp_path, {"a.py": documented.replace("# a comment", ""), "b.py": B, "talk.py": NEUTRAL}) == base
    assert identity(tmp_path, {"a.py": A.replace("return 7", "return 8"), "b.py": B, "talk.py": NEUTRAL}) == base
    assert identity(tmp_path, {"a.py": A, "b.py": B, "talk.py": NEUTRAL.replace("return x", "return 2 * x")}) == base


def test_moving_and_renaming_modules_keep_the_identity(tmp_path):
    base = identity(tmp_path, {"a.py": A, "b.py": B})
    # the module renamed, and used through its name instead of imported names
    qualified = A.replace("from .b import helper, Scale", "from . import tools").replace(
        "helper(x) + Scale(2)", "tools.helper(x) + tools.Scale(2)")
    assert identity(tmp_path, {"a.py": qualified, "tools.py": B}) == base
    # the helper moved into the root's module, the class into a subpackage
    helper_src = "def helper(x):\n    return x + 1\n"
    scale_src = B[B.index("class Scale"):]
    moved = A.replace("from .b import helper, Scale", "from .sub.scaling import Scale") + "\n\n" + helper_src
    assert identity(tmp_path, {"a.py": moved, "sub/__init__.py": "", "sub/scaling.py": scale_src}) == base


def test_editing_reached_code_changes_the_identity(tmp_path):
    base = identity(tmp_path, {"a.py": A, "b.py": B})
    assert identity(tmp_path, {"a.py": A, "b.py": B.replace("x + 1", "x + 2")}) != base, "a called function"
    assert identity(tmp_path, {"a.py": A, "b.py": B.replace("self.k * x", "self.k * x * 1.0")}) != base, \
        "a method called on an object the root built"
    assert identity(tmp_path, {"a.py": A, "b.py": B.replace("self.k = k", "self.k = -k")}) != base, \
        "a constructor runs without being named"
    assert identity(tmp_path, {"a.py": A.replace("Scale(2)", "Scale(3)"), "b.py": B}) != base


def test_a_class_the_root_builds_reaches_every_method(tmp_path):
    """Frameworks call methods by name where our code does not (torch calls `forward` through `__call__`):
    building an object reaches all of its class's methods, named in our code or not."""
    base = identity(tmp_path, {"a.py": A, "b.py": B})
    assert identity(tmp_path, {"a.py": A, "b.py": B.replace("return 0", "return 1")}) != base
    torch_like = '''import torch


class Head(torch.nn.Module):
    def forward(self, x):
        return 2 * x


def compute(x):
    return Head()(x)
'''
    base = identity(tmp_path, {"a.py": torch_like})
    assert identity(tmp_path, {"a.py": torch_like.replace("2 * x", "3 * x")}) != base


def test_a_method_called_on_an_outside_class_reaches_our_overrides(tmp_path):
    """`m: nn.Module` may hold one of our modules: `m.forward` reaches every `forward` of ours."""
    root = '''from torch import nn


def compute(m: nn.Module, x):
    return m.forward(x)
'''
    ours = "class Mine:\n    def forward(self, x):\n        return x + 1\n"
    base = identity(tmp_path, {"a.py": root, "mine.py": ours})
    assert identity(tmp_path, {"a.py": root, "mine.py": ours.replace("x + 1", "x + 2")}) != base


def test_a_method_reached_through_an_annotation_includes_subclasses(tmp_path):
    """`m: Model` may hold a subclass at run time: its override is reached too; an unrelated class's
    method of the same name is not (the annotation says which class)."""
    root = '''from .models import Model


def compute(m: Model, x):
    return m.forward(x)
'''
    models = '''class Model:
    def forward(self, x):
        return x


class Bigger(Model):
    def forward(self, x):
        return 2 * x


class Other:
    def forward(self, x):
        return 3 * x
'''
    base = identity(tmp_path, {"a.py": root, "models.py": models})
    assert identity(tmp_path, {"a.py": root, "models.py": models.replace("2 * x", "4 * x")}) != base
    assert identity(tmp_path, {"a.py": root, "models.py": models.replace("3 * x", "5 * x")}) == base
    unknown = root.replace("m: Model", "m")  # no annotation: any class's forward may run
    base = identity(tmp_path, {"a.py": unknown, "models.py": models})
    assert identity(tmp_path, {"a.py": unknown, "models.py": models.replace("3 * x", "5 * x")}) != base


def test_a_legacy_alias_applies_to_exactly_the_recorded_code(tmp_path, monkeypatch):
    pkg = package(tmp_path, {"a.py": A, "b.py": B})
    monkeypatch.setattr(ci, "FAMILIES", {"demo": ("compute",)})
    now = ci.identity(("compute",), pkg)
    monkeypatch.setattr(ci, "LEGACY", {"demo": {now: "old-file-hash"}})
    assert ci.version("demo", pkg) == "old-file-hash"
    pkg = package(tmp_path, {"a.py": A, "tools.py": B}.copy() | {"a.py": A.replace(".b import", ".tools import")})
    assert ci.version("demo", pkg) == "old-file-hash", "moved: the alias still applies"
    pkg = package(tmp_path, {"a.py": A, "b.py": B.replace("x + 1", "x + 2")})
    assert ci.version("demo", pkg) == ci.identity(("compute",), pkg) != "old-file-hash", "edited: recomputed"
    with pytest.raises(KeyError, match="unknown code family 'nope'"):
        ci.version("nope", pkg)


def test_a_root_that_does_not_exist_is_one_clear_error(tmp_path):
    pkg = package(tmp_path, {"a.py": A, "b.py": B})
    with pytest.raises(KeyError, match="no definition named missing"):
        ci.identity(("compute", "missing"), pkg)


# --- the rules on lib itself ---------------------------------------------------------------------------
def test_every_family_root_exists_and_every_version_is_a_key():
    ci.definitions.cache_clear()
    for family, roots in ci.FAMILIES.items():
        assert ci.reach(roots), family
        assert len(ci.version(family)) == ci.KEY_CHARS


def _store_callers() -> set[tuple[str, str]]:
    """(module, definition) of every definition in lib that asks the results store for a table or tensors."""
    found = set()
    for path in sorted(LIB.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if ci._is_neutral(tree):
            continue
        for node in tree.body:
            targets = [node] if not isinstance(node, ast.ClassDef) else \
                [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
            for t in targets:
                calls = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
                         for n in ast.walk(t) if isinstance(n, ast.Call)}
                if calls & {"table", "tensors", "cached"}:
                    name = t.name if t is node else f"{node.name}.{t.name}"
                    found.add((ci._where(path, LIB), name))
    return found


def test_every_definition_that_computes_a_cached_result_is_in_a_family():
    """The safety net of the roots: a new function that stores a table but is reached by no family would
    keep its key when edited (a stale table); this finds it."""
    ci.definitions.cache_clear()
    reached = {(d.where, d.name) for roots in ci.FAMILIES.values() for d in ci.reach(roots)}
    callers = _store_callers()
    assert len(callers) >= 15, callers
    assert not callers - reached, sorted(callers - reached)


def test_the_chapters_tables_do_not_depend_on_the_claims_or_the_runner():
    """What the split into families is for: editing the claims, the verdict sentences or how notebooks run
    recomputes no chapter table and tunes no prompt."""
    ci.definitions.cache_clear()
    for family in ("cached results", "prompts"):
        modules = {d.where for d in ci.reach(ci.FAMILIES[family])}
        assert not modules & {"lib/claims.py", "lib/verdicts.py", "lib/applications.py", "lib/ledger.py",
                              "lib/runner.py", "lib/notebook.py", "lib/store.py", "lib/catalog.py"}, family
        assert {"lib/tuning.py", "lib/models.py", "lib/evaluation.py", "lib/prompt.py"} <= modules, family
    assert {"lib/skill_neurons.py", "lib/hooks.py", "lib/chapters.py", "lib/intervals.py"} <= \
        {d.where for d in ci.reach(ci.FAMILIES["cached results"])}


def test_module_level_statements_are_definitions_imports_or_guards():
    """The identity hashes definitions only; a module-level call that changed a computation would be missed."""
    for path in sorted(LIB.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for i, node in enumerate(tree.body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
                                 ast.Assign, ast.AnnAssign)):
                continue
            if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # the module docstring
            text = ast.unparse(node)
            assert text.startswith(("if TYPE_CHECKING:", "if __name__ == '__main__':", "try:\n    import")), \
                f"{path.name}:{node.lineno}: {text[:60]}"


def test_the_command_lists_every_family(capsys):
    assert ci.main() == 0
    out = capsys.readouterr().out
    assert all(f"{family}: identity " in out for family in ci.FAMILIES)
