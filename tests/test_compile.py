"""Rewritten code compiles and behaves like the original.

Positions (tracebacks and line events are the original's), token boundaries around inserted
names, `ignore_builtins` with rebound names, and long call chains under CPython's bracket limit.
"""

import json
import os
import subprocess
import sys
import textwrap
import traceback

import pytest

from callweave import _native
from callweave._compile import BUILTIN_NAMES, compile_rewritten

WRAP = [_native.Rule("wrap", {"wrapper": "__w__"})]


def load(source, wrapped):
    ns = {"__w__": lambda call, *a, **k: call(*a, **k)}
    if wrapped:
        code = compile_rewritten(source, "m.py", WRAP)[0]
    else:
        code = compile(source, "m.py", "exec")
    exec(code, ns)
    return ns


def last_frame(ns, *args):
    try:
        ns["f"](*args)
    except Exception as exc:
        fs = traceback.extract_tb(exc.__traceback__)[-1]
        return type(exc), fs.lineno, fs.end_lineno, fs.colno, fs.end_colno
    raise AssertionError("no exception")


CASES = {
    # A method call whose name is on a later line: CPython starts the CALL at the name, but
    # the for loop's GET_ITER at the expression's start.
    "for_iter_method_call": (
        "class A:\n def b(self): return 1\ndef f():\n    for i in (A()\n              .b()):\n"
        "        pass\n"
    ),
    "method_call_raises": (
        "class A:\n def b(self): raise KeyError(1)\ndef f():\n    return (A()\n            .b())\n"
    ),
    "method_call_keywords": (
        "class A:\n def b(self, k): raise KeyError(k)\ndef f():\n    return (A()\n"
        "            .b(k=1))\n"
    ),
    "two_arg_super_attr": (
        "class B:\n pass\nclass A(B):\n def m(self):\n  return super(A,\n"
        "               self).missing()\ndef f():\n    A().m()\n"
    ),
    "nested_call_argument": "def g(x):\n    return 1 / x\ndef f():\n    return g(\n        0)\n",
    "division_in_argument": "def f():\n    return abs(1 / 0)\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_traceback_positions_are_the_originals(name):
    source = CASES[name]
    assert last_frame(load(source, True)) == last_frame(load(source, False))


def line_events(ns, *args):
    events = []

    def tracer(frame, event, arg):
        if frame.f_code.co_filename == "m.py" and event == "line":
            events.append((frame.f_code.co_name, frame.f_lineno))
        return tracer

    sys.settrace(tracer)
    try:
        ns["f"](*args)
    finally:
        sys.settrace(None)
    return events


def test_line_events_in_generator_expressions_are_the_originals():
    source = "def f(names):\n    return list((name\n                 .strip() for name in names))\n"
    names = [" a", "b "]
    assert line_events(load(source, True), names) == line_events(load(source, False), names)


def test_line_events_of_plain_statements_are_the_originals():
    source = (
        "def g(x):\n    return x\n\ndef f(n):\n    total = 0\n    for i in range(n):\n"
        "        total += g(\n            i)\n    return total\n"
    )
    assert line_events(load(source, True), 3) == line_events(load(source, False), 3)


# -- decode_source (issue 7 item 8, repros 03 and 15) ------------------------------------------

from callweave._compile import decode_source  # noqa: E402

LATIN_COMMENTS = {
    "first line": b"# Author: Fran\xe7ois\ndef g():\n    return 1\n",
    "fifth line": b"def g():\n    return 1\n\n\n# Author: Fran\xe7ois\n",
    "after code": b"x = len('\xc3\xa9')  # Fran\xe7ois \xff\xfe\ny = 2\n",
    "crlf": b"# Fran\xe7ois\r\nx = 1\r\n",
}


@pytest.mark.parametrize("case", sorted(LATIN_COMMENTS))
def test_undecodable_bytes_in_comments_keep_every_position(case):
    data = LATIN_COMMENTS[case]
    compile(data, "m.py", "exec")  # CPython accepts them
    text = decode_source(data, "m.py")
    # One character per undecodable byte: every line and byte offset of the code is kept.
    plain = data.replace(b"\r\n", b"\n").split(b"\n")
    assert [len(line.encode()) for line in text.split("\n")] == [len(line) for line in plain]
    assert ast_dump(text) == ast_dump(data)


def ast_dump(source):
    import ast

    return ast.dump(ast.parse(source), include_attributes=True)


@pytest.mark.parametrize(
    "data",
    [b'x = "\xe9"\n', b"# coding: no-such-codec\nx = 1\n", b"x = 1\n\xe9 = 2\n"],
    ids=["in a string", "unknown codec", "in a name"],
)
def test_bytes_cpython_rejects_raise_its_own_syntax_error(data):
    with pytest.raises(SyntaxError) as info:
        compile(data, "m.py", "exec")
    with pytest.raises(SyntaxError) as ours:
        decode_source(data, "m.py")
    assert (ours.value.msg, ours.value.filename, ours.value.lineno) == (
        info.value.msg,
        "m.py",
        info.value.lineno,
    )


# -- compile-time warnings (issue 7 item 14, repro 16) ------------------------------------------

import warnings  # noqa: E402

PROFILE = [
    _native.Rule(
        "profile",
        {"enter": "__e__", "exit": "__x__", "timer": "__t__", "atimer": "__a__", "record": "__r__"},
    )
]
WARNING_SOURCE = """\
import re


def first(text):
    a = len(text)
    b = abs(a)
    return re.match("\\d+", text)


def second(text):
    return re.match("\\w+", text)
"""


def compile_warnings(**kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_rewritten(WARNING_SOURCE, "wmod.py", PROFILE, **kw)
    return sorted((w.filename, w.lineno, w.category.__name__) for w in caught)


def test_compile_warnings_carry_the_original_lines_once():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile(WARNING_SOURCE, "wmod.py", "exec")
    plain = sorted((w.filename, w.lineno, w.category.__name__) for w in caught)
    assert [line for _, line, _ in plain] == [7, 11]
    assert compile_warnings() == plain


def test_compile_warnings_can_be_left_to_the_normal_compile():
    assert compile_warnings(emit_warnings=False) == []


def run_hooked(tmp_path, modules, runner):
    """Runs ``runner`` (which prints one JSON line) in a subprocess, beside ``modules``."""
    for name, text in modules.items():
        (tmp_path / f"{name}.py").write_text(text)
    (tmp_path / "run.py").write_text(textwrap.dedent(runner))
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("CALLWEAVE_CONFIG_JSON", None)
    proc = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "run.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


KEYWORD_MODULE = """\
def t_not(n):
    return not(n).bit_length()

def t_return_str(parts):
    return"-".join(parts)

def t_dispatch(k, x):
    return{"neg": lambda v: -v}[k](x)

def t_assert(f):
    try:
        assert(f)(1) == 2, "assert must fire"
    except AssertionError as e:
        return str(e)
    return "assert did not fire"

def t_in_else(f, c):
    return 1 in(f)([1]), 1 if(f)(c)else(f)(2)

def t_yield(f):
    yield(f)(3)

def run():
    return [t_not(5), t_return_str(["a", "b"]), t_dispatch("neg", 3), t_assert(lambda v: v),
            t_in_else(lambda v: v, 0), list(t_yield(lambda v: v))]
"""

KEYWORD_RUNNER = """
    import json, sys
    import callweave
    from callweave.config import Config, ProfileRule, WrapRule
    results = {}
    import kw_plain
    results["plain"] = kw_plain.run()
    callweave.install(Config(
        wrap=(WrapRule(modules=("kw_wrap",), wrapper="kw_wrapper:w"),),
        profile=(ProfileRule(modules=("kw_profile",), time_limit=1.0),),
    ), report_at_exit=False)
    import kw_wrapper, kw_wrap, kw_profile
    results["wrap"] = kw_wrap.run()
    results["wrapped_calls"] = kw_wrapper.CALLS
    results["profile"] = kw_profile.run()
    results["loaders"] = [type(m.__loader__).__name__ for m in (kw_wrap, kw_profile)]
    print(json.dumps(results))
"""


def test_keywords_never_fuse_with_inserted_names(tmp_path):
    # `not(x).f()` once became `not__callweave_...__(...)`: a NameError at run time (or, for
    # `assert(f)(1)`, an assert silently turned into an expression).
    out = run_hooked(
        tmp_path,
        {
            "kw_plain": KEYWORD_MODULE,
            "kw_wrap": KEYWORD_MODULE,
            "kw_profile": KEYWORD_MODULE,
            "kw_wrapper": "CALLS = []\ndef w(f, /, *a, **k):\n    CALLS.append(1)\n"
            "    return f(*a, **k)\n",
        },
        KEYWORD_RUNNER,
    )
    assert out["plain"][3] == "assert must fire"
    assert out["wrap"] == out["plain"]
    assert out["profile"] == out["plain"]
    assert out["wrapped_calls"]
    assert out["loaders"] == ["CallweaveLoader", "CallweaveLoader"]


def test_ignore_builtins_wraps_names_rebound_by_star_import_or_global(tmp_path, monkeypatch):
    (tmp_path / "starlib.py").write_text(
        '__all__ = ["open", "sorted"]\n'
        'def open(*a): return "starlib.open"\n'
        'def sorted(*a): return "starlib.sorted"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    source = (
        "from starlib import *\n\n"
        "def setup():\n    global len\n    len = lambda x: 42\n\n"
        "def use():\n    return open('x'), sorted([2, 1]), len('abc'), abs(-1)\n"
    )
    seen = []

    def w(call, /, *args, **kwargs):
        seen.append(call.__name__)
        return call(*args, **kwargs)

    rule = _native.Rule("wrap", {"wrapper": "__w__"}, ignore_builtins=True)
    code, result = compile_rewritten(source, "bmod.py", [rule])
    assert {s.callee for s in result.sites} == {"open", "sorted", "len", "abs"}
    ns = {"__w__": w}
    exec(code, ns)
    ns["setup"]()
    assert ns["use"]() == ("starlib.open", "starlib.sorted", 42, 1)
    assert seen == ["open", "sorted", "<lambda>", "abs"]
    # Without the star import and the global, builtins are skipped.
    plain = "def use():\n    return open, sorted([2, 1]), len('abc'), abs(-1)\n"
    result = _native.rewrite(plain, [rule], BUILTIN_NAMES)
    assert result.sites == []


def chain_source(shape, n):
    if shape == "calls":
        return "def f(*a):\n    return f\n\ndef g(q):\n    return f" + "()" * n + "\n"
    return "def g(q):\n    return q" + ".m()" * n + "\n"


CHAIN_RUNNER = """
    import json, sys, warnings
    import callweave
    from callweave.config import Config, ProfileRule, WrapRule
    names = sys.argv[1:] if len(sys.argv) > 1 else NAMES
    callweave.install(Config(
        wrap=tuple(WrapRule(modules=(n,), wrapper="chain_wrapper:w") for n in NAMES if "wrap" in n),
        profile=tuple(ProfileRule(modules=(n,), time_limit=1.0) for n in NAMES if "prof" in n),
    ), report_at_exit=False)
    import chain_wrapper

    class Q:
        def m(self):
            return self

    out = {}
    for name in NAMES:
        try:
            plain = compile(open(name + ".py").read(), name, "exec")
        except BaseException as e:
            plain = [type(e).__name__, str(e)]
        else:
            plain = None
        chain_wrapper.CALLS.clear()
        try:
            mod = __import__(name)
            mod.g(Q())
            hooked = None
        except BaseException as e:
            hooked = [type(e).__name__, str(e)]
        out[name] = {"plain": plain, "hooked": hooked, "wrapped": len(chain_wrapper.CALLS)}
    out["counters"] = callweave.hook.counters()
    print(json.dumps(out))
"""


@pytest.mark.parametrize("n", [250, 3000])
def test_long_call_chains_are_rewritten_under_the_bracket_limit(n, tmp_path):
    # Each wrapper adds a bracket level around its callee: a 250-call chain once reached
    # CPython's limit of 200 ("too many nested parentheses") and fell back.
    names = [
        f"chain_{shape}_{mode}_{n}" for shape in ("calls", "fluent") for mode in ("wrap", "prof")
    ]
    modules = {name: chain_source(name.split("_")[1], n) for name in names}
    modules["chain_wrapper"] = (
        "CALLS = []\ndef w(f, /, *a, **k):\n    CALLS.append(1)\n    return f(*a, **k)\n"
    )
    out = run_hooked(tmp_path, modules, f"NAMES = {names!r}\n" + textwrap.dedent(CHAIN_RUNNER))
    rewritten = 0
    for name in names:
        r = out[name]
        # The same outcome as plain Python: success, or CPython's own RecursionError.
        assert r["hooked"] == r["plain"], name
        if r["plain"] is None:
            rewritten += 1
            if "wrap" in name:
                assert 150 < r["wrapped"] < n, name
    assert out["counters"]["fallbacks"] == 0
    assert out["counters"]["rewritten"] == rewritten
    if n == 250 or sys.version_info >= (3, 13):
        assert rewritten == len(names)


@pytest.mark.parametrize("shape", ["calls", "fluent"])
def test_unwrapped_for_depth_counts_the_calls_left_unwrapped(shape):
    n = 250
    source = chain_source(shape, n)
    result = _native.rewrite(source, [_native.Rule("wrap", {"wrapper": "__w__"}, functions=["g"])])
    assert 0 < result.unwrapped_for_depth < n - 150
    assert len(result.sites) + result.unwrapped_for_depth == n
    compile(result.source, "m.py", "exec")  # no "too many nested parentheses"
    short = _native.rewrite(chain_source(shape, 10), [_native.Rule("wrap", {"wrapper": "__w__"})])
    assert short.unwrapped_for_depth == 0


def test_nodes_a_tree_hook_adds_without_an_end_end_where_they_start():
    # pytest's assertion rewriting adds imports with a `lineno` and no `end_lineno`;
    # ast.fix_missing_locations gave them the module's end (line 1): "AST node line range
    # (24, 1) is not valid" once callweave's finder ran before pytest's (markdown.test_tools).
    import ast

    source = "".join(f"x{i} = {i}\n" for i in range(30)) + "def f():\n    return abs(x29)\n"

    def hook(tree, result):
        added = ast.Import([ast.alias("os", lineno=24, col_offset=0)], lineno=24, col_offset=0)
        tree.body.insert(0, added)
        return tree

    rule = _native.Rule("wrap", {"wrapper": "__w__"}, functions=["f"])
    code, _ = compile_rewritten(source, "hooked.py", [rule], tree_hook=hook)
    ns = {"__w__": lambda call, /, *a, **k: call(*a, **k)}
    exec(code, ns)
    assert ns["f"]() == 29
    assert "os" in ns
