"""callweave.bytecode: the pattern DSL, CodeTransformer, steal, exceptions, stack depth."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("bytecode")

from callweave.bytecode import (
    BytecodeError,
    Code,
    CodeTransformer,
    Instruction,
    matchany,
    option,
    pattern,
    plus,
    seq,
    var,
)
from callweave.bytecode.instructions import (
    BINARY_OP,
    LOAD_CONST,
    LOAD_FAST,
    LOAD_GLOBAL,
    NOP,
    POP_TOP,
    RETURN_VALUE,
)

# --- the README example ---------------------------------------------------------------


class FoldNames(CodeTransformer):
    @pattern(LOAD_GLOBAL, LOAD_GLOBAL, BINARY_OP("+"))
    def _fold(self, a: Instruction, b: Instruction, add: Instruction) -> Iterator[Instruction]:
        yield LOAD_FAST(a.arg + b.arg).steal(a)


def test_fold_names() -> None:
    @FoldNames()
    def f() -> int:
        ab = 3  # noqa: F841 (read by the folded LOAD_FAST)
        return a + b  # type: ignore[name-defined] # noqa: F821

    assert f() == 3
    assert "a" not in f.__code__.co_names and "b" not in f.__code__.co_names
    assert f.__name__ == "f" and f.__qualname__.endswith("test_fold_names.<locals>.f")


def test_fold_names_leaves_other_operators() -> None:
    @FoldNames()
    def f() -> int:
        return len - abs  # type: ignore[operator]

    with pytest.raises(TypeError):
        f()


# --- the DSL --------------------------------------------------------------------------


def _instrs(*items: Instruction) -> list[Instruction]:
    return list(items)


SEQ = _instrs(LOAD_CONST(1), LOAD_CONST(2), LOAD_FAST("x"), BINARY_OP("+"), RETURN_VALUE())


def _end(*matchables: Any, at: int = 0) -> int | None:
    return pattern(*matchables).match(SEQ, at)


def test_dsl_instruction_class_and_instance() -> None:
    assert _end(LOAD_CONST) == 1
    assert _end(LOAD_CONST, LOAD_CONST) == 2
    assert _end(LOAD_FAST) is None
    assert _end(LOAD_CONST(1)) == 1
    assert _end(LOAD_CONST(2)) is None
    assert _end(BINARY_OP("+"), at=3) == 4
    assert _end(BINARY_OP("-"), at=3) is None


def test_dsl_matchany_and_ellipsis() -> None:
    assert _end(matchany, matchany, LOAD_FAST) == 3
    assert _end(..., ..., ..., BINARY_OP) == 4


def test_dsl_var_is_greedy_and_backtracks() -> None:
    assert _end(LOAD_CONST[var]) == 2
    assert _end(LOAD_FAST[var], LOAD_CONST) == 1  # zero repetitions
    assert _end(matchany[var], RETURN_VALUE) == 5
    assert _end(matchany[var], LOAD_CONST) == 2  # gives back to the last LOAD_CONST


def test_dsl_plus() -> None:
    assert _end(LOAD_CONST[plus]) == 2
    assert _end(LOAD_FAST[plus]) is None
    assert _end(LOAD_CONST[plus], LOAD_CONST) == 2


def test_dsl_option() -> None:
    assert _end(LOAD_FAST[option], LOAD_CONST) == 1
    assert _end(LOAD_CONST[option], LOAD_CONST, LOAD_FAST) == 3
    assert _end(LOAD_CONST, LOAD_CONST[option], LOAD_CONST, LOAD_FAST) == 3


def test_dsl_counts() -> None:
    assert _end(LOAD_CONST[2]) == 2
    assert _end(LOAD_CONST[3]) is None
    assert _end(LOAD_CONST[1, 5], LOAD_FAST) == 3


def test_dsl_alternation() -> None:
    assert _end(LOAD_FAST | LOAD_CONST) == 1
    assert _end((LOAD_FAST | LOAD_CONST)[plus]) == 3
    assert _end(... | LOAD_FAST) == 1
    assert _end(LOAD_FAST | POP_TOP) is None


def test_dsl_negation() -> None:
    assert _end(~LOAD_FAST) == 1
    assert _end(~LOAD_CONST) is None
    assert _end((~BINARY_OP)[var], BINARY_OP) == 4
    assert _end(~(LOAD_CONST | LOAD_FAST)) is None


def test_dsl_seq() -> None:
    assert _end(seq(LOAD_CONST, LOAD_CONST), LOAD_FAST) == 3
    assert _end(seq(LOAD_CONST, ~LOAD_CONST)) is None
    assert _end(seq(LOAD_CONST, matchany)[plus]) == 2
    assert _end(seq(LOAD_CONST | LOAD_FAST, matchany)[plus]) == 4
    with pytest.raises(TypeError):
        pattern(42)


def test_patterns_try_in_definition_order_and_skip_replacements() -> None:
    seen: list[str] = []

    class Order(CodeTransformer):
        @pattern(LOAD_CONST)
        def _const(self, instr: Instruction) -> Iterator[Instruction]:
            seen.append("const")
            yield instr

        @pattern(matchany)
        def _any(self, instr: Instruction) -> Iterator[Instruction]:
            seen.append("any")
            yield instr

    Order().transform(Code(_instrs(LOAD_CONST(1), POP_TOP(), LOAD_CONST(None), RETURN_VALUE())))
    assert seen == ["const", "any", "const", "any"]


def test_startcodes_and_begin() -> None:
    seen: list[object] = []

    class Stateful(CodeTransformer):
        @pattern(POP_TOP)
        def _enter(self, instr: Instruction) -> Iterator[Instruction]:
            self.begin("after_pop")
            yield instr

        @pattern(LOAD_CONST, startcodes=("after_pop",))
        def _after(self, instr: Instruction) -> Iterator[Instruction]:
            seen.append(("after", instr.arg))
            yield instr

        @pattern(LOAD_CONST)
        def _before(self, instr: Instruction) -> Iterator[Instruction]:
            seen.append(("before", instr.arg))
            yield instr

    t = Stateful()
    t.transform(Code(_instrs(LOAD_CONST(1), POP_TOP(), LOAD_CONST(2), RETURN_VALUE())))
    assert seen == [("before", 1), ("after", 2)]
    assert t.startcode == 0  # each code starts (and ends) in the default startcode


# --- hooks ----------------------------------------------------------------------------


def test_transform_consts_names_varnames_and_nested_code() -> None:
    class Hooks(CodeTransformer):
        def transform_consts(self, consts: tuple[Any, ...]) -> tuple[Any, ...]:
            consts = super().transform_consts(consts)
            return tuple(c * 10 if type(c) is int else c for c in consts)

        def transform_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
            return tuple("max" if n == "min" else n for n in names)

        def transform_varnames(self, varnames: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(n.upper() for n in varnames)

    def f(a: int, b: int = 5) -> tuple[int, int, list[int]]:
        local = min(a, b) + 1
        return local, (lambda: 2)(), [3 for _ in "a"]

    g = Hooks()(f)
    assert g.__code__.co_varnames[:3] == ("A", "B", "LOCAL")
    assert g(1) == (max(1, 5) + 10, 20, [30])
    assert g.__defaults__ == (5,) and g.__annotations__ == f.__annotations__
    assert f(1) == (2, 2, [3])  # the original is untouched


def test_decorated_function_keeps_its_attributes() -> None:
    def outer() -> Any:
        y = 1

        def f(x: int = 1, *, k: int = 2) -> int:
            """Doc."""
            return x + k + y

        f.extra = "kept"  # type: ignore[attr-defined]
        return f

    f = outer()
    g = CodeTransformer()(f)
    assert g is not f
    for attr in (
        "__name__",
        "__qualname__",
        "__defaults__",
        "__kwdefaults__",
        "__doc__",
        "__annotations__",
        "__module__",
        "__closure__",
    ):
        assert getattr(g, attr) == getattr(f, attr), attr
    assert g.extra == "kept"  # type: ignore[attr-defined]
    assert g() == f() == 4


def test_untouched_instructions_keep_their_positions() -> None:
    def f(x: int) -> int:
        y = x + 1
        return y * 3

    class Triple(CodeTransformer):
        @pattern(LOAD_CONST(3))
        def _c(self, instr: Instruction) -> Iterator[Instruction]:
            yield LOAD_CONST(4).steal(instr)

    g = Triple()(f)
    assert g(1) == 8
    assert list(g.__code__.co_positions()) == list(f.__code__.co_positions())


# --- steal and jumps -------------------------------------------------------------------


def _loop(n: int) -> int:
    total = 0
    i = 0
    while i < n:
        i += 1
        if i == 3:
            continue
        total += i
    return total


def test_steal_keeps_jump_targets() -> None:
    replaced: list[Instruction] = []

    class Replace(CodeTransformer):
        @pattern(matchany)
        def _any(self, instr: Instruction) -> Iterator[Instruction]:
            if instr.target_of:
                copy = type(instr)(instr.arg) if instr.has_arg and not instr.is_jump else None
                if copy is not None:
                    replaced.append(instr)
                    yield copy.steal(instr)
                    assert not instr.target_of and copy.target_of
                    return
            yield instr

    g = Replace()(_loop)
    assert replaced  # some jump target was replaced
    assert [g(n) for n in range(6)] == [_loop(n) for n in range(6)]


def test_unstolen_jump_targets_move_to_the_replacement() -> None:
    class Prefix(CodeTransformer):
        @pattern(matchany)
        def _any(self, instr: Instruction) -> Iterator[Instruction]:
            if instr.target_of:
                yield NOP()
                yield type(instr)(instr.arg) if instr.has_arg and not instr.is_jump else instr
            else:
                yield instr

    g = Prefix()(_loop)
    assert [g(n) for n in range(6)] == [_loop(n) for n in range(6)]


# --- exception handling -----------------------------------------------------------------


class Nops(CodeTransformer):
    """Puts a NOP before every instruction: every offset and exception-table entry moves."""

    @pattern(matchany)
    def _any(self, instr: Instruction) -> Iterator[Instruction]:
        if instr.opname not in ("RESUME", "CALL"):  # see test_units_stay_together
            yield NOP()
        yield instr


class Doubles(CodeTransformer):
    """Replaces each int constant (inside try blocks too) by twice its value."""

    @pattern(LOAD_CONST)
    def _c(self, instr: Instruction) -> Iterator[Instruction]:
        yield LOAD_CONST(instr.arg * 2 if type(instr.arg) is int else instr.arg).steal(instr)


def exceptions(x: int) -> list[object]:
    out: list[object] = []
    for i in range(3):
        try:
            try:
                if i == x:
                    raise ValueError(i)
                out.append(10 // (i - 1))
            except ZeroDivisionError as e:
                out.append(type(e).__name__)
                continue
            finally:
                out.append("finally")
        except ValueError as e:
            out.append(("value", e.args))
        with contextlib.suppress(KeyError):
            {}[i]
        with contextlib.ExitStack() as stack:
            stack.callback(out.append, "exit")
            if i == 2:
                break
    else:
        out.append("else")
    return out


def generator(n: int) -> Iterator[int]:
    try:
        for i in range(n):
            try:
                yield 1 // (i - 1)
            except ZeroDivisionError:
                yield -1
    finally:
        pass


class CM:
    def __init__(self, out: list[int]) -> None:
        self.out = out

    async def __aenter__(self) -> int:
        return 5

    async def __aexit__(self, *exc: object) -> bool:
        self.out.append(-1)
        return True


async def coroutine(n: int) -> list[int]:
    async def agen() -> Any:
        for i in range(n):
            yield i

    out = []

    async with CM(out) as five:
        async for i in agen():
            out.append(i + five)
        raise RuntimeError
    try:
        await asyncio.sleep(0)
        raise KeyError(1)
    except* KeyError:
        out.append(7)
    return out


@pytest.mark.parametrize("transformer", [Nops, Doubles, CodeTransformer])
def test_exception_handling_survives(transformer: type[CodeTransformer]) -> None:
    t = transformer()
    same = transformer is not Doubles
    for x in range(4):
        result = t(exceptions)(x)
        if same:
            assert result == exceptions(x)
        else:
            assert "finally" in result
    g = t(generator)
    assert list(g(3)) == (list(generator(3)) if same else [2 // -2, 2 // -1, -2])
    c = t(coroutine)
    assert asyncio.run(c(3)) == (asyncio.run(coroutine(3)) if same else asyncio.run(c(3)))
    if same:
        assert asyncio.run(c(3)) == [5, 6, 7, -1, 7]


# --- stack depth ------------------------------------------------------------------------


def test_broken_stack_depth_is_a_clear_error() -> None:
    class DropConsts(CodeTransformer):
        @pattern(LOAD_CONST)
        def _c(self, instr: Instruction) -> Iterator[Instruction]:
            return iter(())

    def victim() -> int:
        return 1 + 2 * len("ab")

    with pytest.raises(BytecodeError, match=r"victim.*stack depth"):
        DropConsts()(victim)


def test_bad_yield_is_a_clear_error() -> None:
    class Bad(CodeTransformer):
        @pattern(matchany)
        def _r(self, instr: Instruction) -> Iterator[Any]:
            yield "not an instruction"

    with pytest.raises(TypeError, match=r"Bad\._r produced"):
        Bad()(lambda: None)


def test_not_a_function() -> None:
    with pytest.raises(TypeError):
        CodeTransformer()(len)  # type: ignore[type-var]


def test_version_difference_load_global_null_bit() -> None:
    def f() -> int:
        return len("ab")

    code = Code.from_pyfunc(f)
    glob = next(i for i in code if isinstance(i, LOAD_GLOBAL))
    # 3.11+ folds the PUSH_NULL of a call into LOAD_GLOBAL's argument: a flag here.
    assert glob.arg == "len" and glob.push_null is (sys.version_info >= (3, 11))


def test_units_stay_together() -> None:
    class Split(CodeTransformer):
        @pattern(matchany)
        def _any(self, instr: Instruction) -> Iterator[Instruction]:
            yield NOP()
            yield instr

    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(BytecodeError, match=r"gen: YIELD_VALUE.* must be followed by RESUME"):
        Split()(gen)


def test_free_variable_passed_through_a_class_body() -> None:
    def f() -> Any:
        out: list[int] = []

        class C:
            def m(self) -> list[int]:
                return out

        return C().m()

    # 3.13 passes ``out`` on with LOAD_FAST of its free slot (LOAD_CLOSURE is gone)
    assert CodeTransformer()(f)() == []
    assert Nops()(f)() == []


def test_readme_example_runs() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "FoldNames" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["f"]() == 3
