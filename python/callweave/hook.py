"""The import hook: rewrite configured modules as they are imported.

A meta-path finder first on ``sys.meta_path`` matches the module *name* against the rules
before touching the file system, asks the other finders for the spec, and takes over only
plain ``.py`` sources (``SourceFileLoader``); namespace packages, zip imports, frozen, builtin
and extension modules pass through. Its loader subclasses ``SourceFileLoader`` and overrides
``get_code``; importlib itself is not patched.

The finder resolves which rules apply to a module once, as a :class:`ModulePlan`, and hands
it to the loader. Rewritten code is cached beside ordinary bytecode in its own file
(``mod.cpython-311.callweave.pyc``, see :mod:`callweave._pycache`), keyed by a hash of the
source, callweave's version, the rules that apply, the optimisation level and the magic
number, and validated by the source's stat (mtime and ctime in nanoseconds, size) when it
matches the entry's, by the hash otherwise. The report at exit and in child processes is
:mod:`callweave.lifecycle`'s.

``[[tool.callweave.transform]]`` rules (:mod:`callweave.transforms.configured`) add values
that are not marshallable (``Decimal``, the user's objects): the cache holds the code before
they are loaded, with the table of their constant slots, and every load computes them and
loads them as constants (:mod:`callweave._slots`). A user's ``NodeTransformer`` runs on the
rewritten tree; its module's source is part of the key.

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
import ast
import atexit
import builtins
import dataclasses
import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any, cast

from callweave import _native, _pycache, _rulecheck, lifecycle
from callweave._compile import compile_rewritten, decode_source
from callweave._lookup import find_function
from callweave._metapath import spec_from_others
from callweave.config import (
    Config,
    ProfileRule,
    RuleBase,
    TransformRule,
    Where,
    WrapRule,
    load_config,
    rules_hash,
)
from callweave.errors import ConfigError, RewriteError
from callweave.profiler import (
    FUNCTION_FINDERS,
    PENDING,
    REGISTERED,
    RUNTIME_NAMES,
    default_above_log,
    default_below_log,
    record_registered,
    records_calls,
)
from callweave.sites import make_sites
from callweave.transforms import REGISTRY, RuntimeNames, Transform, configured

__all__ = [
    "CallweaveFinder",
    "CallweaveLoader",
    "ModulePlan",
    "active_finder",
    "install",
    "uninstall",
]

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


def _callback(spec: Any, resolved: dict[str, Callable[..., Any]], default: Any) -> Any:
    if spec.kind == "none":
        return None
    if spec.kind == "log":
        return default
    if spec.kind == "otel":
        from callweave.otel import span  # checked by Config.resolve()

        return span
    return resolved[spec.target]


@dataclass(frozen=True)
class ModulePlan:
    """The rules that apply to one module, resolved once when the finder matches its name.

    Attributes:
        fullname: The module's name.
        rules: Per transform, in the registry's order (the engine's rule order: earlier
            transforms' rules are innermost), the module's rules in configuration order.
        rules_hash: The hash of those rules (part of the cache key; see :meth:`resolve`).
    """

    fullname: str
    rules: tuple[tuple[Transform, tuple[RuleBase, ...]], ...]
    rules_hash: str
    #: Set by __post_init__ (see there).
    _tables: dict[str, Any] = dataclasses.field(init=False, repr=False, compare=False)
    _indices: dict[str, range] = dataclasses.field(init=False, repr=False, compare=False)
    _end: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Each transform's rules and engine indices by table (the first of a table, as `of`
        # finds them), made once: the hook asks for them at every matched import.
        tables: dict[str, Any] = {}
        indices: dict[str, range] = {}
        start = 0
        for transform, selected in self.rules:
            if transform.table not in tables:
                tables[transform.table] = selected
                indices[transform.table] = range(start, start + len(selected))
            start += len(selected)
        object.__setattr__(self, "_tables", tables)
        object.__setattr__(self, "_indices", indices)
        object.__setattr__(self, "_end", start)

    @classmethod
    def resolve(
        cls,
        config: Config,
        fullname: str,
        digests: Mapping[int, str] | None = None,
    ) -> ModulePlan | None:
        """The plan of module ``fullname``, or None when no rule applies to it.

        Args:
            config: The configuration.
            fullname: The module's name.
            digests: Each rule's own digest (:func:`rule_digests`, computed once per
                configuration) by the ``id()`` of the configuration's rule object (hashing a
                rule hashes all its fields): the plan's rules hash is then the list of its
                rules' digests per transform, not a digest hashed at every import. Without
                them, it is :func:`callweave.config.rules_hash`'s.
        """
        # Loops and list displays, no generators: this runs at every matched module's import.
        matched = []
        any_rule = False
        for t in REGISTRY:
            selected = tuple([r for r in config.rules(t.table) if r.matches_module(fullname)])
            matched.append((t, selected))
            any_rule = any_rule or bool(selected)
        if not any_rule:
            return None
        rules = tuple(matched)
        if digests is None:
            digest = rules_hash({t.table: selected for t, selected in rules})
        else:
            # Every transform's table, also without rules (as in rules_hash); digests are hex.
            digest = ";".join(
                [
                    f"{t.table}:{','.join([digests[id(r)] for r in selected])}"
                    for t, selected in rules
                ]
            )
        return cls(fullname, rules, digest)

    def of(self, table: str) -> tuple[RuleBase, ...]:
        """The module's rules of the transform configured by ``[[tool.callweave.<table>]]``."""
        for transform, selected in self.rules:
            if transform.table == table:
                return selected
        return ()

    @property
    def profile(self) -> tuple[ProfileRule, ...]:
        """The module's profile rules."""
        rules: tuple[ProfileRule, ...] = self._tables.get("profile", ())
        return rules

    @property
    def wrap(self) -> tuple[WrapRule, ...]:
        """The module's wrap rules."""
        rules: tuple[WrapRule, ...] = self._tables.get("wrap", ())
        return rules

    @property
    def transform(self) -> tuple[TransformRule, ...]:
        """The module's transform rules."""
        rules: tuple[TransformRule, ...] = self._tables.get("transform", ())
        return rules

    def rule_indices(self, table: str) -> range:
        """The engine's indices of one transform's rules (see :func:`native_rules`)."""
        indices: range | None = self._indices.get(table)
        return indices if indices is not None else range(self._end, self._end)


