"""Source transforms applied to whole modules by configuration.

- Configuration: ``[[tool.callweave.transform]]`` rules (:class:`~callweave.config.TransformRule`):
  ``modules``, ``functions`` (qualname globs, default all), ``use`` and ``args``. ``use`` is
  either a built-in transform's name (:data:`BUILTINS`: the codetransformer transforms whose
  values are constants, e.g. ``"decimal_literals"``, or ``"overloaded_floats"`` with
  ``args = ["fractions:Fraction"]``), or ``"pkg.mod:Class"``, an ``ast.NodeTransformer``
  subclass of the user's, instantiated with the ``args`` and applied to each selected
  function's ``ast`` node.
- Decorator: the built-ins are their own decorators (:mod:`callweave.transforms`).
- Run time: nothing is bound. A built-in's values (``Decimal("0.1")``, ``Fraction(...)``) are
  constant slots, computed when the module is imported and loaded as constants
  (:mod:`callweave._slots`); they are not marshallable, so the import hook caches the code
  *before* the slots are patched, with the slot table, and patches on every load.

A rule's engine rule comes first in a module's rules (innermost): literals are replaced before
calls are wrapped or profiled. A user's ``NodeTransformer`` runs on the tree of the rewritten
source, after every engine rule, as for the decorators' ``transformers``; its engine rule is a
placeholder that selects no function (it keeps the module's rule indices aligned with the
configuration).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType
from typing import Any

from callweave import _native
from callweave.config import (
    TransformRule,
    Where,
    _check_keys,
    _globs,
    _split_callable_spec,
    _string,
    _strings,
    _table,
    elsewhere_hints,
)
from callweave.errors import RewriteError
from callweave.transforms import displays, literals, slices
from callweave.transforms._base import EngineTransform
from callweave.transforms._registry import RuntimeNames, Transform

__all__ = [
    "BUILTINS",
    "TRANSFORM",
    "Applier",
    "apply_transformers",
    "prepare",
]

KEYS = ("modules", "functions", "use", "args")


def _builtins() -> dict[str, EngineTransform | type[EngineTransform]]:
    """The built-in transforms a rule may ``use``: decorator instances and factory classes."""
    found: dict[str, EngineTransform | type[EngineTransform]] = {}
    for module in (literals, displays, slices):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, EngineTransform) or (
                isinstance(value, type) and issubclass(value, EngineTransform)
            ):
                found[name] = value
    return dict(sorted(found.items()))


#: ``use = "<name>"``: the built-in transforms with constant slots, by name (an instance takes
#: no ``args``; a class is a factory called with them).
BUILTINS: Mapping[str, EngineTransform | type[EngineTransform]] = _builtins()


@dataclass(frozen=True)
class Layered:
    """A built-in decorator that injects names (loaded as constants once compiled).

    Attributes:
        transform: The engine transform's name.
        options: The engine rule's options.
        names: Injected name -> the value its loads become.
        constant: The value of one constant slot, for transforms that take slots.
    """

    transform: str
    options: Mapping[str, _native.OptionValue]
    names: Mapping[str, Any]
    constant: Callable[[Any], Any] | None = None


def _injected(rule: TransformRule, kind: str) -> str:
    """A name for what ``rule`` injects, the same in every process (it is in cached code)."""
    h = hashlib.sha256(json.dumps(rule.to_table(), sort_keys=True).encode()).hexdigest()
    return f"__callweave_{kind}_{h[:16]}__"


def _asconstants(rule: TransformRule, args: Sequence[Any]) -> Layered:
    from callweave.transforms.constants import _all_builtins

    if rule.args:
        names = [spec.rpartition(":")[2].rpartition(".")[2] for spec in rule.args]
        values = dict(zip(names, args, strict=True))
    else:
        values = _all_builtins()
    return Layered("asconstants", {"names": sorted(values)}, values)


def _pattern_matched_exceptions(rule: TransformRule, args: Sequence[Any]) -> Layered:
    from callweave.transforms.exceptions import _custom_clause, _default_clause

    name = _injected(rule, "match")
    clause = _custom_clause(args[0]) if args else _default_clause
    return Layered("pattern_matched_exceptions", {"matcher": name}, {name: clause})


def _interpolated_strings(rule: TransformRule, args: Sequence[Any]) -> Layered:
    from callweave.transforms.strings import literal_value

    name = _injected(rule, "locals")
    options: dict[str, _native.OptionValue] = {"bytes": True, "str": False, "locals": name}
    return Layered(
        "interpolated_strings",
        options,
        {name: builtins.locals},
        lambda slot: literal_value(slot.text),
    )


#: ``use = "<name>"``: the built-in decorators that inject names, by name, with how many
#: ``args`` they take: ``asconstants`` freezes each ``"pkg.mod:attr"`` as ``attr`` (none:
#: every builtin), ``pattern_matched_exceptions`` takes an optional matcher, and
#: ``interpolated_strings`` formats bytes literals from the locals.
LAYERED: Mapping[str, tuple[int, int, Callable[[TransformRule, Sequence[Any]], Layered]]] = {
    "asconstants": (0, 1 << 16, _asconstants),
    "interpolated_strings": (0, 0, _interpolated_strings),
    "pattern_matched_exceptions": (0, 1, _pattern_matched_exceptions),
}


def _arity(factory: type[EngineTransform]) -> tuple[int, int]:
    """How many positional arguments a factory takes: (required, at most)."""
    params = [
        p
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return sum(p.default is p.empty for p in params), len(params)


def _names() -> str:
    return ", ".join(sorted([*BUILTINS, *LAYERED]))


def parse(value: object, where: Where) -> TransformRule:
    """Validates one ``[[tool.callweave.transform]]`` table."""
    table = _table(value, where)
    _check_keys(table, KEYS, where, elsewhere_hints("transform"))
    modules = _globs(table, "modules", where, empty="must not be empty")
    if modules is None:
        raise where.child("modules").error("required key is missing (module-name globs)")
    functions = _globs(
        table, "functions", where, empty="must not be empty; leave it out to select every function"
    )
    use = _string(table, "use", where)
    if use is None:
        raise where.child("use").error(
            f'required key is missing (a built-in transform: {_names()}; or "pkg.mod:Class", '
            "an ast.NodeTransformer subclass)"
        )
    args = _strings(table, "args", where, empty=None) or []
    for i, arg in enumerate(args):
        try:
            _split_callable_spec(arg)
        except ValueError as exc:
            raise where.child("args").item(i).error(str(exc), arg) from None
    if ":" in use:
        try:
            _split_callable_spec(use)
        except ValueError as exc:
            raise where.child("use").error(str(exc), use) from None
    elif use in LAYERED:
        least, most, _build = LAYERED[use]
        if not least <= len(args) <= most:
            if most == 0:
                raise where.child("args").error(f"{use} takes no args", args)
            raise where.child("args").error(f"{use} takes at most {most} callable(s)", args)
    else:
        builtin = BUILTINS.get(use)
        if builtin is None:
            raise where.child("use").error(
                f'unknown transform; the built-in transforms are: {_names()} (or "pkg.mod:Class" '
                "for an ast.NodeTransformer subclass of yours)",
                use,
            )
        if isinstance(builtin, EngineTransform):
            if args:
                raise where.child("args").error(f"{use} takes no args", args)
        else:
            least, most = _arity(builtin)
            if not least <= len(args) <= most:
                wanted = str(least) if least == most else f"{least} to {most}"
                example = ' (such as args = ["fractions:Fraction"])' if least else ""
                reason = f"{use} takes {wanted} callable(s), {len(args)} given{example}"
                if "args" not in table:
                    raise where.child("args").error(f"required key is missing: {reason}")
                raise where.child("args").error(reason, args)
    return TransformRule(
        modules=tuple(modules),
        functions=None if functions is None else tuple(functions),
        use=use,
        args=tuple(args),
    )


def _placeholder(value: Any) -> Any:
    return value


def _engine_transform(
    rule: TransformRule, resolved: Mapping[str, Callable[..., Any]] | None
) -> Any:
    """The built-in's transform object.

    With ``resolved`` None the factory gets placeholder callables: a rule's engine options
    depend on the transform's kind, never on its callables.
    """
    if rule.use in LAYERED:
        args = [_placeholder if resolved is None else resolved[a] for a in rule.args]
        return LAYERED[rule.use][2](rule, args)
    builtin = BUILTINS[rule.use]
    if isinstance(builtin, EngineTransform):
        return builtin
    args = [_placeholder if resolved is None else resolved[a] for a in rule.args]
    return builtin(*args)


#: A qualname glob no function has (``<`` is not in identifiers): the engine rule standing for
#: a user transformer's rule selects nothing.
_NOWHERE = ["<none>"]


def native_rule(rule: TransformRule, names: RuntimeNames) -> _native.Rule:
    """The engine rule for one of a module's transform rules."""
    if ":" in rule.use:
        return _native.Rule("precomputed_slices", {}, functions=_NOWHERE)
    transform = _engine_transform(rule, None)
    if isinstance(transform, Layered):
        return _native.Rule(
            transform.transform,
            dict(transform.options),
            functions=None if rule.functions is None else list(rule.functions),
        )
    return _native.Rule(
        transform.transform,
        dict(transform.options()),
        functions=None if rule.functions is None else list(rule.functions),
    )


