"""callweave's configuration: the ``[tool.callweave]`` table, found, parsed and validated.

Example (``pyproject.toml``)::

    [tool.callweave]
    report = "text"          # "text" | "json:PATH" | "pstats:PATH" | "html:PATH" | "none"
    top = 20                 # the text report lists the 20 first functions (default: all)
    sort = "self"            # and sorts them by: total (default), self, mean, max, p95,
                             # count, errors, above or name
    strict = false           # true: a module that cannot be rewritten fails to import

    [[tool.callweave.profile]]
    modules = ["shop.**", "requests.sessions"]
    functions = ["Session.request", "*.place_*"]
    time_limit = "50ms"
    above = "log"            # "log" | "none" | "pkg.mod:callable"
    below = "none"
    ignore_builtins = true
    blacklist = ["log.*"]

    [[tool.callweave.wrap]]
    modules = ["shop.db.*"]
    wrapper = "shop.tracing:trace_call"
    pass_site = true

Where the configuration comes from (:func:`load_config`), first match wins:

1. an explicit path;
2. the file named by the environment variable ``CALLWEAVE_CONFIG`` (an empty value counts as
   unset; under ``python -E`` or ``-I`` it is ignored, as Python ignores its ``PYTHON*``
   variables);
3. the nearest ``pyproject.toml`` with a ``[tool.callweave]`` table, searching from the
   working directory upward. A ``pyproject.toml`` *without* the table does not stop the
   search (as ruff does for ``[tool.ruff]``), so a sub-project's own ``pyproject.toml`` does
   not hide the configuration of the repository around it.

A file named explicitly (1 or 2) must exist and have the table; otherwise that is an error.

Every problem is reported as one :class:`callweave.errors.ConfigError` whose message names
the file, the key with its location (arrays of tables are indexed from 0 as in Python, so
``tool.callweave.profile[0]`` is the first ``[[tool.callweave.profile]]``), the value and the
reason, e.g.::

    /srv/shop/pyproject.toml: tool.callweave.profile[1].time_limit = "-5ms": a duration
    must not be negative

A relative ``json:PATH`` or ``pstats:PATH`` report path is taken relative to the directory of
the file that configures it, so the report lands in the same place whatever the working
directory, and may not leave that directory (``..``); a report elsewhere needs an absolute
path, and ``~`` is never expanded. A configuration is code (it names callables to import,
like ``conftest.py``): these rules only keep a file found upward from the working directory
from choosing, by accident, a file outside its own tree. Without a file a relative path is
kept as written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeAlias, cast

from callweave import _native
from callweave.errors import ConfigError

__all__ = [
    "ENV_VAR",
    "CallbackSpec",
    "Config",
    "ProfileRule",
    "PrometheusSpec",
    "Report",
    "RuleBase",
    "TransformRule",
    "Where",
    "WrapRule",
    "elsewhere_hints",
    "find_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "resolve_callable",
    "rules_hash",
]

ENV_VAR: Final = "CALLWEAVE_CONFIG"
"""The environment variable naming a configuration file."""

_TABLE: Final = "tool.callweave"
_JSON_FORMAT: Final = 1

ReportKind: TypeAlias = Literal["text", "json", "pstats", "html", "none"]
#: What the text report can sort functions by (largest first; ``name`` alphabetically).
SORT_KEYS: Final = ("total", "self", "mean", "max", "p95", "count", "errors", "above", "name")
CallbackKind: TypeAlias = Literal["log", "none", "otel", "callable"]


# --------------------------------------------------------------------------- durations

# One "<number><unit>" part of a duration; a duration is one or more of them ("1h2m3.5s").
_DURATION_PART = re.compile(
    r"\s*(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[^\W\d_]*)\s*"
)
# Unit → seconds, as exact decimals. "µs" is accepted with the micro sign (U+00B5) and the
# Greek mu (U+03BC), as Go and humantime do.
_UNITS: Final[dict[str, Decimal]] = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "\u00b5s": Decimal("1e-6"),
    "\u03bcs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "min": Decimal(60),
    "h": Decimal(3600),
}
_UNITS_TEXT: Final = "ns, us, µs, ms, s, m, min or h"
# Wide enough that no TOML-sized number overflows before the float conversion says so.
_DECIMAL = Context(prec=60, Emax=MAX_EMAX, Emin=MIN_EMIN)


def parse_duration(value: str | float | timedelta) -> float:
    """Converts a duration to seconds.

    Args:
        value: A non-negative number of seconds (``int`` or ``float``), a
            :class:`datetime.timedelta`, or a string of numbers with units as in Go and
            humantime: ``"150ns"``, ``"150us"``, ``"150µs"``, ``"50ms"``, ``"1.5s"``,
            ``"2m"``, ``"5min"``, ``"1h"``, and compound forms that add up their parts:
            ``"1m30s"``, ``"1h2m3.5s"``, ``"1h 30m"`` (spaces between parts, numbers and units
            are allowed; every number needs a unit).

    Returns:
        The duration in seconds, finite and ``>= 0``.

    Raises:
        TypeError: ``value`` is a boolean or not a number, string or timedelta.
        ValueError: ``value`` is negative, NaN, infinite, empty, has a number without a unit
            or an unknown unit, or is not a duration at all.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | timedelta):
        raise TypeError(
            'a duration must be a number of seconds or a string such as "50ms", '
            f"not {_toml_type(value)}"
        )
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        seconds = _parse_duration_text(value)
    else:
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("a duration is too large") from None
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError("a duration must be finite")
    if seconds < 0:
        raise ValueError("a duration must not be negative")
    return seconds if seconds != 0 else 0.0


