"""Exceptions raised by callweave.

The native module defines the base classes; this module re-exports them and adds the ones
raised from Python code.
"""

from callweave._native import CallweaveError, ParseError, RewriteError

__all__ = [
    "CallweaveError",
    "ConfigError",
    "ParseError",
    "RewriteError",
    "SourceUnavailableError",
]


class SourceUnavailableError(CallweaveError, TypeError):
    """A function has no Python source to rewrite.

    Builtins, C functions and code typed at a prompt with nothing in linecache have none.
    """


class ConfigError(CallweaveError, ValueError):
    """A configuration key has a bad value; the message names the key, the value and why."""
