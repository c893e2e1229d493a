"""Call wrapping: every call in the selected functions goes through a wrapper of the user's.

- Configuration: ``[[tool.callweave.wrap]]`` rules (:class:`~callweave.config.WrapRule`):
  the common selection keys plus ``wrapper = "pkg.mod:callable"`` and ``pass_site``.
- Decorator: :func:`callweave.wrap_calls` (defined in :mod:`callweave.decorators`).
- Run time: each rule's wrapper is found under ``__callweave_wrap_<hash>__`` as a C-level
  trampoline (:func:`callweave.decorators.make_trampoline`); with ``pass_site`` the module
  version's site table (``CallSite`` objects) is found under its ``sites`` name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from callweave import _native
from callweave.config import (
    Where,
    WrapRule,
    _bool,
    _check_keys,
    _common,
    _split_callable_spec,
    _string,
    _table,
    elsewhere_hints,
)
from callweave.decorators import make_trampoline, wrap_calls
from callweave.transforms._registry import RuntimeNames, Transform

__all__ = ["TRANSFORM", "wrapper_name"]

KEYS = ("modules", "functions", "ignore_builtins", "blacklist", "whitelist", "wrapper", "pass_site")


def parse(value: object, where: Where) -> WrapRule:
    """Validates one ``[[tool.callweave.wrap]]`` table."""
    table = _table(value, where)
    _check_keys(table, KEYS, where, elsewhere_hints("wrap"))
    common = _common(table, where)
    wrapper = _string(table, "wrapper", where)
    if wrapper is None:
        raise where.child("wrapper").error('required key is missing (such as "pkg.mod:func")')
    try:
        _split_callable_spec(wrapper)
    except ValueError as exc:
        raise where.child("wrapper").error(str(exc), wrapper) from None
    return WrapRule(**common, wrapper=wrapper, pass_site=_bool(table, "pass_site", False, where))


def wrapper_name(rule: WrapRule) -> str:
    """The name under which a wrap rule's wrapper (its trampoline) is found."""
    site = "+site" if rule.pass_site else ""
    h = hashlib.sha256()
    h.update((rule.wrapper + site).encode())
    h.update(b"\0")
    return f"__callweave_wrap_{h.hexdigest()[:16]}__"


def _list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def native_rule(rule: WrapRule, names: RuntimeNames) -> _native.Rule:
    """The engine rule for one of a module's wrap rules."""
    return _native.Rule(
        "wrap",
        {"wrapper": wrapper_name(rule), "sites": names.sites if rule.pass_site else None},
        functions=_list(rule.functions),
        ignore_builtins=rule.ignore_builtins,
        blacklist=_list(rule.blacklist),
        whitelist=_list(rule.whitelist),
    )


def callables(rule: WrapRule) -> Iterable[tuple[str, str]]:
    """The wrapper reference, for :meth:`callweave.config.Config.resolve`."""
    yield rule.wrapper, "wrapper"


def static_names(rule: WrapRule, resolved: Mapping[str, Callable[..., Any]]) -> Mapping[str, Any]:
    """The rule's trampoline around its resolved wrapper, under :func:`wrapper_name`."""
    return {wrapper_name(rule): make_trampoline(resolved[rule.wrapper], pass_site=rule.pass_site)}


TRANSFORM = Transform(
    name="wrap",
    table="wrap",
    keys=KEYS,
    parse=parse,
    callables=callables,
    native_rule=native_rule,
    static_names=static_names,
    decorator=wrap_calls,
)