def rule_digests(config: Config) -> dict[RuleBase, str]:
    """Each rule's hex SHA-256 digest (of its canonical JSON table), by rule."""
    return {
        rule: rules_hash({transform.table: [rule]})
        for transform in REGISTRY
        for rule in config.rules(transform.table)
    }


def native_rules(plan: ModulePlan, enter: str, sites: str) -> list[_native.Rule]:
    """The engine rules for one module, transform by transform in the registry's order.

    Args:
        plan: The module's plan.
        enter: The name of the module's profiler entry function.
        sites: The name of the module's site table (for wrappers given the call site).
    """
    names = RuntimeNames(enter=enter, sites=sites)
    return [
        transform.native_rule(rule, names)
        for transform, selected in plan.rules
        for rule in selected
    ]


#: importlib's ``exec_module`` (``_LoaderBasics``'s, which CallweaveLoader inherits: the loader
#: adds no frame of its own while the module runs). When it calls ``get_code``, its local
#: ``module`` is the module about to execute the code.
_EXEC_MODULE_CODE: CodeType = (
    importlib._bootstrap_external._LoaderBasics.exec_module.__code__  # type: ignore[attr-defined]
)
_MODULE_DICT = vars(ModuleType)["__dict__"]

#: ``importlib.util.source_hash(data)`` is ``_source_hash(_RAW_MAGIC, data)`` (one Python
#: frame less at every import).
_source_hash = _imp.source_hash
_RAW_MAGIC: int = importlib.util._RAW_MAGIC_NUMBER  # type: ignore[attr-defined]


def _version_names(key_hash: str) -> tuple[str, str]:
    """The names of a module version's profile-table entry and site table."""
    return f"__callweave_enter_{key_hash}__", f"__callweave_sites_{key_hash}__"


def _module_dict(module: ModuleType) -> dict[str, Any]:
    # The member descriptor: a module subclass's __getattribute__ is never consulted.
    namespace: dict[str, Any] = _MODULE_DICT.__get__(module, type(module))
    return namespace


@dataclass(slots=True)
class _Version:
    """What one version of a module's rewritten code finds in its globals.

    Attributes:
        key_hash: The version's hash (source, rules, callweave, Python).
        path: The module's source file.
        static: Names shared by every version: the profiler's runtime and the wrappers.
        names: The version's own names: its profile table's entry, its site table.
        site_objects: The CallSite object of each site (when a wrapper takes sites).
        table: The version's profile table, registered on first entry (None: nothing
            profiled).
    """

    key_hash: str
    path: str
    static: dict[str, Any]
    names: dict[str, Any]
    site_objects: dict[_native.Site, Any]
    table: _LazyTable | None


#: Serialises the registration of lazily registered profiles (two threads' first entries).
_register_lock = threading.RLock()


