"""The ``callweave`` command: ``run``, ``show``, ``check`` and ``report``.

``callweave run [--profile MOD:FUNC ...] [--wrap MOD:FUNC=pkg.mod:callable ...]
[--time-limit 50ms] [--report text|json:PATH|pstats:PATH|html:PATH]
(script.py | -m module) [args...]``
runs a program with the import hook installed (rules from ``[tool.callweave]`` plus the
command line), instruments ``__main__`` too, and exits with the program's exit code.

``callweave show MODULE[:QUALNAME] [--diff]`` prints a module's rewritten source.
``callweave check`` validates the configuration: it imports the callables it names
(wrappers, callbacks, transformers: a missing or non-callable one is an error), lists what
it would rewrite (and, for each ``[[tool.callweave.transform]]`` rule, the functions it
would transform), and reports every rule glob that matches nothing (see
:mod:`callweave._rulecheck`; errors under ``strict = true``, else warnings). Neither imports
the modules it rewrites; ``show`` imports the modules of the users' ``NodeTransformer``
classes a module's transform rules name (as the hook does when it is installed), to show
their result.

Errors are one line on stderr (``callweave: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import importlib.machinery
import importlib.util
import os
import re
import runpy
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from callweave import _native, _pycache
from callweave._compile import decode_source, raise_users_syntax_error
from callweave.config import (
    CallbackSpec,
    Config,
    ProfileRule,
    Report,
    WrapRule,
    load_config,
    parse_duration,
)
from callweave.errors import CallweaveError, ConfigError, ParseError

__all__ = ["main"]


_DURATION_HINT = "such as 50ms, 1.5s or 1m30s"


def _split_target(text: str, option: str) -> tuple[str, tuple[str, ...] | None]:
    """``MODULE[:FUNCTION]`` of ``--profile``/``--wrap``, checked as the config checks globs."""
    module, sep, func = text.partition(":")
    if not module or (sep and not func) or ":" in func:
        raise ConfigError(f"{option} {text!r}: expected MODULE or MODULE:FUNCTION")
    try:
        _native.DottedGlobs([module])
    except ValueError as exc:
        raise ConfigError(f"{option} {text!r}: module {module!r}: {exc}") from None
    if func:
        try:
            _native.Rule("wrap", {"wrapper": "__x__"}, functions=[func])
        except ValueError as exc:
            raise ConfigError(f"{option} {text!r}: function {func!r}: {exc}") from None
    return module, ((func,) if func else None)


def _time_limit(text: str) -> float:
    """``--time-limit``: a duration with units (a bare number is refused: which unit?)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        reason = str(exc)
        if "needs a unit" in reason:
            reason = (
                "a duration needs a unit after every number (ns, us, ms, s, m or h), "
                + _DURATION_HINT
            )
        raise ConfigError(f"--time-limit {text!r}: {reason}") from None


def _cli_config(args: argparse.Namespace, script_stem: str | None) -> Config | None:
    """The configuration of ``callweave run``: the file's rules, then the command line's.

    The command line's ``--profile`` and ``--wrap`` rules come after the file's rules of the
    same kind, so where both select a function the file's rule applies (the first rule that
    selects a function is the one that profiles it); ``--time-limit`` is the limit of the
    ``--profile`` rules only. ``--report`` replaces the file's report.
    """
    base = load_config()
    profile = list(base.profile) if base else []
    wrap = list(base.wrap) if base else []
    limit = None
    if args.time_limit is not None:
        limit = _time_limit(args.time_limit)

    def modules(name: str) -> tuple[str, ...]:
        # A script runs as __main__; let users name it by its file name too.
        return (name, "__main__") if script_stem is not None and name == script_stem else (name,)

    for text in args.profile:
        module, funcs = _split_target(text, "--profile")
        above = CallbackSpec.LOG if limit is not None else CallbackSpec.NONE
        profile.append(
            ProfileRule(
                modules=modules(module),
                functions=funcs,
                time_limit=limit if limit is not None else 0.0,
                above=above,
                below=CallbackSpec.NONE,
                origin=f"--profile {text!r}",
            )
        )
    for text in args.wrap:
        target, sep, wrapper = text.partition("=")
        if not sep or ":" not in wrapper:
            raise ConfigError(f"--wrap {text!r}: expected MOD[:FUNC]=pkg.mod:callable")
        module, funcs = _split_target(target, f"--wrap {text!r}: target")
        try:
            wrap.append(
                WrapRule(
                    modules=modules(module),
                    functions=funcs,
                    wrapper=wrapper,
                    origin=f"--wrap {text!r}",
                )
            )
        except ValueError as exc:
            raise ConfigError(f"--wrap {text!r}: {exc}") from None
    if args.time_limit is not None and not args.profile:
        raise ConfigError(
            f"--time-limit {args.time_limit!r}: applies to --profile rules; give --profile too"
        )
    report = _cli_report(args.report) if args.report is not None else None
    if not profile and not wrap:
        if base is not None and report is not None:
            return dataclasses.replace(base, report=report)
        return base
    if report is None:
        if base is not None and (base.report_given or base.report.kind != "none"):
            # The file's report, also an explicit "none"; only a file that says nothing gets
            # the text report that --profile implies.
            report = base.report
        else:
            report = Report("text") if profile else Report("none")
    if base is not None:
        return dataclasses.replace(base, report=report, profile=tuple(profile), wrap=tuple(wrap))
    return Config(report=report, profile=tuple(profile), wrap=tuple(wrap))


