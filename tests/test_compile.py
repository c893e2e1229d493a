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
