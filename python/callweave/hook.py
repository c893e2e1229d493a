"""The import hook: rewrite configured modules as they are imported.

A meta-path finder first on ``sys.meta_path`` matches the module *name* against the rules
before touching the file system, asks the other finders for the spec, and takes over only
plain ``.py`` sources (``SourceFileLoader``); namespace packages, zip imports, frozen, builtin
and extension modules pass through. Its loader subclasses ``SourceFileLoader`` and overrides
``get_code``; importlib itself is not patched.

Rewritten code is cached beside ordinary bytecode in its own file
(``mod.cpython-311.callweave.pyc``), a PEP 552 checked-hash pyc whose hash covers the source,
callweave's version, the rules that apply, the optimisation level and the magic number.

Rewritten code finds what it calls (wrappers, the profiler's entry function) as builtins under
names derived from the module, its source and its rules, so code obtained from ``get_code()``
also runs in a fresh namespace (``python -m``, runpy) and stale code from before a reload keeps
working.
"""

from __future__ import annotations

import _imp
import atexit
import builtins
import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from callweave import _native
from callweave._compile import compile_rewritten, raise_users_syntax_error
from callweave.config import Config, ProfileRule, WrapRule, load_config
from callweave.decorators import make_trampoline
from callweave.errors import ConfigError, RewriteError
from callweave.profiler import (
    ATIMER_NAME,
    EXIT_NAME,
    RECORD_NAME,
    RUNTIME_NAMES,
    TIMER_NAME,
    default_above_log,
    default_below_log,
    register_profile,
)
from callweave.sites import make_sites

__all__ = ["CallweaveFinder", "CallweaveLoader", "active_finder", "install", "uninstall"]

#: Modules never rewritten: callweave itself, the import machinery, and what callweave needs
#: while importing or reporting.
EXCLUDED = (
    "callweave",
    "importlib",
    "_frozen_importlib",
    "_frozen_importlib_external",
    "encodings",
    "zipimport",
    "marshal",
    "ast",
    "dis",
    "opcode",
    "tokenize",
    "linecache",
    "tomllib",
    "hashlib",
    "logging",
    "warnings",
    "threading",
    "site",
    "sitecustomize",
    "usercustomize",
)

_CACHE_SUFFIX = ".callweave.pyc"
# Bumped when what the cache holds changes (2: injected names come from the source hash).
_FORMAT = 2

_lock = threading.Lock()
_counters = {"rewritten": 0, "cache_hits": 0, "fallbacks": 0}


def counters() -> dict[str, int]:
    """Counts of this process's matched imports.

    Returns:
        ``rewritten``, ``cache_hits`` (loaded from callweave's cache) and ``fallbacks``
        (imported unmodified after a rewrite failed).
    """
    return dict(_counters)


_EXCLUDED_TOP = frozenset(EXCLUDED)


def _excluded(name: str) -> bool:
    return name.partition(".")[0] in _EXCLUDED_TOP


def _short_hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _callback(spec: Any, resolved: dict[str, Callable[..., Any]], default: Any) -> Any:
    if spec.kind == "none":
        return None
    if spec.kind == "log":
        return default
    return resolved[spec.target]


def wrapper_name(rule: WrapRule) -> str:
    """The builtin name under which a wrap rule's wrapper (its trampoline) is found."""
    site = "+site" if rule.pass_site else ""
    return f"__callweave_wrap_{_short_hash(rule.wrapper + site)}__"


