"""``pattern_matched_exceptions``: codetransformer's examples, and plain Python's semantics for
everything else (laziness, order, ``as``, bare ``raise``, chaining, tracebacks)."""
# ruff: noqa: B030 - except clauses holding instances and other values are the point here

import asyncio
import inspect
import sys
import traceback

import pytest

from callweave import flat_profile, rewrite_function, wrap_calls
from callweave.transforms import pattern_matched_exceptions
from callweave.transforms.exceptions import match

# ---- codetransformer's README and tests ----------------------------------------------------


def test_readme_example_without_a_matcher():
    @pattern_matched_exceptions()
    def foo():
        try:
            raise ValueError("bar")
        except ValueError("buzz"):
            return "buzz"
        except ValueError("bar"):
            return "bar"

    assert foo() == "bar"


def test_readme_example_with_a_matcher():
    # The README's version reads ``math_expr`` for ``match_expr`` (a NameError): fixed here.
    def match_greater(match_expr, exc_type, exc_value, exc_traceback):
        return match_expr > exc_value.args[0]

    @pattern_matched_exceptions(match_greater)
    def foo():
        try:
            raise ValueError(5)
        except 4:
            return 4
        except 5:
            return 5
        except 6:
            return 6

    assert foo() == 6


def test_codetransformer_tests():
    @pattern_matched_exceptions()
    def patterns():
        try:
            raise ValueError("bar")
        except TypeError:
            raise
        except ValueError("foo"):
            raise
        except ValueError("bar"):
            return "bar"
        except ValueError("buzz"):
            raise

    @pattern_matched_exceptions()
    def bind_name():
        try:
            raise ValueError("bar")
        except ValueError("foo") as e:
            return e.args[0]
        except ValueError("bar") as e:
            return e.args[0]
        except ValueError("buzz") as e:
            return e.args[0]

    @pattern_matched_exceptions()
    def reraise():
        try:
            raise ValueError("bar")
        except ValueError("bar"):
            raise

    @pattern_matched_exceptions()
    def normal_exc_match():
        try:
            raise ValueError("bar")
        except ValueError:
            return "matched"
        except ValueError("bar"):
            raise

    assert patterns() == "bar"
    assert bind_name() == "bar"
    with pytest.raises(ValueError) as err:
        reraise()
    assert err.type is ValueError and err.value.args == ("bar",)
    assert normal_exc_match() == "matched"


# ---- the default rule ----------------------------------------------------------------------


class Base(Exception):
    pass


class Derived(Base):
    pass


def test_instances_match_type_and_args_subclasses_included():
    @pattern_matched_exceptions()
    def f(exc):
        try:
            raise exc
        except Base(1, 2):
            return "base(1, 2)"
        except Base(1):
            return "base(1)"
        except Exception:
            return "other"

    assert f(Derived(1, 2)) == "base(1, 2)"
    assert f(Base(1)) == "base(1)"
    assert f(Base(2)) == "other"
    assert f(ValueError(1)) == "other"


def test_names_bound_to_instances_and_classes_at_run_time():
    missing = KeyError("missing")

    @pattern_matched_exceptions()
    def f(exc, kind):
        try:
            raise exc
        except missing:
            return "missing"
        except kind:
            return "kind"

    assert f(KeyError("missing"), TypeError) == "missing"
    assert f(KeyError("other"), LookupError) == "kind"
    with pytest.raises(KeyError):
        f(KeyError("other"), TypeError)


def test_tuples_mix_classes_and_instances():
    @pattern_matched_exceptions()
    def f(exc):
        try:
            raise exc
        except (TypeError, ValueError("x")):
            return 1
        except (KeyError("k"), ValueError("y")) as e:
            return e

    assert f(TypeError()) == 1
    assert f(ValueError("x")) == 1
    y = ValueError("y")
    assert f(y) is y
    with pytest.raises(ValueError):
        f(ValueError("z"))


