"""The import hook: rewrite configured modules as they are imported.

A meta-path finder first on ``sys.meta_path`` matches the module *name* against the rules
before touching the file system, asks the other finders for the spec, and takes over only
plain ``.py`` sources (``SourceFileLoader``); namespace packages, zip imports, frozen, builtin
and extension modules pass through. Its loader subclasses ``SourceFileLoader`` and overrides
``get_code``; importlib itself is not patched.

Rewritten code is cached beside ordinary bytecode in its own file
(``mod.cpython-311.callweave.pyc``), a PEP 552 checked-hash pyc whose hash covers the source,
callweave's version, the rules that apply, the optimisation level and the magic number.

Rewritten code finds what it calls (the profiler's runtime, wrappers, the module version's
profile-table entry and site table) in its module's globals: ``get_code``, when importlib's
``exec_module`` calls it for an import or a reload, puts the names into the module about to
run, so nothing depends on ``builtins`` (a library cleaning builtins, CPython restoring them at
shutdown before the last garbage collection). The loader overrides no ``exec_module``: no frame
of callweave's sits between importlib and the module's code (warnings with ``stacklevel``
name the importing line). A direct ``get_code()`` caller (runpy: ``python -m``,
``callweave run -m``) gets the names as builtins instead, each module's previous version's
names replaced; such code raises NameError for a ``__callweave_*`` name if run with a custom
``__builtins__`` or during interpreter shutdown. Names carry the version's hash, so stale
functions of an edited, reloaded module keep working; a version's names leave the module
once no code object using them is alive.

Profiled functions are found lazily, when a callback needs one, by static lookups in the
module's and classes' ``__dict__`` checked against the code object (``callweave._lookup``):
no descriptor or metaclass code runs, and functions are held weakly.
"""

from __future__ import annotations

import _imp
import builtins
import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from callweave import _native, lifecycle
from callweave._compile import compile_rewritten, decode_source
from callweave._lookup import code_objects, find_function
from callweave.config import Config, ProfileRule, WrapRule, load_config
from callweave.decorators import make_trampoline
from callweave.errors import ConfigError, RewriteError
from callweave.profiler import (
    ATIMER_NAME,
    EXIT_NAME,
    FUNCTION_FINDERS,
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
# Bumped when what the cache holds changes (2: injected names come from the source hash;
# 3: runtime names in module globals, paused yields, unlocated entry/exit, star-call binder).
_FORMAT = 3


def _build_id() -> str:
    """Identifies the installed native engine (its file's size and modification time).

    A rebuilt extension, such as a development build that changed the rewrite without
    changing the version, never reads another build's cache entries.
    """
    try:
        st = os.stat(_native.__file__)
    except (OSError, AttributeError, TypeError):
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


_BUILD_ID = _build_id()

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


def _is_int_list(value: Any, bound: int | None = None) -> bool:
    return type(value) is list and all(
        type(i) is int and (bound is None or 0 <= i < bound) for i in value
    )


_SITE_TYPES = (int, str, int, int, int, int, str, (str, type(None)), bool)


def _valid_meta(meta: Any, rule_indices: range) -> bool:
    """Whether a cache entry's meta has the shape ``_rewrite`` builds (indices in range).

    Args:
        meta: The entry's meta.
        rule_indices: The indices a function's profile rule may have (the module's profile
            rules come after its wrap rules).
    """
    if not (type(meta) is tuple and len(meta) == 2):
        return False
    functions, sites = meta
    if type(functions) is not list or type(sites) is not list:
        return False
    for site in sites:
        if not (type(site) is tuple and len(site) == len(_SITE_TYPES)):
            return False
        if not all(isinstance(v, t) for v, t in zip(site, _SITE_TYPES, strict=True)):
            return False
    for row in functions:
        if not (type(row) is tuple and len(row) == 4):
            return False
        qualname, first_line, rules, profile = row
        if type(qualname) is not str or type(first_line) is not int or not _is_int_list(rules):
            return False
        if profile is None:
            continue
        if not (type(profile) is tuple and len(profile) == 3):
            return False
        index, rule_index, site_ids = profile
        if type(index) is not int or type(rule_index) is not int:
            return False
        if rule_index not in rule_indices:
            return False
        if not _is_int_list(site_ids, len(sites)):
            return False
    return True


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
        _native.Rule(
            "wrap",
            {"wrapper": wrapper_name(w), "sites": sites if w.pass_site else None},
            functions=_list(w.functions),
            ignore_builtins=w.ignore_builtins,
            blacklist=_list(w.blacklist),
            whitelist=_list(w.whitelist),
        )
        for w in wraps
    ]
    rules += [
        _native.Rule(
            "profile",
            {
                "enter": enter,
                "exit": EXIT_NAME,
                "timer": TIMER_NAME,
                "atimer": ATIMER_NAME,
                "record": RECORD_NAME,
            },
            functions=_list(p.functions),
            ignore_builtins=p.ignore_builtins,
            blacklist=_list(p.blacklist),
            whitelist=_list(p.whitelist),
        )
        for p in profiles
    ]
    return rules


