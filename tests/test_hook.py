"""The import hook (``callweave.hook``): what a rewritten module looks like from outside, the
cache, concurrency, reload and install/uninstall, pytest's assertion rewriting, errors and
configuration.

Imports and ``sys.modules`` are global, so almost every test builds a small project under
``tmp_path`` (a ``pyproject.toml`` with ``[tool.callweave]`` and packages) and imports it in a
fresh interpreter whose working directory is that project. The child prints one JSON result
line, prefixed with ``@@CW``. The environment of the children is controlled explicitly: no
inherited ``CALLWEAVE_*`` variables, and bytecode writing (``PYTHONDONTWRITEBYTECODE``, which
this environment sets) is chosen per test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import marshal
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

import callweave
from callweave.errors import ConfigError
from callweave.hook import CallweaveFinder

CALLWEAVE_ROOT = Path(callweave.__file__).resolve().parent.parent
TAG = sys.implementation.cache_tag
MARK = "@@CW "
TIMEOUT = 60

# What every child script starts with.
PRELUDE = """\
import json, sys
def emit(**data):
    print("@@CW " + json.dumps(data, default=repr), flush=True)
def cw_state():
    import callweave, callweave.hook
    return {
        "counters": callweave.hook.counters(),
        "stats": {f"{s.module}:{s.qualname}": s.count for s in callweave.stats()},
    }
def loader_name(name):
    loader = sys.modules[name].__spec__.loader
    return loader.__name__ if isinstance(loader, type) else type(loader).__name__
"""
INSTALL = "import callweave\ncallweave.install()\n"

# Environment variables that would change what a child does.
_DROP_ENV = {
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONPYCACHEPREFIX",
    "PYTHONOPTIMIZE",
    "PYTHONWARNINGS",
    "PYTHONSAFEPATH",
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
    "PYTHONDEVMODE",
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
}


# --------------------------------------------------------------------------- helpers


def child_env(*, write_bytecode: bool = True, **extra: str) -> dict[str, str]:
    """The environment for a child: this callweave first on the path, nothing inherited that
    configures callweave, and bytecode writing as asked."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE_") and k not in _DROP_ENV
    }
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(CALLWEAVE_ROOT), os.environ.get("PYTHONPATH")) if p
    )
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


@dataclass
class Run:
    args: list[str]
    rc: int
    out: str
    err: str

    @property
    def data(self) -> dict:
        lines = [line for line in self.out.splitlines() if line.startswith(MARK)]
        assert lines, f"the child printed no result\n{self}"
        return json.loads(lines[-1][len(MARK) :])

    def ok(self) -> Run:
        assert self.rc == 0, str(self)
        return self

    def __str__(self) -> str:
        return f"exit {self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


@dataclass
class Job:
    """A child to run: ``python [flags] -c PRELUDE+code`` (or ``python args``) in ``cwd``."""

    cwd: Path
    code: str | None = None
    flags: Sequence[str] = ()
    env: dict[str, str] | None = None
    args: Sequence[str] | None = None
    timeout: float = TIMEOUT

    def start(self) -> subprocess.Popen:
        argv = [sys.executable, *self.flags]
        argv += list(self.args) if self.args is not None else ["-c", PRELUDE + self.code]
        return subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=self.env if self.env is not None else child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> Run:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"child timed out after {timeout}s (deadlock?)\n{out}\n{err}")
    return Run(list(proc.args), proc.returncode, out, err)


def run_all(*jobs: Job) -> list[Run]:
    """Runs children at once (the machine has few cores, but children mostly wait on start)."""
    procs = [(job.start(), job.timeout) for job in jobs]
    return [finish(proc, timeout) for proc, timeout in procs]


def run(cwd: Path, code: str, **kw) -> Run:
    return run_all(Job(cwd, code, **kw))[0]


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text))


def profile_rule(
    *modules: str,
    functions: list[str] | None = None,
    time_limit: object = "1s",
    above: str = "none",
) -> str:
    lines = [
        "[[tool.callweave.profile]]",
        f"modules = {json.dumps(list(modules))}",
        f"time_limit = {json.dumps(time_limit)}",
        f"above = {json.dumps(above)}",
    ]
    if functions is not None:
        lines.append(f"functions = {json.dumps(functions)}")
    return "\n".join(lines) + "\n"


def wrap_rule(*modules: str, wrapper: str) -> str:
    return (
        "[[tool.callweave.wrap]]\n"
        f"modules = {json.dumps(list(modules))}\nwrapper = {json.dumps(wrapper)}\n"
    )


def config_text(*rules: str, strict: bool = False, extra: str = "") -> str:
    head = f'[tool.callweave]\nreport = "none"\nstrict = {str(strict).lower()}\n{extra}\n'
    return head + "\n".join(rules)


def write_config(root: Path, *rules: str, name: str = "pyproject.toml", **kw) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text(config_text(*rules, **kw))
    return path


def pycache_files(directory: Path) -> set[str]:
    cache = directory / "__pycache__"
    return {p.name for p in cache.iterdir()} if cache.is_dir() else set()


def leftovers(root: Path) -> list[str]:
    """Temporary files a cache writer left behind."""
    return [str(p) for p in root.rglob("*") if p.name.endswith(".tmp")]


SIMPLE_MOD = """\
def f():
    return len([1]) + abs(-1)
"""


def simple_project(root: Path, *, source: str = SIMPLE_MOD, **rule_kw) -> Path:
    """``pkg/mod.py`` profiled, ``pkg/__init__.py`` not."""
    write_files(root, {"pkg/__init__.py": "", "pkg/mod.py": source})
    write_config(root, profile_rule("pkg.mod", **rule_kw))
    return root / "pkg"


def _settle(*paths: Path) -> None:
    """Sets the files' mtimes an hour back: their cache entries get a stat stamp."""
    old = time.time_ns() - 3600 * 10**9
    for path in paths:
        os.utime(path, ns=(old, old))


def _unsettle(*paths: Path) -> None:
    """Sets the files' mtimes an hour ahead: their cache entries get no stat stamp.

    As for a source written just before its import, but however long a loaded machine takes
    to start the import.
    """
    ahead = time.time_ns() + 3600 * 10**9
    for path in paths:
        os.utime(path, ns=(ahead, ahead))


IMPORT_MOD = (
    INSTALL
    + """\
import pkg.mod
result = pkg.mod.f()
emit(result=result, loader=loader_name("pkg.mod"), **cw_state())
"""
)


# --------------------------------------------------------------------------- module attributes

ATTRS_SCRIPT = """\
import importlib.machinery, importlib.resources, inspect, pkgutil
{install}
import pkg, pkg.sub

def describe(m):
    spec = m.__spec__
    loader = m.__loader__
    return {{
        "spec": [spec.name, spec.origin, spec.cached, spec.parent, spec.has_location,
                 None if spec.submodule_search_locations is None
                 else list(spec.submodule_search_locations)],
        "spec_loader_is_loader": spec.loader is loader,
        "loader": [loader.name, loader.path, loader.get_filename(m.__name__),
                   loader.is_package(m.__name__)],
        "is_source_file_loader": isinstance(loader, importlib.machinery.SourceFileLoader),
        "__name__": m.__name__,
        "__file__": m.__file__,
        "__cached__": m.__cached__,
        "__package__": m.__package__,
        "__path__": list(m.__path__) if hasattr(m, "__path__") else None,
        "get_source": loader.get_source(m.__name__),
        "getsource": inspect.getsource(m),
    }}

emit(
    modules={{name: describe(sys.modules[name]) for name in ("pkg", "pkg.sub")}},
    resource=importlib.resources.files(pkg).joinpath("data.txt").read_text(),
    resource_dir=sorted(p.name for p in importlib.resources.files("pkg").iterdir()
                        if p.name != "__pycache__"),
    get_data=pkgutil.get_data("pkg", "data.txt").decode(),
    get_data_sub=pkgutil.get_data("pkg.sub", "data.txt").decode(),
    result=pkg.f(-3),
    f_source=inspect.getsource(pkg.f),
    f_file=pkg.f.__code__.co_filename,
    f_line=pkg.f.__code__.co_firstlineno,
    loaders={{name: loader_name(name) for name in ("pkg", "pkg.sub")}},
    mro=[c.__name__ for c in type(pkg.__loader__).__mro__],
    state=cw_state() if "callweave" in sys.modules else None,
)
"""


def test_module_attributes_and_resources_match_a_plain_import(tmp_path):
    write_files(
        tmp_path,
        {
            "pkg/__init__.py": '''\
            """A package."""
            from . import sub


            def f(x):
                return len([x]) + sub.g(x)
        ''',
            "pkg/sub.py": """\
            def g(x):
                return abs(x)
        """,
            "pkg/data.txt": "payload\n",
        },
    )
    write_config(tmp_path, profile_rule("pkg.**"))
    plain, hooked = run_all(
        Job(tmp_path, ATTRS_SCRIPT.format(install=""), env=child_env(write_bytecode=False)),
        Job(tmp_path, ATTRS_SCRIPT.format(install=INSTALL)),
    )
    plain, hooked = plain.ok().data, hooked.ok().data
    assert hooked.pop("loaders") == {"pkg": "CallweaveLoader", "pkg.sub": "CallweaveLoader"}
    assert "SourceFileLoader" in hooked.pop("mro")
    assert plain.pop("loaders") == {"pkg": "SourceFileLoader", "pkg.sub": "SourceFileLoader"}
    plain.pop("mro")
    state = hooked.pop("state")
    assert state["counters"]["rewritten"] == 2
    assert state["stats"] == {"pkg:f": 1, "pkg.sub:g": 1}
    assert plain.pop("state") is None
    # Everything else (spec, loader name and path, __file__, __cached__, __path__,
    # __package__, sources, resources, positions) is what a plain import gives.
    assert hooked == plain
    assert hooked["resource"] == hooked["get_data"] == "payload\n"
    assert hooked["modules"]["pkg"]["is_source_file_loader"]
    assert hooked["modules"]["pkg"]["__path__"] == [str(tmp_path / "pkg")]


# --------------------------------------------------------------------------- pass-through

# Extension and builtin modules that are harmless to import; the child imports those that this
# build has as such and that are not imported yet.
EXTENSION_CANDIDATES = [
    "array",
    "_decimal",
    "_csv",
    "cmath",
    "_bisect",
    "_heapq",
    "_statistics",
    "_json",
    "_lsprof",
    "_queue",
    "mmap",
    "unicodedata",
    "_opcode",
    "binascii",
    "zlib",
    "math",
]
BUILTIN_CANDIDATES = ["xxsubtype", "_symtable", "_tracemalloc", "faulthandler", "pwd", "errno"]
FROZEN = ["__hello__", "__phello__", "__phello__.spam"]