def test_the_public_match_rule():
    exc = Derived(1)
    info = (type(exc), exc, None)
    assert match(Base, *info) and match(Derived(1), *info) and match(Base(1), *info)
    assert not match(Derived(2), *info) and not match(ValueError, *info)
    assert match((ValueError, Base(1)), *info) and not match((), *info)
    with pytest.raises(TypeError, match="do not inherit from BaseException"):
        match(int, *info)


def plain_bad_class():
    try:
        raise ValueError("x")
    except int:
        pass


def plain_bad_value():
    try:
        raise ValueError("x")
    except 5:
        pass


def plain_bad_tuple_item():
    try:
        raise ValueError("x")
    except (TypeError, str):
        pass


def frames(exc):
    """Every traceback entry, with positions, of ``exc`` and the exceptions it chains."""
    out = []
    while exc is not None:
        out.append(
            (
                type(exc),
                exc.args,
                [
                    (f.filename, f.name, f.lineno, f.end_lineno, f.colno, f.end_colno)
                    for f in traceback.extract_tb(exc.__traceback__)
                ][1:],  # the test's own frame calls the plain or the rewritten function
                exc.__suppress_context__,
            )
        )
        exc = exc.__cause__ or exc.__context__
    return out


def outcome(func, *args):
    try:
        return ("returned", func(*args))
    except BaseException as exc:
        return ("raised", frames(exc))


@pytest.mark.parametrize("plain", [plain_bad_class, plain_bad_value, plain_bad_tuple_item])
def test_values_cpython_rejects_get_its_own_type_error_at_the_clause(plain):
    rewritten = pattern_matched_exceptions()(plain)
    got = outcome(rewritten)
    assert got == outcome(plain)
    assert got[1][0][0] is TypeError


# ---- plain Python's semantics ------------------------------------------------------------


def test_clauses_are_evaluated_lazily_and_in_order():
    seen = []

    def pattern(name, value):
        seen.append(name)
        return value

    @pattern_matched_exceptions()
    def f(exc):
        try:
            raise exc
        except pattern("a", KeyError("a")):
            return "a"
        except pattern("b", ValueError):
            return "b"
        except pattern("c", ValueError("v")):
            return "c"

    assert f(ValueError("v")) == "b"
    assert seen == ["a", "b"]
    seen.clear()
    assert f(KeyError("a")) == "a"
    assert seen == ["a"]
    seen.clear()

    @pattern_matched_exceptions()
    def no_exception():
        try:
            return "body"
        except pattern("never", ValueError):
            return "handler"

    assert no_exception() == "body"
    assert seen == []


def test_the_matcher_sees_the_exception_being_handled():
    calls = []

    def matcher(expr, exc_type, exc_value, exc_tb):
        calls.append((expr, exc_type, exc_value, exc_tb, sys.exc_info()[1]))
        return expr == "yes"

    @pattern_matched_exceptions(matcher)
    def f():
        try:
            raise KeyError("k")
        except "no":
            return 0
        except "yes":
            return 1

    assert f() == 1
    assert [c[0] for c in calls] == ["no", "yes"]
    for _, exc_type, exc_value, exc_tb, handled in calls:
        assert exc_type is KeyError and exc_value is handled
        assert exc_tb is exc_value.__traceback__


def test_a_custom_matcher_gets_classes_too():
    @pattern_matched_exceptions(lambda expr, *info: expr is TypeError)
    def f():
        try:
            raise ValueError
        except ValueError:
            return "value"
        except TypeError:
            return "type, as the matcher says"

    assert f() == "type, as the matcher says"


def test_as_binding_is_deleted_after_the_handler():
    @pattern_matched_exceptions()
    def f():
        try:
            raise ValueError("v")
        except ValueError("v") as e:
            seen = e
        return seen, "e" in locals()

    exc, bound = f()
    assert isinstance(exc, ValueError) and not bound

    @pattern_matched_exceptions()
    def g():
        e = 1
        try:
            raise ValueError("v")
        except ValueError("v") as e:  # noqa: F841 - the deletion is the point
            pass
        return e

    with pytest.raises(UnboundLocalError):
        g()