class _LazyTable:
    """Registers a module version's profiled functions, each when it is first entered.

    A warm import registers nothing. For an entry read from the cache, the version's native
    table (``_native.ProfileTable.cached``) registers a function from its cached row on that
    function's first entry, without Python code, and queues it in
    :data:`callweave.profiler.REGISTERED`; :meth:`record` then does this object's
    bookkeeping for it, when something reads that bookkeeping
    (:func:`callweave.profiler.record_registered`). For what the native table leaves (a
    reload's function that has a profile already, a malformed row) and for a fresh
    rewrite's table (``_native.ProfileTable.lazy``), the native table calls this object with
    the function's index, and it registers the function (its row is unmarshalled then,
    :meth:`callweave._pycache.EntryMeta.row`). Either way callbacks find the function's
    object (``FUNCTION_FINDERS``). ``profiler.stats()`` registers the functions still
    pending (:data:`callweave.profiler.PENDING`), so reports list the functions that never
    ran as before. The native table holds this object (no reference cycle: this object
    holds neither the table nor its entry function).
    """

    __slots__ = ("_bound", "_finder", "_meta", "_modules", "_path", "_plan", "profiles")

    def __init__(
        self, finder: CallweaveFinder, plan: ModulePlan, path: str, meta: _pycache.EntryMeta
    ) -> None:
        self._finder = finder
        self._plan = plan
        self._path = path
        self._meta = meta
        #: Per function of the table, its registered profile.
        self.profiles: list[_native.FunctionProfile | None] = [None] * meta.profiled
        #: (qualname, first line) of each registered function.
        self._bound: list[tuple[str, int]] = []
        #: Per module running the version: its code objects that use the version's names.
        self._modules: list[tuple[weakref.ref[ModuleType], _Users]] = []
        PENDING[id(self)] = self.register_all

    def __call__(self, index: int) -> _native.FunctionProfile:
        """The profile of function ``index``, registered now if it is not yet."""
        with _register_lock:
            if REGISTERED:
                record_registered()  # the functions registered before it first
            profile = self.profiles[index]
            if profile is not None:
                return profile
            plan = self._plan
            rule_indices = plan.rule_indices("profile")
            # The sites are checked as the native profile is made (register).
            qualname, line, rule_index, sites = self._meta.row(index, rule_indices)
            rule = plan.profile[rule_index - rule_indices.start]
            profile = self._finder.register(rule, plan.fullname, qualname, self._path, line, sites)
            self.record(index, profile)
            return profile

    def record(self, index: int, profile: _native.FunctionProfile) -> None:
        """Function ``index`` is registered as ``profile``: lets callbacks find its object."""
        with _register_lock:
            if self.profiles[index] is not None:
                return
            self.profiles[index] = profile
            bound = (profile.qualname, profile.line)
            self._bound.append(bound)
            for ref, users in self._modules:
                module = ref()
                if module is not None:
                    self._finder.bind_finders(module, self._plan.fullname, [bound], users)
            if len(self._bound) == len(self.profiles):
                PENDING.pop(id(self), None)

    def register_all(self) -> None:
        """Registers every function of the table not registered yet, in table order."""
        record_registered()
        for index, profile in enumerate(self.profiles):
            if profile is None:
                self(index)

    def place(self, module: ModuleType, users: _Users) -> None:
        """Records a module running the version, and its code objects that use its names."""
        if REGISTERED:
            record_registered()
        self._modules = [(r, u) for r, u in self._modules if r() not in (None, module)]
        self._modules.append((weakref.ref(module), users))
        if self._bound:
            self._finder.bind_finders(module, self._plan.fullname, self._bound, users)


def _user_refs(code: CodeType, own: frozenset[str]) -> list[weakref.ref[CodeType]]:
    """Weak references to the code objects nested in ``code`` whose names include ``own``."""
    refs: list[weakref.ref[CodeType]] = []
    stack = [code]
    while stack:
        for const in stack.pop().co_consts:
            if type(const) is CodeType:
                stack.append(const)
                if not own.isdisjoint(const.co_names):
                    refs.append(weakref.ref(const))
    return refs


class _Users:
    """The code objects of one module run that use its version's names, found when needed.

    Walking a module's code objects costs a good part of a warm import, and only a reload of
    the module (are the previous version's users still alive?) or a callback looking for a
    profiled function's object needs them. Until then this holds the module's code object
    (its nested code objects are mostly held by the module's functions anyway); the walk then
    drops it, and the code objects nothing else holds (the module's and class bodies') go, as
    they went right after the import before.
    """

    __slots__ = ("_by_position", "_code", "_own", "_refs")

    def __init__(self, code: CodeType, own: frozenset[str]) -> None:
        self._code: CodeType | None = code
        self._own = own
        self._refs: list[weakref.ref[CodeType]] | None = None
        self._by_position: dict[tuple[str, int], weakref.ref[CodeType]] | None = None

    def refs(self) -> list[weakref.ref[CodeType]]:
        """Weak references to the users (the walk, on the first call)."""
        if self._refs is None:
            self._refs = _user_refs(cast(CodeType, self._code), self._own)
            self._code = None
        return self._refs

    def alive(self) -> bool:
        """Whether a user is still alive (the dead ones are forgotten)."""
        self._refs = [r for r in self.refs() if r() is not None]
        return bool(self._refs)

    def find(self, qualname: str, line: int) -> CodeType | None:
        """The user at this qualname and first line (the last one walked), if alive."""
        if self._by_position is None:
            by_position = {}
            for ref in self.refs():
                c = ref()
                if c is not None:
                    by_position[(c.co_qualname, c.co_firstlineno)] = ref
            self._by_position = by_position
        found = self._by_position.get((qualname, line))
        return found() if found is not None else None