def _cli_report(text: str) -> Report:
    """The report named by ``--report``.

    The user typed it, so ``~`` is expanded, and a relative path is made absolute against the
    working directory (the program may change directory before it exits).
    """
    kind, colon, rest = text.partition(":")
    spec = text
    if colon and rest.strip():
        spec = f"{kind}:{os.path.abspath(os.path.expanduser(rest))}"
    try:
        return Report.parse(spec)
    except ValueError as exc:
        raise ConfigError(f"--report {text!r}: {exc}") from None


def _check_module(name: str) -> None:
    """``-m NAME`` must name a module that can run, found without importing anything.

    Raises:
        ConfigError: It is not found (with a "did you mean"), or is a package without
            ``__main__``.
    """
    from callweave._rulecheck import find_spec_without_import, module_hint

    if not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(f"-m {name!r}: not a module name")
    spec = find_spec_without_import(name)
    if spec is None:
        raise ConfigError(f"-m {name!r}: no module named {name!r}{module_hint(name)}")
    if spec.submodule_search_locations is not None:
        if find_spec_without_import(f"{name}.__main__") is None:
            raise ConfigError(
                f"-m {name!r}: is a package without a __main__ module, it cannot be run"
            )


def _run(args: argparse.Namespace) -> int:
    from callweave import hook

    if args.module is None and not args.target:
        raise ConfigError("callweave run: give a script or -m module")
    script = None if args.module is not None else Path(args.target[0])
    if script is not None and not script.is_file():
        raise ConfigError(f"callweave run: no such script {str(script)!r}")
    if script is not None:
        # As `python script.py` does; before the hook resolves the configuration's callables.
        sys.path.insert(0, str(script.resolve().parent))
    else:
        _check_module(args.module)
    config = _cli_config(args, script.stem if script is not None else None)
    if config is not None:
        finder = hook.install(config)
    else:
        print("callweave: nothing configured; running without instrumentation", file=sys.stderr)
        finder = None
    if args.module is not None:
        sys.argv = [args.module, *args.target]
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
        return 0
    assert script is not None
    sys.argv = [str(script), *args.target[1:]]
    main = ModuleType("__main__")
    main.__file__ = str(script)
    main.__builtins__ = __builtins__  # type: ignore[attr-defined]
    main.__dict__["__cached__"] = None
    sys.modules["__main__"] = main
    plan = None if finder is None else finder.plan("__main__")
    if finder is not None and plan is not None:
        loader = hook.CallweaveLoader("__main__", str(script), finder, plan=plan)
        main.__loader__ = loader
        code = loader.get_code("__main__")
    else:
        code = compile(script.read_bytes(), str(script), "exec", dont_inherit=True)
    exec(code, main.__dict__)
    return 0