def plain_reraise():
    try:
        {}["k"]
    except ValueError:
        pass
    except KeyError:
        raise


def pattern_reraise():
    try:
        {}["k"]
    except ValueError("v"):
        pass
    except KeyError("k"):
        raise


def plain_unmatched():
    try:
        {}["k"]
    except TypeError:
        pass


def pattern_unmatched():
    try:
        {}["k"]
    except KeyError("j"):
        pass


def plain_chained():
    try:
        {}["k"]
    except KeyError as e:
        raise RuntimeError("from") from e


def pattern_chained():
    try:
        {}["k"]
    except KeyError("k") as e:
        raise RuntimeError("from") from e


def plain_context():
    try:
        {}["k"]
    except KeyError:
        1 / 0  # noqa: B018


def pattern_context():
    try:
        {}["k"]
    except KeyError("k"):
        1 / 0  # noqa: B018


def shape(func, result):
    """``result`` with lines relative to ``func``'s first line (the two functions differ)."""
    kind, value = result
    if kind == "returned":
        return result
    first = func.__code__.co_firstlineno
    return [
        (t, args, [(line - first, end - first, c, ec) for (_, _, line, end, c, ec) in tb], s)
        for t, args, tb, s in value
    ]


@pytest.mark.parametrize(
    ("plain", "pattern"),
    [
        (plain_reraise, pattern_reraise),
        (plain_unmatched, pattern_unmatched),
        (plain_chained, pattern_chained),
        (plain_context, pattern_context),
    ],
    ids=["bare raise", "no clause matches", "raise from", "context"],
)
def test_reraise_chaining_and_tracebacks_are_plain_pythons(plain, pattern):
    rewritten = pattern_matched_exceptions()(pattern)
    want = shape(plain, outcome(plain))
    got = outcome(rewritten)
    assert shape(pattern, got) == want
    assert got[0] == "raised" and all(f[0] == __file__ for _, _, tb, _ in got[1] for f in tb)


def test_reraised_exception_is_the_same_object_and_exc_info_is_restored():
    original = KeyError("k")

    @pattern_matched_exceptions()
    def f():
        try:
            raise original
        except KeyError("other"):
            pass

    with pytest.raises(KeyError) as err:
        f()
    assert err.value is original
    assert sys.exc_info() == (None, None, None)


def test_a_matcher_that_raises_chains_like_a_failing_clause():
    def matcher(*args):
        raise LookupError("matcher failed")

    @pattern_matched_exceptions(matcher)
    def f():
        try:
            raise ValueError("v")
        except "anything":
            pass

    with pytest.raises(LookupError) as err:
        f()
    assert isinstance(err.value.__context__, ValueError)


def test_except_star_and_bare_except_are_left_alone():
    @pattern_matched_exceptions()
    def f():
        caught = []
        try:
            raise ExceptionGroup("g", [ValueError(1), TypeError(2)])
        except* ValueError as g:
            caught.append(g.exceptions)
        except* TypeError:
            caught.append("type")
        try:
            raise KeyError
        except:  # noqa: E722
            caught.append("bare")
        return caught

    assert f() == [(ValueError(1),), "type", "bare"] or repr(f()) == repr(
        [(ValueError(1),), "type", "bare"]
    )
    assert "except* ValueError" in f.__callweave__.new_source


# ---- kinds of functions and what they keep ---------------------------------------------------


