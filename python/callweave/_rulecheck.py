"""Rules that match nothing: a module glob no module matches, a function glob no function matches.

Used by ``callweave check`` (every rule, against the modules on ``sys.path``) and by the import
hook in strict mode. When a glob can be judged:

- ``callweave check`` judges every module glob against the modules it finds on ``sys.path``
  (without importing them) and every function glob against the functions of the modules its
  rule matches.
- In strict mode, :func:`callweave.install` judges each module glob without wildcards: the
  module must be found on ``sys.path`` (looked up as an import would, nothing is imported);
  when a module is imported, a rule that names that module alone (one module glob without
  wildcards; ``callweave run`` adds ``__main__`` for a script's name) has its function globs
  judged against the module's functions: one that matches none is an ImportError.
- Still in strict mode, what can only be known once the program ran (a wildcard module glob
  that matched no imported module, a function glob of a rule over several modules that
  matched no function in any of the modules it rewrote) is one warning line each on stderr
  at exit.
"""

from __future__ import annotations

import ast
import functools
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path

from callweave import _native
from callweave.config import Config, RuleBase

__all__ = [
    "find_spec_without_import",
    "function_message",
    "is_literal",
    "module_hint",
    "module_message",
    "qualnames",
    "selects",
    "single_module",
    "top_level_names",
    "unmatched",
]

_WILDCARDS = frozenset("*?[")


def is_literal(glob: str) -> bool:
    """Whether a glob has no wildcard: it names one module (or function) exactly."""
    return _WILDCARDS.isdisjoint(glob)


def single_module(rule: RuleBase) -> str | None:
    """The one module a rule names without wildcards (``__main__`` aside), or None."""
    names = {m for m in rule.modules if m != "__main__"}
    if len(names) != 1 or not all(is_literal(m) for m in rule.modules):
        return None
    return next(iter(names))


@functools.lru_cache(maxsize=512)
def _selector(glob: str) -> _native.Rule:
    return _native.Rule("precomputed_slices", {}, functions=[glob])


def selects(glob: str, qualname: str) -> bool:
    """Whether a function glob selects a qualname (the engine's matching)."""
    return _selector(glob).selects(qualname)