class _FunctionRef:
    """Finds a profiled function of a hooked module on demand, holding it weakly.

    Its code object is looked up among the module's users of its version's names when first
    needed (:class:`_Users`): a function's first entry only creates this object.
    """

    __slots__ = ("_func", "_line", "_module", "_qualname", "_users")

    def __init__(self, module: ModuleType, qualname: str, line: int, users: _Users) -> None:
        self._module = weakref.ref(module)
        self._qualname = qualname
        self._line = line
        self._users = users
        self._func: weakref.ref[Any] | None = None

    def _code(self) -> CodeType | None:
        return self._users.find(self._qualname, self._line)

    def alive(self) -> bool:
        """Whether the function's code (and so possibly the function) still exists."""
        return self._module() is not None and self._code() is not None

    def __call__(self) -> Any:
        func = self._func() if self._func is not None else None
        if func is not None:
            return func
        module = self._module()
        code = self._code() if module is not None else None
        if module is None or code is None:
            return None
        func = find_function(_module_dict(module), self._qualname, code)
        self._func = weakref.ref(func) if func is not None else None
        return func


def _alive(ref: object) -> bool:
    return isinstance(ref, _FunctionRef) and ref.alive()


class CallweaveLoader(importlib.machinery.SourceFileLoader):
    """Loads a matched module from its rewritten source (or callweave's cache)."""

    def __init__(
        self,
        fullname: str,
        path: str,
        finder: CallweaveFinder,
        pytest_hook: Any = None,
        plan: ModulePlan | None = None,
    ):
        """A loader for one matched module.

        Args:
            fullname: The module's name.
            path: Its source file.
            finder: The finder that matched it.
            pytest_hook: pytest's assertion-rewriting hook, when it claimed the module too.
            plan: The module's rules (resolved by the finder when not given).
        """
        super().__init__(fullname, path)
        self._finder = finder
        self._pytest_hook = pytest_hook
        self._plan = plan if plan is not None else finder.plan(fullname)

    # -- rewriting -----------------------------------------------------------------------

    def _rewrite(
        self, fullname: str, path: str, data: bytes, key_hash: str
    ) -> tuple[CodeType, _pycache.EntryMeta]:
        # Undecodable bytes CPython accepts (in comments) are decoded position for position;
        # what CPython rejects raises its own SyntaxError, with the file and line.
        source = decode_source(data, path)
        plan = self._require_plan(fullname)
        rules = native_rules(plan, *_version_names(key_hash))
        # The users' NodeTransformers run on the rewritten tree (after every engine rule),
        # then pytest's assertion rewriting, as pytest would rewrite the module alone.
        users = [a for a in self._finder.appliers(plan) if a.transformer is not None]
        pytest_hook = self._pytest_hook
        tree_hook = None
        if users or pytest_hook is not None:

            def tree_hook(tree: Any, result: Any) -> Any:
                if users:
                    tree = configured.apply_transformers(tree, result, users)
                if pytest_hook is not None:
                    from _pytest.assertion.rewrite import rewrite_asserts

                    rewrite_asserts(tree, result.source.encode(), path, pytest_hook.config)
                return tree

        code, result = compile_rewritten(
            source, path, rules, optimize=sys.flags.optimize, tree_hook=tree_hook
        )
        # Plain data only (tuples, the cache format): it is marshalled into the cache with
        # the code. The code is cached before its constant slots are loaded (their values,
        # Decimal or the user's objects, are not marshallable): the slot table is cached and
        # the values are computed and loaded at every import (``_load_constants``).
        functions = result.function_rows()
        keep_sites = any(w.pass_site for w in plan.wrap)
        # The site rows serve the wrappers given call sites and the profiles' sites: a
        # module with neither (wrap-all without sites) does not build them.
        sites = (
            result.site_rows() if keep_sites or any(row[3] is not None for row in functions) else []
        )
        meta = _pycache.EntryMeta.of_rewrite(
            functions,
            sites,
            [configured.slot_row(c) for c in result.constants],
            keep_sites=keep_sites,
        )
        return code, meta

    def _load_constants(
        self, plan: ModulePlan, code: CodeType, meta: _pycache.EntryMeta
    ) -> CodeType:
        """``code`` with its constant slots loaded as the values their transforms give."""
        if not meta.slots and not plan.transform:
            return code
        appliers = self._finder.rule_appliers(plan)
        values = configured.slot_values(meta.slots, appliers)
        for applier in appliers:
            if applier is not None:
                values.update(applier.names)
        return configured.patch(code, values) if values else code

    def _require_plan(self, fullname: str) -> ModulePlan:
        if self._plan is None or self._plan.fullname != fullname:
            raise ImportError(f"callweave: no rule applies to {fullname!r}", name=fullname)
        return self._plan

    def _cached(
        self, plan: ModulePlan, blob: _pycache.Entry
    ) -> tuple[CodeType, _pycache.EntryMeta] | None:
        """The code and meta of a cache entry whose header matched, or None (a miss)."""
        read = _pycache.load_entry(blob)
        if read is None:
            return None
        stored = _pycache.valid_meta(read[1], plan.rule_indices("transform"))
        return (read[0], stored) if stored is not None else None

    def _read_source(
        self, path: str, st: os.stat_result | None, suffix: bytes
    ) -> tuple[bytes, bytes, bytes]:
        """The source, its key digest and the stamp to store with it.

        Args:
            path: The source file.
            st: Its stat, taken before it is read (None: it failed).
            suffix: The key suffix (:func:`callweave._pycache.key_suffix`).
        """
        import time  # only when the source is read: a stamp hit needs no clock

        now = time.time_ns()
        data = self.get_data(path)
        # One hash of source + key suffix: the entry's key digest and the suffix of the
        # names injected for this module version.
        digest = importlib.util.source_hash(data + suffix)
        return data, digest, _pycache.settled_stamp(st, now)

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
        plan = self._require_plan(fullname)
        # get_filename's: the plan is the loader's own module's (checked above).
        path = self.path
        suffix = _pycache.key_suffix(
            fullname, plan.rules_hash, pytest=self._pytest_hook is not None
        )
        suffix_digest = _source_hash(_RAW_MAGIC, suffix)
        try:
            st: os.stat_result | None = os.stat(path)
        except OSError:
            st = None  # get_data raises the error an ordinary import raises
        cache = None
        if isinstance(module, ModuleType):
            # importlib set the module's __cached__ (its spec's cached: cache_from_source of
            # the same path) before it asked for the code: callweave's entry is beside it.
            namespace = _MODULE_DICT.__get__(module, type(module))
            cached = namespace.get("__cached__")
            if type(cached) is str and namespace.get("__file__") == path:
                cache = _pycache.cache_path_beside(cached)
        if cache is None:
            cache = _pycache.cache_path(path)
        blob = _pycache.read_entry(cache)
        data: bytes | None = None
        entry: tuple[CodeType, _pycache.EntryMeta] | None = None
        stamp_hit = (
            blob is not None
            and st is not None
            and blob[0][16:48] == _pycache.source_stamp(st) + suffix_digest
        )
        if stamp_hit:
            # Current without reading the source (the key digest stored with the stamp
            # names the version's runtime names).
            entry = self._cached(plan, cast(_pycache.Entry, blob))
            digest = cast(_pycache.Entry, blob)[0][8:16]
        if entry is None:
            data, digest, stamp = self._read_source(path, st, suffix)
            if not stamp_hit and blob is not None and blob[0][8:16] == digest:
                # The same key, a stale stamp (a touch, a copy): current all the same.
                entry = self._cached(plan, blob)
                if entry is not None:
                    _pycache.refresh_stamp(cache, path, blob, stamp, suffix_digest)
        key_hash = digest.hex()
        try:
            if entry is not None:
                _counters["cache_hits"] += 1
                # As for ordinary bytecode: a tree moved with its __pycache__ names its new path.
                _imp._fix_co_filename(entry[0], path)  # type: ignore[attr-defined]
            else:
                # A miss always read the source above.
                entry = self._rewrite(fullname, path, cast(bytes, data), key_hash)
                _counters["rewritten"] += 1
                _pycache.write_entry(cache, path, (digest, stamp, suffix_digest), *entry)
            code = self._load_constants(plan, *entry)
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
            # SourceLoader.get_code returns None only for a loader without source.
            return cast(CodeType, super().get_code(fullname))
        meta = entry[1]
        if self._finder.strict:
            read = data

            def source() -> bytes:
                # A stamp hit did not read it: only an error's "did you mean" needs it.
                return read if read is not None else self.get_data(path)

            self._finder.check_functions(plan, path, source, meta.qualnames())
        version = self._finder.version(plan, path, key_hash, meta)
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
        #: Per rule (by the ``id()`` of the configuration's rule object: a rule's hash hashes
        #: all its fields, at every import), the objects behind the names it injects (a wrap
        #: rule's trampoline around its wrapper), made once: rules injecting the same name
        #: share its object. ``self.config`` holds the rules.
        self._static: dict[int, dict[str, Any]] = {}
        made: dict[str, Any] = {}
        for transform in REGISTRY:
            for rule in config.rules(transform.table):
                objects = transform.static_names(rule, self.resolved)
                self._static[id(rule)] = {n: made.setdefault(n, v) for n, v in objects.items()}
        #: Per transform rule: its built-in or the user's transformer class, resolved now.
        self._appliers = configured.prepare(
            config.transform, self.resolved, Where(config.path, "tool.callweave.transform")
        )
        self._profiles: dict[tuple[str, str, int], _native.FunctionProfile] = {}
        #: Per profile rule (by the ``id()`` of its object), what its native profiles are
        #: made with: time limit, callbacks above and below it, whether calls are recorded
        #: (resolved now, but a rule's with an OpenTelemetry callback at its first
        #: registration: callweave.otel is imported when first needed).
        self._profile_args: dict[int, tuple[float, Any, Any, bool]] = {}
        for rule in config.profile:
            if rule.above.kind != "otel" and rule.below.kind != "otel":
                self._rule_args(rule)
        #: Per module name asked for: its plan, or None when no rule applies (or excluded).
        self._plans: dict[str, ModulePlan | None] = {}
        #: Each rule's digest by the id() of its object, for the plans' rules hashes (see
        #: ModulePlan.resolve).
        digests = rule_digests(config)
        self._rule_digests = {
            id(rule): digests[rule] for t in REGISTRY for rule in config.rules(t.table)
        }
        #: Every rule's module globs at once: most imported names match none (one native
        #: call says so, the plan is not resolved rule by rule).
        globs = [g for t in REGISTRY for rule in config.rules(t.table) for g in rule.modules]
        self._any_rule = _native.DottedGlobs(globs) if globs else None
        #: The latest version of each module (an unchanged reload reuses it).
        self._versions: dict[str, _Version] = {}
        #: Per module: the module objects holding a version's names, those names, and weak
        #: references to the code objects that use them (see ``bind_module``).
        self._placed: dict[str, list[tuple[weakref.ref[ModuleType], tuple[str, ...], _Users]]] = {}
        #: Per module: its keys in the profiler's FUNCTION_FINDERS.
        self._function_keys: dict[str, set[tuple[str, str, int]]] = {}
        #: Per module: the version names it last put into builtins.
        self._in_builtins: dict[str, tuple[str, ...]] = {}
        #: In strict mode, what was loaded, for the rule globs that matched nothing at exit.
        self.tracker = _rulecheck.Tracker(config) if self.strict else None

    def check_functions(
        self, plan: ModulePlan, path: str, source: Callable[[], bytes], selected: list[str]
    ) -> None:
        """Strict mode: a rule naming this module alone must select a function per glob.

        Args:
            plan: The module's plan.
            path: Its source file.
            source: Gives its source bytes (read and parsed only for the "did you mean" of
                an error).
            selected: The qualnames of the functions the module's rules selected.

        Raises:
            ImportError: A function glob of such a rule matches no function of the module.
        """
        judged: list[RuleBase] = []
        for transform, rules in plan.rules:
            for rule in rules:
                if isinstance(rule, TransformRule) and ":" in rule.use:
                    continue  # a user transformer's functions are not the engine's
                judged.append(rule)
                if _rulecheck.single_module(rule) is None:
                    continue
                for glob in rule.functions or ():
                    if any(_rulecheck.selects(glob, q) for q in selected):
                        continue
                    tree = ast.parse(decode_source(source(), path))
                    hint = _rulecheck.function_hint(glob, _rulecheck.qualnames(tree))
                    index = self.config.rules(transform.table).index(rule)
                    message = _rulecheck.function_message(
                        self.config, transform.table, index, rule, glob, [plan.fullname], hint
                    )
                    raise ImportError(
                        f"callweave: {message} (strict = true)", name=plan.fullname, path=path
                    )
        if self.tracker is not None:
            self.tracker.module_loaded(plan.fullname, judged, selected)

    def register(
        self,
        rule: ProfileRule,
        module: str,
        qualname: str,
        path: str,
        line: int,
        sites: list[Any],
    ) -> _native.FunctionProfile:
        """A native profile for a function of a loaded module (reused across reloads).

        Args:
            rule: The profile rule that selected the function.
            module: Its module's name.
            qualname: Its qualname.
            path: Its module's file.
            line: Its first line.
            sites: Its sites from its cache entry's row, as :data:`_pycache.ProfileSite`
                rows, not checked yet (see :meth:`_pycache.EntryMeta.row`).

        Raises:
            RuntimeError: A site is malformed (:func:`_pycache.malformed`).
        """
        key = (module, qualname, line)
        existing = self._profiles.get(key)
        if existing is not None and len(existing.sites) == len(sites):
            if not _pycache.valid_profile_sites(sites):
                raise _pycache.malformed()
            return existing
        time_limit, above, below, record_calls = self._rule_args(rule)
        try:
            # As profiler.register_profile, the rows already in the native profile's form.
            profile = _native.FunctionProfile(
                module=module,
                qualname=qualname,
                filename=path,
                line=line,
                sites=sites,
                time_limit=time_limit,
                above=above,
                below=below,
                record_calls=record_calls,
            )
        except (TypeError, ValueError, OverflowError):  # converting a malformed site
            raise _pycache.malformed() from None
        self._profiles[key] = profile
        return profile

    def version(
        self, plan: ModulePlan, path: str, key_hash: str, meta: _pycache.EntryMeta
    ) -> _Version:
        """The objects one version of a module calls: its profile table and site table.

        Built once per version: an unchanged reload gets the same objects; profiles are
        shared across versions for functions that did not move. The profile table is
        registered when one of its functions is first entered (:class:`_LazyTable`).
        """
        fullname = plan.fullname
        current = self._versions.get(fullname)
        if current is not None and current.key_hash == key_hash:
            return current
        enter_name, sites_name = _version_names(key_hash)
        names: dict[str, Any] = {}
        site_objects: dict[_native.Site, Any] = {}
        wrap = plan.wrap
        if wrap and any([w.pass_site for w in wrap]):
            # Sites that did not change since the previous version share its CallSite objects:
            # stale code of an older version that is still alive costs a tuple, not a table.
            sites = [_native.Site(*row) for row in meta.sites()]
            reuse = current.site_objects if current is not None and current.path == path else {}
            new_sites = [s for s in sites if s not in reuse]
            site_objects = dict(zip(new_sites, make_sites(fullname, path, new_sites), strict=True))
            site_objects.update((s, reuse[s]) for s in sites if s in reuse)
            names[sites_name] = tuple(site_objects[s] for s in sites)
        table = None
        if meta.profiled:
            table = _LazyTable(self, plan, path, meta)
            names[enter_name] = self._profile_table(plan, path, meta, table).enter_function()
        # The shared runtime (bind_call serves every transform's star calls), then each rule's.
        static = dict(RUNTIME_NAMES)
        for _transform, selected in plan.rules:
            for selected_rule in selected:
                static.update(self._static[id(selected_rule)])
        version = _Version(key_hash, path, static, names, site_objects, table)
        self._versions[fullname] = version
        return version

    def _profile_table(
        self, plan: ModulePlan, path: str, meta: _pycache.EntryMeta, table: _LazyTable
    ) -> _native.ProfileTable:
        """A version's native profile table: it registers a function on its first entry.

        For an entry read from the cache, the native table registers a function from its
        cached row itself (no Python code runs on that first entry; the table's bookkeeping
        is done later, :func:`callweave.profiler.record_registered`) and asks ``table`` for
        what it leaves (a reload's function that has a profile already, a malformed row).
        A fresh rewrite's table, or one whose rules have an OpenTelemetry callback (imported
        when first needed), asks ``table`` for every function.
        """
        rows = meta.rows()
        known = self._profile_args
        args: list[tuple[float, Any, Any, bool]] = []
        for rule in plan.profile:
            rule_args = known.get(id(rule))
            if rule_args is None:
                rows = None
                break
            args.append(rule_args)
        if rows is None:
            return _native.ProfileTable.lazy(meta.profiled, table)
        blob, offsets = rows
        return _native.ProfileTable.cached(
            meta.profiled,
            table,
            blob,
            offsets,
            plan.fullname,
            path,
            plan.rule_indices("profile").start,
            args,
            self._profiles,
            REGISTERED,
        )

    def _rule_args(self, rule: ProfileRule) -> tuple[float, Any, Any, bool]:
        """What a profile rule's native profiles are made with (see ``_profile_args``)."""
        args = self._profile_args.get(id(rule))
        if args is None:
            above = _callback(rule.above, self.resolved, default_above_log)
            below = _callback(rule.below, self.resolved, default_below_log)
            record_calls = records_calls(above, below)
            args = self._profile_args[id(rule)] = (rule.time_limit, above, below, record_calls)
        return args

    def bind_finders(
        self,
        module: ModuleType,
        fullname: str,
        bound: list[tuple[str, int]],
        users: _Users,
    ) -> None:
        """Lets callbacks find the profiled functions of a module (``FUNCTION_FINDERS``).

        Args:
            module: The module.
            fullname: Its name.
            bound: (qualname, first line) of each profiled function.
            users: The module's code objects that use its version's names (the profiled
                functions' among them: they call the entry), looked up when a callback needs
                a function.
        """
        keys = self._function_keys.setdefault(fullname, set())
        for qualname, line in bound:
            key = (fullname, qualname, line)
            FUNCTION_FINDERS[key] = _FunctionRef(module, qualname, line, users)
            keys.add(key)

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
        own = tuple(version.names)
        # Walked when first needed (a reload, a callback): see _Users.
        users = _Users(code, frozenset(own))
        if REGISTERED:
            record_registered()  # FUNCTION_FINDERS as the registrations so far leave it
        keys = self._function_keys.setdefault(fullname, set())
        for key in [k for k in keys if not _alive(FUNCTION_FINDERS.get(k))]:
            keys.discard(key)
            FUNCTION_FINDERS.pop(key, None)
        if version.table is not None:
            version.table.place(module, users)
        kept = []
        for ref, names, old_users in self._placed.get(fullname, ()):
            old = ref()
            if old is None or (old is module and names == own):
                continue
            if old_users.alive():
                kept.append((ref, names, old_users))
                continue
            old_namespace = _module_dict(old)
            for name in names:
                if name not in own:
                    old_namespace.pop(name, None)
        kept.append((weakref.ref(module), own, users))
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

    def appliers(self, plan: ModulePlan) -> list[configured.Applier]:
        """The resolved transform rules of a module, in order."""
        return [self._appliers[r] for r in plan.transform]

    def rule_appliers(self, plan: ModulePlan) -> list[configured.Applier | None]:
        """Per engine rule of the module (:func:`native_rules`'s order), its applier.

        None stands for the other transforms' rules.
        """
        return [
            self._appliers[cast(TransformRule, r)] if t.table == "transform" else None
            for t, selected in plan.rules
            for r in selected
        ]

    def plan(self, fullname: str) -> ModulePlan | None:
        """The rules that apply to the module, or None (cached: imports ask for many names)."""
        # A name asked for the first time raises no KeyError (an exception costs more).
        if fullname in self._plans:
            return self._plans[fullname]
        if self._any_rule is None or not self._any_rule.matches(fullname) or _excluded(fullname):
            self._plans[fullname] = None
            return None
        plan = ModulePlan.resolve(self.config, fullname, self._rule_digests)
        sources = (
            [a.source_hash for a in self.appliers(plan)]
            if plan is not None and self._appliers
            else []
        )
        if plan is not None and any(sources):
            # A user transformer's effect is in the cached code: its source is in the key.
            h = hashlib.sha256(plan.rules_hash.encode())
            for source_hash in sources:
                h.update(b"\0" + source_hash.encode())
            plan = dataclasses.replace(plan, rules_hash=h.hexdigest())
        self._plans[fullname] = plan
        return plan

    def matches(self, fullname: str) -> bool:
        """Whether the rules select the module."""
        return self.plan(fullname) is not None

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        """The spec of a matched module with callweave's loader, else None."""
        if sys.meta_path[0] is not self:
            self._stay_ahead_of_pytest()
        plan = self.plan(fullname)
        if plan is None:
            return None
        spec = spec_from_others(
            fullname, path, target, lambda finder: isinstance(finder, CallweaveFinder)
        )
        if spec is None:
            return None
        loader = spec.loader
        pytest_hook = None
        if type(loader).__name__ == "AssertionRewritingHook" and spec.origin:
            pytest_hook = loader
        elif type(loader) is not importlib.machinery.SourceFileLoader:
            return spec
        if not spec.origin or not spec.origin.endswith(".py"):
            return spec
        spec.loader = CallweaveLoader(fullname, spec.origin, self, pytest_hook, plan)
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
    if finder.strict:
        missing = _rulecheck.missing_modules(config)
        if missing:
            raise ConfigError(f"{missing[0]} (strict = true)")
        if report_at_exit and not child:
            atexit.register(_warn_unmatched, finder)
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
    if config.prometheus is not None:
        _start_prometheus(config, child=child)
    return finder


def _start_prometheus(config: Config, *, child: bool) -> None:
    """Serves ``/metrics`` as ``[tool.callweave.prometheus]`` says (in the first process).

    A child process of an instrumented one (which inherits the configuration) serves nothing:
    its parent does. In prometheus_client's multiprocess mode it writes its values for the
    parent's server to read; otherwise its invocations are not exported.
    """
    from callweave import prometheus  # checked by Config.resolve()

    spec = config.prometheus
    if spec is None:
        return
    if child:
        if prometheus.multiprocess_mode():
            prometheus.register(interval=spec.interval)
        return
    if prometheus.server_port() is None:
        prometheus.start(spec.port, spec.address, interval=spec.interval)


def _warn_unmatched(finder: CallweaveFinder) -> None:
    """At exit, in strict mode: a line per rule glob that matched nothing during the run."""
    if finder.tracker is None or finder not in sys.meta_path:
        return
    for line in finder.tracker.lines():
        print(f"callweave: warning: {line} (strict = true)", file=sys.stderr)


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
