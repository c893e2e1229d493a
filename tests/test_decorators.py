import ast
import asyncio
import inspect
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from fixtures import targets

import callweave
from callweave import CallSite, rewrite_function, wrap_calls
from callweave.errors import RewriteError, SourceUnavailableError

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def clear_calls():
    targets.CALLS.clear()
    yield
    targets.CALLS.clear()


def test_recompyle_readme_example_prints_the_same_lines():
    out = subprocess.run(
        [sys.executable, str(HERE / "fixtures" / "recompyle_readme.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines() == [
        "Before range, args: (2,), kwargs: {}",
        "After range",
        "Before int, args: (0,), kwargs: {}",
        "After int",
        "Before int, args: (1,), kwargs: {}",
        "After int",
        "Before other_function, args: (), kwargs: {'val': 123.45}",
        "After other_function",
        "other val: 123.45",
    ]


def test_plain_function_results_and_calls():
    f = wrap_calls(wrapper=targets.record)(targets.with_decorator_stack)
    assert f(-3) == targets.with_decorator_stack(-3)
    assert targets.CALLS == ["helper", "abs"]


def test_exceptions_and_traceback_positions_are_the_originals():
    def frames(func):
        try:
            func(2)
        except ZeroDivisionError as exc:
            return [
                (fs.name, fs.lineno, fs.end_lineno, fs.colno, fs.end_colno, fs.line)
                for fs in traceback.extract_tb(exc.__traceback__)
                if fs.filename == targets.__file__ and fs.name != "record"
            ], "".join(traceback.format_exception(exc))
        raise AssertionError("no exception")

    wrapped = wrap_calls(wrapper=targets.record)(targets.target_raises)
    plain_frames, plain_text = frames(targets.target_raises)
    new_frames, new_text = frames(wrapped)
    assert new_frames == plain_frames

    # The rendered block (source line and carets) of the rewritten function's frame is the
    # original one.
    def block(text):
        start = text.index(", in target_raises\n")
        return text[start : text.index("  File", start)]

    assert block(new_text) == block(plain_text)
    assert "return fails(y - y)" in block(new_text)


def test_inspect_sees_the_original():
    wrapped = wrap_calls(wrapper=targets.record)(targets.target_raises)
    assert inspect.getsource(wrapped) == inspect.getsource(targets.target_raises)
    assert wrapped.__code__.co_firstlineno == targets.target_raises.__code__.co_firstlineno
    assert wrapped.__name__ == "target_raises"
    assert wrapped.__qualname__ == "target_raises"
    assert inspect.signature(wrapped) == inspect.signature(targets.target_raises)


def test_methods_classmethods_staticmethods_and_mangling():
    class Sub(targets.Shapes):
        pass

    area = wrap_calls(wrapper=targets.record)(targets.Shapes.area)
    assert area(targets.Shapes(2)) == 40  # self.__scale is still _Shapes__scale
    assert targets.CALLS == ["helper"]
    targets.CALLS.clear()

    # Above @classmethod: the decorator receives the classmethod object.
    make = wrap_calls(wrapper=targets.record)(targets.Shapes.__dict__["make"])
    assert isinstance(make, classmethod)
    Sub.make2 = make
    obj = Sub.make2(-3)
    assert type(obj) is Sub and obj.n == 3
    assert targets.CALLS == ["abs", Sub.__qualname__]
    targets.CALLS.clear()

    unit = wrap_calls(wrapper=targets.record)(targets.Shapes.__dict__["unit"])
    assert isinstance(unit, staticmethod)
    assert unit.__func__() == 2
    assert targets.CALLS == ["helper"]


def test_closures_and_nonlocal():
    bump = targets.outer(10)
    wrapped = wrap_calls(wrapper=targets.record)(bump)
    assert wrapped(1) == 12
    assert bump(1) == 14  # the same cell: both functions see each other's writes
    assert wrapped.__closure__ is bump.__closure__
    assert targets.CALLS == ["helper"]


def test_async_generators_and_async_generators():
    coro = wrap_calls(wrapper=targets.record)(targets.coro)
    assert inspect.iscoroutinefunction(coro)
    assert asyncio.run(coro(4)) == 8
    assert targets.CALLS == ["sleep", "helper"]
    targets.CALLS.clear()

    gen = wrap_calls(wrapper=targets.record)(targets.gen)
    assert inspect.isgeneratorfunction(gen)
    assert list(gen(3)) == [0, 2, 4]
    assert targets.CALLS == ["range", "helper", "helper", "helper"]
    targets.CALLS.clear()

    agen = wrap_calls(wrapper=targets.record)(targets.agen)
    assert inspect.isasyncgenfunction(agen)

    async def consume():
        return [v async for v in agen(2)]

    assert asyncio.run(consume()) == [0, 2]
    assert targets.CALLS.count("helper") == 2


def test_lambdas_and_comprehensions_are_wrapped():
    f = wrap_calls(wrapper=targets.record)(targets.lambda_comp)
    assert f([1, 2]) == targets.lambda_comp([1, 2])
    assert targets.CALLS.count("helper") == 4


def test_ignore_builtins_keeps_rebound_names():
    f = wrap_calls(wrapper=targets.record, ignore_builtins=True)(targets.uses_rebound_builtin)
    assert f([1]) == -1
    assert targets.CALLS == ["len"]


def test_blacklist_and_whitelist_with_subscripts_and_wildcards():
    d = {"key": targets.helper, "other": targets.helper}
    f = wrap_calls(wrapper=targets.record, blacklist={"d[key]", "log.append", "str"})(
        targets.many_calls
    )
    f(d)
    assert targets.CALLS == ["len", "helper", "helper", "repr", "abs"]
    targets.CALLS.clear()

    f = wrap_calls(wrapper=targets.record, whitelist={"d[*]"})(targets.many_calls)
    f(d)
    assert targets.CALLS == ["helper", "helper"]
    targets.CALLS.clear()

    f = wrap_calls(wrapper=targets.record, ignore_builtins=True)(targets.many_calls)
    f(d)
    assert targets.CALLS == ["len", "list.append", "helper", "helper", "helper"]


@pytest.mark.parametrize("entry", ["", "a..b", "a[", "a[]", "1x", "a b"])
def test_invalid_call_names_are_value_errors_naming_the_entry(entry):
    with pytest.raises(ValueError, match=repr(entry).replace("[", r"\[")):
        wrap_calls(wrapper=targets.record, blacklist={entry})


def test_blacklist_and_whitelist_together_is_a_value_error():
    with pytest.raises(ValueError, match="blacklist and whitelist"):
        wrap_calls(wrapper=targets.record, blacklist={"a"}, whitelist={"b"})


def test_pass_site_gives_call_sites():
    f = wrap_calls(wrapper=targets.record_site, pass_site=True)(targets.target_raises)
    with pytest.raises(ZeroDivisionError):
        f(1)
    first, second = targets.CALLS
    assert isinstance(first, CallSite)
    lines, start = inspect.getsourcelines(targets.target_raises)
    assert first.source == "helper(x)"
    assert first.callee == "helper"
    assert first.function == "target_raises"
    assert first.module == "fixtures.targets"
    assert first.filename == targets.__file__
    assert first.lineno == start + 1 == first.end_lineno
    assert lines[1][first.col_offset : first.end_col_offset] == "helper(x)"
    assert second.source == "fails(y - y)"


def test_rewrite_details():
    details = {}
    wrap_calls(wrapper=targets.record, rewrite_details=details)(targets.with_decorator_stack)
    assert details["original_func"] is targets.with_decorator_stack
    assert details["original_source"] == inspect.getsource(targets.with_decorator_stack)
    assert "record" not in details["new_source"]
    assert "__callweave_wrap_" in details["new_source"]
    assert "def with_decorator_stack(x):" in details["new_source"]


def test_stacked_decorators_compose_outer_wrapper_first():
    order = []

    def outer_wrapper(call, /, *args, **kwargs):
        order.append(("outer", getattr(call, "__name__", "?")))
        return call(*args, **kwargs)

    def inner_wrapper(call, /, *args, **kwargs):
        order.append(("inner", call.__name__))
        return call(*args, **kwargs)

    f = wrap_calls(wrapper=outer_wrapper)(wrap_calls(wrapper=inner_wrapper)(targets.helper_user))
    assert f(2) == 4
    assert order == [("outer", "inner_wrapper"), ("inner", "helper")]
    assert f.__callweave__.original is targets.helper_user
    assert len(f.__callweave__.layers) == 2


def test_functions_without_source_are_rejected_by_name():
    with pytest.raises(SourceUnavailableError, match="'len'"):
        wrap_calls(wrapper=targets.record)(len)
    namespace = {}
    exec("def typed_at_prompt():\n    return 1\n", namespace)
    with pytest.raises(SourceUnavailableError, match="typed_at_prompt"):
        wrap_calls(wrapper=targets.record)(namespace["typed_at_prompt"])
    assert issubclass(SourceUnavailableError, callweave.CallweaveError)


class AddOne(ast.NodeTransformer):
    """Turns every integer constant n into n + 1."""

    def visit_Constant(self, node):
        if type(node.value) is int:
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node


def test_rewrite_function_with_a_custom_transformer():
    f = rewrite_function(targets.constants, [AddOne()])
    assert f() == (2, 3)
    assert targets.constants() == (1, 2)
    # Composes with call wrapping, in either order.
    g = wrap_calls(wrapper=targets.record)(rewrite_function(targets.constants_call, [AddOne()]))
    assert g() == 4
    assert targets.CALLS == ["helper"]


def test_rewrite_function_rejects_non_transformers():
    with pytest.raises(TypeError, match="NodeTransformer"):
        rewrite_function(targets.constants, [object()])


def test_syntax_errors_are_the_users_own(tmp_path):
    from callweave import _native
    from callweave._compile import compile_rewritten

    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return g(1\n\nx = 1\n")
    with pytest.raises(SyntaxError) as info:
        compile_rewritten(bad.read_text(), str(bad), [_native.Rule("wrap", {"wrapper": "__w__"})])
    assert info.value.filename == str(bad)
    assert info.value.lineno == 2
    with pytest.raises(SyntaxError) as plain:
        compile(bad.read_text(), str(bad), "exec")
    assert (info.value.msg, info.value.lineno, info.value.offset) == (
        plain.value.msg,
        plain.value.lineno,
        plain.value.offset,
    )


def test_rewrite_error_is_a_callweave_error():
    assert issubclass(RewriteError, callweave.CallweaveError)


STALE_SOURCE = """\
from callweave import flat_profile, wrap_calls


def w(f, /, *a, **k):
    return f(*a, **k)


@flat_profile(time_limit="1s", below_callback=None)
def answer():
    return str({value})


@wrap_calls(wrapper=w)
def wrapped():
    return str({value})
"""


def test_reloaded_edited_module_runs_its_new_decorated_bodies(tmp_path):
    # Issue 7 item 7 (repro 07): the decorators read linecache without checkcache, so the first
    # decorated function of a reloaded module kept its old body.
    (tmp_path / "stale_mod.py").write_text(STALE_SOURCE.format(value=1))
    code = f"""\
import importlib, os, sys, time
sys.path.insert(0, {str(tmp_path)!r})
sys.dont_write_bytecode = True
import stale_mod
before = (stale_mod.answer(), stale_mod.wrapped())
path = stale_mod.__file__
with open(path, "w") as f:
    f.write({STALE_SOURCE.format(value=2)!r})
t = time.time() + 5
os.utime(path, (t, t))
importlib.invalidate_caches()
stale_mod = importlib.reload(stale_mod)
print(before, (stale_mod.answer(), stale_mod.wrapped()))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["('1',", "'1')", "('2',", "'2')"]


WARNING_MODULE = """\
import re
from callweave import flat_profile


@flat_profile(time_limit="1s", below_callback=None)
def first(text):
    return re.match("\\d+", text)


@flat_profile(time_limit="1s", below_callback=None)
def second(text):
    return re.match("\\w+", text)
"""


def test_decorators_repeat_no_compile_warning(tmp_path):
    # Issue 7 item 14 (repro 16): each decorated function recompiled the module and repeated
    # its compile-time warnings, at rewritten lines.
    (tmp_path / "wmod.py").write_text(WARNING_MODULE)
    code = "import warnings\nwarnings.simplefilter('always')\nimport wmod\n"
    p = subprocess.run(
        [sys.executable, "-B", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line.split(": ")[0] for line in p.stderr.splitlines() if "Warning" in line]
    assert [line.rsplit(":", 1)[1] for line in lines] == ["7", "12"]
