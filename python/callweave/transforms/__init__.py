"""Engine transforms with codetransformer's names and call signatures.

Each is a decorator (``haskell_strs``, ``decimal_literals``, ``islice_literals``...) or a
factory returning one (``overloaded_strs(xform)``, ``overloaded_dicts(astype)``,
``precomputed_slices()``). They rewrite the function's *source* with callweave's engine, so
they work on functions, methods (in any decorator order), closures, async functions,
generators and async generators, keep the docstring, signature, defaults, closure, qualname
and every original position, and compose with ``wrap_calls``, ``flat_profile`` and
``rewrite_function``. Values computed once are loaded as constants (``co_consts``).
"""

from callweave.transforms._base import EngineTransform
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
    "EngineTransform",
    "asconstants",
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
