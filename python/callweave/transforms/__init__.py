"""callweave's transforms, one module each, and the registry that lists them.

A transform module declares one :class:`Transform` (``TRANSFORM``): its configuration table
(the ``[[tool.callweave.<table>]]`` key, the keys of one rule and the parser that validates
one), its decorator, and what it binds at run time (the engine rule it builds for a module's
rule, the objects rewritten code finds under the names that rule injects).
:mod:`callweave.config`, :mod:`callweave.hook` and :mod:`callweave.cli` iterate
:data:`REGISTRY`; adding a transform is one module here and one line below.

The order is the engine's rule order for a module: earlier transforms' rules are innermost
(a module's wrap rules come before its profile rules, so profiling times the wrapped calls).
"""

from __future__ import annotations

from callweave.transforms import profile, wrap
from callweave.transforms._registry import RuntimeNames, Transform

__all__ = ["REGISTRY", "RuntimeNames", "Transform", "by_table"]

#: Every transform, in the engine's rule order for a module.
REGISTRY: tuple[Transform, ...] = (
    wrap.TRANSFORM,
    profile.TRANSFORM,
)


def by_table(table: str) -> Transform:
    """The transform configured by ``[[tool.callweave.<table>]]``."""
    for transform in REGISTRY:
        if transform.table == table:
            return transform
    raise KeyError(table)
