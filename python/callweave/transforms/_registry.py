"""What a transform module declares: :class:`Transform`.

Kept free of imports from the rest of the package, so that :mod:`callweave.config` can ask
the registry for the transforms' tables without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callweave import _native
    from callweave.config import RuleBase, Where

__all__ = ["RuntimeNames", "Transform"]


@dataclass(frozen=True)
class RuntimeNames:
    """The names one version of a rewritten module finds its per-version objects under.

    Attributes:
        enter: The profile table's entry function.
        sites: The site table (``CallSite`` objects, for wrappers given the call site).
    """

    enter: str
    sites: str


@dataclass(frozen=True)
class Transform:
    """One transform as the package sees it: its config table, decorator, runtime binding.

    Attributes:
        name: The engine transform's name (a key of ``_native.TRANSFORMS``).
        table: Its ``[[tool.callweave.<table>]]`` key and the :class:`~callweave.config.Config`
            field holding its rules, in file order.
        keys: The keys one rule's table may have.
        parse: Validates one rule's table (the key's location given for messages) into a rule.
        callables: The callable references one rule names, with their key's suffix
            (``"wrapper"``, ``"above"``), for :meth:`~callweave.config.Config.resolve`.
        native_rule: The engine rule for one of a module's rules.
        static_names: The objects a rewritten module finds under the names its rules inject
            (the same for every version of the module), given the resolved callables.
        decorator: The public decorator applying the transform to one function.
    """

    name: str
    table: str
    keys: tuple[str, ...]
    parse: Callable[[object, Where], RuleBase]
    callables: Callable[[Any], Iterable[tuple[str, str]]]
    native_rule: Callable[[Any, RuntimeNames], _native.Rule]
    static_names: Callable[[Any, Mapping[str, Callable[..., Any]]], Mapping[str, Any]]
    decorator: Callable[..., Any]