def callables(rule: TransformRule) -> Iterable[tuple[str, str]]:
    """The user's transformer class and the args, for :meth:`callweave.config.Config.resolve`."""
    if ":" in rule.use:
        yield rule.use, "use"
    for i, arg in enumerate(rule.args):
        yield arg, f"args[{i}]"


def static_names(
    rule: TransformRule, resolved: Mapping[str, Callable[..., Any]]
) -> Mapping[str, Any]:
    """Nothing: a transform binds no name at run time."""
    return {}


def _decorator(*args: Any, **kwargs: Any) -> Any:
    raise TypeError(
        "[[tool.callweave.transform]] rules have no decorator of their own: use the built-in "
        "transforms of callweave.transforms as decorators"
    )


TRANSFORM = Transform(
    name="transform",
    table="transform",
    keys=KEYS,
    parse=parse,
    callables=callables,
    native_rule=native_rule,
    static_names=static_names,
    decorator=_decorator,
)


# --------------------------------------------------------------------------- at import


@dataclass(frozen=True)
class Applier:
    """One transform rule, resolved when the hook is installed.

    Attributes:
        rule: The rule.
        engine: The built-in's transform object (its ``constant`` gives slot values), or None.
        names: The values of the names the built-in injects (loaded as constants).
        transformer: The user's ``NodeTransformer`` class, or None.
        args: The resolved args (the transformer class is called with them).
        source_hash: For a user transformer, the hash of its module's source (part of the
            cache key: editing the transformer rewrites the modules again); else "".
    """

    rule: TransformRule
    engine: EngineTransform | Layered | None
    transformer: type[ast.NodeTransformer] | None
    args: tuple[Any, ...]
    source_hash: str
    names: Mapping[str, Any]


