"""Call sites: where a wrapped call is in the original source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callweave import _native

__all__ = ["CallSite"]


@dataclass(frozen=True, slots=True)
class CallSite:
    """One call that callweave routes through a wrapper, in original coordinates.

    Attributes:
        module: Name of the module holding the call.
        function: Qualname of the innermost function or class holding the call.
        filename: The module's file.
        lineno: 1-based line where the call starts.
        end_lineno: 1-based line where the call ends.
        col_offset: 0-based UTF-8 byte column where the call starts (as in ``ast``).
        end_col_offset: 0-based UTF-8 byte column where the call ends.
        source: The call's exact original text.
        callee: The callee's call name (``a.b[0].c``), or None when it has none.
    """

    module: str
    function: str
    filename: str
    lineno: int
    end_lineno: int
    col_offset: int
    end_col_offset: int
    source: str
    callee: str | None

    def __str__(self) -> str:
        """``file:line:col: source``."""
        return f"{self.filename}:{self.lineno}:{self.col_offset}: {self.source}"


def make_sites(module: str, filename: str, table: Sequence[_native.Site]) -> tuple[CallSite, ...]:
    """Builds CallSite objects from (part of) a rewrite's site table."""
    return tuple(
        CallSite(
            module, s.function, filename, s.line, s.end_line, s.col, s.end_col, s.text, s.callee
        )
        for s in table
    )