def _list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def native_rules(config: Config, fullname: str, enter: str, sites: str) -> list[_native.Rule]:
    """The engine rules for one module: its wrap rules (innermost), then its profile rules.

    Args:
        config: The configuration.
        fullname: The module's name.
        enter: The name of the module's profiler entry function.
        sites: The name of the module's site table (for wrappers given the call site).
    """
    profiles, wraps = config.rules_for_module(fullname)
    rules = [
        _native.Rule.wrap(
            wrapper=wrapper_name(w),
            sites=sites if w.pass_site else None,
            functions=_list(w.functions),
            ignore_builtins=w.ignore_builtins,
            blacklist=_list(w.blacklist),
            whitelist=_list(w.whitelist),
        )
        for w in wraps
    ]
    rules += [
        _native.Rule.profile(
            enter=enter,
            exit=EXIT_NAME,
            timer=TIMER_NAME,
            atimer=ATIMER_NAME,
            record=RECORD_NAME,
            functions=_list(p.functions),
            ignore_builtins=p.ignore_builtins,
            blacklist=_list(p.blacklist),
            whitelist=_list(p.whitelist),
        )
        for p in profiles
    ]
    return rules


class CallweaveLoader(importlib.machinery.SourceFileLoader):
    """Loads a matched module from its rewritten source (or callweave's cache)."""

    def __init__(self, fullname: str, path: str, finder: CallweaveFinder, pytest_hook: Any = None):
        super().__init__(fullname, path)
        self._finder = finder
        self._pytest_hook = pytest_hook
        self._bound: list[tuple[_native.FunctionProfile, str]] = []

    # -- cache ---------------------------------------------------------------------------

    def _cache_path(self, source_path: str) -> str | None:
        try:
            base = importlib.util.cache_from_source(source_path)
        except NotImplementedError:
            return None
        return base[: -len(".pyc")] + _CACHE_SUFFIX

    def _key(self, fullname: str, data: bytes) -> bytes:
        parts = [
            fullname,
            _native.__version__,
            str(_FORMAT),
            self._finder.rules_hash(fullname),
            str(sys.flags.optimize),
            importlib.util.MAGIC_NUMBER.hex(),
            "pytest" if self._pytest_hook is not None else "",
        ]
        return data + b"\0callweave\0" + "\0".join(parts).encode()

    def _read_cache(self, cache: str | None, digest: bytes) -> tuple[CodeType, Any] | None:
        if cache is None:
            return None
        try:
            with open(cache, "rb") as f:
                blob = f.read()
        except OSError:
            return None
        expected = importlib.util.MAGIC_NUMBER + (3).to_bytes(4, "little")
        if len(blob) < 16 or blob[:8] != expected:
            return None
        if blob[8:16] != digest:
            return None
        try:
            code, meta = marshal.loads(blob[16:])
        except (EOFError, ValueError, TypeError):
            return None
        if not isinstance(code, CodeType):
            return None
        return code, meta

    def _write_cache(self, cache: str | None, digest: bytes, code: CodeType, meta: Any) -> None:
        if cache is None or sys.dont_write_bytecode:
            return
        header = importlib.util.MAGIC_NUMBER + (3).to_bytes(4, "little")
        blob = header + digest + marshal.dumps((code, meta))
        tmp = f"{cache}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(blob)
            os.replace(tmp, cache)
        except OSError:
            # Read-only directory, a file where __pycache__ should be, a full disk: the module
            # still imports; it is rewritten again next time.
            try:
                os.unlink(tmp)
            except OSError:
                pass

    # -- rewriting -----------------------------------------------------------------------

    def _names(self, fullname: str, key_hash: str) -> dict[str, str]:
        return {
            "enter": f"__callweave_enter_{key_hash}__",
            "sites": f"__callweave_sites_{key_hash}__",
        }

    def _rules(self, fullname: str, key_hash: str) -> list[_native.Rule]:
        names = self._names(fullname, key_hash)
        return native_rules(self._finder.config, fullname, names["enter"], names["sites"])

    def _rewrite(
        self, fullname: str, path: str, data: bytes, key_hash: str
    ) -> tuple[CodeType, Any]:
        try:
            source = importlib.util.decode_source(data)
        except (SyntaxError, UnicodeDecodeError):
            # A bad coding declaration or undecodable bytes: the running Python's own error,
            # with the file and line (tokenize's error has neither).
            raise_users_syntax_error(data, path)
            raise
        rules = self._rules(fullname, key_hash)
        tree_hook = None
        if self._pytest_hook is not None:
            from _pytest.assertion.rewrite import rewrite_asserts

            hook = self._pytest_hook

            def tree_hook(tree: Any, result: Any) -> Any:
                rewrite_asserts(tree, result.source.encode(), path, hook.config)
                return tree

        code, result = compile_rewritten(
            source, path, rules, optimize=sys.flags.optimize, tree_hook=tree_hook
        )
        # Plain data only: it is marshalled into the cache with the code.
        meta = (
            [
                (f[0], f[1], f[3], None if f[4] is None else (f[4][0], f[4][1], list(f[4][2])))
                for f in result.functions
            ],
            [tuple(s) for s in result.sites],
        )
        return code, meta

    def _bind(self, fullname: str, path: str, key_hash: str, meta: Any) -> None:
        """Makes what the rewritten code calls available (once per module version)."""
        names = self._names(fullname, key_hash)
        bound = self._finder.bound.get(names["enter"])
        if bound is not None:
            # The same module version again (a reload of unchanged source): same profiles.
            self._bound = list(bound)
            return
        functions, sites = meta
        profiles, wraps = self._finder.config.rules_for_module(fullname)
        n_wraps = len(wraps)
        if any(w.pass_site for w in wraps):
            setattr(builtins, names["sites"], make_sites(fullname, path, sites))
        table: list[_native.FunctionProfile] = []
        for qualname, first_line, _rules, profile in functions:
            if profile is None:
                continue
            _index, rule_index, site_ids = profile
            rule = profiles[rule_index - n_wraps]
            table.append(
                self._finder.register(
                    rule, fullname, qualname, path, first_line, [sites[i] for i in site_ids]
                )
            )
            self._bound.append((table[-1], qualname))
        if table:
            setattr(builtins, names["enter"], _native.ProfileTable(table).enter_function())
        self._finder.bound[names["enter"]] = list(self._bound)

    # -- importlib API -------------------------------------------------------------------

    def get_code(self, fullname: str) -> CodeType:
        """The module's rewritten code (from callweave's cache when it is current).

        A module that cannot be rewritten imports unmodified with one warning, or raises
        ImportError in strict mode; a SyntaxError in the module is the user's own.
        """
        path = self.get_filename(fullname)
        data = self.get_data(path)
        key = self._key(fullname, data)
        # One hash of source + key: the checked-hash pyc's hash and the suffix of the names
        # injected for this module version.
        digest = importlib.util.source_hash(key)
        key_hash = digest.hex()
        cache = self._cache_path(path)
        entry = self._read_cache(cache, digest)
        if entry is not None:
            _counters["cache_hits"] += 1
            # As for ordinary bytecode: a tree moved with its __pycache__ names its new path.
            _imp._fix_co_filename(entry[0], path)
        else:
            try:
                entry = self._rewrite(fullname, path, data, key_hash)
            except SyntaxError as exc:
                # The user's own error, as a plain import raises it: not chained to the
                # engine's parse error or to the rewritten source's SyntaxError.
                exc.__suppress_context__ = True
                raise
            except RewriteError as exc:
                if self._finder.strict:
                    raise ImportError(
                        f"callweave cannot rewrite module {fullname!r} ({path}): {exc}",
                        name=fullname,
                        path=path,
                    ) from exc
                _counters["fallbacks"] += 1
                warnings.warn(
                    f"callweave: importing {fullname!r} unmodified: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return super().get_code(fullname)
            _counters["rewritten"] += 1
            self._write_cache(cache, digest, *entry)
        code, meta = entry
        self._bind(fullname, path, key_hash, meta)
        return code

    def exec_module(self, module: ModuleType) -> None:
        """Executes the module, then tells the profiler which objects are its functions."""
        super().exec_module(module)
        for profile, qualname in self._bound:
            obj: Any = module
            for part in qualname.split("."):
                obj = getattr(obj, part, None)
                if obj is None:
                    break
            func = getattr(obj, "__func__", obj)
            if func is not None and getattr(func, "__code__", None) is not None:
                profile.set_function(func)


class CallweaveFinder:
    """Meta-path finder that hands matched ``.py`` modules to :class:`CallweaveLoader`."""

    def __init__(self, config: Config, *, strict: bool | None = None):
        self.config = config
        self.strict = config.strict if strict is None else strict
        self.resolved = config.resolve()
        self._wrapper_names: dict[str, str] = {}
        for name, value in RUNTIME_NAMES.items():
            setattr(builtins, name, value)
        for rule in config.wrap:
            trampoline = make_trampoline(self.resolved[rule.wrapper], pass_site=rule.pass_site)
            setattr(builtins, wrapper_name(rule), trampoline)
        self._profiles: dict[tuple[str, str, int], _native.FunctionProfile] = {}
        self._matches: dict[str, bool] = {}
        self._hashes: dict[str, str] = {}
        #: Profiles of each loaded module version (by its entry name), with their qualnames.
        self.bound: dict[str, list[tuple[_native.FunctionProfile, str]]] = {}

    def register(
        self,
        rule: ProfileRule,
        module: str,
        qualname: str,
        path: str,
        line: int,
        site_rows: list[tuple],
    ) -> _native.FunctionProfile:
        """A native profile for a function of a loaded module (reused across reloads)."""
        key = (module, qualname, line)
        existing = self._profiles.get(key)
        if existing is not None and len(existing.sites) == len(site_rows):
            return existing
        above = _callback(rule.above, self.resolved, default_above_log)
        below = _callback(rule.below, self.resolved, default_below_log)
        profile = register_profile(
            module=module,
            qualname=qualname,
            filename=path,
            line=line,
            site_rows=site_rows,
            time_limit=rule.time_limit,
            above=above,
            below=below,
        )
        self._profiles[key] = profile
        return profile

    def matches(self, fullname: str) -> bool:
        """Whether the rules select the module (cached: imports ask for many names)."""
        hit = self._matches.get(fullname)
        if hit is None:
            hit = self._matches[fullname] = not _excluded(fullname) and (
                self.config.matches_module(fullname)
            )
        return hit

    def rules_hash(self, fullname: str) -> str:
        """The hash of the rules that apply to the module (cached)."""
        digest = self._hashes.get(fullname)
        if digest is None:
            digest = self._hashes[fullname] = self.config.rules_hash(fullname)
        return digest

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        """The spec of a matched module with callweave's loader, else None."""
        if not self.matches(fullname):
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, CallweaveFinder):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        pytest_hook = None
        if type(loader).__name__ == "AssertionRewritingHook" and spec.origin:
            pytest_hook = loader
        elif type(loader) is not importlib.machinery.SourceFileLoader:
            return spec
        if not spec.origin or not spec.origin.endswith(".py"):
            return spec
        spec.loader = CallweaveLoader(fullname, spec.origin, self, pytest_hook)
        return spec

    def invalidate_caches(self) -> None:
        """Nothing to invalidate: the finder keeps no file-system state."""