def _find_source(module: str) -> Path:
    """The source file of ``module``, found without importing anything."""
    parts = module.split(".")
    search: list[str] | None = None
    spec = None
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        spec = importlib.machinery.PathFinder.find_spec(name, search)
        if spec is None:
            raise CallweaveError(f"module {module!r} not found on sys.path (looked for {name!r})")
        search = list(spec.submodule_search_locations or [])
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise CallweaveError(
            f"module {module!r} has no Python source (origin: {spec and spec.origin})"
        )
    return Path(spec.origin)


def _rules_for(config: Config | None, module: str) -> list[_native.Rule]:
    """The engine rules of a module the configuration selects.

    Raises:
        CallweaveError: No configuration, or no rule of it selects the module.
    """
    from callweave.hook import ModulePlan, native_rules

    if config is None:
        raise CallweaveError(
            f"{module}: no [tool.callweave] configuration found, so nothing rewrites it"
        )
    plan = ModulePlan.resolve(config, module)
    if plan is None:
        where = config.path or "the configuration"
        raise CallweaveError(
            f"{module}: no rule of {where} selects this module; it imports unmodified"
        )
    return native_rules(plan, "__callweave_enter__", "__callweave_sites__")


def _apply_user_transformers(config: Config | None, module: str, result: _native.Rewritten) -> str:
    """The rewritten source with the users' transformers applied to the functions they select.

    Each transformed function's text (decorators included) is replaced by ``ast.unparse`` of
    what the transformer returned (comments inside it are lost); the rest keeps its text.
    """
    from callweave.config import Where
    from callweave.hook import ModulePlan
    from callweave.transforms import configured

    plan = None if config is None else ModulePlan.resolve(config, module)
    if config is None or plan is None or not any(":" in r.use for r in plan.transform):
        return result.source
    where = Where(config.path, "tool.callweave.transform")
    appliers = configured.prepare(config.transform, config.resolve(), where)
    users = [appliers[r] for r in plan.transform if ":" in r.use]
    replaced: list[tuple[int, int, int, list[ast.stmt]]] = []
    configured.apply_transformers(ast.parse(result.source), result, users, replaced)
    lines = result.source.splitlines(keepends=True)
    for start, end, col, nodes in sorted(replaced, reverse=True):
        text = "\n".join(ast.unparse(n) for n in nodes)
        indent = " " * col
        new = "".join(f"{indent}{line}\n" if line else "\n" for line in text.split("\n"))
        lines[start - 1 : end] = [new] if nodes else []
    return "".join(lines)


def _line_of(text: str, part: str) -> int:
    """The 1-based line where ``part`` starts in ``text`` (1 when it is not found)."""
    index = text.find(part)
    return 1 if index < 0 else text.count("\n", 0, index) + 1


