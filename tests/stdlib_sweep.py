"""Rewrite every function of every standard-library file, wrapping every call.

For each ``.py`` file of the running Python's standard library (site-packages excluded) that
this Python compiles: rewrite it with a rule selecting every function, compile the result,
and check that every position of the original code objects is still present in the
rewritten ones (same qualname and first line), so every original node keeps its line and
columns; and that no name in the compiled code fuses the injected wrapper name with a
neighbouring identifier or keyword (`not(x).f()` once became `not__callweave_wrap__(...)`, a
name that compiles and fails only when run). Usable as a script (prints figures) and from the
test suite.

Compiling the standard library's test data emits SyntaxWarnings (and, on 3.11,
DeprecationWarnings for invalid escapes); the sweep silences both.

    python tests/stdlib_sweep.py [--limit N]
"""

from __future__ import annotations

import argparse
import dis
import importlib.util
import sys
import sysconfig
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType

from callweave import _native
from callweave._compile import BUILTIN_NAMES, remap_code

WRAPPER = "__callweave_wrap__"
RULES = [_native.Rule("wrap", {"wrapper": WRAPPER})]
#: Every name the rewrite injects: the wrapper and the call binder (calls with `*`, `**`).
INJECTED = frozenset({WRAPPER, _native.BIND_NAME})


def stdlib_files() -> list[Path]:
    """Every .py file of the standard library, sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        p
        for p in root.rglob("*.py")
        if "site-packages" not in p.parts and "dist-packages" not in p.parts
    )


# PUSH_NULL (3.11) sits at the position of the callee it prepares for, and 3.13 leaves a NOP at
# a method name after a method call on several lines; once the callee is an argument of the
# wrapper neither is emitted there. Neither can raise, so nothing user-visible (tracebacks,
# line events of other instructions) depends on their positions.
_IGNORED_OPS = {dis.opmap[name] for name in ("PUSH_NULL", "NOP") if name in dis.opmap}


# CPython 3.13+ fuses two adjacent local-variable instructions on one line into one
# superinstruction located at the first of the pair. Wrapping `f(x)` as `W(f, x)` puts the
# loads of `f` and `x` next to each other, so the position of `x` disappears into a
# LOAD_FAST_LOAD_FAST located at `f`. A LOAD_FAST cannot raise and the pair is on one line, so
# nothing user-visible (tracebacks, line events) depends on it: such a position counts as
# fused, not lost, when the rewritten code object loads that variable as the second half of a
# fused instruction on that line.
_FUSED_PAIRS = frozenset(
    name for name in ("LOAD_FAST_LOAD_FAST", "STORE_FAST_LOAD_FAST") if name in dis.opmap
)


def code_objects(code: CodeType) -> dict[tuple[str, int], list[CodeType]]:
    """Every code object under ``code``, keyed by (qualname, first line)."""
    out: dict[tuple[str, int], list[CodeType]] = {}
    stack = [code]
    while stack:
        c = stack.pop()
        out.setdefault((c.co_qualname, c.co_firstlineno), []).append(c)
        stack.extend(k for k in c.co_consts if isinstance(k, CodeType))
    return out


def fused_names(code: CodeType) -> set[str]:
    """Names in ``code`` (and nested code objects) that contain an injected name but are not
    one: the injected name fused with a neighbouring token."""
    out: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        for name in (*c.co_names, *c.co_varnames, *c.co_cellvars, *c.co_freevars):
            if "__callweave_" in name and name not in INJECTED:
                out.add(name)
        stack.extend(k for k in c.co_consts if isinstance(k, CodeType))
    return out


def positions(code: CodeType, *, nops: bool = False) -> dict[tuple[str, int], set]:
    """Positions of every code object under ``code``, keyed by (qualname, first line).

    Positions of NOPs (and PUSH_NULL) count only with ``nops``: a NOP keeps a line in
    ``co_lines()`` but the compiler drops or keeps NOPs as it likes.
    """
    ignored = _IGNORED_OPS - {dis.opmap["NOP"]} if nops else _IGNORED_OPS
    out: dict[tuple[str, int], set] = {}
    for key, codes in code_objects(code).items():
        bag = out[key] = set()
        for c in codes:
            raw = c.co_code
            bag.update(
                p
                for i, p in enumerate(c.co_positions())
                if p[0] is not None and raw[2 * i] not in ignored
            )
    return out


def fused_positions(before: list[CodeType], after: list[CodeType], missing: set) -> set:
    """The positions of ``missing`` that 3.13+ fused into a superinstruction after rewriting.

    A position qualifies when only loads of local variables sit there in the original code
    (``LOAD_FAST``, or the first half of a ``LOAD_FAST_LOAD_FAST``) and the rewritten code
    loads each of those variables as the second half of a fused instruction on that line.
    """
    if not _FUSED_PAIRS:
        return set()
    fused = {
        (ins.positions.lineno, ins.argval[1])
        for c in after
        for ins in dis.get_instructions(c)
        if ins.opname in _FUSED_PAIRS
    }
    loads: dict[tuple, set[str] | None] = {p: set() for p in missing}
    for c in before:
        for ins in dis.get_instructions(c):
            pos = tuple(ins.positions)
            names = loads.get(pos)
            if names is None or ins.opcode in _IGNORED_OPS:
                continue
            if ins.opname == "LOAD_FAST":
                names.add(ins.argval)
            elif ins.opname == "LOAD_FAST_LOAD_FAST":
                names.add(ins.argval[0])
            else:
                loads[pos] = None
    return {
        pos
        for pos, names in loads.items()
        if names and all((pos[0], name) in fused for name in names)
    }


@dataclass
class Result:
    """Figures of one sweep."""

    files: int = 0
    bytes: int = 0
    rejected_by_python: int = 0
    compiled: int = 0
    engine_errors: list[str] = field(default_factory=list)
    compile_errors: list[str] = field(default_factory=list)
    position_losses: list[str] = field(default_factory=list)
    fused_names: list[str] = field(default_factory=list)
    fused_positions: int = 0
    sites: int = 0
    engine_seconds: float = 0.0


def sweep(files: list[Path]) -> Result:
    """Runs the sweep over ``files``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return _sweep(files)


