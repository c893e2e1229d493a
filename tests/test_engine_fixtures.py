"""Every golden fixture of the engine is also compiled and run from Python.

Each fixture defines ``main()``. It runs once as written and once rewritten (every function
selected), and must return the same value; every position of the original code objects must
still be present in the rewritten ones. Rewritten code gets the native call binder under
``BIND`` (the name ``golden.rs`` gives it too) and Python stand-ins for the other names.
"""

import importlib.util
import sys
import types
from pathlib import Path

import pytest
from stdlib_sweep import code_objects, fused_positions, positions

from callweave import _native
from callweave._compile import BUILTIN_NAMES, remap_code
from callweave._slots import patch_code
from callweave.transforms.literals import literal_value
from callweave.transforms.slices import precomputed_slices

FIXTURES = (
    Path(__file__).resolve().parent.parent / "crates" / "callweave_engine" / "tests" / "fixtures"
)
WRAP = sorted((FIXTURES / "wrap").glob("*.py"))
PROFILE = sorted((FIXTURES / "profile").glob("*.py"))
BOTH = sorted((FIXTURES / "both").glob("*.py"))
#: The binder's name in the fixtures' rewrites: calls with `*` or `**` go through it.
BIND = "__b__"


def load(path, name, source, names):
    module = types.ModuleType(name)
    module.__file__ = str(path)
    module.__dict__.update(names)
    sys.modules[name] = module
    try:
        code = (
            compile(source, str(path), "exec", dont_inherit=True)
            if isinstance(source, str)
            else source
        )
        exec(code, module.__dict__)
        return module
    finally:
        del sys.modules[name]


def return_ranges(text):
    """Positions of every ``return`` statement and of its value when that is a constant."""
    import ast

    out = set()
    for n in ast.walk(ast.parse(text)):
        if isinstance(n, ast.Return):
            out.add((n.lineno, n.end_lineno, n.col_offset, n.end_col_offset))
            v = n.value
            if isinstance(v, ast.Constant):
                out.add((v.lineno, v.end_lineno, v.col_offset, v.end_col_offset))
    return out


def run_both(path, rules, names, allowed_losses=frozenset(), constant=None):
    text = importlib.util.decode_source(path.read_bytes())
    original_code = compile(text, str(path), "exec", dont_inherit=True)
    plain = load(path, "fixture_plain", original_code, {})
    result = _native.rewrite(text, rules, BUILTIN_NAMES, bind=BIND)
    assert result.changed
    code = remap_code(result, compile(result.source, str(path), "exec", dont_inherit=True))
    if constant is not None:
        assert result.constants, "no constant slot was taken"
        code = patch_code(code, {slot.name: constant(slot) for slot in result.constants})
    rewritten = load(path, "fixture_rewritten", code, {BIND: _native.bind_call, **names})
    # A position the rewritten code keeps on a NOP only still has its line: a stub body `...`
    # is the implicit return's location in the original, a NOP inside `try:` once rewritten.
    before, after = positions(original_code), positions(code, nops=True)
    before_codes, after_codes = code_objects(original_code), code_objects(code)
    for key, bag in before.items():
        lost = bag - after[key] - allowed_losses
        # 3.13+ fuses adjacent local loads (`W(f, x)`, `PAUSE(RECORD, v)`): not a loss.
        lost -= fused_positions(before_codes[key], after_codes[key], lost)
        assert not lost, f"{key} lost positions {sorted(lost)[:3]}"
    return plain.main(), rewritten.main(), result


@pytest.mark.parametrize("path", WRAP, ids=lambda p: p.stem)
def test_wrap_fixture_runs_the_same(path):
    seen = []

    def passthrough(call, /, *args, **kwargs):
        seen.append(call)
        return call(*args, **kwargs)

    rule = _native.Rule("wrap", {"wrapper": "__w__"})
    before, after, result = run_both(path, [rule], {"__w__": passthrough})
    assert after == before
    assert seen, "no call went through the wrapper"
    assert len(result.sites) >= 1


class Record:
    def __init__(self, index):
        self.index = index
        self.calls = []
        self.exited = []


def profile_stand_ins():
    """A profile rule with the fixtures' names, those names' Python stand-ins, and the list of
    entered function indexes."""
    entered = []

    def enter(index):
        entered.append(index)
        return Record(index)

    def timer(record, site, call, *args, **kwargs):
        record.calls.append(site)
        return call(*args, **kwargs)

    async def atimer(record, site, call, *args, **kwargs):
        record.calls.append(site)
        return await call(*args, **kwargs)

    def exit_(record, raised=None):
        record.exited.append(raised)

    # Stand-ins for the native pause/resume/strip: values pass through unchanged.
    def pause(record, value):
        record.calls.append("pause")
        return value

    def resume(record, sent):
        record.calls.append("resume")
        return sent

    def strip(namespace):
        if isinstance(namespace, dict):
            namespace.pop("__r__", None)
        elif "__r__" in namespace:
            namespace.remove("__r__")
        return namespace

    rule = _native.Rule(
        "profile",
        {
            "enter": "__e__",
            "exit": "__x__",
            "timer": "__t__",
            "atimer": "__at__",
            "record": "__r__",
            "pause": "__p__",
            "resume": "__rs__",
            "strip": "__s__",
        },
    )
    names = {
        "__e__": enter,
        "__x__": exit_,
        "__t__": timer,
        "__at__": atimer,
        "__p__": pause,
        "__rs__": resume,
        "__s__": strip,
    }
    return rule, names, entered


