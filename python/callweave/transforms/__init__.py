"""callweave's transforms, one module each, and the registry of the configurable ones.

The codetransformer transforms are decorators (``haskell_strs``, ``decimal_literals``,
``islice_literals``...) or factories returning one (``overloaded_strs(xform)``,
``overloaded_dicts(astype)``, ``precomputed_slices()``). They rewrite the function's *source*
with callweave's engine, so they work on functions, methods (in any decorator order),
closures, async functions, generators and async generators, keep the docstring, signature,
defaults, closure, qualname and every original position, and compose with ``wrap_calls``,
``flat_profile`` and ``rewrite_function``. Values computed once are loaded as constants
(``co_consts``).

A configurable transform module declares one :class:`Transform` (``TRANSFORM``): its
configuration table (the ``[[tool.callweave.<table>]]`` key, the keys of one rule and the
parser that validates one), its decorator, and what it binds at run time (the engine rule it
builds for a module's rule, the objects rewritten code finds under the names that rule
injects). :mod:`callweave.config`, :mod:`callweave.hook` and :mod:`callweave.cli` iterate
:data:`REGISTRY`; adding a transform is one module here and one line below.

The order is the engine's rule order for a module: earlier transforms' rules are innermost
(a module's transform rules come first, so literals are replaced before calls are wrapped;
its wrap rules come before its profile rules, so profiling times the wrapped calls).
"""

from __future__ import annotations

from callweave.transforms import configured, profile, wrap
from callweave.transforms._base import EngineTransform
from callweave.transforms._registry import RuntimeNames, Transform
from callweave.transforms.constants import asconstants
from callweave.transforms.displays import (
    frozenset_literals,
    ordereddict_literals,
    overloaded_dicts,
    overloaded_lists,
    overloaded_sets,
    overloaded_slices,
    overloaded_tuples,
)
from callweave.transforms.exceptions import pattern_matched_exceptions
from callweave.transforms.literals import (
    bytearray_literals,
    decimal_literals,
    haskell_strs,
    overloaded_bytes,
    overloaded_complexes,
    overloaded_floats,
    overloaded_ints,
    overloaded_strs,
)
from callweave.transforms.slices import islice_literals, precomputed_slices
from callweave.transforms.strings import interpolated_strings

__all__ = [
    "REGISTRY",
    "EngineTransform",
    "RuntimeNames",
    "Transform",
    "asconstants",
    "by_table",
    "bytearray_literals",
    "decimal_literals",
    "frozenset_literals",
    "haskell_strs",
    "interpolated_strings",
    "islice_literals",
    "ordereddict_literals",
    "overloaded_bytes",
    "overloaded_complexes",
    "overloaded_dicts",
    "overloaded_floats",
    "overloaded_ints",
    "overloaded_lists",
    "overloaded_sets",
    "overloaded_slices",
    "overloaded_strs",
    "overloaded_tuples",
    "pattern_matched_exceptions",
    "precomputed_slices",
]

#: Every transform, in the engine's rule order for a module.
REGISTRY: tuple[Transform, ...] = (
    configured.TRANSFORM,
    wrap.TRANSFORM,
    profile.TRANSFORM,
)


def by_table(table: str) -> Transform:
    """The transform configured by ``[[tool.callweave.<table>]]``."""
    for transform in REGISTRY:
        if transform.table == table:
            return transform
    raise KeyError(table)
