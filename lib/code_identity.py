"""Which code produced a cached result, in a form that survives moving code and notices changing it.

Every cache key in this project holds a *code version*: a hash of the code that computes the result, so
that an edit of a computation recomputes instead of silently reusing a stale table. The version is the
identity of the definitions reachable from the result's *roots* (the functions that compute it):

    reach(R)    = the smallest set of top-level definitions that holds every definition named in R and
                  every definition named by an identifier (a name or an attribute) used in one already in it
    identity(R) = sha256( sorted { normalise(d) : d in reach(R) } ), first 16 hex digits

`normalise(d)` is the definition's source without docstrings, comments, blank lines and indentation, with
qualifiers that name a module of this package dropped (`tuning.tune_prompt(...)` reads `tune_prompt(...)`).
Module names, file paths and import lines appear nowhere, so moving a definition into another module,
renaming or splitting a module changes no identity; editing a reachable definition changes it.

What "reachable" over-approximates, so that it never misses code that runs: a class reaches every method it
defines (frameworks call methods by name where our code does not: torch's `forward`); `x.f` reaches the
methods named `f` of `x`'s annotated class and its relatives, or of every class when `x`'s class is unknown
or not ours. Over-reaching only means an unrelated edit recomputes; it never leaves a result stale. What it
cannot see: a method called through a name built at run time (`getattr(obj, name)()`); lib's `getattr`
calls read dataclass fields and library configurations only (checked by hand when this was written).

Modules whose code never changes a result's content (the cache itself, the runner, progress lines,
input checks) declare `CACHE_NEUTRAL = True`; their definitions are not reached.

`version(family, roots)` is what keys use. It returns the identity, except where `LEGACY` records that
this exact identity is the code which produced results under an older keying scheme (file-based hashes):
then it returns the old value, so those results keep their keys and nothing is recomputed. An edit of a
reachable definition changes the identity, the alias no longer applies, and the results are recomputed.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

CACHE_NEUTRAL = True
PACKAGE = Path(__file__).resolve().parent
KEY_CHARS = 16
NEUTRAL_MARK = "CACHE_NEUTRAL"

# Each family of cached results and where the code that computes it starts (`Name.*`: a class with every
# method). A key holds its family's `version`; `python -m lib.code_identity` lists what each one reaches.
FAMILIES: Mapping[str, tuple[str, ...]] = {
    # the chapters' tables and neuron-score tensors (`lib.store.code_version`)
    "cached results": ("cached", "tuning_table", "learning_curves", "transfer_table", "adversarial_table",
                       "predictivity_table", "layer_distribution_table", "suppression_table", "specificity_table",
                       "adversarial_neurons_table", "neuron_activations", "skill_neuron_similarity", "get_study",
                       "Experiment.*", "TransferStudy.*", "TransferMethods.*"),
    # a tuned prompt (`lib.tuning.prompt_code_version`, in run signatures that carry one)
    "prompts": ("tune_prompt",),
    # the pruning, other-tuning and model-tuning tables (`lib.applications.applications_version`)
    "applications": ("pruning_table", "model_tuning_table", "other_tuning_table"),
    # task statuses and claims (`lib.claims.evidence_version`)
    "evidence": ("statuses_cached", "claims_cached"),
    "controls": ("skill_neuron_controls",),
    "probe": ("probe_table",),
    "label permutation": ("rn3_permutation_table",),
}
# family -> {identity: the version its results were keyed with before identities existed}. The file-based
# hashes of lib/store.py and friends on 2026-12-03 (code_version 0fc1b206ae3c7256), recorded once when
# keys moved to identities, after checking that no computation differed: the move re-keyed nothing.
# Add an entry only after such a check (a refactor whose outputs are proven unchanged); never otherwise.
# Second entries: the code after three refactors that changed every identity and no output, each proven by a
# golden run at f413a10 and after it, and the three runs again on the merged code: one class per model family
# (lib/families; 583 sha256 checks through the public API on tiny BERT/RoBERTa/T5, the
# planted tied BERT and the real all-MiniLM-L6-v2), one training loop (lib/training_loop.py, lib/batching.py:
# prompts, weights, checkpoints, metrics, config.json, progress lines and errors of
# tune_prompt and tune_weights on tiny BERT/RoBERTa/T5, killed and resumed, PANDA, the projector, a real MiniLM
# run), tables in resumable pieces and keys from recorded data digests (the smoke transfer
# and suppression tables, the 35 mini run signatures).
LEGACY: Mapping[str, Mapping[str, str]] = {
    "cached results": {"092adcba9bec027d": "0fc1b206ae3c7256", "73757446e23548d6": "0fc1b206ae3c7256"},
    "prompts": {"71e298fd6dace91e": "9ba9de1a2819efd1", "0c1c1f573ad48b5e": "9ba9de1a2819efd1"},
    "applications": {"ee8ff07e9e1421c7": "2cfb6e0fafd6036c", "54db03b33da10abb": "2cfb6e0fafd6036c"},
    "evidence": {"77411eb254ad5d32": "b6bc2533a9ab9168", "24cc91d8e4283a44": "b6bc2533a9ab9168"},
    "controls": {"004a759dab628f74": "0ca257c45eab7173", "1ba0fa2cab2f47a0": "0ca257c45eab7173"},
    "probe": {"76290dd28ed8a953": "0d5f5906e1aeb25d", "7b663cffc196a3e0": "0d5f5906e1aeb25d"},
    "label permutation": {"93bb3a58d9a2f67c": "d75aaf720a30bd91", "eac3c36781ffe1ca": "d75aaf720a30bd91"},
}


@dataclass(frozen=True)
class Definition:
    """One top-level statement that defines names (a function, an assignment, a class's header) or one method."""

    name: str  # `f`, `CONSTANT`, `Class` (its header) or `Class.method`
    text: str  # normalised source: what the identity hashes
    refs: frozenset[tuple[str, str]]  # (module, name) of package definitions it uses by name
    attrs: frozenset[tuple[str, str]]  # (receiver's class or "" if unknown, attribute) it calls or reads
    bases: tuple[str, ...] = ()  # a class header's base classes
    methods: tuple[str, ...] = ()  # a class header's methods
    where: str = field(default="", compare=False)  # module path, for messages only: never hashed


def code_text(source: str) -> str:
    """Source without docstrings, comments, blank lines and indentation changes inside lines.

    Documenting a function (a formula in its docstring) does not change what it computes. Line-based,
    hence the same under every Python version.
    """
    prefix = "if True:\n" if source[:1].isspace() else ""  # a method's source, indented: parse it as a block
    shift = prefix.count("\n")
    drop: set[int] = set()
    for node in ast.walk(ast.parse(prefix + source)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                drop.update(range(first.lineno - shift, (first.end_lineno or first.lineno) - shift + 1))
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(prefix + source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1 - shift] = lines[row - 1 - shift][:col]
    return "\n".join(line.strip() for i, line in enumerate(lines, 1) if i not in drop and line.strip())


def _is_neutral(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == NEUTRAL_MARK for t in node.targets)
               for node in tree.body)


def _defined_names(node: ast.stmt) -> tuple[str, ...]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return (node.name,)
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return tuple(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return ()


def _where(path: Path, package: Path) -> str:
    return path.relative_to(package.parent).as_posix()


def _package_imports(tree: ast.Module, path: Path, package: Path) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Module aliases (`from . import tuning` -> {'tuning': 'lib/tuning.py'}) and imported names
    (`from .io import read_json as rj` -> {'rj': ('lib/io.py', 'read_json')}) that refer into the package,
    wherever in the module they are imported. Module paths only resolve names: they are never hashed."""
    modules, names = {}, {}

    def module_file(base: Path) -> Path | None:
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                if node.module:
                    base = base.joinpath(*node.module.split("."))
            elif node.module and node.module.split(".")[0] == package.name:
                base = package.parent.joinpath(*node.module.split("."))
            else:
                continue
            for alias in node.names:
                sub_module = module_file(base / alias.name)
                if sub_module is not None:
                    modules[alias.asname or alias.name] = _where(sub_module, package)
                else:
                    source = module_file(base)
                    names[alias.asname or alias.name] = (_where(source, package) if source else "", alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package.name:
                    found = module_file(package.parent.joinpath(*alias.name.split(".")))
                    if found is not None:
                        modules[alias.asname or alias.name] = _where(found, package)
    return modules, names


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _annotation_class(node: ast.AST | None, imported: Mapping[str, tuple[str, str]]) -> str:
    """The class a parameter is annotated with (`x: Experiment`, `x: Backbone | None`, `x: "Task"`), or ""."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return ""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = [_annotation_class(n, imported) for n in (node.left, node.right)]
        named = [c for c, n in zip(sides, (node.left, node.right)) if not (isinstance(n, ast.Constant) and n.value is None)]
        return named[0] if len(named) == 1 else ""
    if isinstance(node, ast.Subscript) and _dotted(node.value) in ("Optional", "typing.Optional"):
        return _annotation_class(node.slice, imported)
    name = _dotted(node) if node is not None else None
    if not name:
        return ""
    return imported[name][1] if name in imported else name


def _receiver_types(node: ast.AST, imported: Mapping[str, tuple[str, str]], own_class: str) -> dict[str, str]:
    """Variables whose class is known: annotated parameters, `v = Class(...)`, `self`/`cls` in a method."""
    types = {"self": own_class, "cls": own_class} if own_class else {}
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = n.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                if arg.annotation is not None and arg.arg not in ("self", "cls"):
                    types[arg.arg] = _annotation_class(arg.annotation, imported)
        elif isinstance(n, ast.Assign) and isinstance(n.value, ast.Call) and len(n.targets) == 1 \
                and isinstance(n.targets[0], ast.Name) and isinstance(n.value.func, ast.Name):
            func = n.value.func.id
            types.setdefault(n.targets[0].id, imported[func][1] if func in imported else func)
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            types.setdefault(n.target.id, _annotation_class(n.annotation, imported))
    return types


def _uses(node: ast.AST, where: str, own: set[str], imported: Mapping[str, tuple[str, str]],
          modules: Mapping[str, str], own_class: str = "") -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """((module, name) of package definitions used by name, (receiver class or "", attribute) pairs)."""
    refs, attrs = set(), set()
    types = _receiver_types(node, imported, own_class)
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            if n.id in imported:
                refs.add(imported[n.id])
            elif n.id in own:
                refs.add((where, n.id))
        elif isinstance(n, ast.Attribute):
            receiver = _dotted(n.value)
            if receiver in modules:
                refs.add((modules[receiver], n.attr))
            elif isinstance(n.value, ast.Name) and types.get(n.value.id):
                attrs.add((types[n.value.id], n.attr))
            elif receiver in imported or receiver in own:
                attrs.add((imported[receiver][1] if receiver in imported else receiver, n.attr))  # Class.method
            else:
                attrs.add(("", n.attr))
    return refs, attrs


def _first_line(node: ast.stmt) -> int:
    """Where a statement starts, its decorators included."""
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def _text(lines: list[str], node: ast.stmt, qualifiers: list[re.Pattern], skip: Iterable[ast.stmt] = ()) -> str:
    """Normalised source of `node` (its decorators included), leaving out the lines of the nodes in `skip`."""
    first = _first_line(node)
    gone = {i for n in skip for i in range(_first_line(n), n.end_lineno + 1)}
    source = "\n".join(line if i not in gone else "" for i, line in enumerate(lines[first - 1:node.end_lineno], first))
    try:
        text = code_text(source)
    except SyntaxError:  # a class header whose body was all methods
        text = code_text(source + "\n" + " " * (node.col_offset + 4) + "...")
    for pattern in qualifiers:
        text = pattern.sub("", text)
    return text


def module_definitions(path: Path, package: Path = PACKAGE) -> list[Definition]:
    """The definitions of one module (none for a `CACHE_NEUTRAL` one).

    A class is split into its header (decorators, bases, class attributes, fields) and one definition per
    method: naming the class reaches its header and every method it defines (an object, once built, may have
    any method called without the method's name in our code: `__init__`, or torch's `forward`);
    `obj.method` reaches the methods of that name (of `obj`'s class and its relatives when its annotation
    names a class of the package, else of every class), each with its class's header.
    """
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    if _is_neutral(tree):
        return []
    modules, imported = _package_imports(tree, path, package)
    qualifiers = [re.compile(rf"(?<![\w.]){re.escape(a)}\.") for a in modules]
    own = {name for node in tree.body for name in _defined_names(node)}
    lines = source.splitlines()
    where = _where(path, package)
    out = []
    for node in tree.body:
        names = _defined_names(node)
        if not names or names == (NEUTRAL_MARK,) or names == ("__all__",):
            continue
        if not isinstance(node, ast.ClassDef):
            refs, attrs = _uses(node, where, own, imported, modules)
            text = _text(lines, node, qualifiers)
            out += [Definition(name, text, frozenset(refs), frozenset(attrs), where=where) for name in names]
            continue
        methods = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        # an object, once built, may have any method called without its name in our code (`__init__`, or
        # torch calling `forward` through `__call__`): the class reaches every method it defines
        every_method = {(where, f"{node.name}.{m.name}") for m in methods}
        header_refs, header_attrs = set(every_method), set()
        for part in [*node.decorator_list, *node.bases, *node.keywords, *[n for n in node.body if n not in methods]]:
            refs, attrs = _uses(part, where, own, imported, modules, node.name)
            header_refs |= refs
            header_attrs |= attrs
        bases = tuple(imported.get(b, b) for b in (_dotted(x) for x in node.bases) if b)
        out.append(Definition(node.name, _text(lines, node, qualifiers, methods), frozenset(header_refs),
                              frozenset(header_attrs), bases, tuple(m.name for m in methods), where))
        for m in methods:
            refs, attrs = _uses(m, where, own, imported, modules, node.name)
            out.append(Definition(f"{node.name}.{m.name}", _text(lines, m, qualifiers), frozenset(refs | {(where, node.name)}),
                                  frozenset(attrs), where=where))
    return out


@dataclass(frozen=True)
class Index:
    """The package's definitions by name, and its classes' family trees (for `obj.method` with a known class)."""

    by_name: Mapping[str, tuple[Definition, ...]]
    by_where: Mapping[tuple[str, str], tuple[Definition, ...]]  # (module, name)
    by_method: Mapping[str, tuple[Definition, ...]]  # every method of that name, whatever its class
    subclasses: Mapping[str, tuple[str, ...]]

    def related(self, cls: str) -> set[str]:
        """The class, its package ancestors and its package descendants: where `obj.m` may be defined."""
        up, todo = set(), [cls]
        while todo:
            c = todo.pop()
            if c not in up:
                up.add(c)
                todo += [b for h in self.by_name.get(c, ()) for b in h.bases]
        down, todo = set(), [cls]
        while todo:
            c = todo.pop()
            if c not in down:
                down.add(c)
                todo += list(self.subclasses.get(c, ()))
        return up | down

    def named(self, ref: tuple[str, str]) -> tuple[Definition, ...]:
        """The definition a name refers to: in the module it was imported from (or its own), else by name
        anywhere (a name re-exported through a package's __init__)."""
        return self.by_where.get(ref) or self.by_name.get(ref[1], ())

    def attribute(self, cls: str, attr: str) -> list[Definition]:
        """What `obj.attr` reaches: methods named `attr` of `cls`'s relatives, or of any class when `cls` is
        unknown (""). Data attributes reach nothing: their values come from where the object was built."""
        if not cls:
            return list(self.by_method.get(attr, ()))
        if cls not in self.by_name:  # a class from outside the package (nn.Module, pd.DataFrame): the object
            return list(self.by_method.get(attr, ()))  # may still be one of ours that overrides `attr`
        return [d for c in self.related(cls) for d in self.by_name.get(f"{c}.{attr}", ())]


@functools.lru_cache(maxsize=8)
def definitions(package: Path = PACKAGE) -> Index:
    """Every definition of the package (subpackages included), indexed."""
    by_name: dict[str, list[Definition]] = {}
    by_where: dict[tuple[str, str], list[Definition]] = {}
    by_method: dict[str, list[Definition]] = {}
    subclasses: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for d in module_definitions(path, package):
            by_name.setdefault(d.name, []).append(d)
            by_where.setdefault((d.where, d.name), []).append(d)
            if "." in d.name:
                by_method.setdefault(d.name.split(".", 1)[1], []).append(d)
            for base in d.bases:
                subclasses.setdefault(base, []).append(d.name)
    return Index({k: tuple(v) for k, v in by_name.items()}, {k: tuple(v) for k, v in by_where.items()},
                 {k: tuple(v) for k, v in by_method.items()},
                 {k: tuple(v) for k, v in subclasses.items()})


def reach(roots: Iterable[str], package: Path = PACKAGE) -> list[Definition]:
    """`reach(R)` of the module docstring, in a stable order."""
    index = definitions(package)
    roots = tuple(roots)
    missing = [r for r in roots if r.removesuffix(".*") not in index.by_name]
    if missing:
        raise KeyError(f"no definition named {', '.join(missing)} in {package} (roots of a code version must be "
                       f"functions, classes (`Class.*`: with every method) or constants of the package outside "
                       f"CACHE_NEUTRAL modules)")
    todo = [d for r in roots for d in index.by_name[r.removesuffix(".*")]]
    todo += [d for r in roots if r.endswith(".*") for h in index.by_name[r[:-2]] for m in h.methods
             for d in index.by_name.get(f"{r[:-2]}.{m}", ())]
    seen: dict[int, Definition] = {}
    while todo:
        d = todo.pop()
        if id(d) in seen:
            continue
        seen[id(d)] = d
        todo += [e for ref in d.refs for e in index.named(ref)]
        todo += [e for cls, attr in d.attrs for e in index.attribute(cls, attr)]
    return sorted(seen.values(), key=lambda d: (d.name, d.text))


def identity(roots: Iterable[str], package: Path = PACKAGE) -> str:
    """`identity(R)` of the module docstring."""
    h = hashlib.sha256()
    for text in sorted(d.text for d in reach(tuple(roots), package)):
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()[:KEY_CHARS]


def version(family: str, package: Path = PACKAGE) -> str:
    """The code version that keys a family's results: the identity of `FAMILIES[family]`, or the
    pre-identity value `LEGACY` records for exactly this identity."""
    if family not in FAMILIES:
        raise KeyError(f"unknown code family {family!r}; known: {', '.join(FAMILIES)}")
    now = identity(FAMILIES[family], package)
    return LEGACY.get(family, {}).get(now, now)


def main() -> int:
    """Print each family's identity, version and how much code it reaches (where an edit recomputes)."""
    for family, roots in FAMILIES.items():
        reached = reach(roots)
        modules = sorted({d.where for d in reached})
        now = identity(roots)
        legacy = " (legacy key)" if LEGACY.get(family, {}).get(now) else ""
        print(f"{family}: identity {now}, version {version(family)}{legacy}; {len(reached)} definitions "
              f"in {len(modules)} modules: {', '.join(m.removeprefix(PACKAGE.name + '/') for m in modules)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