def _sweep(files: list[Path]) -> Result:
    r = Result()
    for path in files:
        data = path.read_bytes()
        try:
            text = importlib.util.decode_source(data)
            original = compile(text, str(path), "exec", dont_inherit=True)
        except (SyntaxError, ValueError, UnicodeDecodeError):
            r.rejected_by_python += 1
            continue
        r.files += 1
        r.bytes += len(data)
        t0 = time.perf_counter()
        try:
            result = _native.rewrite(text, RULES, BUILTIN_NAMES)
        except Exception as exc:  # every failure is reported
            r.engine_errors.append(f"{path}: {exc}")
            continue
        r.engine_seconds += time.perf_counter() - t0
        r.sites += len(result.sites)
        try:
            code = remap_code(result, compile(result.source, str(path), "exec", dont_inherit=True))
        except SyntaxError as exc:
            r.compile_errors.append(f"{path}: {exc}")
            continue
        r.compiled += 1
        fused = fused_names(code)
        if fused:
            r.fused_names.append(f"{path}: {', '.join(sorted(fused))}")
        before, after = positions(original), positions(code)
        codes: tuple[dict, dict] | None = None
        for key, bag in before.items():
            missing = bag - after.get(key, set())
            if missing and key in after:
                codes = codes or (code_objects(original), code_objects(code))
                fused = fused_positions(codes[0][key], codes[1][key], missing)
                r.fused_positions += len(fused)
                missing -= fused
            if missing:
                pos = sorted(missing)[0]
                r.position_losses.append(f"{path}: {key[0]} (line {key[1]}) lost {pos}")
                break
    return r


def main() -> int:
    """Script entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files")
    args = parser.parse_args()
    files = stdlib_files()
    if args.limit:
        files = files[: args.limit]
    t0 = time.perf_counter()
    r = sweep(files)
    elapsed = time.perf_counter() - t0
    print(
        f"Python {sys.version.split()[0]}: {r.files} files ({r.bytes / 1e6:.1f} MB) compiled "
        f"by this Python, {r.rejected_by_python} rejected by it"
    )
    print(
        f"  rewritten and compiled: {r.compiled}; engine errors: {len(r.engine_errors)}; "
        f"compile errors: {len(r.compile_errors)}; files with a lost position: "
        f"{len(r.position_losses)}; files with a fused name: {len(r.fused_names)}"
    )
    if _FUSED_PAIRS:
        print(
            f"  positions fused into a superinstruction by this Python, not lost: "
            f"{r.fused_positions}"
        )
    print(f"  wrapped calls: {r.sites}; engine time {r.engine_seconds:.2f}s; total {elapsed:.1f}s")
    for line in (r.engine_errors + r.compile_errors + r.position_losses + r.fused_names)[:20]:
        print("  " + line)
    ok = not (r.engine_errors or r.compile_errors or r.position_losses or r.fused_names)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