def active_finder() -> CallweaveFinder | None:
    """The installed finder, if any."""
    for finder in sys.meta_path:
        if isinstance(finder, CallweaveFinder):
            return finder
    return None


_report_state: dict[str, Any] = {"spec": None, "child": False, "written": False}


def _report_spec() -> Any:
    """The configured report; a child process writes to its own file (pid in the name)."""
    spec = _report_state["spec"]
    if spec is None or not _report_state["child"] or spec.path is None:
        return spec
    from callweave.config import Report

    path = spec.path
    return Report(spec.kind, path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}"))


def _write_report_once() -> None:
    if _report_state["written"] or _report_state["spec"] is None:
        return
    _report_state["written"] = True
    from callweave.profiler import stats
    from callweave.reports import write_exit_report

    # A child that ran nothing profiled (multiprocessing's resource tracker or forkserver,
    # a helper subprocess) writes no report.
    if _report_state["child"] and not any(s.count for s in stats()):
        return
    write_exit_report(_report_spec())


def _after_fork_in_child() -> None:
    # A forked child starts with the parent's aggregates: it reports only its own work, to its
    # own file, also when it leaves through os._exit (multiprocessing runs its finalizers).
    from callweave.profiler import reset_stats

    reset_stats()
    _report_state["child"] = True
    _report_state["written"] = False