def _parse_duration_text(text: str) -> float:
    body = text.strip()
    if not body:
        raise ValueError("a duration must not be empty")
    negative = body[0] == "-"
    if body[0] in "+-":
        body = body[1:]
    expected = f'expected numbers with units ({_UNITS_TEXT}), such as "50ms" or "1m30s"'
    # Exact decimal arithmetic, one rounding at the end: "0.1ms" is exactly float("1e-4").
    total = Decimal(0)
    pos = 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            raise ValueError(f"not a duration: {expected}")
        unit = m["unit"]
        if not unit:
            if m.end() < len(body) and body[m.end()] not in "0123456789.":
                raise ValueError(f"not a duration: {expected}")
            raise ValueError(
                f"a duration string needs a unit after every number ({_UNITS_TEXT}), "
                'such as "50ms"; a number of seconds is written without quotes'
            )
        factor = _UNITS.get(unit)
        if factor is None:
            raise ValueError(f"unknown unit {unit!r}: use {_UNITS_TEXT}")
        total = _DECIMAL.add(total, _DECIMAL.multiply(Decimal(m["number"]), factor))
        pos = m.end()
    if pos == 0:
        raise ValueError(f"not a duration: {expected}")
    if negative and total != 0:
        raise ValueError("a duration must not be negative")
    return float(total)


# --------------------------------------------------------------------------- callable specs


def _split_callable_spec(spec: str) -> tuple[str, str]:
    """Splits ``"pkg.mod:attr.path"`` into module and attribute path.

    Raises:
        ValueError: The text is not of that form.
    """
    expected = 'expected "package.module:attribute", such as "shop.tracing:trace_call"'
    if spec.count(":") != 1:
        raise ValueError(f"not a callable reference: {expected}")
    module, attrs = spec.split(":")
    for what, dotted in (("module", module), ("attribute", attrs)):
        if not dotted:
            raise ValueError(f"the {what} part is empty: {expected}")
        for part in dotted.split("."):
            if not part.isidentifier():
                raise ValueError(
                    f"the {what} part {dotted!r} is not a dotted name ({part!r} is not an "
                    f"identifier): {expected}"
                )
    return module, attrs


def resolve_callable(
    spec: str, key: str, *, path: Path | None = None, origin: str | None = None
) -> Callable[..., Any]:
    """Imports ``"pkg.mod:attr.path"`` and returns the object, which must be callable.

    Args:
        spec: The reference: a module to import, ``:``, and a dotted attribute path in it.
        key: The configuration key the reference comes from, for messages (e.g.
            ``"tool.callweave.wrap[0].wrapper"``).
        path: The configuration file, for messages.
        origin: The command-line text the reference comes from (``--wrap 'm=pkg:w'``):
            messages name it instead of ``path``, ``key`` and the value.

    Returns:
        The callable.

    Raises:
        ConfigError: The reference is malformed, the module cannot be imported (any
            exception its import raises, whose text the message includes, or a
            ``sys.exit()`` in it), an attribute is missing, or the object is not callable.
    """
    where: _Where | _Origin = _Where(path, key) if origin is None else _Origin(origin)
    try:
        module_name, attrs = _split_callable_spec(spec)
    except ValueError as exc:
        raise where.error(str(exc), spec) from None
    try:
        obj: Any = importlib.import_module(module_name)
    except SystemExit as exc:
        # A script without an `if __name__ == "__main__":` guard, or the wrong module: its
        # sys.exit() must not end the program silently at hook installation.
        raise where.error(
            f"cannot import module {module_name!r}: it called sys.exit({exc.code!r}) while "
            "being imported (a script without an 'if __name__ == \"__main__\":' guard?)",
            spec,
        ) from exc
    except Exception as exc:
        raise where.error(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}", spec
        ) from exc
    reached = module_name
    for part in attrs.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise where.error(f"{reached!r} has no attribute {part!r} ({exc})", spec) from exc
        except Exception as exc:
            raise where.error(
                f"getting {part!r} from {reached!r} failed: {type(exc).__name__}: {exc}", spec
            ) from exc
        reached = f"{reached}.{part}"
    if not callable(obj):
        raise where.error(f"{reached!r} is not callable: it is a {type(obj).__name__}", spec)
    return cast(Callable[..., Any], obj)


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True)
class CallbackSpec:
    """What a profile rule does after a run over (``above``) or within (``below``) its limit.

    Attributes:
        kind: ``"log"`` (one log line with the per-call breakdown), ``"none"`` (nothing),
            ``"otel"`` (an OpenTelemetry span, :mod:`callweave.otel`; the ``otel`` extra) or
            ``"callable"`` (call the function named by ``target``).
        target: For ``"callable"``, the reference ``"pkg.mod:attr.path"``; else None.
    """

    kind: CallbackKind
    target: str | None = None

    LOG: ClassVar[CallbackSpec]
    NONE: ClassVar[CallbackSpec]

    def __post_init__(self) -> None:
        if self.kind in ("log", "none", "otel"):
            if self.target is not None:
                raise ValueError(f"a {self.kind!r} callback takes no target")
        elif self.kind == "callable":
            if self.target is None:
                raise ValueError("a 'callable' callback needs a target")
            _split_callable_spec(self.target)
        else:
            raise ValueError(f"unknown callback kind {self.kind!r}")

    @classmethod
    def parse(cls, text: str) -> CallbackSpec:
        """Parses ``"log"``, ``"none"``, ``"otel"`` or ``"pkg.mod:callable"``.

        Raises:
            ValueError: Anything else; the message says why.
        """
        if text in ("log", "none", "otel"):
            return cls(cast(CallbackKind, text))
        if ":" not in text:
            raise ValueError(
                'must be "log", "none", "otel" or a callable such as "pkg.module:func"'
            )
        return cls("callable", text)

    def __str__(self) -> str:
        """The configuration text: ``log``, ``none`` or the callable reference."""
        return self.target if self.target is not None else self.kind