PASSTHROUGH_SCRIPT = (
    INSTALL.replace("callweave.install()", "finder = callweave.install()")
    + """\
import importlib, importlib.machinery, importlib.util
seen = []
find_spec = finder.find_spec
def spy(name, *args):
    seen.append(name)
    return find_spec(name, *args)
finder.find_spec = spy

sys.path.insert(0, "libs.zip")
imported = {}
def load(name, kind):
    if name in sys.modules:
        return
    importlib.import_module(name)
    imported[name] = [kind, loader_name(name), name in seen]

for name in EXTENSIONS:
    spec = importlib.util.find_spec(name) if name not in sys.modules else None
    if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
        load(name, "extension")
for name in BUILTINS:
    if name in sys.builtin_module_names:
        load(name, "builtin")
for name in FROZEN:
    if importlib.machinery.FrozenImporter.find_spec(name) is not None:
        load(name, "frozen")
for name in ("zipped", "zipped.mod"):
    load(name, "zip")
load("nspkg", "namespace")
load("nspkg.inner", "source")
emit(imported=imported, zipped=sys.modules["zipped.mod"].f(), inner=sys.modules["nspkg.inner"].h(),
     **cw_state())
"""
)


def test_namespace_zip_extension_builtin_and_frozen_modules_pass_through(tmp_path):
    write_files(
        tmp_path,
        {
            "nspkg/inner.py": """\
            def h():
                return len([1, 2])
        """,
        },
    )
    with zipfile.ZipFile(tmp_path / "libs.zip", "w") as zf:
        zf.writestr("zipped/__init__.py", "")
        zf.writestr("zipped/mod.py", "def f():\n    return len('abc')\n")
    globs = [
        "nspkg",
        "nspkg.**",
        "zipped",
        "zipped.**",
        *EXTENSION_CANDIDATES,
        *BUILTIN_CANDIDATES,
        *FROZEN,
    ]
    write_config(tmp_path, profile_rule(*globs))
    script = PASSTHROUGH_SCRIPT.replace("EXTENSIONS", repr(EXTENSION_CANDIDATES))
    script = script.replace("BUILTINS", repr(BUILTIN_CANDIDATES)).replace("FROZEN", repr(FROZEN))
    data = run(tmp_path, script).ok().data
    imported = data["imported"]
    kinds = {kind for kind, _loader, _asked in imported.values()}
    assert {"extension", "zip", "namespace", "source"} <= kinds, imported
    for name, (kind, loader, asked) in imported.items():
        assert asked, f"the finder was not asked for {name} (its globs match it)"
        if kind == "source":
            assert loader == "CallweaveLoader", name
        else:
            assert loader != "CallweaveLoader", (name, kind, loader)
    assert imported["zipped.mod"][1] == "zipimporter"
    assert imported["nspkg"][1] == "NamespaceLoader"
    for name in FROZEN:
        if name in imported:
            assert imported[name][1] == "FrozenImporter"
    assert data["zipped"] == 3 and data["inner"] == 2
    # Only nspkg.inner, a plain source file inside the namespace package, was rewritten.
    assert data["counters"]["rewritten"] == 1
    assert data["stats"] == {"nspkg.inner:h": 1}


# --------------------------------------------------------------------------- the cache