#: importlib's ``exec_module`` (``_LoaderBasics``'s, which CallweaveLoader inherits: the loader
#: adds no frame of its own while the module runs). When it calls ``get_code``, its local
#: ``module`` is the module about to execute the code.
_EXEC_MODULE_CODE = importlib._bootstrap_external._LoaderBasics.exec_module.__code__
_MODULE_DICT = ModuleType.__dict__["__dict__"]


def _version_names(key_hash: str) -> tuple[str, str]:
    """The names of a module version's profile-table entry and site table."""
    return f"__callweave_enter_{key_hash}__", f"__callweave_sites_{key_hash}__"


def _module_dict(module: ModuleType) -> dict[str, Any]:
    # The member descriptor: a module subclass's __getattribute__ is never consulted.
    return _MODULE_DICT.__get__(module, type(module))


@dataclass(frozen=True)
class _Version:
    """What one version of a module's rewritten code finds in its globals.

    Attributes:
        key_hash: The version's hash (source, rules, callweave, Python).
        path: The module's source file.
        static: Names shared by every version: the profiler's runtime and the wrappers.
        names: The version's own names: its profile table's entry, its site table.
        bound: (qualname, first line) of each profiled function.
        site_objects: The CallSite object of each site (when a wrapper takes sites).
    """

    key_hash: str
    path: str
    static: dict[str, Any]
    names: dict[str, Any]
    bound: list[tuple[str, int]]
    site_objects: dict[_native.Site, Any]


class _FunctionRef:
    """Finds a profiled function of a hooked module on demand, holding it weakly."""

    __slots__ = ("_code", "_func", "_module", "_qualname")

    def __init__(self, module: ModuleType, qualname: str, code: CodeType) -> None:
        self._module = weakref.ref(module)
        self._qualname = qualname
        self._code = weakref.ref(code)
        self._func: weakref.ref | None = None

    def alive(self) -> bool:
        """Whether the function's code (and so possibly the function) still exists."""
        return self._code() is not None and self._module() is not None

    def __call__(self) -> Any:
        func = self._func() if self._func is not None else None
        if func is not None:
            return func
        module, code = self._module(), self._code()
        if module is None or code is None:
            return None
        func = find_function(_module_dict(module), self._qualname, code)
        self._func = weakref.ref(func) if func is not None else None
        return func


def _alive(ref: object) -> bool:
    return isinstance(ref, _FunctionRef) and ref.alive()