CallbackSpec.LOG = CallbackSpec("log")
CallbackSpec.NONE = CallbackSpec("none")


@dataclass(frozen=True)
class Report:
    """The report written when the process exits.

    Attributes:
        kind: ``"text"`` (a readable summary), ``"json"``, ``"pstats"`` or ``"html"`` (written
            to ``path``), or ``"none"``.
        path: The output file for ``"json"``, ``"pstats"`` and ``"html"``; None otherwise.
        top: The text report lists this many functions (the first by ``sort``); None for all.
        sort: What the text report sorts functions by, one of :data:`SORT_KEYS`.
    """

    kind: ReportKind
    path: Path | None = None
    top: int | None = None
    sort: str = "total"

    def __post_init__(self) -> None:
        if self.kind in ("text", "none"):
            if self.path is not None:
                raise ValueError(f"a {self.kind!r} report takes no path")
        elif self.kind in ("json", "pstats", "html"):
            if self.path is None:
                raise ValueError(f"a {self.kind!r} report needs a path")
        else:
            raise ValueError(f"unknown report kind {self.kind!r}")
        if self.top is not None and (
            not isinstance(self.top, int) or isinstance(self.top, bool) or self.top < 1
        ):
            raise ValueError(f"top must be a whole number of functions >= 1, not {self.top!r}")
        if self.sort not in SORT_KEYS:
            raise ValueError(f"unknown sort key {self.sort!r}; expected one of {SORT_KEYS}")

    @classmethod
    def parse(cls, text: str, *, base: Path | None = None) -> Report:
        """Parses ``"text"``, ``"none"``, ``"json:PATH"``, ``"pstats:PATH"`` or ``"html:PATH"``.

        A configuration file decides where its report goes only inside its own directory
        tree, unless it writes an absolute path: a ``pyproject.toml`` found upward from the
        working directory (one in a shared parent directory) must not pick a file elsewhere by
        a relative path. ``~`` is never expanded (it would name the home of whoever runs the
        program): write the absolute path.

        Args:
            text: The report setting.
            base: The directory of the configuration file: a relative ``PATH`` is taken
                relative to it and may not leave it (no ``..`` above it). None keeps a
                relative path as written.

        Raises:
            ValueError: Anything else; the message says why.
        """
        kind, colon, rest = text.partition(":")
        if kind in ("text", "none"):
            if colon:
                raise ValueError(f'"{kind}" takes no path; only "json:", "pstats:" and "html:" do')
            return cls(cast(ReportKind, kind))
        if kind in ("json", "pstats", "html"):
            if not rest.strip():
                raise ValueError(f'"{kind}" needs a file: write "{kind}:PATH"')
            if rest.startswith("~"):
                raise ValueError(
                    "'~' is not expanded in a report path (it would be the home of whoever "
                    "runs the program): write the absolute path"
                )
            path = Path(rest)
            if base is not None and not path.is_absolute():
                inside = os.path.normpath(path)
                if inside == os.pardir or inside.startswith(os.pardir + os.sep):
                    raise ValueError(
                        f"a relative report path may not leave the directory of the "
                        f"configuration file ({base}); write an absolute path to put the "
                        "report elsewhere"
                    )
                path = base / inside
            return cls(cast(ReportKind, kind), path)
        raise ValueError('must be "text", "none", "json:PATH", "pstats:PATH" or "html:PATH"')

    def __str__(self) -> str:
        """The configuration text, e.g. ``json:/tmp/profile.json``."""
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