def _diff_lines(text: str, *, whole: bool) -> list[str]:
    """Lines for difflib, each ending with a newline (a diff line is one output line).

    A whole file's last line without a newline is marked as ``diff`` marks it; a function's
    text simply ends where its last line does.
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n\\ No newline at end of file\n" if whole else "\n"
    return lines


_HUNK = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


def _unified_diff(old: str, new: str, path: Path, old_line: int, new_line: int) -> Iterator[str]:
    """A unified diff whose hunks carry the file's line numbers.

    ``old`` starts at line ``old_line`` of the file and ``new`` at line ``new_line`` of the
    rewritten file (both 1 for whole files).
    """
    whole = old_line == new_line == 1
    for line in difflib.unified_diff(
        _diff_lines(old, whole=whole),
        _diff_lines(new, whole=whole),
        f"{path} (original)",
        f"{path} (callweave)",
    ):
        m = _HUNK.match(line)
        if m is not None:
            # Shifted by where the texts start (an empty side's start, the line before it,
            # shifts the same way).
            a, b = int(m[1]) + old_line - 1, int(m[3]) + new_line - 1
            line = f"@@ -{a}{m[2] or ''} +{b}{m[4] or ''} @@{line[m.end() :]}"
        yield line


def _show(args: argparse.Namespace) -> int:
    module, _, qualname = args.target.partition(":")
    config = load_config()
    path = _find_source(module)
    try:
        source = decode_source(path.read_bytes(), str(path))
        result = _native.rewrite(source, _rules_for(config, module))
    except SyntaxError as exc:
        raise CallweaveError(f"{module}: {_syntax_error_text(exc)}") from None
    except ParseError:
        try:
            raise_users_syntax_error(source, str(path))
        except SyntaxError as exc:
            raise CallweaveError(f"{module}: {_syntax_error_text(exc)}") from None
        raise
    new_source = _apply_user_transformers(config, module, result)
    if qualname:
        rows = [f for f in result.functions if f.qualname == qualname]
        if not rows:
            raise CallweaveError(f"{module}: no selected function {qualname!r}")
        old, new = rows[0].original_text, rows[0].new_text
        old_line, new_line = _line_of(source, old), _line_of(result.source, new)
    else:
        old, new = source, new_source
        old_line = new_line = 1
    if args.diff:
        sys.stdout.writelines(_unified_diff(old, new, path, old_line, new_line))
    else:
        sys.stdout.write(new if new.endswith("\n") or not new else new + "\n")
    return 0


def _walk_modules(root: Path, package: str) -> Iterator[tuple[str, Path]]:
    if root.is_file():
        yield package, root
        return
    init = root / "__init__.py"
    if init.exists():
        yield package, init
    for child in sorted(root.iterdir()):
        if child.suffix == ".py" and child.name != "__init__.py":
            yield f"{package}.{child.stem}", child
        elif child.is_dir() and (child / "__init__.py").exists():
            yield from _walk_modules(child, f"{package}.{child.name}")


def _candidates(config: Config) -> Iterator[tuple[str, Path]]:
    tops: set[str] = set()
    from callweave.transforms import REGISTRY

    for rule in (r for transform in REGISTRY for r in config.rules(transform.table)):
        for glob in rule.modules:
            top = glob.split(".")[0]
            if "*" in top or "?" in top or "[" in top:
                for entry in sys.path:
                    d = Path(entry or ".")
                    if d.is_dir():
                        tops.update(
                            p.stem
                            for p in d.iterdir()
                            if p.suffix == ".py" or (p / "__init__.py").exists()
                        )
            else:
                tops.add(top)
    for top in sorted(tops):
        spec = importlib.machinery.PathFinder.find_spec(top)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        yield from _walk_modules(origin.parent if origin.name == "__init__.py" else origin, top)


def _syntax_error_text(exc: SyntaxError) -> str:
    where = f"{exc.filename}, line {exc.lineno}" if exc.lineno else str(exc.filename)
    return f"syntax error: {exc.msg} ({where})"


def _transform_lines(
    config: Config, module: str, source: str, result: _native.Rewritten
) -> Iterator[str]:
    """Per transform rule of the module: ``transform[i] (use): the functions it transforms``.

    A built-in's functions are those the engine selected for its rule; a user transformer's
    are the outermost functions its ``functions`` globs select (it visits the ones nested in
    them). Nothing is imported.
    """
    from callweave.hook import ModulePlan
    from callweave.transforms import configured

    plan = ModulePlan.resolve(config, module)
    if plan is None or not plan.transform:
        return
    indices = plan.rule_indices("transform")
    tree: ast.Module | None = None
    for engine_index, rule in zip(indices, plan.transform, strict=True):
        if ":" in rule.use:
            tree = tree if tree is not None else ast.parse(source)
            names = configured.selected_functions(tree, rule)
        else:
            names = [f.qualname for f in result.functions if engine_index in f.rules]
        label = f"transform[{config.transform.index(rule)}] ({rule.use})"
        yield f"{label}: {', '.join(names) if names else 'no function'}"


def _callable_errors(config: Config) -> list[str]:
    """Imports every callable the configuration names; one line per one that fails."""
    from callweave.config import Where, resolve_callable
    from callweave.transforms import REGISTRY, configured

    errors: list[str] = []
    resolved: dict[str, Any] = {}
    for transform in sorted(REGISTRY, key=lambda t: t.table):
        for i, rule in enumerate(config.rules(transform.table)):
            for spec, key in transform.callables(rule):
                if spec in resolved:
                    continue
                try:
                    resolved[spec] = resolve_callable(
                        spec,
                        f"tool.callweave.{transform.table}[{i}].{key}",
                        path=config.path,
                        origin=rule.origin,
                    )
                except ConfigError as exc:
                    resolved[spec] = None
                    errors.append(str(exc))
    if not errors:
        try:
            configured.prepare(
                config.transform, resolved, Where(config.path, "tool.callweave.transform")
            )
        except ConfigError as exc:
            errors.append(str(exc))
    return errors


def _check(args: argparse.Namespace) -> int:
    """``callweave check``: see the module's docstring; exit status 2 on an error."""
    from callweave import _rulecheck

    config = load_config()
    if config is None:
        print("callweave: no [tool.callweave] configuration found")
        return 1
    errors = _callable_errors(config)
    warnings: list[str] = []
    if (note := _pycache.cache_note()) is not None:
        print(note)
    found = 0
    modules: dict[str, list[str] | None] = {}
    for module, path in _candidates(config):
        modules.setdefault(module, None)
        if not config.matches_module(module):
            continue
        try:
            source = decode_source(path.read_bytes(), str(path))
            compile(source, str(path), "exec", dont_inherit=True)
            tree = ast.parse(source)
            modules[module] = _rulecheck.qualnames(tree)
            try:
                result = _native.rewrite(source, _rules_for(config, module))
            except ParseError:
                raise_users_syntax_error(source, str(path))
                raise
        except SyntaxError as exc:
            print(f"{module}: {_syntax_error_text(exc)} (importing it raises SyntaxError)")
            continue
        except CallweaveError as exc:
            print(f"{module}: cannot be rewritten, would import unmodified: {exc}")
            continue
        names = [f.qualname for f in result.functions]
        found += 1
        print(f"{module} ({path}): {len(names)} function(s), {len(result.sites)} call site(s)")
        for name in names:
            print(f"    {name}")
        for line in _transform_lines(config, module, source, result):
            print(f"    {line}")
    if not found:
        print("callweave: no module on sys.path matches the configuration")
    unmatched = _rulecheck.unmatched(config, modules, _rulecheck.top_level_names())
    (errors if config.strict else warnings).extend(unmatched)
    for line in errors:
        print(f"callweave: error: {line}", file=sys.stderr)
    for line in warnings:
        print(f"callweave: warning: {line}", file=sys.stderr)
    where = config.path or "(environment)"
    if errors:
        print(f"callweave: configuration {where}: {len(errors)} error(s)", file=sys.stderr)
        return 2
    print(f"callweave: configuration {where} is valid")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    """``callweave report FILE...``: saved JSON reports, merged, as text, HTML or JSON."""
    from callweave import reports

    try:
        merged = reports.merge_json(args.files)
        stats = reports.stats_from_json(merged)
        if args.html is not None:
            reports.report("html", args.html, stats=stats)
        if args.json is not None:  # the merged document, which keeps each process's numbers
            reports.write_document(merged, args.json)
        if (args.html is None and args.json is None) or args.text:
            text = reports.render_text(stats, top=args.top, sort=args.sort)
            sys.stdout.write(text)
            sys.stdout.flush()
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
        print(f"callweave report: {where}{detail}", file=sys.stderr)
        return 2
    return 0