def test_second_process_loads_from_cache(tmp_path):
    pkg = simple_project(tmp_path)
    # Settled before the first import: its entry has the stamp, so a second import that runs
    # over 2 s later (a loaded machine) has nothing to refresh and leaves the file as it is.
    _settle(pkg / "mod.py")
    first = run(tmp_path, IMPORT_MOD).ok().data
    assert first["counters"] == {"rewritten": 1, "cache_hits": 0, "fallbacks": 0}
    assert first["loader"] == "CallweaveLoader"
    cache = pkg / "__pycache__" / f"mod.{TAG}.callweave.pyc"
    # Only callweave's file for the matched module; the unmatched package gets a plain pyc.
    assert pycache_files(pkg) == {cache.name, f"__init__.{TAG}.pyc"}
    blob = cache.read_bytes()
    assert blob[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(blob[4:8], "little") == 0b11  # PEP 552: checked hash

    second = run(tmp_path, IMPORT_MOD).ok().data
    assert second["counters"]["rewritten"] == 0
    assert second["counters"]["cache_hits"] >= 1
    assert second["stats"] == {"pkg.mod:f": 1}
    assert second["result"] == first["result"] == 2
    assert cache.read_bytes() == blob


LAZY_MOD = """\
def inner():
    return 1
def outer():
    return inner()
"""

SLOW_REGISTRATION = (
    """\
import time, callweave.hook
register = callweave.hook.CallweaveFinder.register
def slow_register(self, *args, **kwargs):
    time.sleep(0.3)
    return register(self, *args, **kwargs)
callweave.hook.CallweaveFinder.register = slow_register
"""
    + INSTALL
    + """\
import pkg.mod
pkg.mod.outer()
stats = {s.qualname: s for s in callweave.stats()}
emit(
    counters=callweave.hook.counters(),
    outer_total=stats["outer"].total,
    outer_site=stats["outer"].sites[0].total,
    inner_count=stats["inner"].count,
)
"""
)


def test_lazy_registration_is_not_charged_to_the_calling_function(tmp_path):
    # From the cache a function is registered on its first entry, inside its caller's timed
    # call: that registration is callweave's own work, excluded as callbacks are.
    simple_project(tmp_path, source=LAZY_MOD)
    run(tmp_path, IMPORT_MOD.replace("pkg.mod.f()", "pkg.mod.outer()")).ok()
    data = run(tmp_path, SLOW_REGISTRATION).ok().data
    assert data["counters"]["cache_hits"] == 1
    assert data["inner_count"] == 1
    # Each registration slept 0.3 s; the one inside outer's call of inner is not in its times.
    assert data["outer_site"] < 0.3
    assert data["outer_total"] < 0.3


def test_same_size_edit_with_old_mtime_is_picked_up(tmp_path):
    pkg = simple_project(tmp_path, source="def f():\n    return abs(-1)\n")
    source = pkg / "mod.py"
    _settle(source)  # the entry has a stat stamp: the edit keeps its mtime and size
    assert run(tmp_path, IMPORT_MOD).ok().data["result"] == 1
    st = source.stat()
    source.write_text("def f():\n    return abs(-2)\n")
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert source.stat().st_size == st.st_size
    assert source.stat().st_mtime_ns == st.st_mtime_ns
    edited = run(tmp_path, IMPORT_MOD).ok().data
    assert edited["result"] == 2
    assert edited["counters"]["rewritten"] == 1
    again = run(tmp_path, IMPORT_MOD).ok().data
    assert again["result"] == 2 and again["counters"]["cache_hits"] == 1


# The source paths the loader reads (its cache entries are read by other means).
COUNT_READS = """\
import callweave.hook
source_reads = []
_get_data = callweave.hook.CallweaveLoader.get_data
def _counting(self, path):
    if path.endswith(".py"):
        source_reads.append(path)
    return _get_data(self, path)
callweave.hook.CallweaveLoader.get_data = _counting
"""
IMPORT_MOD_READS = COUNT_READS + IMPORT_MOD.replace("emit(", "emit(reads=len(source_reads), ")


def _stamp(path: Path) -> bytes:
    st = path.stat()
    return b"".join(
        v.to_bytes(8, "little", signed=True) for v in (st.st_mtime_ns, st.st_size, st.st_ctime_ns)
    )


def test_stamp_hit_does_not_read_the_source(tmp_path):
    pkg = simple_project(tmp_path)
    _settle(pkg / "mod.py")
    first = run(tmp_path, IMPORT_MOD_READS).ok().data
    assert first["counters"]["rewritten"] == 1 and first["reads"] == 1
    cache = pkg / "__pycache__" / f"mod.{TAG}.callweave.pyc"
    assert cache.read_bytes()[16:40] == _stamp(pkg / "mod.py")
    second = run(tmp_path, IMPORT_MOD_READS).ok().data
    assert second["counters"] == {"rewritten": 0, "cache_hits": 1, "fallbacks": 0}
    assert second["reads"] == 0
    assert second["result"] == first["result"] and second["stats"] == {"pkg.mod:f": 1}


def test_touched_source_is_a_hit_and_its_stamp_is_refreshed(tmp_path):
    pkg = simple_project(tmp_path)
    source = pkg / "mod.py"
    cache = pkg / "__pycache__" / f"mod.{TAG}.callweave.pyc"
    # Just written: no stamp is stored (an edit in the same timestamp tick keeps the mtime).
    _unsettle(source)
    assert run(tmp_path, IMPORT_MOD_READS).ok().data["counters"]["rewritten"] == 1
    fresh = cache.read_bytes()
    assert fresh[16:40] == bytes(24)
    _settle(source)  # a touch (the mtime is settled now): the same content
    touched = run(tmp_path, IMPORT_MOD_READS).ok().data
    assert touched["counters"] == {"rewritten": 0, "cache_hits": 1, "fallbacks": 0}
    assert touched["reads"] == 1  # hashed: the stamp did not match
    refreshed = cache.read_bytes()
    assert refreshed[16:40] == _stamp(source)
    assert refreshed[:16] == fresh[:16] and refreshed[40:] == fresh[40:]
    again = run(tmp_path, IMPORT_MOD_READS).ok().data
    assert again["counters"]["cache_hits"] == 1 and again["reads"] == 0
    assert cache.read_bytes() == refreshed
    # Under PYTHONDONTWRITEBYTECODE a touched entry is still a hit, and left as it is.
    _settle(source)  # another mtime
    quiet = run(tmp_path, IMPORT_MOD_READS, env=child_env(write_bytecode=False)).ok().data
    assert quiet["counters"]["cache_hits"] == 1 and quiet["reads"] == 1
    assert cache.read_bytes() == refreshed


def test_settled_edit_is_rewritten_with_its_stamp(tmp_path):
    pkg = simple_project(tmp_path, source="def f():\n    return abs(-1)\n")
    source = pkg / "mod.py"
    cache = pkg / "__pycache__" / f"mod.{TAG}.callweave.pyc"
    _settle(source)
    assert run(tmp_path, IMPORT_MOD_READS).ok().data["result"] == 1
    before = cache.read_bytes()
    source.write_text("def f():\n    return abs(-123)\n")
    _settle(source)
    edited = run(tmp_path, IMPORT_MOD_READS).ok().data
    assert edited["result"] == 123
    assert edited["counters"] == {"rewritten": 1, "cache_hits": 0, "fallbacks": 0}
    after = cache.read_bytes()
    assert after[8:16] != before[8:16] and after[16:40] == _stamp(source)
    again = run(tmp_path, IMPORT_MOD_READS).ok().data
    assert again["result"] == 123 and again["reads"] == 0


def test_strict_check_reads_the_source_only_for_its_error(tmp_path):
    pkg = simple_project(tmp_path)
    _settle(pkg / "mod.py")
    write_config(tmp_path, profile_rule("pkg.mod", functions=["f"]), strict=True)
    for _ in range(2):
        data = run(tmp_path, IMPORT_MOD_READS).ok().data
    assert data["counters"]["cache_hits"] == 1 and data["reads"] == 0
    # The entry of a rule whose glob selects nothing: "did you mean" parses the source.
    write_config(tmp_path, profile_rule("pkg.mod", functions=["ff"]), strict=True)
    run(tmp_path, IMPORT_MOD_READS)  # writes the entry, then fails
    failed = run(tmp_path, IMPORT_MOD_READS)
    assert failed.rc == 1
    assert 'matches no function in pkg.mod; did you mean "f"? (strict = true)' in failed.err


RULES_MOD = """\
def f():
    return len([1])


def g():
    return abs(-2)
"""
RULES_SCRIPT = (
    INSTALL
    + """\
import callweave, pkg.mod
pkg.mod.f(); pkg.mod.g()
emit(limits={s.qualname: s.time_limit for s in callweave.stats()}, **cw_state())
"""
)


def test_changing_a_rule_changes_the_cached_code(tmp_path):
    pkg = simple_project(tmp_path, source=RULES_MOD, functions=["f"])
    _settle(pkg / "mod.py")  # the stat stamp matches: the key suffix's digest does not
    cache = pkg / "__pycache__" / f"mod.{TAG}.callweave.pyc"
    first = run(tmp_path, RULES_SCRIPT).ok().data
    assert first["stats"] == {"pkg.mod:f": 1}
    blob_f = cache.read_bytes()

    write_config(tmp_path, profile_rule("pkg.mod", functions=["g"]))
    second = run(tmp_path, RULES_SCRIPT).ok().data
    assert second["counters"]["rewritten"] == 1 and second["counters"]["cache_hits"] == 0
    assert second["stats"] == {"pkg.mod:g": 1}
    blob_g = cache.read_bytes()
    assert blob_g != blob_f

    write_config(tmp_path, profile_rule("pkg.mod", functions=["g"], time_limit="2s"))
    third = run(tmp_path, RULES_SCRIPT).ok().data
    assert third["counters"]["rewritten"] == 1 and third["counters"]["cache_hits"] == 0
    assert third["limits"] == {"g": 2.0}
    assert cache.read_bytes() not in (blob_f, blob_g)

    fourth = run(tmp_path, RULES_SCRIPT).ok().data
    assert fourth["counters"] == {"rewritten": 0, "cache_hits": 1, "fallbacks": 0}
    assert fourth["limits"] == {"g": 2.0}


OPT_MOD = '''\
def f():
    """doc"""
    assert len([]) == 1, "asserts are on"
    return abs(-1)
'''
OPT_SCRIPT = (
    INSTALL
    + """\
import pkg.mod
try:
    outcome = pkg.mod.f()
except AssertionError as exc:
    outcome = str(exc)
emit(outcome=outcome, doc=pkg.mod.f.__doc__, optimize=sys.flags.optimize, **cw_state())
"""
)


def test_optimisation_levels_keep_separate_cache_files(tmp_path):
    pkg = simple_project(tmp_path, source=OPT_MOD)
    levels = [(), ("-O",), ("-OO",)]
    expected = {
        0: ("asserts are on", "doc"),
        1: (1, "doc"),
        2: (1, None),
    }
    for round_ in range(2):
        runs = run_all(*(Job(tmp_path, OPT_SCRIPT, flags=flags) for flags in levels))
        for r in runs:
            data = r.ok().data
            assert (data["outcome"], data["doc"]) == expected[data["optimize"]]
            assert data["stats"] == {"pkg.mod:f": 1}
            if round_ == 0:
                assert data["counters"]["rewritten"] == 1
            else:
                assert data["counters"] == {"rewritten": 0, "cache_hits": 1, "fallbacks": 0}
    assert {n for n in pycache_files(pkg) if n.startswith("mod.")} == {
        f"mod.{TAG}.callweave.pyc",
        f"mod.{TAG}.opt-1.callweave.pyc",
        f"mod.{TAG}.opt-2.callweave.pyc",
    }


@pytest.mark.parametrize("how", ["environment", "-B", "sys.dont_write_bytecode"])
def test_dont_write_bytecode_writes_nothing_and_still_works(tmp_path, how):
    simple_project(tmp_path)
    code = IMPORT_MOD
    flags: tuple[str, ...] = ()
    env = child_env()
    if how == "environment":
        env = child_env(write_bytecode=False)
    elif how == "-B":
        flags = ("-B",)
    else:
        code = "sys.dont_write_bytecode = True\n" + IMPORT_MOD
    for _ in range(2):
        data = run(tmp_path, code, flags=flags, env=env).ok().data
        assert data["counters"]["rewritten"] == 1
        assert data["stats"] == {"pkg.mod:f": 1}
    assert not list(tmp_path.rglob("__pycache__"))
    assert not list(tmp_path.rglob("*.pyc"))


def test_pycache_prefix_holds_the_cache_file(tmp_path):
    project, prefix = tmp_path / "project", tmp_path / "prefix"
    simple_project(project)
    env = child_env(PYTHONPYCACHEPREFIX=str(prefix))
    first = run(project, IMPORT_MOD, env=env).ok().data
    assert first["counters"]["rewritten"] == 1
    assert not list(project.rglob("__pycache__"))
    (cache,) = prefix.rglob(f"mod.{TAG}.callweave.pyc")
    assert cache.parent.parts[-2:] == ("project", "pkg")
    second = run(project, IMPORT_MOD, env=env).ok().data
    assert second["counters"] == {"rewritten": 0, "cache_hits": 1, "fallbacks": 0}
    assert second["stats"] == {"pkg.mod:f": 1}


def test_pycache_that_is_a_file(tmp_path):
    pkg = simple_project(tmp_path)
    (pkg / "__pycache__").write_bytes(b"not a directory\n")
    for _ in range(2):
        r = run(tmp_path, IMPORT_MOD).ok()
        assert r.err == ""
        assert r.data["counters"]["rewritten"] == 1
        assert r.data["stats"] == {"pkg.mod:f": 1}
    assert (pkg / "__pycache__").read_bytes() == b"not a directory\n"
    assert leftovers(tmp_path) == []


@contextlib.contextmanager
def read_only_directory(path: Path) -> Iterator[str]:
    """Makes a directory unwritable. Root ignores permission bits, so as root the directory
    is made immutable (``chattr +i``, which binds root too); the test is skipped where that is
    not possible. Yields how it was done."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        how, undo = "chmod 555", lambda: path.chmod(mode)
    else:
        chattr = shutil.which("chattr")
        if (
            chattr is None
            or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0
        ):
            pytest.skip("running as root, which ignores chmod, and chattr +i is not available")
        how = "chattr +i"

        def undo() -> None:
            subprocess.run([chattr, "-i", str(path)], check=True)

    try:
        probe = path / "probe"
        try:
            probe.write_bytes(b"")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip(f"{how} did not make {path} read-only here")
        yield how
    finally:
        undo()


@pytest.mark.parametrize("which", ["package directory", "__pycache__ directory"])
def test_read_only_directory(tmp_path, which):
    pkg = simple_project(tmp_path)
    target = pkg
    if which == "__pycache__ directory":
        target = pkg / "__pycache__"
        target.mkdir()
    with read_only_directory(target):
        for _ in range(2):
            r = run(tmp_path, IMPORT_MOD).ok()
            assert r.err == ""
            assert r.data["counters"]["rewritten"] == 1
            assert r.data["stats"] == {"pkg.mod:f": 1}
        assert pycache_files(pkg) == set()
        assert leftovers(tmp_path) == []


def _corruptions(blob: bytes) -> dict[str, bytes]:
    from callweave._pycache import HEADER_SIZE as H

    garbage = b"\xde\xad\xbe\xef" * 64
    key = blob[8:16]
    size = int.from_bytes(blob[H - 4 : H], "little")
    rows = blob[H + size :]
    try:
        code, stored, _key = marshal.loads(blob[H : H + size])
    except (EOFError, ValueError, TypeError):
        code = stored = None  # only the names are wanted

    def entry(payload: bytes, tail: bytes = rows) -> bytes:
        # The header with this payload's length: the payload itself is what is wrong.
        return blob[: H - 4] + len(payload).to_bytes(4, "little") + payload + tail

    head = blob[:H]
    return {
        "empty": b"",
        "short": blob[:7],
        "header_only": head,
        "short_header": blob[: H - 1],
        "truncated": blob[: len(blob) // 2],
        "truncated_by_one": blob[:-1],
        "truncated_payload": blob[: H + size - 1],
        "payload_length_past_the_end": blob[: H - 4] + b"\xff\xff\xff\xff" + blob[H:],
        "bad_magic": b"\0\0\0\0" + blob[4:],
        "timestamp_flags": blob[:4] + bytes(4) + blob[8:],
        # The header's key digest no longer the payload's (which names the runtime names).
        "wrong_hash": blob[:8] + bytes(8) + blob[16:],
        "wrong_payload_key": entry(marshal.dumps((code, stored, bytes(8)))),
        "garbage": garbage,
        "garbage_body": head + garbage,
        "garbage_payload": entry(garbage),
        "garbage_rows": entry(blob[H : H + size], garbage),
        "not_code": entry(marshal.dumps(("not code", None, key))),
        # A valid header with a malformed payload (issue 7 item 21, repro 24).
        "meta_junk": entry(marshal.dumps((code, "junk", key))),
        "meta_wrong_rows": entry(marshal.dumps((code, ([1], [2]), key))),
        "meta_bad_site_index": entry(
            marshal.dumps((code, ([("f", 1, [0], (0, 5, [0]))], []), key))
        ),
        "meta_bad_rule_index": entry(marshal.dumps((code, ([("f", 1, [0], (0, 7, []))], []), key))),
        "not_a_triple": entry(marshal.dumps((code, stored))),
        "not_a_tuple": entry(marshal.dumps(code)),
    }


CORRUPT_SCRIPT = (
    INSTALL
    + """\
import importlib, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    results = {n: importlib.import_module("pkg." + n).f() for n in NAMES}
emit(results=results, warnings=[str(w.message) for w in caught], **cw_state())
"""
)


@pytest.mark.parametrize("stamped", [True, False], ids=["stamped", "hash-only"])
def test_corrupt_cache_files_are_silently_rebuilt(tmp_path, stamped):
    # Stamped: the entries' stat stamps match (the source is not read before the payload is
    # checked); hash-only: the sources were just written, the key digest is compared.
    pkg = tmp_path / "pkg"
    names = sorted(_corruptions(b"\0" * 32))
    files = {"pkg/__init__.py": ""}
    for i, name in enumerate(names):
        files[f"pkg/{name}.py"] = f"def f():\n    return abs(-{i})\n"
    write_files(tmp_path, files)
    (_settle if stamped else _unsettle)(*(pkg / f"{n}.py" for n in names))
    write_config(tmp_path, profile_rule(*(f"pkg.{n}" for n in names)))
    script = CORRUPT_SCRIPT.replace("NAMES", repr(names))
    expected = {n: i for i, n in enumerate(names)}

    first = run(tmp_path, script).ok().data
    assert first["counters"]["rewritten"] == len(names)
    for name in names:
        cache = pkg / "__pycache__" / f"{name}.{TAG}.callweave.pyc"
        blob = cache.read_bytes()
        assert (blob[16:40] != bytes(24)) == stamped
        cache.write_bytes(_corruptions(blob)[name])

    second = run(tmp_path, script).ok()
    assert second.err == ""
    data = second.data
    assert data["warnings"] == []
    assert data["results"] == expected
    assert data["counters"] == {"rewritten": len(names), "cache_hits": 0, "fallbacks": 0}
    assert data["stats"] == {f"pkg.{n}:f": 1 for n in names}

    third = run(tmp_path, script).ok().data
    assert third["counters"] == {"rewritten": 0, "cache_hits": len(names), "fallbacks": 0}
    assert third["results"] == expected


def test_cache_path_that_is_a_directory(tmp_path):
    pkg = simple_project(tmp_path)
    (pkg / "__pycache__" / f"mod.{TAG}.callweave.pyc").mkdir(parents=True)
    for _ in range(2):
        r = run(tmp_path, IMPORT_MOD).ok()
        assert r.err == ""
        assert r.data["counters"]["rewritten"] == 1
    assert leftovers(tmp_path) == []


CONCURRENT_SCRIPT = (
    INSTALL
    + """\
import os, time
open(f"ready.{os.getpid()}", "w").close()
deadline = time.monotonic() + 30
while not os.path.exists("go") and time.monotonic() < deadline:
    time.sleep(0.0005)
import pkg.big
emit(total=sum(getattr(pkg.big, f"f{i}")(i) for i in range(N_FUNCTIONS)), **cw_state())
"""
)


def test_concurrent_cold_imports(tmp_path):
    n_functions, n_procs = 200, 8
    source = "\n\n".join(
        f"def f{i}(x):\n    y = abs(x) + len([x, {i}])\n    return max(y, min(x, {i}))\n"
        for i in range(n_functions)
    )
    write_files(tmp_path, {"pkg/__init__.py": "", "pkg/big.py": source})
    write_config(tmp_path, profile_rule("pkg.big"))
    script = CONCURRENT_SCRIPT.replace("N_FUNCTIONS", str(n_functions))
    procs = [Job(tmp_path, script).start() for _ in range(n_procs)]
    deadline = time.monotonic() + TIMEOUT
    while len(list(tmp_path.glob("ready.*"))) < n_procs and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.005)
    (tmp_path / "go").touch()
    runs = [finish(p) for p in procs]
    expected = sum(max(abs(i) + 2, i) for i in range(n_functions))
    for r in runs:
        data = r.ok().data
        assert data["total"] == expected
        assert len(data["stats"]) == n_functions
        assert set(data["stats"].values()) == {1}
    assert sum(r.data["counters"]["rewritten"] for r in runs) >= 1
    assert leftovers(tmp_path) == []
    assert pycache_files(tmp_path / "pkg") == {f"big.{TAG}.callweave.pyc", f"__init__.{TAG}.pyc"}
    after = run(tmp_path, script)  # "go" exists: no waiting
    assert after.ok().data["counters"] == {"rewritten": 0, "cache_hits": 1, "fallbacks": 0}


# --------------------------------------------------------------------------- matched / unmatched


def test_unmatched_module_imported_by_a_matched_one_gets_an_ordinary_pyc(tmp_path):
    write_files(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/matched.py": """\
            from pkg import helper

            def f():
                return helper.work() + 1
        """,
            "pkg/helper.py": """\
            def work():
                return len([1, 2])
        """,
        },
    )
    write_config(tmp_path, profile_rule("pkg.matched"))
    code = (
        INSTALL
        + """\
import pkg.matched
emit(result=pkg.matched.f(), matched=loader_name("pkg.matched"),
     helper=loader_name("pkg.helper"), **cw_state())
"""
    )
    data = run(tmp_path, code).ok().data
    assert data["result"] == 3
    assert (data["matched"], data["helper"]) == ("CallweaveLoader", "SourceFileLoader")
    assert data["stats"] == {"pkg.matched:f": 1}
    assert pycache_files(tmp_path / "pkg") == {
        f"__init__.{TAG}.pyc",
        f"helper.{TAG}.pyc",
        f"matched.{TAG}.callweave.pyc",
    }


THREADS_SCRIPT = (
    INSTALL
    + """\
import importlib, threading
sys.setswitchinterval(1e-6)
names = [f"thr.{kind}_{i}" for i in range(8) for kind in ("hot", "cold")]
barrier = threading.Barrier(len(names))
results, errors = {}, []
def worker(name):
    try:
        barrier.wait()
        results[name] = importlib.import_module(name).work()
    except BaseException as exc:
        errors.append(f"{name}: {exc!r}")
threads = [threading.Thread(target=worker, args=(n,)) for n in names]
for t in threads:
    t.start()
for t in threads:
    t.join(30)
emit(alive=[t.name for t in threads if t.is_alive()], errors=errors, results=results,
     loaders={n: loader_name(n) for n in [*names, "thr.shared_hot", "thr.shared_cold"]},
     **cw_state())
"""
)


def test_sixteen_threads_import_matched_and_unmatched_modules(tmp_path):
    files = {
        "thr/__init__.py": "",
        "thr/shared_hot.py": "def add(a, b):\n    return sum([a, b])\n",
        "thr/shared_cold.py": "def mul(a, b):\n    return abs(a * b)\n",
    }
    for kind in ("hot", "cold"):
        for i in range(8):
            files[f"thr/{kind}_{i}.py"] = (
                "from thr import shared_cold, shared_hot\n\n"
                f"def work():\n    return shared_hot.add({i}, shared_cold.mul({i}, 2))\n"
            )
    write_files(tmp_path, files)
    write_config(tmp_path, profile_rule("thr.hot_*", "thr.shared_hot"))
    for round_ in ("cold cache", "warm cache"):
        data = run(tmp_path, THREADS_SCRIPT).ok().data
        assert data["alive"] == [] and data["errors"] == [], round_
        assert data["results"] == {
            f"thr.{kind}_{i}": 3 * i for i in range(8) for kind in ("hot", "cold")
        }
        for name, loader in data["loaders"].items():
            hot = ".hot_" in name or name.endswith("shared_hot")
            assert loader == ("CallweaveLoader" if hot else "SourceFileLoader"), (round_, name)
        expected = {f"thr.hot_{i}:work": 1 for i in range(8)}
        expected["thr.shared_hot:add"] = 16
        assert data["stats"] == expected, round_
        counters = data["counters"]
        assert counters["rewritten"] + counters["cache_hits"] == 9, round_
        if round_ == "warm cache":
            assert counters["cache_hits"] == 9


def test_module_importing_in_a_thread_during_its_own_import_does_not_deadlock(tmp_path):
    write_files(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/starter.py": """\
            import importlib
            import threading

            box = {}

            def _load():
                box["child"] = importlib.import_module("pkg.child")

            _t = threading.Thread(target=_load)
            _t.start()
            _t.join(20)
            ALIVE = _t.is_alive()

            def run():
                return box["child"].value() + len([])
        """,
            "pkg/child.py": """\
            from pkg import leaf

            def value():
                return leaf.three() + len([])
        """,
            "pkg/leaf.py": "def three():\n    return 3\n",
        },
    )
    write_config(tmp_path, profile_rule("pkg.starter", "pkg.child"))
    code = (
        INSTALL
        + """\
import pkg.starter
emit(alive=pkg.starter.ALIVE, value=pkg.starter.run(), **cw_state())
"""
    )
    for _ in range(2):  # cold, then from the cache
        data = run(tmp_path, code, timeout=30).ok().data
        assert data["alive"] is False
        assert data["value"] == 3
        assert data["stats"] == {
            "pkg.starter:_load": 1,
            "pkg.starter:run": 1,
            "pkg.child:value": 1,
        }


# --------------------------------------------------------------------------- reload, install

RELOAD_FILES = {
    "pkg/__init__.py": "",
    "pkg/mod.py": "def f():\n    return abs(-1)\n",
    "cbs.py": """\
        seen = []

        def cb(total, limit, times, func):
            seen.append(func)
    """,
}
RELOAD_SCRIPT = (
    INSTALL
    + """\
import importlib, pathlib, cbs, pkg.mod
results = [pkg.mod.f()]
importlib.reload(pkg.mod)
results.append(pkg.mod.f())
loader_after = loader_name("pkg.mod")
pathlib.Path(pkg.mod.__file__).write_text("def f():\\n    return abs(-22)\\n")
importlib.reload(pkg.mod)
results.append(pkg.mod.f())
emit(results=results, loader_after=loader_after, loader_last=loader_name("pkg.mod"),
     callbacks=len(cbs.seen), last_func_is_current=cbs.seen[-1] is pkg.mod.f, **cw_state())
"""
)


def _reload(tmp_path: Path) -> dict:
    write_files(tmp_path, RELOAD_FILES)
    write_config(tmp_path, profile_rule("pkg.mod", time_limit=0, above="cbs:cb"))
    return run(tmp_path, RELOAD_SCRIPT).ok().data


def test_reload_keeps_instrumenting(tmp_path):
    data = _reload(tmp_path)
    assert data["results"] == [1, 1, 22]
    assert data["loader_after"] == data["loader_last"] == "CallweaveLoader"
    assert data["stats"] == {"pkg.mod:f": 3}
    assert data["callbacks"] == 3
    # The unchanged reload came from the cache, the edited one was rewritten.
    assert data["counters"] == {"rewritten": 2, "cache_hits": 1, "fallbacks": 0}


def test_reload_callbacks_receive_the_reloaded_function(tmp_path):
    assert _reload(tmp_path)["last_func_is_current"]


def test_install_twice_leaves_one_finder_and_uninstall_is_idempotent(tmp_path):
    write_files(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": SIMPLE_MOD,
            "pkg/other.py": SIMPLE_MOD,
        },
    )
    write_config(tmp_path, profile_rule("pkg.**"))
    code = """\
import warnings
import callweave, callweave.hook as h
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as first:
    warnings.simplefilter("always")
    f1 = callweave.install()
import pkg.mod
with warnings.catch_warnings(record=True) as second:
    warnings.simplefilter("always")
    f2 = callweave.install()
ours = [f for f in sys.meta_path if isinstance(f, h.CallweaveFinder)]
head = sys.meta_path[0] is f2
pkg.mod.f()
removed = [callweave.uninstall(), callweave.uninstall()]
left = [f for f in sys.meta_path if isinstance(f, h.CallweaveFinder)]
import pkg.other
emit(n_finders=len(ours), head=head, f2_ours=ours == [f2],
     removed=removed, left=len(left), active=h.active_finder() is None,
     other=loader_name("pkg.other"), mod=loader_name("pkg.mod"),
     warnings=[str(w.message) for w in first + second], **cw_state())
"""
    data = run(tmp_path, code).ok().data
    assert data["n_finders"] == 1 and data["f2_ours"] and data["head"]
    assert data["removed"] == [True, False]
    assert data["left"] == 0 and data["active"]
    assert (data["mod"], data["other"]) == ("CallweaveLoader", "SourceFileLoader")
    assert data["stats"] == {"pkg.mod:f": 1}
    # pkg.mod was imported through the first finder: it is instrumented, not "imported before
    # the hook was installed".
    assert data["warnings"] == []


PYTEST_FILES = {
    "pyproject.toml": """\
        [tool.callweave]
        report = "none"

        [[tool.callweave.wrap]]
        modules = ["test_sample"]
        wrapper = "recorder:record"

        [tool.pytest.ini_options]
        python_files = ["test_*.py"]
    """,
    "recorder.py": """\
        calls = []

        def record(fn, /, *args, **kwargs):
            calls.append(getattr(fn, "__name__", repr(fn)))
            return fn(*args, **kwargs)
    """,
    "conftest.py": """\
        import json
        import sys
        from pathlib import Path

        import callweave
        import callweave.hook

        callweave.install()

        def pytest_sessionfinish(session):
            import recorder

            Path("state.json").write_text(json.dumps({
                "counters": callweave.hook.counters(),
                "calls": recorder.calls,
                "loader": type(sys.modules["test_sample"].__loader__).__name__,
            }))
    """,
    "test_sample.py": """\
        import recorder


        def helper(x):
            return x + 1


        def test_wrapped():
            assert helper(1) == 2
            assert "helper" in recorder.calls


        def test_fails():
            a = 1
            b = 2
            assert a == b
    """,
}


def test_coexists_with_pytest_assertion_rewriting(tmp_path):
    write_files(tmp_path, PYTEST_FILES)
    args = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "test_sample.py"]
    for round_ in ("cold", "warm"):
        r = run_all(Job(tmp_path, args=args))[0]
        assert r.rc == 1, str(r)
        # pytest's introspection of the failing assert: assertion rewriting applied...
        assert "assert 1 == 2" in r.out, str(r)
        assert "PASSED test_sample.py::test_wrapped" in r.out, str(r)
        assert "1 failed, 1 passed" in r.out, str(r)
        # ...and so did callweave's wrapping, to the same module.
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["loader"] == "CallweaveLoader"
        assert "helper" in state["calls"]
        counters = state["counters"]
        if round_ == "cold":
            assert counters["rewritten"] == 1 and counters["cache_hits"] == 0
        else:
            assert counters["rewritten"] == 0 and counters["cache_hits"] == 1
    names = pycache_files(tmp_path)
    assert f"test_sample.{TAG}.callweave.pyc" in names
    assert not [n for n in names if n.startswith("test_sample.") and "pytest" in n]


# --------------------------------------------------------------------------- errors

SYNTAX_CASES = {
    "parse_error": "x = 1\ndef f(:\n    pass\n",
    "indentation": "def f():\nreturn 1\n",
    "tab_error": "if True:\n        x = 1\n\ty = 2\n",
    "break_outside_loop": "def f():\n    return len([])\n\nbreak\n",
    "nonlocal_at_module_level": "nonlocal x\n",
    "return_outside_function": "def f():\n    return 1\nreturn 2\n",
    "await_outside_async": "def f():\n    await g()\n",
    # Valid on 3.12+, a SyntaxError on 3.11: the running Python decides.
    "type_statement": "type X = int\n\ndef f():\n    return len([])\n",
    "undecodable": b'x = "\xe9"\n',
    "unknown_encoding": b"# coding: no-such-codec\nx = 1\n",
    "null_byte": b"x = 1\x00\n",
    "fine": "def f():\n    return len([])\n",
}
SYNTAX_SCRIPT = """\
import importlib, traceback
{install}
outcomes = {{}}
for name in NAMES:
    try:
        importlib.import_module("pkg." + name)
    except BaseException as exc:
        text = "".join(traceback.format_exception(exc))
        outcomes[name] = [type(exc).__name__, str(exc), getattr(exc, "filename", None),
                          getattr(exc, "lineno", None), getattr(exc, "offset", None),
                          getattr(exc, "end_lineno", None), getattr(exc, "end_offset", None),
                          getattr(exc, "text", None), "During handling" in text,
                          "ParseError" in text]
    else:
        outcomes[name] = ["ok", loader_name("pkg." + name)]
emit(outcomes=outcomes)
"""


def test_users_syntax_errors_stay_theirs(tmp_path):
    files: dict[str, str | bytes] = {"pkg/__init__.py": ""}
    for name, source in SYNTAX_CASES.items():
        files[f"pkg/{name}.py"] = source
    write_files(tmp_path, files)
    write_config(tmp_path, profile_rule("pkg.*"))
    script = SYNTAX_SCRIPT.replace("NAMES", repr(sorted(SYNTAX_CASES)))
    plain, hooked = run_all(
        Job(tmp_path, script.format(install=""), env=child_env(write_bytecode=False)),
        Job(tmp_path, script.format(install=INSTALL), env=child_env(write_bytecode=False)),
    )
    plain, hooked = plain.ok().data["outcomes"], hooked.ok().data["outcomes"]
    for name in SYNTAX_CASES:
        if plain[name][0] == "ok":
            assert hooked[name] == ["ok", "CallweaveLoader"], name
            continue
        assert hooked[name] == plain[name], name
    assert plain["parse_error"][0] == "SyntaxError"
    assert plain["parse_error"][2] == str(tmp_path / "pkg" / "parse_error.py")
    assert plain["parse_error"][3] == 2
    assert plain["indentation"][0] == "IndentationError"
    assert plain["undecodable"][2] == str(tmp_path / "pkg" / "undecodable.py")


# Two constructs Python accepts and the engine cannot profile (either makes the module fall
# back): a profiled function nested in one whose body must be re-indented, and a statement
# sharing the docstring's line.
UNREWRITABLE = '''\
def outer():
 def inner():
     return len([])
 return inner()


def documented():
    """doc"""; x = 1
    return abs(x)
'''


def test_module_the_engine_cannot_rewrite_imports_unmodified_with_one_warning(tmp_path):
    write_files(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/odd.py": UNREWRITABLE,
            "pkg/fine.py": SIMPLE_MOD,
        },
    )
    write_config(tmp_path, profile_rule("pkg.odd", "pkg.fine"))
    strict_dir = tmp_path / "strict"
    write_config(strict_dir, profile_rule("pkg.odd", "pkg.fine"), strict=True)
    shutil.copytree(tmp_path / "pkg", strict_dir / "pkg")
    recorded = (
        INSTALL
        + """\
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import pkg.odd, pkg.fine
emit(value=pkg.odd.outer() + pkg.odd.documented(), fine=pkg.fine.f(),
     loader=loader_name("pkg.odd"),
     names=[n for f in (pkg.odd.outer, pkg.odd.documented) for n in f.__code__.co_names
            if "callweave" in n],
     warnings=[[w.category.__name__, str(w.message), w.filename] for w in caught], **cw_state())
"""
    )
    default_filters = INSTALL + "import pkg.odd\nemit(value=pkg.odd.outer())\n"
    strict = (
        INSTALL
        + """\
try:
    import pkg.odd
except ImportError as exc:
    emit(error=type(exc).__name__, message=str(exc), name=exc.name,
         imported="pkg.odd" in sys.modules)
"""
    )
    rec, default, strict_run = run_all(
        Job(tmp_path, recorded), Job(tmp_path, default_filters), Job(strict_dir, strict)
    )
    data = rec.ok().data
    assert data["value"] == 1 and data["fine"] == 2
    assert data["names"] == []
    ((category, message, _filename),) = data["warnings"]
    assert category == "RuntimeWarning"
    assert "pkg.odd" in message and "cannot rewrite" in message
    assert data["counters"] == {"rewritten": 1, "cache_hits": 0, "fallbacks": 1}
    pkg_fine = {"pkg.fine:f"}
    assert set(data["stats"]) == pkg_fine
    default.ok()
    assert default.err.count("RuntimeWarning") == 1, str(default)
    sdata = strict_run.ok().data
    assert sdata["error"] == "ImportError"
    assert sdata["name"] == "pkg.odd" and "pkg.odd" in sdata["message"]
    assert sdata["imported"] is False


BOOM = '''\
class Box:
    def __init__(self, items):
        self.items = items

    def pick(self, i):
        return self.items[i]


def helper(d, key):
    return d[key]


def nested(x):
    data = {"a": [1, 2]}
    total = sum(
        helper(data, k)[x]
        for k in ("a",)
    )
    return total


def with_method(i):
    box = Box([1])
    return box.pick(i) + len([])


def one_column(x):
 """doc"""
 y = [x]
 return helper({}, y[0])


def deep(x):
    if x:
        return deep(x - 1) + abs(x)
    return Box(None).pick(0)


async def coro(x):
    return helper({}, abs(x))
'''
TRACEBACK_SCRIPT = """\
import asyncio, inspect, traceback
{install}
import boom
calls = {{
    "nested": lambda: boom.nested(5),
    "with_method": lambda: boom.with_method(3),
    "one_column": lambda: boom.one_column(1),
    "deep": lambda: boom.deep(3),
    "coro": lambda: asyncio.run(boom.coro(-4)),
}}
out = {{}}
for name, call in calls.items():
    try:
        call()
    except Exception as exc:
        frames = [fs for fs in traceback.extract_tb(exc.__traceback__)
                  if fs.filename == boom.__file__]
        out[name] = {{
            "frames": [[fs.name, fs.lineno, fs.end_lineno, fs.colno, fs.end_colno, fs.line]
                       for fs in frames],
            "text": traceback.format_list(frames) + traceback.format_exception_only(exc),
        }}
funcs = [boom.nested, boom.with_method, boom.one_column, boom.deep, boom.coro, boom.Box.pick]
emit(out=out, first_lines=[f.__code__.co_firstlineno for f in funcs],
     sources=[inspect.getsource(f) for f in funcs],
     rewritten="callweave" in sys.modules and callweave.hook.counters()["rewritten"])
"""


def test_tracebacks_point_at_the_real_lines(tmp_path):
    write_files(tmp_path, {"boom.py": BOOM})
    profile = write_config(tmp_path, profile_rule("boom"), name="profile.toml")
    wrap = write_config(tmp_path, wrap_rule("boom", wrapper="wr:wrap"), name="wrap.toml")
    write_files(tmp_path, {"wr.py": "def wrap(fn, /, *a, **k):\n    return fn(*a, **k)\n"})
    install = "import callweave, callweave.hook\ncallweave.install({!r})\n"
    env = child_env(write_bytecode=False)
    runs = run_all(
        Job(tmp_path, TRACEBACK_SCRIPT.format(install=""), env=env),
        Job(tmp_path, TRACEBACK_SCRIPT.format(install=install.format(str(profile))), env=env),
        Job(tmp_path, TRACEBACK_SCRIPT.format(install=install.format(str(wrap))), env=env),
    )
    plain, profiled, wrapped = (r.ok().data for r in runs)
    assert plain["rewritten"] is False
    assert profiled["rewritten"] == wrapped["rewritten"] == 1
    assert sorted(plain["out"]) == ["coro", "deep", "nested", "one_column", "with_method"]
    # Lines, columns (the ^^^ ranges) and the text as printed are those of a plain import.
    assert profiled["out"] == plain["out"]
    assert wrapped["out"] == plain["out"]
    for data in (profiled, wrapped):
        assert data["first_lines"] == plain["first_lines"]
        assert data["sources"] == plain["sources"]


def test_moved_tree_with_its_cache_names_the_new_path(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    write_files(old, {"boom.py": BOOM})
    write_config(old, profile_rule("boom"))
    code = (
        INSTALL
        + """\
import traceback, boom
try:
    boom.with_method(3)
except IndexError as exc:
    files = sorted({fs.filename for fs in traceback.extract_tb(exc.__traceback__)
                    if "boom" in fs.filename})
emit(files=files, code_file=boom.with_method.__code__.co_filename, **cw_state())
"""
    )
    first = run(old, code).ok().data
    assert first["files"] == [str(old / "boom.py")]
    old.rename(new)
    moved = run(new, code).ok().data
    assert moved["counters"]["cache_hits"] == 1
    assert moved["files"] == [str(new / "boom.py")]
    assert moved["code_file"] == str(new / "boom.py")


def test_modules_with_identical_source_keep_their_own_profiles(tmp_path):
    write_files(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": SIMPLE_MOD, "pkg/b.py": SIMPLE_MOD})
    write_config(tmp_path, profile_rule("pkg.a", "pkg.b"))
    code = (
        INSTALL
        + """\
import callweave, pkg.a, pkg.b
pkg.b.f(); pkg.b.f(); pkg.a.f()
emit(rows=sorted([s.module, s.qualname, s.count, s.filename] for s in callweave.stats()))
"""
    )
    for _ in range(2):  # rewritten, then from the cache
        rows = run(tmp_path, code).ok().data["rows"]
        assert rows == [
            ["pkg.a", "f", 1, str(tmp_path / "pkg" / "a.py")],
            ["pkg.b", "f", 2, str(tmp_path / "pkg" / "b.py")],
        ]


# --------------------------------------------------------------------------- configuration

CONFIG_ERRORS = {
    "unknown key": (
        profile_rule("shop.**") + "bogus_key = 1\n",
        "tool.callweave.profile[0].bogus_key",
        "unknown key",
    ),
    "unknown top-level key": (
        profile_rule("shop.**").replace("[[", 'colour = "red"\n\n[[', 1),
        "tool.callweave.colour",
        "unknown key",
    ),
    "bad module glob": (
        profile_rule("shop..api"),
        "tool.callweave.profile[0].modules[0]",
        "empty level",
    ),
    "bad function glob": (
        profile_rule("shop.**", functions=["[oops"]),
        "tool.callweave.profile[0].functions[0]",
        "unclosed character class",
    ),
    "bad duration": (
        profile_rule("shop.**", time_limit="5 parsecs"),
        "tool.callweave.profile[0].time_limit",
        "unknown unit",
    ),
    "negative duration": (
        profile_rule("shop.**", time_limit="-5ms"),
        "tool.callweave.profile[0].time_limit",
        "must not be negative",
    ),
    "unimportable wrapper": (
        wrap_rule("shop.**", wrapper="cw_no_such_module_xyz:trace"),
        "tool.callweave.wrap[0].wrapper",
        "cannot import module 'cw_no_such_module_xyz'",
    ),
    "missing wrapper attribute": (
        wrap_rule("shop.**", wrapper="json:no_such_function"),
        "tool.callweave.wrap[0].wrapper",
        "has no attribute 'no_such_function'",
    ),
    "unimportable callback": (
        profile_rule("shop.**", above="cw_no_such_module_xyz:cb"),
        "tool.callweave.profile[0].above",
        "cannot import module",
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_config_errors_at_install_name_key_and_reason(tmp_path, monkeypatch, case):
    rules, key, reason = CONFIG_ERRORS[case]
    monkeypatch.delenv("CALLWEAVE_CONFIG", raising=False)
    monkeypatch.delenv("CALLWEAVE_CONFIG_JSON", raising=False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    before = list(sys.meta_path)
    path = write_config(tmp_path, rules)
    with pytest.raises(ConfigError) as info:
        callweave.install(path)
    message = str(info.value)
    assert key in message and reason in message and str(path) in message, message
    assert sys.meta_path == before
    assert not any(isinstance(f, CallweaveFinder) for f in sys.meta_path)
    assert "CALLWEAVE_CONFIG_JSON" not in os.environ


AUTO_SCRIPT = """\
import callweave.auto, callweave.hook
import app.core
emit(active=callweave.hook.active_finder() is callweave.auto.finder,
     config=str(callweave.auto.finder.config.path), loader=loader_name("app.core"),
     result=app.core.run(), **cw_state())
"""


def test_import_callweave_auto_installs_the_hook_from_CALLWEAVE_CONFIG(tmp_path):
    project, conf = tmp_path / "project", tmp_path / "conf"
    write_files(
        project,
        {
            "app/__init__.py": "",
            "app/core.py": "def run():\n    return len([1]) + abs(-1)\n",
        },
    )
    # A pyproject.toml the search would find; the file named by CALLWEAVE_CONFIG wins.
    write_config(project, profile_rule("decoy"))
    config = write_config(conf, profile_rule("app.**"), name="callweave.toml")
    bad = write_config(conf, profile_rule("app.**", time_limit="fast"), name="bad.toml")
    good, broken = run_all(
        Job(project, AUTO_SCRIPT, env=child_env(CALLWEAVE_CONFIG=str(config))),
        Job(project, AUTO_SCRIPT, env=child_env(CALLWEAVE_CONFIG=str(bad))),
    )
    data = good.ok().data
    assert data["active"] and data["config"] == str(config)
    assert data["loader"] == "CallweaveLoader"
    assert data["result"] == 2 and data["stats"] == {"app.core:run": 1}
    assert broken.rc != 0
    assert "ConfigError" in broken.err
    assert "tool.callweave.profile[0].time_limit" in broken.err and str(bad) in broken.err


def test_warning_names_matched_modules_imported_before_install(tmp_path):
    write_files(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/early.py": SIMPLE_MOD,
            "pkg/late.py": SIMPLE_MOD,
            "other/__init__.py": "",
            "other/x.py": SIMPLE_MOD,
        },
    )
    write_config(tmp_path, profile_rule("pkg.**"))
    code = """\
import warnings
import pkg.early, other.x
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import callweave
    callweave.install()
import pkg.late
emit(warnings=[[w.category.__name__, str(w.message), w.filename] for w in caught],
     early=loader_name("pkg.early"), late=loader_name("pkg.late"))
"""
    data = run(tmp_path, code).ok().data
    ((category, message, filename),) = data["warnings"]
    assert category == "RuntimeWarning"
    assert message.endswith(": pkg, pkg.early")
    assert "other" not in message and "pkg.late" not in message
    assert filename == "<string>"  # the caller of install(), not callweave
    assert (data["early"], data["late"]) == ("SourceFileLoader", "CallweaveLoader")


# --------------------------------------------------------------------------- cache file safety


def test_cache_file_mode_follows_the_source_like_ordinary_pyc(tmp_path):
    # Issue 7 item 25 (repro 08a): under umask 000 the cache file was world-writable.
    pkg = simple_project(tmp_path)
    (pkg / "mod.py").chmod(0o640)
    (pkg / "plain.py").write_text("x = 1\n")
    (pkg / "plain.py").chmod(0o640)
    code = "import os\nos.umask(0)\n" + INSTALL + "import pkg.mod, pkg.plain\nemit(ok=1)\n"
    run(tmp_path, code).ok()
    cache = pkg / "__pycache__"
    ours = (cache / f"mod.{TAG}.callweave.pyc").stat().st_mode & 0o777
    plain = (cache / f"plain.{TAG}.pyc").stat().st_mode & 0o777
    assert ours == plain == 0o640


def test_cache_writer_never_follows_a_link_at_its_temporary_name(tmp_path):
    # Issue 7 item 25 (repro 08b): the temporary file was opened without O_EXCL.
    pkg = simple_project(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("important data\n")
    code = (
        "import importlib.util, os, threading\n"
        "cache = importlib.util.cache_from_source(os.path.abspath('pkg/mod.py'))[:-4]\n"
        "os.makedirs(os.path.dirname(cache), exist_ok=True)\n"
        "tmp = f'{cache}.callweave.pyc.{os.getpid()}.{threading.get_ident()}.tmp'\n"
        "os.symlink(os.path.abspath('victim.txt'), tmp)\n"
        + INSTALL
        + "import pkg.mod\nemit(result=pkg.mod.f(), **cw_state())\n"
    )
    data = run(tmp_path, code).ok().data
    assert data["result"] == 2 and data["stats"] == {"pkg.mod:f": 1}
    assert victim.read_text() == "important data\n"
    assert not (pkg / "__pycache__" / f"mod.{TAG}.callweave.pyc").exists()


# --------------------------------------------------------------------------- runtime names

DESCRIPTOR_FILES = {
    "cbs.py": """\
        seen = {}

        def cb(total, limit, times, func):
            seen[func.__qualname__] = func
    """,
    "lazymod.py": """\
        import functools

        calls = []


        class lazyclassproperty:
            # Like pyparsing.unicode._lazyclassproperty: runs user code on class access.
            def __init__(self, fn):
                self.fn = fn

            def __get__(self, obj, cls):
                calls.append(self.fn.__name__)
                raise RuntimeError("only valid once the package is fully imported")


        class Meta(type):
            def __getattribute__(cls, name):
                calls.append("meta:" + name)
                return super().__getattribute__(name)


        class Charset(metaclass=Meta):
            @lazyclassproperty
            def letters(cls):
                return len("abc")

            def method(self):
                return len("m")

            @staticmethod
            def static():
                return len("s")

            @classmethod
            def klass(cls):
                return len("c")

            @property
            def prop(self):
                return len("p")

            class Inner:
                def deep(self):
                    return len("d")


        def plain():
            return len("x")


        def deco(f):
            @functools.wraps(f)
            def inner(*a):
                return f(*a)
            return inner


        @deco
        def decorated():
            return len("y")
    """,
}
DESCRIPTOR_SCRIPT = (
    INSTALL
    + """\
import cbs, lazymod
during_import = list(lazymod.calls)
C = lazymod.Charset
C.method(None), C.static(), C.klass(), C.__dict__["prop"].fget(None)
C.__dict__["Inner"].deep(None), lazymod.plain(), lazymod.decorated()
expected = {
    "Charset.method": C.__dict__["method"],
    "Charset.static": C.__dict__["static"].__func__,
    "Charset.klass": C.__dict__["klass"].__func__,
    "Charset.prop": C.__dict__["prop"].fget,
    "Charset.Inner.deep": C.__dict__["Inner"].__dict__["deep"],
    "plain": lazymod.plain,
    "decorated": lazymod.decorated.__wrapped__,
    "deco.<locals>.inner": None,
}
emit(during_import=during_import,
     functions={q: f is expected[q] if expected[q] is not None else type(f).__name__
                for q, f in cbs.seen.items() if q in expected})
"""
)


def test_loader_runs_no_descriptor_and_callbacks_get_the_functions(tmp_path):
    # Issue 7 item 2 (hook/descriptor): the loader walked qualnames with getattr after exec,
    # running descriptors' __get__ (pyparsing's _lazyclassproperty) and metaclass hooks.
    write_files(tmp_path, DESCRIPTOR_FILES)
    write_config(tmp_path, profile_rule("lazymod", time_limit=0, above="cbs:cb"))
    for _ in ("cold", "cached"):
        data = run(tmp_path, DESCRIPTOR_SCRIPT).ok().data
        assert data["during_import"] == []
        assert data["functions"] == {
            "Charset.method": True,
            "Charset.static": True,
            "Charset.klass": True,
            "Charset.prop": True,
            "Charset.Inner.deep": True,
            "plain": True,
            "decorated": True,
            # Not reachable from the module's namespaces: described, not found.
            "deco.<locals>.inner": "_Described",
        }


IMPORT_WARNING_FILES = {
    "oldapi.py": """\
        import warnings

        warnings.warn("oldapi is deprecated", DeprecationWarning, stacklevel=2)


        def f():
            return len("x")
    """,
    "main.py": """\
        import sys, warnings
        import callweave
        callweave.install()
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            import oldapi  # line 6
        print("@@CW", rec[0].filename, rec[0].lineno, oldapi.f())
    """,
}


@pytest.mark.parametrize("mode", ["wrap", "profile"])
def test_import_time_warning_is_attributed_to_the_importing_line(tmp_path, mode):
    # Issue 7 item 28 (hook/import_warning): the loader's exec_module frame sat between
    # importlib and the module, so stacklevel=2 named callweave/hook.py.
    files = dict(IMPORT_WARNING_FILES, **{"passthrough.py": PASSTHROUGH})
    write_files(tmp_path, files)
    rule = (
        wrap_rule("oldapi", wrapper="passthrough:passthrough")
        if mode == "wrap"
        else profile_rule("oldapi")
    )
    write_config(tmp_path, rule)
    for _ in ("cold", "cached"):
        r = run_all(Job(tmp_path, args=["main.py"]))[0].ok()
        line = next(x for x in r.out.splitlines() if x.startswith("@@CW"))
        assert line.split()[1:] == [str(tmp_path / "main.py"), "6", "1"]


PASSTHROUGH = """\
def passthrough(call, /, *args, **kwargs):
    return call(*args, **kwargs)
"""

SHUTDOWN_FILES = {
    "passthrough.py": PASSTHROUGH,
    "tempres.py": """\
        import os


        class TempFile:
            def __init__(self, path):
                self.path = path
                open(path, "w").close()

            def __del__(self):
                os.unlink(self.path)


        def gen(path):
            try:
                yield 1
            finally:
                os.unlink(path)


        KEEP = TempFile("by_del.tmp")
        open("by_generator.tmp", "w").close()
        SUSPENDED = gen("by_generator.tmp")
        next(SUSPENDED)
    """,
}


@pytest.mark.parametrize("mode", ["wrap", "profile"])
def test_cleanup_code_runs_at_interpreter_shutdown(tmp_path, mode):
    # Issue 7 item 29 (hook/shutdown): CPython restores the builtins dict before the last
    # garbage collection; rewritten code that found its runtime in builtins raised NameError.
    write_files(tmp_path, SHUTDOWN_FILES)
    rule = (
        wrap_rule("tempres", wrapper="passthrough:passthrough")
        if mode == "wrap"
        else profile_rule("tempres")
    )
    write_config(tmp_path, rule)
    for _ in ("cold", "cached"):
        r = run(tmp_path, INSTALL + "import tempres\nemit(loader=loader_name('tempres'))\n")
        assert r.ok().data["loader"] == "CallweaveLoader"
        assert "Error" not in r.err, str(r)
        assert sorted(p.name for p in tmp_path.glob("*.tmp")) == []


RELOAD_GROWTH_SCRIPT = (
    INSTALL
    + """\
import builtins, importlib, os, time
from callweave.profiler import RUNTIME_NAMES
import rmod
path = rmod.__file__
stale = rmod.f
sizes = []
for i in range(1, 41):
    with open(path, "w") as fh:
        fh.write(SOURCE.format(i=i))
    os.utime(path, (time.time() + i, time.time() + i))
    importlib.invalidate_caches()
    importlib.reload(rmod)
    sizes.append((len(vars(builtins)), len(vars(rmod))))
in_builtins = sorted(n for n in vars(builtins) if n.startswith("__callweave"))
del stale  # the first version's names leave the module at the next reload
importlib.reload(rmod)
emit(sizes=sizes, in_builtins=in_builtins, f=rmod.f(),
     names_after=sorted(n.split("_")[3] for n in vars(rmod) if n.startswith("__callweave")),
     runtime=sorted(n.split("_")[3] for n in RUNTIME_NAMES),
     **cw_state())
"""
)
RELOAD_SOURCE = """\
import sys


def f():
    return abs(-{i}) + len(sys.argv[:0])
"""


def test_edited_reloads_do_not_grow_builtins_or_the_module(tmp_path):
    # Issue 7 item 19 (repro 22): each edited reload left new names in builtins.
    write_files(tmp_path, {"rmod.py": RELOAD_SOURCE.format(i=0), "wr.py": WRAP_SITE})
    write_config(tmp_path, profile_rule("rmod"), wrap_rule("rmod", wrapper="wr:w"), extra="")
    cfg = (tmp_path / "pyproject.toml").read_text() + "pass_site = true\n"
    (tmp_path / "pyproject.toml").write_text(cfg)
    script = RELOAD_GROWTH_SCRIPT.replace("SOURCE", repr(RELOAD_SOURCE))
    data = run(tmp_path, script).ok().data
    sizes = data["sizes"]
    assert {b for b, _ in sizes} == {sizes[0][0]}
    # Bounded: a version's names leave once no code using them is alive (``stale`` holds the
    # first version; the previous one is alive while the next is being bound).
    assert {m for _, m in sizes[1:]} == {sizes[1][1]}
    assert data["names_after"] == sorted([*data["runtime"], "enter", "sites", "wrap"])
    assert data["in_builtins"] == []
    assert data["f"] == 40
    assert data["stats"] == {"rmod:f": 1}


WRAP_SITE = """\
def w(call, site, /, *args, **kwargs):
    return call(*args, **kwargs)
"""

BUILTINS_SCRIPT = (
    INSTALL
    + """\
import builtins, importlib.util, os
import bmod
normal = sorted(n for n in vars(builtins) if n.startswith("__callweave"))
for name in normal:
    delattr(builtins, name)
after_cleaning = bmod.f(1)
loader = importlib.util.find_spec("bmod").loader
counts = []
for i in range(3):
    with open(bmod.__file__, "a") as fh:
        fh.write(f"# edit {i}\\n")
    code = loader.get_code("bmod")
    counts.append(len([n for n in vars(builtins) if n.startswith("__callweave")]))
    g = {"__name__": "direct"}
    exec(code, g)
    assert g["f"](1) == 3
emit(normal=normal, after_cleaning=after_cleaning, counts=counts, **cw_state())
"""
)


def test_imported_code_does_not_depend_on_builtins(tmp_path):
    # Issue 7 item 22 (repro 26): a library cleaning builtins broke every rewritten module;
    # a direct get_code() caller still gets its names as builtins, replaced per version.
    write_files(
        tmp_path,
        {"bmod.py": "def helper(x):\n    return x * 2\n\n\ndef f(x):\n    return helper(x) + 1\n"},
    )
    write_config(tmp_path, profile_rule("bmod"))
    data = run(tmp_path, BUILTINS_SCRIPT).ok().data
    assert data["normal"] == []
    assert data["after_cleaning"] == 3
    counts = data["counts"]
    assert counts == [counts[0]] * 3 and counts[0] > 0


LATIN_MOD = b"# Author: Fran\xe7ois\ndef g(x):\n    return len(str(x)) + 1 // x  # \xe9\xe8\n"
LATIN_SCRIPT = (
    INSTALL
    + """\
import traceback
import latin
ok = latin.g(1)
try:
    latin.g(0)
except ZeroDivisionError as exc:
    fs = traceback.extract_tb(exc.__traceback__)[-1]
    where = [fs.lineno, fs.colno, fs.end_colno]
emit(ok=ok, where=where, loader=loader_name("latin"), **cw_state())
"""
)


def test_non_utf8_bytes_in_a_comment_import_rewritten(tmp_path):
    # Issue 7 item 8 (repro 03): CPython does not decode comments; the hook decoded the whole
    # file and failed with an error naming neither module nor file.
    write_files(tmp_path, {"latin.py": LATIN_MOD})
    write_config(tmp_path, profile_rule("latin"))
    for _ in ("cold", "cached"):
        r = run(tmp_path, LATIN_SCRIPT).ok()
        assert r.err == ""
        data = r.data
        assert data["ok"] == 2 and data["where"] == [3, 25, 31]
        assert data["loader"] == "CallweaveLoader"
        assert data["stats"] == {"latin:g": 2}


# --------------------------------------------------------------------------- pytest, any order

ORDER_FILES = {
    "pkg/__init__.py": "",
    "pkg/calc.py": "def add(a, b):\n    return int(a) + int(b)\n",
    "tests/test_calc.py": """\
        from pkg import calc


        def test_add():
            assert calc.add(1, 2) == 3


        def test_add2():
            assert calc.add(2, 2) == 4
    """,
    "pyproject.toml": """\
        [tool.callweave]
        report = "json:reports/r.json"

        [[tool.callweave.profile]]
        modules = ["pkg.**", "test_calc"]
        time_limit = "1s"

        [tool.pytest.ini_options]
        pythonpath = ["."]
    """,
}


def _profiled(root: Path) -> list[str]:
    names: set[str] = set()
    for report in (root / "reports").glob("*.json"):
        data = json.loads(report.read_text())
        names |= {f["qualname"] for f in data["functions"] if f["count"]}
    return sorted(names)


def _order_args(how: str) -> list[str]:
    pytest_args = ["-q", "-p", "no:cacheprovider", "tests"]
    if how == "callweave run -m pytest":
        script = Path(sys.executable).with_name("callweave")
        if not script.exists():
            pytest.skip("the callweave console script is not installed in this environment")
        return [str(script), "run", "-m", "pytest", *pytest_args]
    pytest.importorskip("xdist")
    return [sys.executable, "-m", "pytest", "-n", "2", *pytest_args]


@pytest.mark.parametrize("how", ["callweave run -m pytest", "xdist"])
def test_pytest_test_modules_are_instrumented_whatever_the_install_order(tmp_path, how):
    # Issue 7 item 15 (repro 17): installed before pytest's AssertionRewritingHook, callweave's
    # finder never saw the test modules pytest claimed.
    write_files(tmp_path, ORDER_FILES)
    if how == "xdist":
        (tmp_path / "tests" / "conftest.py").write_text("import callweave.auto  # noqa: F401\n")
    argv = _order_args(how)
    for _ in ("cold", "cached"):
        shutil.rmtree(tmp_path / "reports", ignore_errors=True)
        p = subprocess.run(argv, cwd=tmp_path, env=child_env(), capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "2 passed" in p.stdout
        assert _profiled(tmp_path) == ["add", "test_add", "test_add2"]


PICKLE_SCRIPT = (
    INSTALL
    + """\
import pickle, pmod
# What pickling a function by value (cloudpickle) takes along: the globals its code names.
code = pmod.f.__code__
names = sorted(n for n in code.co_names if n.startswith("__callweave"))
runtime = {n: vars(pmod)[n] for n in names}
again = pickle.loads(pickle.dumps(runtime))
ns = dict(vars(pmod))
ns.update(again)
import types
g = types.FunctionType(code, ns)
emit(names=len(names), f=g(3), types=sorted({type(v).__name__ for v in runtime.values()}),
     **cw_state())
"""
)


def test_runtime_objects_in_module_globals_pickle(tmp_path):
    # attrs' cloudpickle test failed: pickling a rewritten function by value takes its globals
    # along, and the trampoline, the entry table and the binder could not be pickled.
    write_files(
        tmp_path,
        {
            "pmod.py": "def f(x, *a):\n    return abs(-x) + len(a) + max(*[x, 1])\n",
            "wr.py": "def w(call, /, *args, **kwargs):\n    return call(*args, **kwargs)\n",
        },
    )
    write_config(tmp_path, profile_rule("pmod"), wrap_rule("pmod", wrapper="wr:w"))
    data = run(tmp_path, PICKLE_SCRIPT).ok().data
    assert data["f"] == 3 + 0 + 3
    assert data["names"] >= 4
    assert {"Trampoline", "Binder", "builtin_function_or_method"} <= set(data["types"])
    assert data["stats"] == {"pmod:f": 1}


LAZY_SCRIPT = (
    INSTALL
    + """\
from callweave import _native
import pkg.mod
before = sorted(p.qualname for p in _native.all_profiles())
first = pkg.mod.f()
after_f = sorted(p.qualname for p in _native.all_profiles())
emit(before=before, first=first, after_f=after_f, **cw_state())
"""
)


def test_warm_import_registers_a_profiled_function_on_its_first_entry(tmp_path):
    # Issue 10: a warm import registered every profiled function of the module (1 ms for
    # pydoc's 152); now each is registered when first entered, and stats() still lists all.
    write_files(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": """\
                def f():
                    return g() + abs(-1)
                def g():
                    return 1
                def h():
                    return len("never")
                """,
        },
    )
    write_config(tmp_path, profile_rule("pkg.mod"))
    cold = run(tmp_path, LAZY_SCRIPT).ok().data
    warm = run(tmp_path, LAZY_SCRIPT).ok().data
    assert cold["counters"]["rewritten"] == 1
    assert warm["counters"]["cache_hits"] == 1
    for data in (cold, warm):
        assert data["before"] == []
        assert data["first"] == 2
        assert data["after_f"] == ["f", "g"]
        # Reports list every profiled function, those that never ran included.
        assert data["stats"] == {"pkg.mod:f": 1, "pkg.mod:g": 1, "pkg.mod:h": 0}


def test_cache_note_says_when_bytecode_is_not_written(tmp_path):
    code = "from callweave import _pycache\nemit(note=_pycache.cache_note())\n"
    quiet = run(tmp_path, code).ok().data["note"]
    assert quiet is None
    note = run(tmp_path, code, env=child_env(write_bytecode=False)).ok().data["note"]
    assert "PYTHONDONTWRITEBYTECODE is set" in note
    assert "not cached" in note
    flag = run(tmp_path, code, flags=["-B"]).ok().data["note"]
    assert "python -B" in flag


def test_cache_meta_rows_round_trip_and_bad_offsets_are_caught():
    # Format 7 keeps the profiled functions' rows in one blob with a table of offsets.
    from callweave import _pycache

    site = ("g()", "g", 2, 2, 4, 7)
    rows = [("f", 1, 0, [site]), ("C.m", 5, 1, [])]
    functions = [(q, line, [r], (i, r, [])) for i, (q, line, r, _s) in enumerate(rows)]
    meta = _pycache.EntryMeta.of_rewrite(functions, [], [], keep_sites=False)
    stored = meta.stored()
    loaded = _pycache.valid_meta(stored)
    assert loaded is not None and loaded.profiled == 2
    assert loaded.profile(1, range(2)) == ("C.m", 5, 1, [])
    assert loaded.profile(0, range(2)) == ("f", 1, 0, [])
    assert loaded.stored() == stored
    empty = _pycache.EntryMeta.of_rewrite([], [], [], keep_sites=False)
    assert _pycache.valid_meta(empty.stored()).profiled == 0
    profiles, offsets, sites, names, crc, slots = stored
    # Offsets that do not end at the blob's end, a checksum that does not match: not ours.
    assert _pycache.valid_meta((profiles, offsets[:-4], sites, names, crc, slots)) is None
    assert _pycache.valid_meta((profiles, offsets, sites, names, crc + 1, slots)) is None
    # Offsets out of order with a matching checksum (not written by callweave): an error on use.
    swapped = offsets[4:8] + offsets[:4] + offsets[8:]
    crc = _pycache._crc(profiles, swapped, sites, names)
    bad = _pycache.valid_meta((profiles, swapped, sites, names, crc, slots))
    assert bad is not None
    with pytest.raises(RuntimeError, match="malformed"):
        bad.profile(0, range(2))


def test_a_corrupt_payload_length_is_a_miss_without_reading_that_much(tmp_path):
    # The header's payload length is read before anything is checked: a corrupt one past the
    # file's end had read() allocate its 4 GiB (a MemoryError, or that much memory held).
    import tracemalloc

    from callweave import _pycache

    entry = tmp_path / "m.callweave.pyc"
    header = importlib.util.MAGIC_NUMBER + (3).to_bytes(4, "little") + bytes(40)
    entry.write_bytes(header + b"\xff\xff\xff\xff" + b"payload")
    tracemalloc.start()
    try:
        assert _pycache.read_entry(str(entry)) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_cache_checksum_is_zlibs_crc32_of_the_blobs_in_a_row():
    # The native CRC-32 of the function table's blobs is zlib's: entries keep their checksum.
    import zlib

    from callweave import _native, _pycache

    blobs = (b"\x00\xff" * 5000 + b"tail", b"\x01\x02\x03\x04", b"", bytes(range(256)) * 3)
    expected = 0
    for blob in blobs:
        expected = zlib.crc32(blob, expected)
    assert _native.crc32(*blobs) == expected == _pycache._crc(*blobs)
    assert _native.crc32() == 0
    with pytest.raises(TypeError):
        _native.crc32("not bytes")  # type: ignore[arg-type]


NATIVE_REGISTRATION_SCRIPT = (
    INSTALL
    + """\
from callweave import profiler
import cb, pkg.mod
g = pkg.mod.g()
after_g = [(t.__class__.__name__, i, p.qualname) for t, i, p in profiler.REGISTERED]
f = pkg.mod.f()
finders = sorted(q for (m, q, _line) in profiler.FUNCTION_FINDERS if m == "pkg.mod")
emit(g=g, f=f, after_g=after_g, after_f=len(profiler.REGISTERED), seen=cb.seen,
     finders=finders, **cw_state())
"""
)


def test_warm_first_entry_registers_natively_and_callbacks_still_find_functions(tmp_path):
    # Issue 10: a function of a module loaded from the cache is registered by the native
    # table on its first entry (no Python code runs); the hook's bookkeeping for it is done
    # when something reads it, here a callback that is given the function object.
    write_files(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": """\
                def f():
                    return abs(-2)
                def g():
                    return abs(-1)
                """,
            "cb.py": """\
                seen = []
                def below(total, limit, times, func):
                    seen.append(func.__qualname__ if func is not None else None)
                """,
        },
    )
    rules = (
        '[[tool.callweave.profile]]\nmodules = ["pkg.mod"]\nfunctions = ["f"]\n'
        'time_limit = "100s"\nbelow = "cb:below"\n'
        '[[tool.callweave.profile]]\nmodules = ["pkg.mod"]\nfunctions = ["g"]\n'
        'time_limit = "100s"\n'
    )
    write_config(tmp_path, rules)
    cold = run(tmp_path, NATIVE_REGISTRATION_SCRIPT).ok().data
    warm = run(tmp_path, NATIVE_REGISTRATION_SCRIPT).ok().data
    assert cold["counters"]["rewritten"] == 1
    assert warm["counters"]["cache_hits"] == 1
    assert cold["after_g"] == []  # a fresh rewrite's table asks the hook
    assert warm["after_g"] == [["_LazyTable", 1, "g"]]
    for data in (cold, warm):
        assert (data["g"], data["f"]) == (1, 2)
        assert data["after_f"] == 0
        assert data["seen"] == ["f"]
        assert data["finders"] == ["f", "g"]


def test_the_hooks_source_hash_is_importlibs():
    # The key suffix's digest is hashed without importlib.util's wrapper: the same digest.
    import importlib.util

    from callweave import hook

    for data in (b"", b"abc", bytes(range(256)) * 10):
        assert hook._source_hash(hook._RAW_MAGIC, data) == importlib.util.source_hash(data)
