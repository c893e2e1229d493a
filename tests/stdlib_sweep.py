"""Rewrite every function of every standard-library file, wrapping every call.

For each ``.py`` file of the running Python's standard library (site-packages excluded) that
this Python compiles: rewrite it with a rule selecting every function, compile the result,
and check that every position of the original code objects is still present in the
rewritten ones (same qualname and first line), so every original node keeps its line and
columns. Usable as a script (prints figures) and from the test suite.

    python tests/stdlib_sweep.py [--limit N]
"""

from __future__ import annotations

import argparse
import dis
import importlib.util
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType

from callweave import _native
from callweave._compile import BUILTIN_NAMES

RULES = [_native.Rule.wrap(wrapper="__callweave_wrap__")]


def stdlib_files() -> list[Path]:
    """Every .py file of the standard library, sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        p for p in root.rglob("*.py")
        if "site-packages" not in p.parts and "dist-packages" not in p.parts
    )


# PUSH_NULL (3.11) sits at the position of the callee it prepares for; once the callee is an
# argument of the wrapper it is not emitted there. It cannot raise, so nothing user-visible
# (tracebacks, line events) depends on its position.
_IGNORED_OPS = {dis.opmap[name] for name in ("PUSH_NULL",) if name in dis.opmap}


def positions(code: CodeType) -> dict[tuple[str, int], set]:
    """Positions of every code object under ``code``, keyed by (qualname, first line)."""
    out: dict[tuple[str, int], set] = {}
    stack = [code]
    while stack:
        c = stack.pop()
        key = (c.co_qualname, c.co_firstlineno)
        bag = out.setdefault(key, set())
        raw = c.co_code
        bag.update(
            p for i, p in enumerate(c.co_positions())
            if p[0] is not None and raw[2 * i] not in _IGNORED_OPS
        )
        stack.extend(k for k in c.co_consts if isinstance(k, CodeType))
    return out


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
    sites: int = 0
    engine_seconds: float = 0.0


def sweep(files: list[Path]) -> Result:
    """Runs the sweep over ``files``."""
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
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            r.engine_errors.append(f"{path}: {exc}")
            continue
        r.engine_seconds += time.perf_counter() - t0
        r.sites += len(result.sites)
        try:
            code = result.remap_code(compile(result.source, str(path), "exec", dont_inherit=True))
        except SyntaxError as exc:
            r.compile_errors.append(f"{path}: {exc}")
            continue
        r.compiled += 1
        before, after = positions(original), positions(code)
        for key, bag in before.items():
            missing = bag - after.get(key, set())
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
    print(f"Python {sys.version.split()[0]}: {r.files} files ({r.bytes / 1e6:.1f} MB) compiled "
          f"by this Python, {r.rejected_by_python} rejected by it")
    print(f"  rewritten and compiled: {r.compiled}; engine errors: {len(r.engine_errors)}; "
          f"compile errors: {len(r.compile_errors)}; files with a lost position: "
          f"{len(r.position_losses)}")
    print(f"  wrapped calls: {r.sites}; engine time {r.engine_seconds:.2f}s; total {elapsed:.1f}s")
    for line in (r.engine_errors + r.compile_errors + r.position_losses)[:20]:
        print("  " + line)
    ok = not (r.engine_errors or r.compile_errors or r.position_losses)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