@dataclass(frozen=True)
class PrometheusSpec:
    """``[tool.callweave.prometheus]``: serve ``/metrics`` (:mod:`callweave.prometheus`).

    Attributes:
        port: TCP port of the ``/metrics`` server.
        address: Address it listens on.
        interval: Seconds between writes of each process's values in prometheus_client's
            multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``).
    """

    port: int = 9464
    address: str = "0.0.0.0"
    interval: float = 1.0

    def to_table(self) -> dict[str, Any]:
        """The table as configured (JSON-compatible)."""
        return {"port": self.port, "address": self.address, "interval": self.interval}


#: What each optional feature needs: (module to import, extra, what it is).
_EXTRAS: Final = {
    "prometheus": ("callweave.prometheus", "prometheus", "the prometheus_client package"),
    "otel": ("callweave.otel", "otel", "the OpenTelemetry API"),
}


def check_extra(feature: str, key: str, *, path: Path | None = None) -> None:
    """Raises a one-line ConfigError naming ``key`` and the extra if ``feature`` cannot load.

    Args:
        feature: ``"prometheus"`` or ``"otel"``.
        key: The configuration key that names the feature.
        path: The configuration file, for the message.
    """
    module, extra, what = _EXTRAS[feature]
    try:
        importlib.import_module(module)
    except ImportError:
        raise _Where(path, key).error(
            f"needs {what}, an optional extra: pip install 'callweave[{extra}]'"
        ) from None


def _tuple(value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"expected a collection of strings, not the string {value!r}")
    return tuple(value)


@dataclass(frozen=True, kw_only=True)
class RuleBase:
    """Fields and helpers shared by profile and wrap rules."""

    modules: tuple[str, ...]
    functions: tuple[str, ...] | None = None
    ignore_builtins: bool = False
    blacklist: tuple[str, ...] | None = None
    whitelist: tuple[str, ...] | None = None
    #: Where the rule comes from when not from a file, for messages: the command-line text
    #: (``--profile 'shop.orders:place'``) of a rule ``callweave run`` adds. Not compared,
    #: hashed or serialised: it names the rule, it does not change what the rule does.
    origin: str | None = field(default=None, compare=False)
    _module_globs: _native.DottedGlobs = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Lists given by callers become tuples, so rules stay hashable.
        for name in ("modules", "functions", "blacklist", "whitelist"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        object.__setattr__(self, "_module_globs", _native.DottedGlobs(list(self.modules)))

    def matches_module(self, name: str) -> bool:
        """Whether the rule's module globs match a module name."""
        return self._module_globs.matches(name)

    def to_table(self) -> dict[str, Any]:
        """The rule as a canonical table of its transform (JSON-compatible)."""
        raise NotImplementedError

    def _common_table(self) -> dict[str, Any]:
        table: dict[str, Any] = {
            "modules": list(self.modules),
            "ignore_builtins": self.ignore_builtins,
        }
        for name in ("functions", "blacklist", "whitelist"):
            value = getattr(self, name)
            if value is not None:
                table[name] = list(value)
        return table


@dataclass(frozen=True, kw_only=True)
class ProfileRule(RuleBase):
    """A ``[[tool.callweave.profile]]`` rule: flat-profile the selected functions.

    Attributes:
        modules: Module-name globs (``.`` separates levels, ``*`` one level, ``**`` any
            depth); the rule applies to the modules they match.
        functions: Qualname globs of the functions to profile; None selects every function.
        time_limit: Seconds; a run over it fires ``above``, one within it fires ``below``.
        above: What to do when a run is over the limit.
        below: What to do when a run is within the limit.
        ignore_builtins: Do not time calls of builtins.
        blacklist: Call names not to time (``log.*``, ``a[*]``); None for no blacklist.
        whitelist: Call names to time, nothing else is; None for no whitelist.
    """

    time_limit: float
    above: CallbackSpec = CallbackSpec.LOG
    below: CallbackSpec = CallbackSpec.NONE

    def to_table(self) -> dict[str, Any]:
        """The rule as a canonical ``[[tool.callweave.profile]]`` table (JSON-compatible)."""
        table = self._common_table()
        table.update(time_limit=self.time_limit, above=str(self.above), below=str(self.below))
        return table


@dataclass(frozen=True, kw_only=True)
class WrapRule(RuleBase):
    """A ``[[tool.callweave.wrap]]`` rule: route the selected functions' calls via a wrapper.

    Attributes:
        modules: Module-name globs; the rule applies to the modules they match.
        functions: Qualname globs of the functions to rewrite; None selects every function.
        wrapper: The wrapper, ``"pkg.mod:attr.path"``.
        pass_site: Call the wrapper as ``wrapper(call, site, *args, **kwargs)`` (declared
            ``def wrapper(call, site, /, *args, **kwargs)``: positional-only, so a wrapped
            call's own ``call=`` or ``site=`` keyword reaches the callee).
        ignore_builtins: Do not wrap calls of builtins.
        blacklist: Call names not to wrap; None for no blacklist.
        whitelist: Call names to wrap, nothing else is; None for no whitelist.
    """

    wrapper: str
    pass_site: bool = False

    def to_table(self) -> dict[str, Any]:
        """The rule as a canonical ``[[tool.callweave.wrap]]`` table (JSON-compatible)."""
        table = self._common_table()
        table.update(wrapper=self.wrapper, pass_site=self.pass_site)
        return table


@dataclass(frozen=True, kw_only=True)
class TransformRule(RuleBase):
    """A ``[[tool.callweave.transform]]`` rule: apply a source transform to whole modules.

    Attributes:
        modules: Module-name globs; the rule applies to the modules they match.
        functions: Qualname globs of the functions to transform; None selects every function.
        use: A built-in transform's name (``"decimal_literals"``, ``"overloaded_floats"``...)
            or ``"pkg.mod:Class"``, an ``ast.NodeTransformer`` subclass of the user's.
        args: ``"pkg.mod:attr"`` references to callables, passed in order to a built-in
            factory (``overloaded_floats(Fraction)``) or to the user's class.
    """

    use: str
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "args", tuple(self.args))

    def to_table(self) -> dict[str, Any]:
        """The rule as a canonical ``[[tool.callweave.transform]]`` table (JSON-compatible)."""
        table: dict[str, Any] = {"modules": list(self.modules), "use": self.use}
        if self.functions is not None:
            table["functions"] = list(self.functions)
        table["args"] = list(self.args)
        return table


