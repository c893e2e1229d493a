"""Type stubs for callweave's native extension module."""

from collections.abc import Callable
from types import CodeType
from typing import Any, TypeAlias, final, type_check_only

__all__ = [
    "BIND_NAME",
    "RECORD_NAME",
    "TRANSFORMS",
    "AwaitTimer",
    "CallweaveError",
    "ConstantSlot",
    "DottedGlobs",
    "FunctionProfile",
    "ParseError",
    "ProfileTable",
    "Profiled",
    "Record",
    "RewriteError",
    "Rewritten",
    "RewrittenFunction",
    "Rule",
    "Site",
    "__version__",
    "_profile_at",
    "all_profiles",
    "allocator_options",
    "bind_call",
    "clock_pair_ns",
    "clock_source",
    "crc32",
    "decode_source",
    "exit_record",
    "is_trampoline",
    "make_trampoline",
    "now_ns",
    "pause_record",
    "profile_counts",
    "reset_stats",
    "resume_record",
    "rewrite",
    "set_dispatcher",
    "strip_locals",
    "time_await",
    "time_call",
]

__version__: str

class CallweaveError(Exception): ...
class RewriteError(CallweaveError): ...
class ParseError(RewriteError): ...

#: Registered transforms: name -> one-line summary.
TRANSFORMS: dict[str, str]

OptionValue: TypeAlias = str | bool | list[str] | None

@final
class Rule:
    """A rewrite rule: which functions, which transform (with its options), which calls."""

    def __new__(
        cls,
        transform: str,
        options: dict[str, OptionValue] | None = None,
        *,
        functions: list[str] | None = None,
        at: tuple[str, int] | None = None,
        ignore_builtins: bool = False,
        blacklist: list[str] | None = None,
        whitelist: list[str] | None = None,
    ) -> Rule: ...
    @property
    def transform(self) -> str: ...
    def selects(self, qualname: str) -> bool: ...

@final
class DottedGlobs:
    """Dotted-name globs: ``.`` separates levels, ``*`` matches one level, ``**`` any depth."""

    def __new__(cls, patterns: list[str]) -> DottedGlobs: ...
    def matches(self, name: str) -> bool: ...
    @property
    def patterns(self) -> list[str]: ...

#: ``Site.row()``: the import hook's cache format of a site.
SiteRow: TypeAlias = tuple[int, str, int, int, int, int, str, str | None, bool]