def _module_source_hash(obj: Any) -> str:
    module = inspect.getmodule(obj)
    try:
        source = inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):
        source = repr(getattr(obj, "__module__", ""))
    return hashlib.sha256(source.encode()).hexdigest()


def prepare(
    rules: Sequence[TransformRule], resolved: Mapping[str, Callable[..., Any]], where: Where
) -> dict[TransformRule, Applier]:
    """Resolves every transform rule (the callables are imported already: ``resolved``).

    Raises:
        ConfigError: ``use`` names something that is not an ``ast.NodeTransformer`` subclass,
            or a built-in factory rejects its args; the message names the key.
    """
    appliers: dict[TransformRule, Applier] = {}
    for i, rule in enumerate(rules):
        at = where.item(i)
        args = tuple(resolved[a] for a in rule.args)
        if ":" in rule.use:
            cls = resolved[rule.use]
            if not (isinstance(cls, type) and issubclass(cls, ast.NodeTransformer)):
                raise at.child("use").error(
                    f"is not an ast.NodeTransformer subclass (it is {cls!r}); the built-in "
                    f"transforms are: {_names()}",
                    rule.use,
                )
            appliers[rule] = Applier(rule, None, cls, args, _module_source_hash(cls), {})
            continue
        try:
            engine = _engine_transform(rule, resolved)
        except (TypeError, ValueError) as exc:
            raise at.child("args").error(str(exc), list(rule.args)) from None
        names = engine.names if isinstance(engine, Layered) else {}
        appliers[rule] = Applier(rule, engine, None, args, "", names)
    return appliers