@dataclass(frozen=True, kw_only=True)
class Config:
    """A validated ``[tool.callweave]`` configuration.

    Attributes:
        report: The report written at exit.
        strict: A module that cannot be rewritten raises ImportError instead of importing
            unmodified with a warning.
        profile: Flat-profiling rules, in file order.
        wrap: Call-wrapping rules, in file order.
        transform: Source-transform rules, in file order.
        prometheus: The ``/metrics`` server, if ``[tool.callweave.prometheus]`` is set.
        path: The file the configuration was read from, if any.
        report_given: Whether ``report`` was set explicitly (False when a parsed table had
            no ``report`` key and the default was taken), so that ``callweave run`` keeps an
            explicit ``report = "none"`` when it adds rules of its own.
    """

    report: Report = Report("none")
    strict: bool = False
    profile: tuple[ProfileRule, ...] = ()
    wrap: tuple[WrapRule, ...] = ()
    transform: tuple[TransformRule, ...] = ()
    prometheus: PrometheusSpec | None = None
    path: Path | None = None
    report_given: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "profile", tuple(self.profile))
        object.__setattr__(self, "wrap", tuple(self.wrap))
        object.__setattr__(self, "transform", tuple(self.transform))

    def rules(self, table: str) -> tuple[RuleBase, ...]:
        """The rules of the transform configured by ``[[tool.callweave.<table>]]``."""
        rules: tuple[RuleBase, ...] = getattr(self, table)
        return rules

    def matches_module(self, name: str) -> bool:
        """Whether any rule applies to the module ``name``."""
        from callweave.transforms import REGISTRY

        return any(r.matches_module(name) for t in REGISTRY for r in self.rules(t.table))

    def rules_for_module(self, name: str) -> tuple[list[ProfileRule], list[WrapRule]]:
        """The profile rules and the wrap rules that apply to the module ``name``, in order."""
        return (
            [r for r in self.profile if r.matches_module(name)],
            [r for r in self.wrap if r.matches_module(name)],
        )

    def rules_hash(self, name: str) -> str:
        """A hex SHA-256 digest of the rules that apply to the module ``name``.

        It depends only on those rules (their canonical JSON, in order), not on rules for
        other modules, the report, ``strict`` or the file's location, so it can be part of a
        cache key for the module's rewritten code.
        """
        from callweave.transforms import REGISTRY

        return rules_hash(
            {t.table: [r for r in self.rules(t.table) if r.matches_module(name)] for t in REGISTRY}
        )

    def to_table(self) -> dict[str, Any]:
        """The configuration as a canonical ``[tool.callweave]`` table (JSON-compatible)."""
        from callweave.transforms import REGISTRY

        table: dict[str, Any] = {"report": str(self.report), "strict": self.strict}
        if self.report.top is not None:
            table["top"] = self.report.top
        if self.report.sort != "total":
            table["sort"] = self.report.sort
        for transform in REGISTRY:
            table[transform.table] = [r.to_table() for r in self.rules(transform.table)]
        if self.prometheus is not None:
            table["prometheus"] = self.prometheus.to_table()
        return table

    def to_json(self) -> str:
        """Serialises the configuration (with its path) for :meth:`from_json`."""
        return _canonical_json(
            {
                "format": _JSON_FORMAT,
                "path": None if self.path is None else str(self.path),
                "table": self.to_table(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Config:
        """Rebuilds a configuration written by :meth:`to_json`, validating it again.

        Raises:
            ConfigError: The text is not such a configuration.
        """
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"callweave configuration JSON: not valid JSON: {exc}") from None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != _JSON_FORMAT
            or not isinstance(doc.get("path"), str | None)
            or "table" not in doc
        ):
            raise ConfigError(
                "callweave configuration JSON: expected an object with "
                f'"format": {_JSON_FORMAT}, "path" and "table" (made by Config.to_json)'
            )
        path = None if doc["path"] is None else Path(doc["path"])
        return _parse(doc["table"], path, report_base=None)

    def resolve(self) -> dict[str, Callable[..., Any]]:
        """Imports every callable the configuration names (wrappers, ``above``/``below``).

        Returns:
            The callables by their reference text (``"pkg.mod:attr"``).

        Raises:
            ConfigError: For the first reference that cannot be resolved, naming its key.
        """
        resolved: dict[str, Callable[..., Any]] = {}

        def add(spec: str, key: str, origin: str | None) -> None:
            if spec not in resolved:
                resolved[spec] = resolve_callable(spec, key, path=self.path, origin=origin)

        from callweave.transforms import REGISTRY

        # In table-name order, as they are parsed: the first failing reference is reported.
        for transform in sorted(REGISTRY, key=lambda t: t.table):
            for i, rule in enumerate(self.rules(transform.table)):
                for spec, key in transform.callables(rule):
                    add(spec, f"{_TABLE}.{transform.table}[{i}].{key}", rule.origin)
        # Optional extras named by the configuration: one line naming the key and the extra.
        if self.prometheus is not None:
            check_extra("prometheus", f"{_TABLE}.prometheus", path=self.path)
        for i, rule in enumerate(self.profile):
            for key, callback in (("above", rule.above), ("below", rule.below)):
                if callback.kind == "otel":
                    check_extra("otel", f"{_TABLE}.profile[{i}].{key}", path=self.path)
        return resolved


def rules_hash(rules: Mapping[str, Iterable[RuleBase]]) -> str:
    """A hex SHA-256 digest of rules by table (canonical JSON, in order): see Config.rules_hash.

    Args:
        rules: Per ``[[tool.callweave.<table>]]`` key, the rules (every transform's key, also
            when it has none, so that adding rules of one transform changes the digest).
    """
    doc = {table: [r.to_table() for r in selected] for table, selected in rules.items()}
    return hashlib.sha256(_canonical_json(doc).encode()).hexdigest()


def _canonical_json(doc: object) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)