_at_exit_registered = False


class _Token:
    """A weak-referenceable key for multiprocessing's after-fork registry."""


_MP_TOKEN = _Token()


def _register_mp_finalizer(_token: object) -> None:
    import multiprocessing.util

    _report_state["child"] = True
    multiprocessing.util.Finalize(None, _write_report_once, exitpriority=0)


def install(
    config: Config | Path | str | None = None,
    *,
    strict: bool | None = None,
    report_at_exit: bool = True,
    child: bool = False,
) -> CallweaveFinder | None:
    """Installs the import hook (idempotent: a second install replaces the first).

    Args:
        config: A Config, a path to a TOML file with ``[tool.callweave]``, or None to find
            ``pyproject.toml`` from the working directory upward (or ``CALLWEAVE_CONFIG``).
        strict: Raise ImportError for modules that cannot be rewritten instead of importing
            them unmodified with a warning (default: the config's ``strict``).
        report_at_exit: Write the configured report when the process exits.
        child: This process is a child of an instrumented one (its report goes to its own
            file: the pid is added to the report's file name).

    Returns:
        The finder, or None when nothing is configured.

    Raises:
        ConfigError: A bad configuration key or an unimportable callable, named.
    """
    global _at_exit_registered
    if config is None or isinstance(config, str | Path):
        loaded = load_config(Path(config) if config is not None else None)
        if loaded is None:
            return None
        config = loaded
    if not isinstance(config, Config):
        raise ConfigError(f"install() takes a Config or a path, not {type(config).__name__}")
    finder = CallweaveFinder(config, strict=strict)
    with _lock:
        uninstall()
        sys.meta_path.insert(0, finder)
    early = sorted(
        name
        for name, module in list(sys.modules.items())
        if config.matches_module(name)
        and not _excluded(name)
        and name != "__main__"
        and not isinstance(getattr(module, "__loader__", None), CallweaveLoader)
    )
    if early:
        warnings.warn(
            "callweave: these modules were imported before the hook was installed and are not "
            f"instrumented: {', '.join(early)}",
            RuntimeWarning,
            stacklevel=2,
        )
    # Child processes (subprocess with this interpreter, multiprocessing) inherit the
    # configuration; the startup .pth installed with callweave installs the hook in them.
    os.environ["CALLWEAVE_CONFIG_JSON"] = config.to_json()
    _report_state["child"] = _report_state["child"] or child
    if report_at_exit and config.report.kind != "none":
        _report_state["spec"] = config.report
        if not _at_exit_registered:
            atexit.register(_write_report_once)
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _at_exit_registered = True
        # multiprocessing children leave through os._exit after running multiprocessing's
        # finalizers, not atexit; Process._bootstrap clears the finalizers it inherited and then
        # runs the after-fork hooks, where the report's finalizer is registered anew.
        import multiprocessing.util

        multiprocessing.util.register_after_fork(_MP_TOKEN, _register_mp_finalizer)
    return finder


def uninstall() -> bool:
    """Removes the import hook (idempotent). Modules already rewritten stay rewritten.

    Returns:
        Whether a finder was removed.
    """
    removed = False
    for finder in list(sys.meta_path):
        if isinstance(finder, CallweaveFinder):
            sys.meta_path.remove(finder)
            removed = True
    if removed:
        os.environ.pop("CALLWEAVE_CONFIG_JSON", None)
    return removed