def test_kinds_of_functions():
    class C:
        @pattern_matched_exceptions()
        def method(self, exc):
            try:
                raise exc
            except ValueError("m"):
                return "method"

        @staticmethod
        @pattern_matched_exceptions()
        def static_inside(exc):
            try:
                raise exc
            except ValueError("s"):
                return "static"

        @pattern_matched_exceptions()
        @classmethod
        def class_outside(cls, exc):
            try:
                raise exc
            except ValueError("c"):
                return cls.__name__

    def outer(value):
        @pattern_matched_exceptions()
        def closure():
            try:
                raise ValueError(value)
            except ValueError(value):
                return value

        return closure

    @pattern_matched_exceptions()
    async def coroutine():
        try:
            await asyncio.sleep(0)
            raise ValueError("a")
        except ValueError("a"):
            return "async"

    @pattern_matched_exceptions()
    def generator():
        for v in ("x", "y"):
            try:
                raise ValueError(v)
            except ValueError("x"):
                yield "gen x"
            except ValueError("y"):
                yield "gen y"

    @pattern_matched_exceptions()
    async def async_generator():
        try:
            raise ValueError("ag")
        except ValueError("ag"):
            yield "async gen"

    async def collect():
        return [v async for v in async_generator()]

    assert C().method(ValueError("m")) == "method"
    assert C.static_inside(ValueError("s")) == "static"
    assert C.class_outside(ValueError("c")) == "C"
    assert outer(3)() == 3
    assert outer(3).__closure__[0].cell_contents == 3
    assert asyncio.run(coroutine()) == "async"
    assert list(generator()) == ["gen x", "gen y"]
    assert asyncio.run(collect()) == ["async gen"]


def keeps(a, b=2, *args, c, d=4, **kwargs) -> int:
    """Docstring kept."""
    try:
        raise ValueError(a)
    except ValueError(1):
        return a + b + c + d


def test_keeps_metadata_and_positions():
    rewritten = pattern_matched_exceptions()(keeps)
    assert rewritten.__doc__ == keeps.__doc__
    assert rewritten.__qualname__ == keeps.__qualname__
    assert inspect.signature(rewritten) == inspect.signature(keeps)
    assert rewritten.__defaults__ == (2,) and rewritten.__kwdefaults__ == {"d": 4}
    assert inspect.getsource(rewritten) == inspect.getsource(keeps)
    assert rewritten.__code__.co_firstlineno == keeps.__code__.co_firstlineno
    assert rewritten(1, c=3) == 10
    original = {p for p in keeps.__code__.co_positions() if p[0] is not None}
    assert original <= set(rewritten.__code__.co_positions())


# ---- composition -----------------------------------------------------------------------------


def composed():
    try:
        raise ValueError(len("ab"))
    except ValueError(len("xy")):
        return "matched"


@pytest.mark.parametrize("order", ["exceptions inside", "exceptions outside"])
def test_composes_with_wrap_calls(order):
    seen = []

    def wrapper(call, /, *args, **kwargs):
        seen.append(getattr(call, "__name__", call))
        return call(*args, **kwargs)

    pme = pattern_matched_exceptions()
    wrap = wrap_calls(wrapper=wrapper)
    f = wrap(pme(composed)) if order == "exceptions inside" else pme(wrap(composed))
    assert f() == "matched"
    assert seen == ["len", "ValueError", "len", "ValueError"]


def test_composes_with_flat_profile_and_rewrite_function():
    import ast

    totals = []
    profiled = flat_profile(time_limit=0, above_callback=lambda *a: totals.append(a))
    f = profiled(pattern_matched_exceptions()(composed))
    assert f() == "matched"
    assert len(totals) == 1

    class Rename(ast.NodeTransformer):
        def visit_Constant(self, node):
            if node.value == "matched":
                return ast.copy_location(ast.Constant("renamed"), node)
            return node

    g = rewrite_function(pattern_matched_exceptions()(composed), [Rename()])
    assert g() == "renamed"


def test_the_readme_block_runs(tmp_path):
    import re
    import subprocess
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (block,) = [b for b in blocks if "import asconstants, interpolated_strings" in b]
    script = tmp_path / "readme_transforms.py"
    script.write_text(
        block
        + "\nassert foo() == 'bar'\nlen = None\nassert f([1, 2]) == 3\n"
        + "assert g(1, 2) == '1 2'\nprint('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    ).stdout
    assert out == "ok\n"