class CallweaveLoader(importlib.machinery.SourceFileLoader):
    """Loads a matched module from its rewritten source (or callweave's cache)."""

    def __init__(self, fullname: str, path: str, finder: CallweaveFinder, pytest_hook: Any = None):
        super().__init__(fullname, path)
        self._finder = finder
        self._pytest_hook = pytest_hook

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
            _BUILD_ID,
            str(_FORMAT),
            self._finder.rules_hash(fullname),
            str(sys.flags.optimize),
            importlib.util.MAGIC_NUMBER.hex(),
            "pytest" if self._pytest_hook is not None else "",
        ]
        return data + b"\0callweave\0" + "\0".join(parts).encode()

    def _read_cache(
        self, fullname: str, cache: str | None, digest: bytes
    ) -> tuple[CodeType, Any] | None:
        """The cached (code, meta) for this digest, or None: any bad entry is a miss.

        A header that matches says nothing about the payload (a dev build that changed the
        layout, a disk error): whatever fails to load or validate is rewritten and replaced.
        """
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
            entry = marshal.loads(blob[16:])
        except Exception:  # marshal raises EOFError, ValueError, TypeError... on bad data
            return None
        if not (type(entry) is tuple and len(entry) == 2 and type(entry[0]) is CodeType):
            return None
        profiles, wraps = self._finder.config.rules_for_module(fullname)
        if not _valid_meta(entry[1], range(len(wraps), len(wraps) + len(profiles))):
            return None
        return entry[0], entry[1]

    def _write_cache(
        self, cache: str | None, source_path: str, digest: bytes, code: CodeType, meta: Any
    ) -> None:
        """Writes the entry atomically, as importlib writes ordinary bytecode.

        The mode follows the source file's (importlib's ``_calc_mode``: the source's mode,
        owner-writable, under the umask) and the temporary file is created with
        ``O_EXCL | O_CREAT``: a file or symlink already at its name is never followed.
        """
        if cache is None or sys.dont_write_bytecode:
            return
        header = importlib.util.MAGIC_NUMBER + (3).to_bytes(4, "little")
        blob = header + digest + marshal.dumps((code, meta))
        try:
            mode = os.stat(source_path).st_mode
        except OSError:
            mode = 0o666
        mode = (mode | 0o200) & 0o666
        tmp = f"{cache}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            fd = os.open(tmp, os.O_EXCL | os.O_CREAT | os.O_WRONLY, mode)
        except OSError:
            # Read-only directory, a file where __pycache__ should be, something already at
            # the temporary name: the module still imports; it is rewritten again next time.
            return
        try:
            with open(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, cache)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    # -- rewriting -----------------------------------------------------------------------

    def _rules(self, fullname: str, key_hash: str) -> list[_native.Rule]:
        return native_rules(self._finder.config, fullname, *_version_names(key_hash))

    def _rewrite(
        self, fullname: str, path: str, data: bytes, key_hash: str
    ) -> tuple[CodeType, Any]:
        # Undecodable bytes CPython accepts (in comments) are decoded position for position;
        # what CPython rejects raises its own SyntaxError, with the file and line.
        source = decode_source(data, path)
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
        # Plain data only (tuples, the cache format): it is marshalled into the cache with
        # the code.
        meta = (
            [
                (
                    f.qualname,
                    f.first_line,
                    f.rules,
                    None
                    if f.profile is None
                    else (f.profile.index, f.profile.rule, f.profile.sites),
                )
                for f in result.functions
            ],
            [s.row() for s in result.sites],
        )
        return code, meta

    # -- importlib API -------------------------------------------------------------------

    def get_code(self, fullname: str) -> CodeType:
        """The module's rewritten code (from callweave's cache when it is current).

        A module that cannot be rewritten imports unmodified with one warning, or raises
        ImportError in strict mode; a SyntaxError in the module is the user's own.
        """
        # Called by importlib's exec_module (an import or a reload), the module about to run
        # receives the runtime names in its globals; any other caller (runpy, `python -m`)
        # gets them as builtins.
        caller = sys._getframe(1)
        module = caller.f_locals.get("module") if caller.f_code is _EXEC_MODULE_CODE else None
        path = self.get_filename(fullname)
        data = self.get_data(path)
        key = self._key(fullname, data)
        # One hash of source + key: the checked-hash pyc's hash and the suffix of the names
        # injected for this module version.
        digest = importlib.util.source_hash(key)
        key_hash = digest.hex()
        cache = self._cache_path(path)
        entry = self._read_cache(fullname, cache, digest)
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
            self._write_cache(cache, path, digest, *entry)
        code, meta = entry
        version = self._finder.version(fullname, path, key_hash, meta)
        if isinstance(module, ModuleType):
            self._finder.bind_module(module, fullname, version, code)
        else:
            self._finder.bind_builtins(fullname, version)
        return code


