"""The ``callweave`` command: ``run``, ``show`` and ``check``.

``callweave run [--profile MOD:FUNC ...] [--wrap MOD:FUNC=pkg.mod:callable ...]
[--time-limit 50ms] [--report text|json:PATH|pstats:PATH] (script.py | -m module) [args...]``
runs a program with the import hook installed (rules from ``[tool.callweave]`` plus the
command line), instruments ``__main__`` too, and exits with the program's exit code.

``callweave show MODULE[:QUALNAME] [--diff]`` prints a module's rewritten source.
``callweave check`` validates the configuration and lists what it would rewrite (and, for
each ``[[tool.callweave.transform]]`` rule, the functions it would transform). Neither
imports the modules it looks at; ``show`` imports the modules of the users' ``NodeTransformer``
classes a module's transform rules name (as the hook does when it is installed), to show
their result.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.machinery
import importlib.util
import os
import runpy
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

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


def _split_target(text: str, option: str) -> tuple[str, tuple[str, ...] | None]:
    module, sep, func = text.partition(":")
    if not module:
        raise ConfigError(f"{option} {text!r}: expected MODULE or MODULE:FUNCTION")
    return module, ((func,) if sep and func else None)


def _cli_config(args: argparse.Namespace, script_stem: str | None) -> Config | None:
    base = load_config()
    profile = list(base.profile) if base else []
    wrap = list(base.wrap) if base else []
    limit = None
    if args.time_limit is not None:
        try:
            limit = parse_duration(args.time_limit)
        except ValueError as exc:
            raise ConfigError(f"--time-limit {args.time_limit!r}: {exc}") from None

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
            )
        )
    for text in args.wrap:
        target, sep, wrapper = text.partition("=")
        if not sep or ":" not in wrapper:
            raise ConfigError(f"--wrap {text!r}: expected MOD:FUNC=pkg.mod:callable")
        module, funcs = _split_target(target, "--wrap")
        wrap.append(WrapRule(modules=modules(module), functions=funcs, wrapper=wrapper))
    if not profile and not wrap:
        return base
    if args.report is not None:
        report = _cli_report(args.report)
    elif base is not None and (base.report_given or base.report.kind != "none"):
        # The file's report, also an explicit "none"; only a file that says nothing gets
        # the text report that --profile implies.
        report = base.report
    else:
        report = Report("text") if profile else Report("none")
    return Config(
        report=report,
        strict=base.strict if base else False,
        profile=tuple(profile),
        wrap=tuple(wrap),
        path=base.path if base else None,
    )


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


def _run(args: argparse.Namespace) -> int:
    from callweave import hook

    if args.module is None and not args.target:
        raise ConfigError("callweave run: give a script or -m module")
    script = None if args.module is not None else Path(args.target[0])
    if script is not None and not script.is_file():
        raise ConfigError(f"callweave run: no such script {str(script)!r}")
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
    sys.path.insert(0, str(script.resolve().parent))
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
    from callweave.hook import ModulePlan, native_rules

    plan = None if config is None else ModulePlan.resolve(config, module)
    if plan is None:
        # Show what profiling every function would do.
        config = Config(profile=(ProfileRule(modules=(module,), time_limit=0.0),))
        plan = ModulePlan.resolve(config, module)
        assert plan is not None
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


def _show(args: argparse.Namespace) -> int:
    module, _, qualname = args.target.partition(":")
    path = _find_source(module)
    try:
        source = decode_source(path.read_bytes(), str(path))
        result = _native.rewrite(source, _rules_for(load_config(), module))
    except SyntaxError as exc:
        raise CallweaveError(f"{module}: {_syntax_error_text(exc)}") from None
    except ParseError:
        try:
            raise_users_syntax_error(source, str(path))
        except SyntaxError as exc:
            raise CallweaveError(f"{module}: {_syntax_error_text(exc)}") from None
        raise
    if qualname:
        rows = [f for f in result.functions if f.qualname == qualname]
        if not rows:
            raise CallweaveError(f"{module}: no selected function {qualname!r}")
        old, new = rows[0].original_text, rows[0].new_text
    else:
        old, new = source, _apply_user_transformers(load_config(), module, result)
    if args.diff:
        sys.stdout.writelines(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                f"{path} (original)",
                f"{path} (callweave)",
            )
        )
    else:
        sys.stdout.write(new)
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


def _check(args: argparse.Namespace) -> int:
    config = load_config()
    if config is None:
        print("callweave: no [tool.callweave] configuration found")
        return 1
    print(f"callweave: configuration {config.path or '(environment)'} is valid")
    if (note := _pycache.cache_note()) is not None:
        print(note)
    from callweave.transforms import REGISTRY

    for spec in sorted(
        {
            spec
            for transform in REGISTRY
            for rule in config.rules(transform.table)
            for spec, _key in transform.callables(rule)
        }
    ):
        mod = spec.partition(":")[0]
        try:
            _find_source(mod)
        except CallweaveError as exc:
            if importlib.util.find_spec(mod.split(".")[0]) is None:
                raise ConfigError(f"callable {spec!r}: {exc}") from None
    found = 0
    for module, path in _candidates(config):
        if not config.matches_module(module):
            continue
        try:
            source = decode_source(path.read_bytes(), str(path))
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
    return 0


_RUN_OPTIONS = ("--profile", "--wrap", "--time-limit", "--report")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callweave", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a program with the import hook installed",
        usage="callweave run [options] (script.py | -m module) [args...]",
    )
    run.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="MOD[:FUNC]",
        help="flat-profile these functions (repeatable)",
    )
    run.add_argument(
        "--wrap",
        action="append",
        default=[],
        metavar="MOD[:FUNC]=pkg.mod:callable",
        help="route these functions' calls through a wrapper (repeatable)",
    )
    run.add_argument("--time-limit", default=None, help="log invocations at or over this")
    run.add_argument("--report", default=None, help="text | json:PATH | pstats:PATH | none")
    show = sub.add_parser("show", help="print a module's rewritten source")
    show.add_argument("target", metavar="MODULE[:QUALNAME]")
    show.add_argument("--diff", action="store_true", help="a unified diff instead")
    sub.add_parser("check", help="validate the configuration and list what it rewrites")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``callweave`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["run"]:
            options, module, rest = _split_run(argv[1:])
            args = _parser().parse_args(["run", *options])
            args.module, args.target = module, rest
            return _run(args)
        args = _parser().parse_args(argv)
        if args.command == "show":
            return _show(args)
        return _check(args)
    except CallweaveError as exc:
        print(f"callweave: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
