"""Positions of rewritten code: tracebacks and line events are the original's."""

import sys
import traceback

import pytest

from callweave import _native
from callweave._compile import compile_rewritten

WRAP = [_native.Rule.wrap(wrapper="__w__")]


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
    _native.Rule.profile(enter="__e__", exit="__x__", timer="__t__", atimer="__a__", record="__r__")
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