class CallweaveFinder:
    """Meta-path finder that hands matched ``.py`` modules to :class:`CallweaveLoader`."""

    def __init__(self, config: Config, *, strict: bool | None = None):
        self.config = config
        self.strict = config.strict if strict is None else strict
        self.resolved = config.resolve()
        #: The object behind each wrap rule's injected name: a trampoline around the wrapper.
        self.wrappers: dict[str, Any] = {
            wrapper_name(rule): make_trampoline(
                self.resolved[rule.wrapper], pass_site=rule.pass_site
            )
            for rule in config.wrap
        }
        self._profiles: dict[tuple[str, str, int], _native.FunctionProfile] = {}
        self._matches: dict[str, bool] = {}
        self._hashes: dict[str, str] = {}
        #: The latest version of each module (an unchanged reload reuses it).
        self._versions: dict[str, _Version] = {}
        #: Per module: the module objects holding a version's names, those names, and weak
        #: references to the code objects that use them (see ``bind_module``).
        self._placed: dict[str, list[tuple[weakref.ref, tuple[str, ...], list[weakref.ref]]]] = {}
        #: Per module: its keys in the profiler's FUNCTION_FINDERS.
        self._function_keys: dict[str, set[tuple[str, str, int]]] = {}
        #: Per module: the version names it last put into builtins.
        self._in_builtins: dict[str, tuple[str, ...]] = {}

    def register(
        self,
        rule: ProfileRule,
        module: str,
        qualname: str,
        path: str,
        line: int,
        sites: list[_native.Site],
    ) -> _native.FunctionProfile:
        """A native profile for a function of a loaded module (reused across reloads)."""
        key = (module, qualname, line)
        existing = self._profiles.get(key)
        if existing is not None and len(existing.sites) == len(sites):
            return existing
        above = _callback(rule.above, self.resolved, default_above_log)
        below = _callback(rule.below, self.resolved, default_below_log)
        profile = register_profile(
            module=module,
            qualname=qualname,
            filename=path,
            line=line,
            sites=sites,
            time_limit=rule.time_limit,
            above=above,
            below=below,
        )
        self._profiles[key] = profile
        return profile

    def version(self, fullname: str, path: str, key_hash: str, meta: Any) -> _Version:
        """The objects one version of a module calls: its profile table and site table.

        Built once per version: an unchanged reload gets the same objects; profiles are
        shared across versions for functions that did not move.
        """
        current = self._versions.get(fullname)
        if current is not None and current.key_hash == key_hash:
            return current
        functions, rows = meta
        sites = [_native.Site(*row) for row in rows]
        profiles, wraps = self.config.rules_for_module(fullname)
        enter_name, sites_name = _version_names(key_hash)
        names: dict[str, Any] = {}
        site_objects: dict[_native.Site, Any] = {}
        if any(w.pass_site for w in wraps):
            # Sites that did not change since the previous version share its CallSite objects:
            # stale code of an older version that is still alive costs a tuple, not a table.
            reuse = current.site_objects if current is not None and current.path == path else {}
            new_sites = [s for s in sites if s not in reuse]
            site_objects = dict(zip(new_sites, make_sites(fullname, path, new_sites), strict=True))
            site_objects.update((s, reuse[s]) for s in sites if s in reuse)
            names[sites_name] = tuple(site_objects[s] for s in sites)
        table: list[_native.FunctionProfile] = []
        bound: list[tuple[str, int]] = []
        for qualname, first_line, _rules, profile in functions:
            if profile is None:
                continue
            _index, rule_index, site_ids = profile
            rule = profiles[rule_index - len(wraps)]
            own = [sites[i] for i in site_ids]
            table.append(self.register(rule, fullname, qualname, path, first_line, own))
            bound.append((qualname, first_line))
        if table:
            names[enter_name] = _native.ProfileTable(table).enter_function()
        static = dict(RUNTIME_NAMES)
        static.update((wrapper_name(w), self.wrappers[wrapper_name(w)]) for w in wraps)
        version = _Version(key_hash, path, static, names, bound, site_objects)
        self._versions[fullname] = version
        return version

    def bind_module(
        self, module: ModuleType, fullname: str, version: _Version, code: CodeType
    ) -> None:
        """Puts a version's runtime names into the globals of the module about to run it.

        The previous versions' names leave the module's globals once no code object that
        uses them is alive (stale functions of an edited and reloaded module keep working
        while something still holds them); the module's size stays bounded over reloads.
        """
        namespace = _module_dict(module)
        namespace.update(version.static)
        namespace.update(version.names)
        if not version.names:
            return
        own = set(version.names)
        codes = list(code_objects(code))
        users = [weakref.ref(c) for c in codes if not own.isdisjoint(c.co_names)]
        keys = self._function_keys.setdefault(fullname, set())
        for key in [k for k in keys if not _alive(FUNCTION_FINDERS.get(k))]:
            keys.discard(key)
            FUNCTION_FINDERS.pop(key, None)
        if version.bound:
            by_position = {(c.co_qualname, c.co_firstlineno): c for c in codes}
            for qualname, line in version.bound:
                found = by_position.get((qualname, line))
                if found is not None:
                    key = (fullname, qualname, line)
                    FUNCTION_FINDERS[key] = _FunctionRef(module, qualname, found)
                    keys.add(key)
        kept = []
        for ref, names, old_users in self._placed.get(fullname, ()):
            old = ref()
            if old is None or (old is module and names == tuple(own)):
                continue
            alive = [u for u in old_users if u() is not None]
            if alive:
                kept.append((ref, names, alive))
                continue
            old_namespace = _module_dict(old)
            for name in names:
                if name not in own:
                    old_namespace.pop(name, None)
        kept.append((weakref.ref(module), tuple(own), users))
        self._placed[fullname] = kept

    def bind_builtins(self, fullname: str, version: _Version) -> None:
        """Puts a version's runtime names into builtins, for a direct ``get_code()`` caller.

        runpy (``python -m``, ``callweave run -m``) executes the code in a namespace the
        loader never sees. The module's previous version names are replaced, so repeated
        calls never accumulate. Such code depends on builtins: it raises NameError for a
        ``__callweave_*`` name if run with a custom ``__builtins__`` or during interpreter
        shutdown, when CPython has restored the original builtins.
        """
        namespace = vars(builtins)
        for name in self._in_builtins.get(fullname, ()):
            if name not in version.names:
                namespace.pop(name, None)
        namespace.update(version.static)
        namespace.update(version.names)
        self._in_builtins[fullname] = tuple(version.names)

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
        if sys.meta_path[0] is not self:
            self._stay_ahead_of_pytest()
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

    def _stay_ahead_of_pytest(self) -> None:
        """Moves this finder in front of pytest's assertion-rewriting hook.

        pytest inserts its hook at the head of ``sys.meta_path`` when it starts; installed
        before that (xdist workers, ``callweave run -m pytest``), callweave would never see
        the test modules pytest claims. In front, it asks pytest's hook for the spec and
        applies both rewrites. Moving during importlib's iteration over ``sys.meta_path`` is
        safe: this finder goes from index i to 0, the finders before it (already asked for
        this module) move up by one, and the ones after it keep their indices, so none is
        skipped or asked twice.
        """
        meta_path = sys.meta_path
        try:
            index = meta_path.index(self)
        except ValueError:
            return
        if any(type(f).__name__ == "AssertionRewritingHook" for f in meta_path[:index]):
            with _lock:
                if self in meta_path:
                    meta_path.remove(self)
                    meta_path.insert(0, self)

    def invalidate_caches(self) -> None:
        """Nothing to invalidate: the finder keeps no file-system state."""


def active_finder() -> CallweaveFinder | None:
    """The installed finder, if any."""
    for finder in sys.meta_path:
        if isinstance(finder, CallweaveFinder):
            return finder
    return None


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
    # The report at exit, in children, and on SIGTERM.
    lifecycle.arm(config.report if report_at_exit else None, child=child)
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
