"""Flat profiling: time each call of the selected functions, and each whole invocation.

- Configuration: ``[[tool.callweave.profile]]`` rules (:class:`~callweave.config.ProfileRule`):
  the common selection keys plus ``time_limit``, ``above`` and ``below``.
- Decorator: :func:`callweave.flat_profile` (defined in :mod:`callweave.profiler`).
- Run time: the native runtime's entry points (:data:`callweave.profiler.RUNTIME_NAMES`), the
  same for every module, and per module version its profile table's entry function under
  its ``enter`` name (built by the hook from the rewrite's function table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from callweave import _native
from callweave.config import (
    CallbackSpec,
    ProfileRule,
    Where,
    _callback,
    _check_keys,
    _common,
    _table,
    elsewhere_hints,
    parse_duration,
)
from callweave.profiler import (
    ATIMER_NAME,
    EXIT_NAME,
    RECORD_NAME,
    RUNTIME_NAMES,
    TIMER_NAME,
    flat_profile,
)
from callweave.transforms._registry import RuntimeNames, Transform

__all__ = ["TRANSFORM"]

KEYS = (
    "modules",
    "functions",
    "ignore_builtins",
    "blacklist",
    "whitelist",
    "time_limit",
    "above",
    "below",
)


def parse(value: object, where: Where) -> ProfileRule:
    """Validates one ``[[tool.callweave.profile]]`` table."""
    table = _table(value, where)
    _check_keys(table, KEYS, where, elsewhere_hints("profile"))
    common = _common(table, where)
    if "time_limit" not in table:
        raise where.child("time_limit").error(
            'required key is missing (a duration such as "50ms", or seconds)'
        )
    try:
        time_limit = parse_duration(table["time_limit"])
    except (TypeError, ValueError) as exc:
        raise where.child("time_limit").error(str(exc), table["time_limit"]) from None
    return ProfileRule(
        **common,
        time_limit=time_limit,
        above=_callback(table, "above", CallbackSpec.LOG, where),
        below=_callback(table, "below", CallbackSpec.NONE, where),
    )


def _list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def native_rule(rule: ProfileRule, names: RuntimeNames) -> _native.Rule:
    """The engine rule for one of a module's profile rules."""
    return _native.Rule(
        "profile",
        {
            "enter": names.enter,
            "exit": EXIT_NAME,
            "timer": TIMER_NAME,
            "atimer": ATIMER_NAME,
            "record": RECORD_NAME,
        },
        functions=_list(rule.functions),
        ignore_builtins=rule.ignore_builtins,
        blacklist=_list(rule.blacklist),
        whitelist=_list(rule.whitelist),
    )


def callables(rule: ProfileRule) -> Iterable[tuple[str, str]]:
    """The ``above`` and ``below`` callables, for :meth:`callweave.config.Config.resolve`."""
    for key, spec in (("above", rule.above), ("below", rule.below)):
        if spec.target is not None:
            yield spec.target, key


def static_names(
    rule: ProfileRule, resolved: Mapping[str, Callable[..., Any]]
) -> Mapping[str, Any]:
    """The native runtime's entry points (the same for every rule)."""
    return RUNTIME_NAMES


TRANSFORM = Transform(
    name="profile",
    table="profile",
    keys=KEYS,
    parse=parse,
    callables=callables,
    native_rule=native_rule,
    static_names=static_names,
    decorator=flat_profile,
)