@pytest.mark.parametrize("path", PROFILE, ids=lambda p: p.stem)
def test_profile_fixture_runs_the_same(path):
    rule, names, entered = profile_stand_ins()
    # Inside `try/finally`, CPython emits a `return`'s RETURN_VALUE (and the LOAD_CONST of a
    # constant return value) after the finally body, at that body's location: here the def
    # line. Neither can raise. Every other position must survive.
    text = importlib.util.decode_source(path.read_bytes())
    before, after, result = run_both(path, [rule], names, frozenset(return_ranges(text)))
    assert after == before
    assert entered, "no profiled function was entered"
    assert len({f.profile.index for f in result.functions}) == len(result.functions)


@pytest.mark.parametrize("path", BOTH, ids=lambda p: p.stem)
def test_both_fixture_runs_the_same(path):
    """A wrap layer passing sites (innermost) under a profile layer, as in ``golden.rs``."""
    profile, names, entered = profile_stand_ins()
    seen = []

    def passthrough(call, site, /, *args, **kwargs):
        seen.append(site)
        return call(*args, **kwargs)

    wrap = _native.Rule("wrap", {"wrapper": "__w__", "sites": "__ss__"})
    names = {**names, "__w__": passthrough, "__ss__": range(1 << 20)}
    text = importlib.util.decode_source(path.read_bytes())
    before, after, result = run_both(path, [wrap, profile], names, frozenset(return_ranges(text)))
    assert after == before
    assert entered, "no profiled function was entered"
    assert seen, "no call went through the wrapper"
    assert set(seen) <= {s.id for s in result.sites}


#: Folders of transforms that take constant slots: their fixtures run with stand-in values
#: that keep what ``main()`` returns (identity ``xform``/``astype``, slicing for ``islice``).
SLOT_FOLDERS = ("literals", "displays", "islice", "precomputed_slices")
SLOT_FIXTURES = sorted(p for folder in SLOT_FOLDERS for p in (FIXTURES / folder).glob("*.py"))


def fixture_rules(path):
    """The rules of a fixture, as ``golden.rs`` reads them: ``# rules:`` header lines, else
    the folder's ``rules`` file."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# rules:"):
            break
        lines.append(line.removeprefix("# rules:"))
    if not lines:
        lines = [
            line
            for line in (path.parent / "rules").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
    rules = []
    for line in lines:
        name, *words = line.split()
        options = {}
        for word in words:
            key, value = word.split("=", 1)
            options[key] = {"true": True, "false": False}.get(value, value)
        rules.append((name, options))
    return rules


def stand_in(transform, options):
    """A slot's value that leaves the fixture's results unchanged."""
    if transform == "literals":
        if options.get("fresh"):
            return lambda slot: lambda value: value
        return lambda slot: literal_value(slot.text)
    if transform == "displays":
        if options["kind"] == "slice":
            return lambda slot: lambda *bounds: slice(*bounds)
        return lambda slot: lambda built: built
    if transform == "islice":
        return lambda slot: lambda m, lo, hi, st: m[lo:hi:st]
    return precomputed_slices().constant


def slice_part_ranges(text):
    """Positions of slices and of their constant bounds: a precomputed slice or an islice call
    keeps one instruction where the original had one per bound."""
    import ast

    out = set()
    for n in ast.walk(ast.parse(text)):
        if isinstance(n, ast.Slice):
            for part in (n, n.lower, n.upper, n.step):
                if part is not None:
                    out.add((part.lineno, part.end_lineno, part.col_offset, part.end_col_offset))
    return out


@pytest.mark.parametrize("path", SLOT_FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_constant_slot_fixture_runs_the_same(path):
    specs = fixture_rules(path)
    rules = [_native.Rule(name, options) for name, options in specs]
    values = [stand_in(name, options) for name, options in specs]
    text = importlib.util.decode_source(path.read_bytes())
    before, after, result = run_both(
        path,
        rules,
        {},
        frozenset(slice_part_ranges(text)),
        constant=lambda slot: values[slot.rule](slot),
    )
    assert after == before
    assert {slot.transform for slot in result.constants} <= {name for name, _ in specs}


def test_crlf_bom_and_tabs_fixtures_are_bytes_as_named():
    assert (FIXTURES / "wrap" / "bom.py").read_bytes().startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in (FIXTURES / "wrap" / "crlf.py").read_bytes()
    assert b"\n\t" in (FIXTURES / "wrap" / "tabs.py").read_bytes()