# --------------------------------------------------------------------------- error locations

_MISSING: Final = object()
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _show(value: object) -> str:
    """A value as it would look in TOML, roughly; long values are cut."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True)
class _Where:
    """A key's location in the configuration, and the file, for messages."""

    file: Path | None
    key: str

    def child(self, key: str) -> _Where:
        return _Where(self.file, f"{self.key}.{key if _BARE_KEY.fullmatch(key) else _show(key)}")

    def item(self, index: int) -> _Where:
        return _Where(self.file, f"{self.key}[{index}]")

    def error(self, reason: str, value: object = _MISSING) -> ConfigError:
        where = self.key if value is _MISSING else f"{self.key} = {_show(value)}"
        prefix = "" if self.file is None else f"{self.file}: "
        return ConfigError(f"{prefix}{where}: {reason}")


@dataclass(frozen=True)
class _Origin:
    """A command-line option as the location of a rule, for messages."""

    text: str

    def error(self, reason: str, value: object = _MISSING) -> ConfigError:
        del value  # the option's text shows it
        return ConfigError(f"{self.text}: {reason}")


# --------------------------------------------------------------------------- parsing

#: The keys of ``[tool.callweave]`` itself; each transform adds its table's key.
_OWN_KEYS: Final = ("report", "strict", "top", "sort", "prometheus")

#: A key's location in messages (the type transform modules' parsers receive).
Where = _Where


def _tables() -> tuple[str, ...]:
    """The ``[[tool.callweave.<table>]]`` keys, in the registry's order for messages."""
    from callweave.transforms import REGISTRY

    return tuple(sorted(t.table for t in REGISTRY))


def _top_hints() -> dict[str, str]:
    from callweave.transforms import REGISTRY

    places = [f"[[{_TABLE}.{table}]]" for table in _tables()]
    where = " or ".join([", ".join(places[:-1]), places[-1]] if len(places) > 1 else places)
    return {k: f"it belongs in a {where} rule" for t in REGISTRY for k in t.keys}


def elsewhere_hints(table: str) -> dict[str, str]:
    """For a rule table's parser: keys of the other transforms' tables, with where they go."""
    from callweave.transforms import REGISTRY

    own = next(t.keys for t in REGISTRY if t.table == table)
    hints: dict[str, str] = {}
    for other in sorted(REGISTRY, key=lambda t: t.table):
        for k in other.keys:
            if k not in own:
                hints.setdefault(k, f"it is a key of [[{_TABLE}.{other.table}]] rules")
    return hints


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return f"a {type(value).__name__}"


def _check_keys(
    table: Mapping[str, Any], allowed: Sequence[str], where: _Where, elsewhere: Mapping[str, str]
) -> None:
    for key in table:
        if key in allowed:
            continue
        hint = elsewhere.get(key)
        if hint is None:
            import difflib  # only to name a misspelt key

            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"the keys here are: {', '.join(allowed)}"
            )
        raise where.child(key).error(f"unknown key; {hint}", table[key])