def _add_report_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    from callweave.config import SORT_KEYS

    def top(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
        return value

    report = sub.add_parser(
        "report",
        help="show saved JSON reports (merged) as text, or write them as HTML or JSON",
        description='Merges JSON reports (report = "json:PATH"; of several processes, '
        "children or a fleet) and prints them as the text report, or writes the HTML report.",
    )
    report.add_argument("files", nargs="+", metavar="FILE", help="JSON reports to merge")
    report.add_argument("--html", metavar="PATH", help="write the HTML report to PATH")
    report.add_argument("--json", metavar="PATH", help="write the merged JSON report to PATH")
    report.add_argument(
        "--text", action="store_true", help="print the text report too (with --html/--json)"
    )
    report.add_argument("--top", type=top, default=None, metavar="N", help="list N functions")
    report.add_argument(
        "--sort", choices=SORT_KEYS, default="total", help="sort functions by (default: total)"
    )


_RUN_OPTIONS = ("--profile", "--wrap", "--time-limit", "--report")


class _UsageError(CallweaveError):
    """A command line argparse rejects."""


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as one line (``callweave: ...``, exit status 2) like the others."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("callweave").strip()
        raise _UsageError(f"{command}: {message}" if command else message)


_DESCRIPTION = """\
Rewrites Python modules at import to wrap or profile the calls in their functions.

  callweave run [options] (script.py | -m module) [args...]
      run a program with the import hook installed ([tool.callweave] rules,
      plus --profile/--wrap rules from the command line)
  callweave show MODULE[:QUALNAME] [--diff]
      print a module's (or one function's) rewritten source
  callweave check
      validate the configuration: import its callables, list what it rewrites,
      report rules that match no module or function

The configuration is the nearest pyproject.toml with a [tool.callweave] table,
from the working directory upward, or the file named by CALLWEAVE_CONFIG.
Errors are one line on stderr, with exit status 2.
"""

_RUN_EPILOG = """\
--profile and --wrap rules are added after the file's rules of the same kind:
where both select a function, the file's rule applies. --time-limit is the
limit of the --profile rules (default: none, so nothing is logged); --report
replaces the file's report (a relative path is relative to the working
directory).
"""


def _parser() -> argparse.ArgumentParser:
    from callweave import __version__

    parser = _Parser(
        prog="callweave",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"callweave {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,show,check,report}")
    run = sub.add_parser(
        "run",
        help="run a program with the import hook installed",
        usage="callweave run [options] (script.py | -m module) [args...]",
        description="Run a program with the import hook installed.",
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="MOD[:FUNC]",
        help="flat-profile these functions (globs; repeatable)",
    )
    run.add_argument(
        "--wrap",
        action="append",
        default=[],
        metavar="MOD[:FUNC]=pkg.mod:callable",
        help="route these functions' calls through a wrapper (repeatable)",
    )
    run.add_argument(
        "--time-limit",
        default=None,
        metavar="DURATION",
        help="log --profile invocations over this (50ms, 1.5s, 1m30s)",
    )
    run.add_argument(
        "--report",
        default=None,
        metavar="KIND",
        help="text | json:PATH | pstats:PATH | html:PATH | none",
    )
    show = sub.add_parser(
        "show",
        help="print a module's rewritten source",
        description="Print the rewritten source of a module the configuration selects.",
    )
    show.add_argument("target", metavar="MODULE[:QUALNAME]")
    show.add_argument("--diff", action="store_true", help="a unified diff instead")
    sub.add_parser(
        "check",
        help="validate the configuration and list what it rewrites",
        description="Validate the configuration: import the callables it names, list the "
        "modules and functions it rewrites, and report rules that match nothing (errors "
        "with strict = true, else warnings).",
    )
    _add_report_parser(sub)
    return parser


def _split_run(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """Splits ``run``'s arguments into callweave's options, ``-m`` module and the program's."""
    options: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _RUN_OPTIONS and i + 1 < len(argv):
            options += [a, argv[i + 1]]
            i += 2
        elif a.startswith(tuple(f"{o}=" for o in _RUN_OPTIONS)) or a in ("-h", "--help"):
            options.append(a)
            i += 1
        elif a == "-m":
            if i + 1 >= len(argv):
                raise ConfigError("callweave run: -m needs a module name")
            return options, argv[i + 1], argv[i + 2 :]
        elif a.startswith("-"):
            raise ConfigError(f"callweave run: unknown option {a!r}")
        else:
            return options, None, argv[i:]
    return options, None, []


def _working_directory_on_path() -> None:
    """Puts the working directory first on ``sys.path``, as ``python -m callweave`` does.

    The installed console script starts with its own directory there instead, so without
    this ``callweave run -m pkg.mod``, ``show``, ``check`` and a project-local wrapper would
    not find the project's modules. Under ``-P`` (``PYTHONSAFEPATH``) nothing is added, as
    Python adds nothing.
    """
    if sys.flags.safe_path:
        return
    cwd = os.getcwd()
    if not any(os.path.abspath(p or os.curdir) == cwd for p in sys.path[:1]):
        sys.path.insert(0, cwd)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``callweave`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _working_directory_on_path()
        if argv[:1] == ["run"]:
            options, module, rest = _split_run(argv[1:])
            args = _parser().parse_args(["run", *options])
            args.module, args.target = module, rest
            return _run(args)
        args = _parser().parse_args(argv)
        if args.command == "show":
            return _show(args)
        if args.command == "report":
            return _cmd_report(args)
        return _check(args)
    except CallweaveError as exc:
        print(f"callweave: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
