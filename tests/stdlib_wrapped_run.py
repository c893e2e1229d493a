"""Run a standard-library test module, optionally with the modules it tests fully rewritten.

With ``--wrap``, every call in every function of the named modules goes through a pass-through
wrapper that counts calls: each module's source is rewritten with
``compile_rewritten(source, filename, [Rule("wrap", {"wrapper": "__callweave_wrap__"})])`` and
executed in a fresh module whose namespace holds the wrapper (and the native call binder, which
calls with ``*`` or ``**`` arguments go through). The rewriting is done by a finder placed
first on ``sys.meta_path``, so the modules are rewritten whenever they are imported, including
the fresh copies that ``test.support.import_helper.import_fresh_module`` makes (``test.test_json``
imports ``json`` twice more that way, with and without ``_json``). The named modules are
imported eagerly in the order given (packages first), then the test module is loaded and run
with unittest. Without ``--wrap`` the same harness runs the tests on the plain modules.

The last line of standard output is ``RESULT_MARKER`` followed by a JSON object: tests run,
failing and erroring test ids, skips, the wrapper's call count and, per rewritten module, how
many times it was loaded and how many call sites it has.

    python tests/stdlib_wrapped_run.py test.test_json --wrap json json.decoder json.scanner
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import json
import sys
import unittest
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from callweave import _native
from callweave._compile import compile_rewritten

RESULT_MARKER = "CALLWEAVE-STDLIB-RESULT "
WRAPPER_NAME = "__callweave_wrap__"
RULES = [_native.Rule("wrap", {"wrapper": WRAPPER_NAME})]

_calls = 0
_loads: dict[str, int] = {}
_sites: dict[str, int] = {}


def wrap(call: Any, /, *args: Any, **kwargs: Any) -> Any:
    """The pass-through wrapper every rewritten call goes through; counts the calls."""
    global _calls
    _calls += 1
    return call(*args, **kwargs)


class RewritingLoader(importlib.machinery.SourceFileLoader):
    """Loads a source module rewritten so that every call in every function is wrapped."""

    def get_code(self, fullname: str) -> Any:
        """Reads, decodes, rewrites and compiles the module's source (no bytecode cache)."""
        source = importlib.util.decode_source(self.get_data(self.path))
        code, result = compile_rewritten(source, self.path, RULES)
        _sites[fullname] = len(result.sites)
        return code

    def exec_module(self, module: ModuleType) -> None:
        """Puts the wrapper and the binder in the module's namespace, then runs the code."""
        module.__dict__[WRAPPER_NAME] = wrap
        module.__dict__[_native.BIND_NAME] = _native.bind_call
        _loads[module.__name__] = _loads.get(module.__name__, 0) + 1
        super().exec_module(module)


class RewritingFinder:
    """A meta-path finder that gives the named source modules a `RewritingLoader`."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """Finds the module's ordinary spec and swaps in the rewriting loader."""
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            raise ImportError(f"{fullname} is not a plain source module", name=fullname)
        spec.loader = RewritingLoader(fullname, spec.origin)
        return spec


def install(names: Sequence[str]) -> list[ModuleType]:
    """Installs the rewriting finder and imports ``names`` in order, rewritten.

    Args:
        names: Module names, each package before its submodules.

    Returns:
        The rewritten modules, now in ``sys.modules``.

    Raises:
        RuntimeError: A module was already imported plainly and could not be replaced.
    """
    sys.meta_path.insert(0, RewritingFinder(names))
    for name in names:
        sys.modules.pop(name, None)
    modules = [importlib.import_module(name) for name in names]
    for module in modules:
        if not isinstance(module.__loader__, RewritingLoader):
            raise RuntimeError(f"{module.__name__} was not loaded rewritten")
        if sys.modules[module.__name__] is not module:
            raise RuntimeError(f"{module.__name__} was replaced in sys.modules")
    return modules


def run_tests(test_module: str, only: Sequence[str]) -> unittest.TestResult:
    """Loads ``test_module`` (honouring its ``load_tests``) and runs it; ``only``: test names."""
    loader = unittest.defaultTestLoader
    if only:
        suite = loader.loadTestsFromNames([f"{test_module}.{name}" for name in only])
    else:
        suite = loader.loadTestsFromName(test_module)
    return unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(suite)


def main(argv: Sequence[str] | None = None) -> int:
    """Script entry point: 0 when every test passed, 1 when some failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test_module", help="e.g. test.test_json")
    parser.add_argument(
        "--wrap",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="modules to rewrite, packages before their submodules",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="NAME",
        help="run only these tests of the module (e.g. a TestCase class)",
    )
    args = parser.parse_args(argv)
    if args.wrap:
        install(args.wrap)
    result = run_tests(args.test_module, args.only)
    report = {
        "python": sys.version.split()[0],
        "tests_run": result.testsRun,
        "failures": sorted(test.id() for test, _ in result.failures),
        "errors": sorted(test.id() for test, _ in result.errors),
        "unexpected_successes": sorted(test.id() for test in result.unexpectedSuccesses),
        "skipped": len(result.skipped),
        "expected_failures": len(result.expectedFailures),
        "wrapped_calls": _calls,
        "loads": _loads,
        "sites": _sites,
    }
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps(report, sort_keys=True), flush=True)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