def _selected(tree: ast.Module, rule: _native.Rule) -> list[tuple[ast.AST, ast.AST, str]]:
    """(node, parent, qualname) of each function ``rule`` selects.

    Outermost only: a transformer visiting a function visits the functions nested in it.
    """
    found: list[tuple[ast.AST, ast.AST, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = f"{prefix}{child.name}"
                if rule.selects(qualname):
                    found.append((child, node, qualname))
                else:
                    walk(child, f"{qualname}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


def _selector(rule: TransformRule) -> _native.Rule:
    return _native.Rule(
        "precomputed_slices",
        {},
        functions=None if rule.functions is None else list(rule.functions),
    )


def selected_functions(tree: ast.Module, rule: TransformRule) -> list[str]:
    """The qualnames of the functions a user transformer rule would transform (``check``)."""
    return [qualname for _node, _parent, qualname in _selected(tree, _selector(rule))]


def apply_transformers(
    tree: ast.Module,
    result: _native.Rewritten,
    appliers: Sequence[Applier],
    replaced: list[tuple[int, int, int, list[ast.stmt]]] | None = None,
) -> ast.Module:
    """Applies the user transformers to the functions their rules select, in rule order.

    A transformer instance is made per rule and module (``Class(*args)``) and visits each
    selected function's node; what it returns replaces the node (a list of statements, or
    None to remove it, as ``NodeTransformer.generic_visit`` allows). Nodes it adds without a
    position get one from their surroundings before compiling.

    Args:
        tree: The tree of the rewritten source (changed in place).
        result: The engine's rewrite.
        appliers: The module's transform rules.
        replaced: If given, receives per transformed function (first line with decorators,
            last line, column, the statements that replace it) in the rewritten source.

    Raises:
        RewriteError: The transformer raised, or returned something that is not statements.
    """
    for applier in appliers:
        if applier.transformer is None:
            continue
        transformer = applier.transformer(*applier.args)
        for node, parent, _qualname in _selected(tree, _selector(applier.rule)):
            located: Any = node
            first = min([located.lineno, *(d.lineno for d in located.decorator_list)])
            span = (first, located.end_lineno or located.lineno, located.col_offset)
            try:
                new = transformer.visit(node)
            except Exception as exc:
                name = getattr(node, "name", "?")
                raise RewriteError(
                    f"transformer {applier.rule.use} failed on {name!r}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            replacement = [] if new is None else new if isinstance(new, list) else [new]
            if not all(isinstance(n, ast.stmt) for n in replacement):
                raise RewriteError(
                    f"transformer {applier.rule.use} returned {new!r}, not statements"
                )
            for field_name, value in ast.iter_fields(parent):
                if isinstance(value, list) and any(v is node for v in value):
                    index = next(i for i, v in enumerate(value) if v is node)
                    value[index : index + 1] = replacement
                    setattr(parent, field_name, value)
                    break
            if replaced is not None:
                replaced.append((*span, replacement))
    return tree


#: A constant slot as the hook caches it (marshallable):
#: (name, transform, rule, text, line, col, end_line, end_col, function).
SlotRow = tuple[str, str, int, str, int, int, int, int, str]


@dataclass(frozen=True)
class CachedSlot:
    """A constant slot read back from the cache (the fields of ``_native.ConstantSlot``)."""

    name: str
    transform: str
    rule: int
    text: str
    line: int
    col: int
    end_line: int
    end_col: int
    function: str


def slot_row(slot: _native.ConstantSlot) -> SlotRow:
    """The cache's form of one slot."""
    return (
        slot.name,
        slot.transform,
        slot.rule,
        slot.text,
        slot.line,
        slot.col,
        slot.end_line,
        slot.end_col,
        slot.function,
    )


def slot_values(rows: Sequence[SlotRow], rules: Sequence[Applier | None]) -> dict[str, Any]:
    """The value of each slot, by name, computed by the built-in of the rule that took it.

    Args:
        rows: The slots.
        rules: Per engine rule index, its transform rule's applier (None: not a transform rule).

    Raises:
        RewriteError: A slot of a rule that takes none, or its value could not be computed.
    """
    values: dict[str, Any] = {}
    for row in rows:
        slot = CachedSlot(*row)
        applier = rules[slot.rule] if 0 <= slot.rule < len(rules) else None
        constant = None if applier is None or applier.engine is None else applier.engine.constant
        if applier is None or constant is None:
            raise RewriteError(f"constant slot {slot.name} of rule {slot.rule} has no value")
        try:
            values[slot.name] = constant(slot)  # type: ignore[arg-type]  # CachedSlot: same fields
        except Exception as exc:
            raise RewriteError(
                f"{applier.rule.use} cannot compute the value of {slot.text!r} "
                f"(line {slot.line}): {type(exc).__name__}: {exc}"
            ) from exc
    return values


def patch(code: CodeType, values: Mapping[str, Any]) -> CodeType:
    """The module's code with its constant slots loaded as their values."""
    from callweave._slots import SlotError, patch_code

    try:
        return patch_code(code, values)
    except SlotError as exc:
        raise RewriteError(f"cannot load constants: {exc}") from None