@final
class Site:
    """One routed call of a rewrite, in original coordinates (1-based lines, byte columns)."""

    def __new__(
        cls,
        id: int,
        function: str,
        line: int,
        end_line: int,
        col: int,
        end_col: int,
        text: str,
        callee: str | None,
        awaited: bool,
    ) -> Site: ...
    @property
    def id(self) -> int: ...
    @property
    def function(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def end_line(self) -> int: ...
    @property
    def col(self) -> int: ...
    @property
    def end_col(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def callee(self) -> str | None: ...
    @property
    def awaited(self) -> bool: ...
    def row(self) -> SiteRow: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Profiled:
    """A numbered (profiled) function: its index, rule and site ids."""

    @property
    def index(self) -> int: ...
    @property
    def rule(self) -> int: ...
    @property
    def sites(self) -> list[int]: ...

@final
class RewrittenFunction:
    """A function some rule selected, with its text before and after the rewrite."""

    @property
    def qualname(self) -> str: ...
    @property
    def first_line(self) -> int: ...
    @property
    def def_line(self) -> int: ...
    @property
    def rules(self) -> list[int]: ...
    @property
    def profile(self) -> Profiled | None: ...
    @property
    def original_text(self) -> str: ...
    @property
    def new_text(self) -> str: ...

@final
class ConstantSlot:
    """A name the rewrite put in place of a node, whose value the caller substitutes."""

    @property
    def name(self) -> str: ...
    @property
    def transform(self) -> str: ...
    @property
    def rule(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def col(self) -> int: ...
    @property
    def end_line(self) -> int: ...
    @property
    def end_col(self) -> int: ...
    @property
    def function(self) -> str: ...

@final
class Rewritten:
    """The result of a rewrite."""

    @property
    def source(self) -> str: ...
    @property
    def changed(self) -> bool: ...
    @property
    def sites(self) -> list[Site]: ...
    @property
    def functions(self) -> list[RewrittenFunction]: ...
    @property
    def constants(self) -> list[ConstantSlot]: ...
    def function_rows(
        self,
    ) -> list[tuple[str, int, list[int], tuple[int, int, list[int]] | None]]: ...
    def site_rows(self) -> list[SiteRow]: ...
    @property
    def unwrapped_for_depth(self) -> int: ...
    def original_line(self, line: int) -> int: ...
    def remap_code(
        self,
        code: CodeType,
        call_opcodes: bytes,
        extended_arg: int,
        *,
        forward_jumps: bytes | None = None,
        backward_jumps: bytes | None = None,
        returns: bytes | None = None,
        terminators: bytes | None = None,
        for_iter: tuple[int, int] | None = None,
        jump_forward: tuple[int, int] | None = None,
        exc_handler: tuple[int, int, int, int] | None = None,
    ) -> CodeType: ...

def rewrite(
    source: str,
    rules: list[Rule],
    builtins: frozenset[str] | set[str] | None = None,
    *,
    bind: str = ...,
    constants: str = ...,
) -> Rewritten: ...
def decode_source(bytes: bytes) -> str: ...
def crc32(*parts: bytes) -> int: ...
def allocator_options() -> tuple[int, int]: ...
def make_trampoline(
    wrapper: object, post: int, code: CodeType | None, offsets: frozenset[int]
) -> object: ...
def is_trampoline(obj: object) -> bool: ...

# --- native runtime (crates/callweave_python/src/runtime) ---

RECORD_NAME: str

@final
class FunctionProfile:
    """A profiled function: static sites, limit, callbacks and aggregates."""

    def __new__(
        cls,
        *,
        module: str,
        qualname: str,
        filename: str,
        line: int,
        sites: list[tuple[str, str | None, int, int, int, int]],
        time_limit: float,
        above: Any = None,
        below: Any = None,
        record_calls: bool = False,
    ) -> FunctionProfile: ...
    @property
    def module(self) -> str: ...
    @property
    def qualname(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def time_limit(self) -> float: ...
    @property
    def above(self) -> Any: ...
    @property
    def below(self) -> Any: ...
    @property
    def sites(self) -> list[tuple[str, str | None, int, int, int, int]]: ...
    @property
    def function(self) -> Any: ...
    def set_function(self, func: Any) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def aggregates(
        self,
    ) -> tuple[
        int,
        int,
        float,
        float,
        float,
        float,
        float,
        float,
        list[tuple[int, float, float, float]],
        int,
        list[tuple[float, float, int]],
    ]:
        """``stats()`` as one tuple: count, errors, ..., sites, above, histogram.

        In order: count, errors, total, min, max, p50, p95, p99, sites, above, histogram.

        ``sites``: ``(count, total, max, nested)`` per site (``nested``: time of profiled
        invocations inside the site's calls); ``above``: invocations at or over the
        limit; ``histogram``: the non-empty buckets ``(low, high, count)``; times in seconds.
        """
    @property
    def above_limit(self) -> int:
        """How many invocations took at least the time limit."""
    def histogram(self) -> list[tuple[int | None, int]]:
        """Non-empty invocation-time buckets: ``(exclusive upper bound in ns or None, count)``."""
    def reset(self) -> None: ...

@final
class ProfileTable:
    """The profiled functions of one rewrite, indexed as the rewritten code's ENTER(i)."""

    def __new__(cls, functions: list[FunctionProfile]) -> ProfileTable: ...
    @staticmethod
    def lazy(size: int, resolve: Callable[[int], FunctionProfile]) -> ProfileTable:
        """A table of ``size`` functions; function ``i`` is ``resolve(i)`` (on first entry)."""
    @staticmethod
    def cached(
        size: int,
        resolve: Callable[[int], FunctionProfile],
        blob: bytes,
        offsets: bytes,
        module: str,
        filename: str,
        rule_start: int,
        rules: list[tuple[float, Any, Any, bool]],
        profiles: dict[tuple[str, str, int], FunctionProfile],
        registered: list[tuple[Any, int, FunctionProfile]],
    ) -> ProfileTable:
        """A lazy table that registers function ``i`` from its cached row itself.

        Row ``i`` is ``marshal.loads(blob[offsets[i]:offsets[i + 1]])`` (4-byte little-endian
        offsets): ``(qualname, first line, rule index, sites)``, registered with
        ``rules[rule index - rule_start]`` (time limit, above, below, record_calls), put into
        ``profiles`` under ``(module, qualname, line)`` and appended to ``registered`` as
        ``(resolve, i, profile)``. A malformed row, or a function already in ``profiles``, is
        ``resolve(i)``'s.
        """
    def enter_function(self) -> Callable[[int], Record]: ...
    @property
    def enter(self) -> Callable[[int], Record]:
        """The entry callable again (what a pickled entry callable is rebuilt from)."""
    def __len__(self) -> int: ...

@final
class Record:
    """One invocation of a profiled function."""

    def __enter__(self) -> Record: ...
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool: ...
    @property
    def total(self) -> float: ...
    @property
    def done(self) -> bool: ...
    @property
    def paused(self) -> bool: ...
    @property
    def profile(self) -> FunctionProfile: ...
    @property
    def dropped_calls(self) -> int: ...
    def breakdown(self) -> list[tuple[int, int, float, float]]: ...
    def calls(self) -> list[tuple[int, str, float]]:
        """``(site, callee name, seconds)`` per call, in order (custom callbacks only)."""

@final
class AwaitTimer:
    """The awaitable returned by ``time_await``."""

    def __await__(self) -> AwaitTimer: ...
    def __iter__(self) -> AwaitTimer: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any) -> Any: ...
    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any: ...
    def close(self) -> None: ...

@final
@type_check_only
class BoundCall:
    """A call bound by ``bind_call``; it stands for its callee.

    Its ``__qualname__``, ``__name__``, ``__module__`` and ``str()`` are the callee's.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

@final
@type_check_only
class Binder:
    """The type of ``bind_call``: a callable with its own vectorcall slot."""

    def __call__(self, k: int, outer: Any, /, *items: Any) -> BoundCall: ...

#: ``bind_call(k, outer, *items)``: calls ``outer(*items, *args, **kwargs)`` when called with
#: ``args`` and ``kwargs``, standing for ``items[k]``. Rewritten code calls it as ``BIND_NAME``
#: for calls with ``*`` or ``**`` arguments, so CPython's unpacking errors name the callee.
bind_call: Binder
BIND_NAME: str

def time_call(record: Record, site: int, callable: Any, /, *args: Any, **kwargs: Any) -> Any: ...
def time_await(record: Record, site: int, callable: Any, /, *args: Any, **kwargs: Any) -> Any: ...
def exit_record(record: Record, raised: bool = ..., /) -> None: ...
def pause_record(record: Record, value: Any, /) -> Any:
    """Stops the invocation's clock (a generator yields ``value``) and returns ``value``."""

def resume_record(record: Record, sent: Any, /) -> Any:
    """Restarts the invocation's clock (the generator resumed with ``sent``); returns it."""

def strip_locals(obj: Any, /) -> Any:
    """Removes ``RECORD_NAME`` from a dict or list in place; returns ``obj``."""

def all_profiles() -> list[FunctionProfile]: ...
def _profile_at(index: int, module: str, qualname: str, line: int) -> FunctionProfile:
    """The registered profile at ``index``, if it is the function named (unpickling)."""

def profile_counts() -> tuple[int, list[int]]:
    """The reset epoch and each registered profile's invocation count, in registration order.

    The same answer twice means no profile recorded anything in between.
    """

def reset_stats() -> None: ...
def set_dispatcher(dispatcher: Callable[[Any, float, Record], None]) -> None: ...
def clock_pair_ns(pairs: int = 100_000, rounds: int = 5) -> float: ...
def clock_source() -> str: ...
def now_ns() -> int: ...