def qualnames(tree: ast.AST) -> list[str]:
    """The qualnames of every function defined in a module, nested ones included."""
    found: list[str] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = f"{prefix}{child.name}"
                found.append(qualname)
                walk(child, f"{qualname}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


def _hint(word: str, candidates: Iterable[str]) -> str:
    import difflib  # only for a hint, when a rule matched nothing

    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean {json.dumps(close[0])}?" if close else ""


def _shaped(glob: str, names: Iterable[str]) -> set[str]:
    """Module names in the shape of a glob, the candidates of its "did you mean".

    The glob's wildcard parts are kept and its literal parts are taken from each name:
    ``shp.*`` and ``shop.orders`` give ``shop.*``; a name shorter than the glob keeps the
    glob's remaining parts when they are all wildcards (``shop`` gives ``shop.*`` too), else
    it is no candidate. The glob itself is not a candidate.
    """
    parts = glob.split(".")
    shaped: set[str] = set()
    for name in names:
        have = name.split(".")
        out: list[str] = []
        for i, part in enumerate(parts):
            if part == "**" or i >= len(have):
                if part != "**" and any(is_literal(p) for p in parts[i:]):
                    out = []
                else:
                    out.extend(parts[i:])
                break
            out.append(have[i] if is_literal(part) else part)
        if not out:
            continue
        candidate = ".".join(out)
        if candidate != glob:
            shaped.add(candidate)
    return shaped


def _label(config: Config, table: str, index: int, rule: RuleBase, key: str, glob: str) -> str:
    """Where a glob is, as configuration errors say it (the option for a command-line rule)."""
    if rule.origin is not None:
        return rule.origin
    prefix = "" if config.path is None else f"{config.path}: "
    return f"{prefix}tool.callweave.{table}[{index}].{key} = {json.dumps(glob)}"


def module_message(
    config: Config, table: str, index: int, rule: RuleBase, glob: str, where: str, hint: str
) -> str:
    """The line for a module glob that matches no module ``where`` says."""
    key = f"modules[{rule.modules.index(glob)}]"
    return f"{_label(config, table, index, rule, key, glob)}: matches no module {where}{hint}"


def function_message(
    config: Config,
    table: str,
    index: int,
    rule: RuleBase,
    glob: str,
    modules: Sequence[str],
    hint: str,
) -> str:
    """The line for a function glob that matches no function of ``modules``."""
    assert rule.functions is not None
    key = f"functions[{rule.functions.index(glob)}]"
    shown = ", ".join(modules[:5]) + (f" and {len(modules) - 5} more" if len(modules) > 5 else "")
    return f"{_label(config, table, index, rule, key, glob)}: matches no function in {shown}{hint}"


def function_hint(glob: str, names: Iterable[str]) -> str:
    """``; did you mean "x"?`` for a function glob, from the qualnames it could have meant."""
    return _hint(glob, names)


def find_spec_without_import(name: str) -> ModuleSpec | None:
    """The spec of a module, found as an import would but without importing its packages.

    Each level is asked of every finder on ``sys.meta_path`` with the parent's search
    locations. Returns None when a level is not found.
    """
    search: list[str] | None = None
    spec: ModuleSpec | None = None
    parts = name.split(".")
    for i in range(len(parts)):
        current = ".".join(parts[: i + 1])
        if current in sys.modules and i + 1 < len(parts):
            module = sys.modules[current]
            spec = getattr(module, "__spec__", None)
            path = getattr(module, "__path__", None)
            if spec is not None and path is not None:
                search = list(path)
                continue
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if find is None or type(finder).__name__ == "CallweaveFinder":
                continue
            try:
                spec = find(current, search)
            except (ImportError, ValueError):
                spec = None
            if spec is not None:
                break
        if spec is None:
            return None
        if i + 1 < len(parts):
            if spec.submodule_search_locations is None:
                return None
            search = list(spec.submodule_search_locations)
    return spec


def top_level_names() -> set[str]:
    """The top-level module names on ``sys.path`` (and the built-in modules')."""
    import pkgutil  # only for a hint, when a module is not found

    names = {name for _finder, name, _pkg in pkgutil.iter_modules(sys.path)}
    names.update(sys.builtin_module_names)
    return names


def module_hint(name: str) -> str:
    """``; did you mean "x"?`` for a module name that is not found, from its would-be siblings."""
    parent, dot, _last = name.rpartition(".")
    if not dot:
        return _hint(name, top_level_names())
    spec = find_spec_without_import(parent)
    if spec is None:
        return module_hint(parent) if "." not in parent else ""
    locations = list(spec.submodule_search_locations or ())
    import pkgutil

    siblings = [f"{parent}.{n}" for _f, n, _p in pkgutil.iter_modules(locations)]
    return _hint(name, siblings)


def unmatched(
    config: Config, modules: Mapping[str, Sequence[str] | None], names: Iterable[str] = ()
) -> list[str]:
    """Every glob of the configuration that matches nothing, one line each.

    Args:
        config: The configuration.
        modules: The modules found, each with the qualnames of its functions (None when its
            source could not be parsed: its functions are not judged).
        names: More module names for "did you mean" (the top-level ones on ``sys.path``).
    """
    from callweave.transforms import REGISTRY

    lines: list[str] = []
    known = sorted({*modules, *names})
    for transform in sorted(REGISTRY, key=lambda t: t.table):
        table = transform.table
        for index, rule in enumerate(config.rules(table)):
            for glob in rule.modules:
                if glob == "__main__" and rule.origin is not None:
                    continue
                globs = _native.DottedGlobs([glob])
                if not any(globs.matches(m) for m in modules):
                    hint = _hint(glob, _shaped(glob, known))
                    if not hint and is_literal(glob):
                        hint = module_hint(glob)
                    lines.append(
                        module_message(config, table, index, rule, glob, "on sys.path", hint)
                    )
            if rule.functions is None:
                continue
            mine = sorted(m for m in modules if rule.matches_module(m))
            parsed = {m: modules[m] for m in mine if modules[m] is not None}
            if not parsed:
                continue
            every = [q for m in parsed for q in parsed[m] or ()]
            for glob in rule.functions:
                if not any(selects(glob, q) for q in every):
                    lines.append(
                        function_message(
                            config, table, index, rule, glob, list(parsed), _hint(glob, every)
                        )
                    )
    return lines


def module_file(spec: ModuleSpec) -> Path | None:
    """The ``.py`` file of a module's spec, if it has one."""
    origin = spec.origin
    return Path(origin) if origin and origin.endswith(".py") else None


def missing_modules(config: Config) -> list[str]:
    """Module globs without wildcards that name no module on ``sys.path`` (strict install).

    Nothing is imported: each name is looked up as an import would look it up.
    """
    from callweave.transforms import REGISTRY

    lines: list[str] = []
    for transform in sorted(REGISTRY, key=lambda t: t.table):
        table = transform.table
        for index, rule in enumerate(config.rules(table)):
            for glob in rule.modules:
                if glob == "__main__" or not is_literal(glob) or glob in sys.modules:
                    continue
                if find_spec_without_import(glob) is None:
                    lines.append(
                        module_message(
                            config, table, index, rule, glob, "on sys.path", module_hint(glob)
                        )
                    )
    return lines


class Tracker:
    """What a strict hook saw during the run, to report the globs that never matched at exit."""

    def __init__(self, config: Config) -> None:
        self.config = config
        #: Modules the hook loaded (rewritten or from its cache).
        self.modules: set[str] = set()
        #: Per rule (by identity), the modules it applied to and the function globs it used.
        self.applied: dict[int, list[str]] = {}
        self.used: set[tuple[int, str]] = set()

    def module_loaded(
        self, fullname: str, rules: Iterable[RuleBase], selected: Sequence[str]
    ) -> None:
        """Records a loaded module, its rules and the qualnames they selected."""
        self.modules.add(fullname)
        for rule in rules:
            self.applied.setdefault(id(rule), []).append(fullname)
            for glob in rule.functions or ():
                if any(selects(glob, q) for q in selected):
                    self.used.add((id(rule), glob))

    def lines(self) -> list[str]:
        """The globs that matched nothing during the run, one line each."""
        from callweave.transforms import REGISTRY

        lines: list[str] = []
        for transform in sorted(REGISTRY, key=lambda t: t.table):
            table = transform.table
            for index, rule in enumerate(self.config.rules(table)):
                for glob in rule.modules:
                    if glob == "__main__" or is_literal(glob):
                        continue  # a name is judged at install
                    globs = _native.DottedGlobs([glob])
                    if not any(globs.matches(m) for m in self.modules):
                        where = "imported by the program"
                        lines.append(
                            module_message(self.config, table, index, rule, glob, where, "")
                        )
                applied = self.applied.get(id(rule))
                if not applied or single_module(rule) is not None:
                    continue  # a rule over one module is judged when it is imported
                for glob in rule.functions or ():
                    if (id(rule), glob) not in self.used:
                        lines.append(
                            function_message(
                                self.config, table, index, rule, glob, sorted(set(applied)), ""
                            )
                        )
        return lines
