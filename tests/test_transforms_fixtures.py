"""The golden fixtures of ``pattern_matched_exceptions``, ``asconstants`` and
``interpolated_strings``, compiled and run from Python.

Each fixture defines ``main()``; it runs as written and rewritten by its folder's rules (or
its own ``# rules:`` lines), with the injected names and constant slots patched in as the
decorators do, and every position of the original code objects must still be present.
"""

import builtins
import dis
import importlib.util
import itertools
import sys
from pathlib import Path
from types import CodeType

import pytest
from stdlib_sweep import code_objects, fused_positions, positions
from test_engine_fixtures import load

from callweave import _native
from callweave._compile import BUILTIN_NAMES, remap_code
from callweave._slots import patch_code
from callweave.transforms.exceptions import _default_clause
from callweave.transforms.strings import literal_value

FIXTURES = (
    Path(__file__).resolve().parent.parent / "crates" / "callweave_engine" / "tests" / "fixtures"
)
BIND = "__b__"


def parse_rules(path):
    """The fixture's rules: ``# rules:`` header lines, else its folder's ``rules`` file."""
    text = path.read_text()
    lines = []
    for line in text.splitlines():
        if not line.startswith("# rules:"):
            break
        lines.append(line.removeprefix("# rules:"))
    if not lines:
        lines = [
            line
            for line in (path.parent / "rules").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    rules = []
    for line in lines:
        name, *words = line.split()
        options = {}
        for word in words:
            key, value = word.split("=", 1)
            if value in ("true", "false"):
                options[key] = value == "true"
            elif value.startswith("["):
                options[key] = [v.strip() for v in value[1:-1].split(",") if v.strip()]
            else:
                options[key] = value
        rules.append((name, options))
    return rules


def passthrough(call, /, *args, **kwargs):
    return call(*args, **kwargs)


def values_for(rules, result, module_globals):
    """What the decorators would patch in: injected names and slot values, by rule."""
    values = {}
    for index, (name, options) in enumerate(rules):
        if name == "pattern_matched_exceptions":
            values[options["matcher"]] = _default_clause
        elif name == "interpolated_strings":
            values[options["locals"]] = builtins.locals
            for slot in result.constants:
                if slot.rule == index:
                    values[slot.name] = literal_value(slot.text)
        elif name == "asconstants":
            for frozen in options["names"]:
                values[frozen] = module_globals.get(frozen, getattr(builtins, frozen, None))
    return values


def folded_returns(code, values):
    """Positions of name loads of ``values`` right before a ``RETURN_VALUE``: on 3.12+ the
    patcher folds the pair into ``RETURN_CONST``, which has the return's position only, as
    CPython compiles ``return <literal>``."""
    out = set()
    for codes in code_objects(code).values():
        for c in codes:
            instrs = list(dis.get_instructions(c))
            for ins, nxt in itertools.pairwise(instrs):
                if (
                    ins.opname.startswith("LOAD")
                    and ins.argval in values
                    and nxt.opname == "RETURN_VALUE"
                    and sys.version_info >= (3, 12)
                ):
                    out.add(tuple(ins.positions))
    return out


def run(path):
    text = importlib.util.decode_source(path.read_bytes())
    original = compile(text, str(path), "exec", dont_inherit=True)
    plain = load(path, "fixture_plain", original, {})
    rules = parse_rules(path)
    result = _native.rewrite(text, [_native.Rule(n, o) for n, o in rules], BUILTIN_NAMES, bind=BIND)
    assert result.changed
    code = remap_code(result, compile(result.source, str(path), "exec", dont_inherit=True))
    values = values_for(rules, result, vars(plain))
    # As the decorators do: the functions' code, not the module's (which binds the names).
    code = code.replace(
        co_consts=tuple(
            patch_code(c, values) if isinstance(c, CodeType) else c for c in code.co_consts
        )
    )
    names = {BIND: _native.bind_call, "__w__": passthrough}
    rewritten = load(path, "fixture_rewritten", code, names)
    before, after = positions(original), positions(code, nops=True)
    before_codes, after_codes = code_objects(original), code_objects(code)
    folded = folded_returns(original, values)
    for key, bag in before.items():
        lost = bag - after[key] - folded
        lost -= fused_positions(before_codes[key], after_codes[key], lost)
        assert not lost, f"{key} lost positions {sorted(lost)[:3]}"
    return plain.main(), rewritten.main(), code, values


def fixtures(folder):
    return sorted((FIXTURES / folder).glob("*.py"))


@pytest.mark.parametrize("path", fixtures("pattern_matched_exceptions"), ids=lambda p: p.stem)
def test_pattern_matched_exceptions_fixture_runs_the_same(path):
    before, after, _, _ = run(path)
    assert after == before


@pytest.mark.parametrize("path", fixtures("asconstants"), ids=lambda p: p.stem)
def test_asconstants_fixture_runs_the_same_with_constant_loads(path):
    before, after, code, values = run(path)
    assert after == before
    for codes in code_objects(code).values():
        for c in codes:
            if c.co_name in ("<module>", "main"):
                continue
            by_name = [
                i.opname
                for i in dis.get_instructions(c)
                if i.argval in values and i.opname.startswith("LOAD")
            ]
            assert by_name == [], c.co_qualname


@pytest.mark.parametrize("path", fixtures("interpolated_strings"), ids=lambda p: p.stem)
def test_interpolated_strings_fixture_turns_bytes_into_str(path):
    before, after, _, _ = run(path)
    assert after == ["str" if kind == "bytes" else kind for kind in before]
    assert "bytes" in before