def _table(value: object, where: _Where) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise where.error(f"must be a table, not {_toml_type(value)}", value)
    return value


def _bool(table: Mapping[str, Any], key: str, default: bool, where: _Where) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise where.child(key).error(f"must be true or false, not {_toml_type(value)}", value)
    return value


def _string(table: Mapping[str, Any], key: str, where: _Where) -> str | None:
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, str):
        raise where.child(key).error(f"must be a string, not {_toml_type(value)}", value)
    return value


def _strings(
    table: Mapping[str, Any], key: str, where: _Where, *, empty: str | None
) -> list[str] | None:
    """An array of strings, or None when absent.

    ``empty`` is the reason an empty array is rejected; None allows it.
    """
    if key not in table:
        return None
    value = table[key]
    at = where.child(key)
    if isinstance(value, str):
        raise at.error(f"must be an array of strings, not a string; write [{_show(value)}]", value)
    if not isinstance(value, list):
        raise at.error(f"must be an array of strings, not {_toml_type(value)}", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise at.item(i).error(f"must be a string, not {_toml_type(item)}", item)
    if not value and empty is not None:
        raise at.error(empty, value)
    return value


def _globs(table: Mapping[str, Any], key: str, where: _Where, *, empty: str) -> list[str] | None:
    patterns = _strings(table, key, where, empty=empty)
    for i, pattern in enumerate(patterns or ()):
        at = where.child(key).item(i)
        if key == "modules" and ":" in pattern:
            raise at.error(
                "a module glob can not contain ':'; put function globs under 'functions'",
                pattern,
            )
        try:
            _native.DottedGlobs([pattern])
        except ValueError as exc:
            raise at.error(str(exc), pattern) from None
    return patterns


def _call_lists(
    table: Mapping[str, Any], where: _Where
) -> tuple[list[str] | None, list[str] | None]:
    blacklist = _strings(table, "blacklist", where, empty=None)
    whitelist = _strings(
        table,
        "whitelist",
        where,
        empty="must not be empty (it would select no call); leave it out to select every call",
    )
    for key, names in (("blacklist", blacklist), ("whitelist", whitelist)):
        for i, name in enumerate(names or ()):
            try:
                _native.Rule(
                    "wrap",
                    {"wrapper": "__x__"},
                    functions=["x"],
                    blacklist=[name] if key == "blacklist" else None,
                    whitelist=[name] if key == "whitelist" else None,
                )
            except ValueError as exc:
                raise where.child(key).item(i).error(str(exc), name) from None
    if blacklist is not None and whitelist is not None:
        raise where.child("whitelist").error(
            "can not be used together with 'blacklist' in one rule; use one or the other",
            whitelist,
        )
    try:
        _native.Rule(
            "wrap", {"wrapper": "__x__"}, functions=["x"], blacklist=blacklist, whitelist=whitelist
        )
    except ValueError as exc:  # pragma: no cover - each entry was checked above
        raise where.error(str(exc)) from None
    return (blacklist or None), whitelist


def _common(table: Mapping[str, Any], where: _Where) -> dict[str, Any]:
    modules = _globs(table, "modules", where, empty="must not be empty")
    if modules is None:
        raise where.child("modules").error("required key is missing (module-name globs)")
    functions = _globs(
        table,
        "functions",
        where,
        empty="must not be empty; leave it out to select every function",
    )
    blacklist, whitelist = _call_lists(table, where)
    return {
        "modules": modules,
        "functions": functions,
        "ignore_builtins": _bool(table, "ignore_builtins", False, where),
        "blacklist": blacklist,
        "whitelist": whitelist,
    }


def _callback(
    table: Mapping[str, Any], key: str, default: CallbackSpec, where: _Where
) -> CallbackSpec:
    text = _string(table, key, where)
    if text is None:
        return default
    try:
        return CallbackSpec.parse(text)
    except ValueError as exc:
        raise where.child(key).error(str(exc), text) from None


def _rules(table: Mapping[str, Any], key: str, where: _Where) -> list[object]:
    if key not in table:
        return []
    value = table[key]
    if isinstance(value, Mapping):
        raise where.child(key).error(
            f"must be an array of tables: write [[{where.key}.{key}]] with double brackets",
            value,
        )
    if not isinstance(value, list):
        raise where.child(key).error(f"must be an array of tables, not {_toml_type(value)}", value)
    return value


def parse_config(table: Mapping[str, Any], *, path: Path | None) -> Config:
    """Validates a ``[tool.callweave]`` table and builds the configuration.

    Args:
        table: The table's contents (as ``tomllib`` returns them).
        path: The file it comes from: named in messages, and the base of a relative report
            path. None when it comes from elsewhere.

    Returns:
        The configuration. Callables are checked for syntax only; see :meth:`Config.resolve`.

    Raises:
        ConfigError: For the first problem found, naming key, value and reason.
    """
    return _parse(table, path, report_base=None if path is None else path.parent)


def _prometheus(table: Mapping[str, Any], where: _Where) -> PrometheusSpec | None:
    if "prometheus" not in table:
        return None
    where = where.child("prometheus")
    spec = _table(table["prometheus"], where)
    _check_keys(spec, ("port", "address", "interval"), where, {})
    port = spec.get("port", PrometheusSpec.port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise where.child("port").error("must be an integer from 0 to 65535", port)
    address = _string(spec, "address", where)
    interval = PrometheusSpec.interval
    if "interval" in spec:
        try:
            interval = parse_duration(spec["interval"])
        except (TypeError, ValueError) as exc:
            raise where.child("interval").error(str(exc), spec["interval"]) from None
        if interval <= 0:
            raise where.child("interval").error("must be longer than zero", spec["interval"])
    return PrometheusSpec(
        port=port, address=PrometheusSpec.address if address is None else address, interval=interval
    )


def _parse(table: object, path: Path | None, *, report_base: Path | None) -> Config:
    where = _Where(path, _TABLE)
    table = _table(table, where)
    from callweave.transforms import REGISTRY

    _check_keys(table, (*_OWN_KEYS, *_tables()), where, _top_hints())
    report_text = _string(table, "report", where)
    strict = _bool(table, "strict", False, where)
    top = table.get("top")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 1):
        raise where.child("top").error("must be a whole number of functions >= 1", top)
    sort = _string(table, "sort", where)
    if sort is not None and sort not in SORT_KEYS:
        raise where.child("sort").error(f"must be one of {', '.join(SORT_KEYS)}", sort)
    prometheus = _prometheus(table, where)
    rules = {
        transform.table: tuple(
            transform.parse(t, where.child(transform.table).item(i))
            for i, t in enumerate(_rules(table, transform.table, where))
        )
        for transform in sorted(REGISTRY, key=lambda t: t.table)
    }
    if report_text is None:
        report = Report("text") if rules.get("profile") else Report("none")
    else:
        try:
            report = Report.parse(report_text, base=report_base)
        except ValueError as exc:
            raise where.child("report").error(str(exc), report_text) from None
    report = dataclasses.replace(report, top=top, sort=sort or "total")
    return Config(
        **rules,  # type: ignore[arg-type]  # one field per transform's table
        report=report,
        strict=strict,
        prometheus=prometheus,
        path=path,
        report_given=report_text is not None,
    )


# --------------------------------------------------------------------------- discovery


def _read_bytes(file: Path, origin: str) -> bytes:
    try:
        return file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file{origin}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read it{origin}: {exc.strerror or exc}") from None


def _parse_toml(data: bytes, file: Path, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML{origin}: {exc}") from None


def _callweave_table(doc: Mapping[str, Any]) -> object:
    """The ``[tool.callweave]`` value of a parsed TOML document, or ``_MISSING``."""
    tool = doc.get("tool")
    if not isinstance(tool, Mapping) or "callweave" not in tool:
        return _MISSING
    return tool["callweave"]


def _search(start: Path | None) -> tuple[Path, object] | None:
    here = Path(os.path.abspath(Path.cwd() if start is None else start))
    if not here.is_dir():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if not candidate.is_file():
            continue
        data = _read_bytes(candidate, "")
        # A file that does not even mention callweave is skipped unparsed: faster at every
        # start of a program, and an unrelated broken pyproject.toml is not our business.
        if b"callweave" not in data:
            continue
        table = _callweave_table(_parse_toml(data, candidate, ""))
        if table is not _MISSING:
            return candidate, table
    return None


def find_config(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` with a ``[tool.callweave]`` table, searching upward.

    The search starts at ``start`` (default: the working directory); ``pyproject.toml`` files
    without the table are skipped (files that do not contain the text ``callweave`` are not
    even parsed).

    Raises:
        ConfigError: A ``pyproject.toml`` on the way cannot be read, or mentions callweave
            and is not valid TOML.
    """
    found = _search(start)
    return None if found is None else found[0]


def load_config(path: Path | None = None, *, start: Path | None = None) -> Config | None:
    """Finds, reads and validates the configuration.

    Args:
        path: A file to read; it must exist and have a ``[tool.callweave]`` table.
        start: Where the upward search for ``pyproject.toml`` begins (default: the working
            directory); used only when neither ``path`` nor ``CALLWEAVE_CONFIG`` is given.

    Returns:
        The configuration, or None when nothing configures callweave.

    Raises:
        ConfigError: The named file is missing, unreadable, not TOML or has no
            ``[tool.callweave]`` table, or the table is invalid.
    """
    if path is not None:
        origin = ""
    elif not sys.flags.ignore_environment and os.environ.get(ENV_VAR):
        path, origin = Path(os.environ[ENV_VAR]), f" (named by {ENV_VAR})"
    else:
        found = _search(start)
        if found is None:
            return None
        file, table = found
        return parse_config(cast(Mapping[str, Any], table), path=file)
    file = Path(os.path.abspath(path))
    table = _callweave_table(_parse_toml(_read_bytes(file, origin), file, origin))
    if table is _MISSING:
        raise ConfigError(f"{file}: has no [{_TABLE}] table{origin}")
    return parse_config(cast(Mapping[str, Any], table), path=file)
