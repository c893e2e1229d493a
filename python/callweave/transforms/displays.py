"""Display overloading: codetransformer's ``overloaded_lists`` and friends.

Engine transform ``displays`` (crates/callweave_engine/src/transform/displays.rs): each display
and comprehension of one kind in the function (nested bodies included) becomes
``ASTYPE(display)``, ``ASTYPE`` being a constant slot loaded as ``astype`` itself: the display
builds what it always built, in the same order (a dict keeps insertion and evaluation order,
``{**m}`` included), and ``astype`` gets the result. Slices ``a[lo:hi:st]`` become
``a[SLICE(lo, hi, st)]`` where ``SLICE`` builds ``astype(slice(lo, hi, st))``. Nothing is bound
at run time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from callweave import _native
from callweave.transforms._base import EngineTransform

__all__ = [
    "frozenset_literals",
    "ordereddict_literals",
    "overloaded_dicts",
    "overloaded_lists",
    "overloaded_sets",
    "overloaded_slices",
    "overloaded_tuples",
]


class _OverloadedDisplays(EngineTransform):
    transform = "displays"
    _kind = ""

    def __init__(self, astype: Callable[[Any], Any]) -> None:
        """Overloads every display of this kind.

        Args:
            astype: Called with what each display built; its result replaces it.
        """
        if not callable(astype):
            raise TypeError(f"{type(self).__name__} needs a callable, got {astype!r}")
        self.astype = astype

    def options(self) -> Mapping[str, _native.OptionValue]:
        """The engine rule's options."""
        return {"kind": self._kind}

    def constant(self, slot: _native.ConstantSlot) -> Any:
        """``astype`` itself."""
        return self.astype

    def bytecode_transformer(self) -> Any:
        """Functions without source: list, set and dict displays (not tuples nor slices)."""
        if self._kind not in ("list", "set", "dict"):
            return None
        from callweave.bytecode.sourceless import OverloadedDisplays

        return OverloadedDisplays(self._kind, self.astype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.astype!r})"


class overloaded_lists(_OverloadedDisplays):
    """List displays and comprehensions produce ``astype(the list)``."""

    _kind = "list"


class overloaded_tuples(_OverloadedDisplays):
    """Tuple displays produce ``astype(the tuple)``."""

    _kind = "tuple"


class overloaded_sets(_OverloadedDisplays):
    """Set displays and comprehensions produce ``astype(the set)``."""

    _kind = "set"


class overloaded_dicts(_OverloadedDisplays):
    """Dict displays and comprehensions produce ``astype(the dict)``."""

    _kind = "dict"


class overloaded_slices(_OverloadedDisplays):
    """Slices ``a[lo:hi:st]`` index with ``astype(slice(lo, hi, st))``."""

    _kind = "slice"

    def constant(self, slot: _native.ConstantSlot) -> Any:
        """A callable building ``astype(slice(lo, hi, st))``."""
        astype = self.astype

        def make_slice(start: Any, stop: Any, step: Any) -> Any:
            return astype(slice(start, stop, step))

        return make_slice


#: Dict displays and comprehensions build ``collections.OrderedDict``.
ordereddict_literals = overloaded_dicts(OrderedDict)
#: Set displays and comprehensions build ``frozenset``.
frozenset_literals = overloaded_sets(frozenset)
