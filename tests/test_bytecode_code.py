"""callweave.bytecode.Code: round trips over the stdlib, properties, immutability."""

from __future__ import annotations

import dis
import importlib
import importlib.util
import inspect
import subprocess
import sys
import types
from typing import Any

import pytest

pytest.importorskip("bytecode")

from callweave.bytecode import BytecodeError, Code, CodeTransformer, Flag
from callweave.bytecode import instructions as ops

ROUND_TRIP_MODULES = [
    "textwrap",
    "json.decoder",
    "json.encoder",
    "fractions",
    "difflib",
    "argparse",
    "contextlib",
    "enum",
    "dataclasses",
    "functools",
    "asyncio.tasks",
    "statistics",
    "shlex",
    "string",
]


def _functions(module: types.ModuleType) -> list[types.FunctionType]:
    found: list[types.FunctionType] = []
    for obj in vars(module).values():
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            found.append(obj)
        elif inspect.isclass(obj) and obj.__module__ == module.__name__:
            found.extend(v for v in vars(obj).values() if inspect.isfunction(v))
    return found


def _shape(code: types.CodeType) -> list[tuple[object, ...]]:
    """Instructions with jump targets and handlers as instruction indexes, and positions."""
    instrs = list(dis.get_instructions(code))
    index = {instr.offset: i for i, instr in enumerate(instrs)}
    jumps = set(dis.hasjrel) | set(dis.hasjabs)
    table = []
    for entry in dis.Bytecode(code).exception_entries:
        table.append((index[entry.start], index.get(entry.end), index[entry.target], entry.depth))
    shape: list[tuple[object, ...]] = [(tuple(sorted(set(table))),)]
    for instr in instrs:
        arg = index[instr.argval] if instr.opcode in jumps else instr.argrepr
        shape.append((instr.opname, arg, instr.positions))
    return shape


@pytest.mark.parametrize("modname", ROUND_TRIP_MODULES)
def test_round_trip_keeps_every_function_of_stdlib_modules(modname: str) -> None:
    module = importlib.import_module(modname)
    functions = _functions(module)
    assert functions
    for f in functions:
        new = Code.from_pyfunc(f).to_pycode()
        old = f.__code__
        assert _shape(new) == _shape(old), f.__qualname__
        assert new.co_stacksize == old.co_stacksize, f.__qualname__
        assert new.co_flags == old.co_flags, f.__qualname__
        # a local no instruction uses (CPython keeps some) is dropped, nothing else changes
        assert set(new.co_varnames) <= set(old.co_varnames), f.__qualname__
        assert new.co_nlocals <= old.co_nlocals, f.__qualname__
        assert new.co_varnames[: old.co_argcount] == old.co_varnames[: old.co_argcount]
        # cell order may differ (3.13): cells are loaded by name, so behaviour does not
        assert sorted(new.co_cellvars) == sorted(old.co_cellvars)
        assert sorted(new.co_freevars) == sorted(old.co_freevars)
        assert new.co_qualname == old.co_qualname


def _round_tripped_module(modname: str) -> types.ModuleType:
    """A fresh copy of a stdlib module whose every code object went through Code."""
    spec = importlib.util.find_spec(modname)
    assert spec is not None and spec.origin is not None and spec.loader is not None
    source = spec.loader.get_source(modname)  # type: ignore[attr-defined]
    module_code = compile(source, spec.origin, "exec")
    new_code = CodeTransformer().transform(Code.from_pycode(module_code)).to_pycode()
    module = types.ModuleType(modname)
    module.__file__ = spec.origin
    module.__package__ = modname.rpartition(".")[0]
    sys.modules_backup = None  # type: ignore[attr-defined]
    exec(new_code, module.__dict__)
    return module


def _workload(modname: str, m: Any) -> object:
    sample = "The quick brown fox jumps over the lazy dog. " * 8
    if modname == "textwrap":
        return (
            m.fill(sample, 30),
            m.dedent("  a\n  b\n"),
            m.shorten(sample, 40),
            m.indent("x\ny", "> "),
        )
    if modname == "fractions":
        f = m.Fraction(3, 7) + m.Fraction("1.25") * 2 - m.Fraction(1, 3) ** 2
        return (str(f), f.limit_denominator(10), m.Fraction.from_float(0.1), round(f, 3), f < 1)
    if modname == "difflib":
        a, b = ["a", "b", "c", "d"], ["a", "x", "c", "d", "e"]
        return (
            list(m.unified_diff(a, b)),
            m.SequenceMatcher(None, "abcd", "bcde").ratio(),
            m.get_close_matches("appel", ["ape", "apple", "peach"]),
            list(m.ndiff(a, b)),
        )
    if modname == "statistics":
        data = [1, 2, 2, 3, 4, 7, 9]
        return (m.mean(data), m.median(data), m.stdev(data), m.quantiles(data), m.mode(data))
    if modname == "shlex":
        return (m.split("a 'b c' \"d e\" f\\ g"), m.quote("a b"), m.join(["x y", "z"]))
    if modname == "string":
        return (m.capwords("hello  world"), m.Template("$a-${b}").substitute(a=1, b=2))
    if modname == "json.decoder":
        return m.JSONDecoder().decode('{"a": [1, 2.5, "x\\u00e9", null, true], "b": {}}')
    if modname == "dataclasses":

        @m.dataclass(order=True, frozen=True)
        class P:
            x: int
            y: list[int] = m.field(default_factory=list)

        p = P(1, [2])
        return (repr(p), m.asdict(p), m.replace(p, x=5) > p, m.fields(P)[1].name)
    raise AssertionError(modname)


@pytest.mark.parametrize(
    "modname",
    [
        "textwrap",
        "fractions",
        "difflib",
        "statistics",
        "shlex",
        "string",
        "json.decoder",
        "dataclasses",
    ],
)
def test_round_tripped_module_runs_identically(modname: str) -> None:
    original = importlib.import_module(modname)
    copy = _round_tripped_module(modname)
    assert repr(_workload(modname, copy)) == repr(_workload(modname, original))


def sample(a: int, b: int = 2, *args: int, c: int = 3, **kw: int) -> int:
    """Docstring."""
    total = a + b + c
    for x in args:
        total += x

    def inner() -> int:
        return total + len(kw)

    return inner()


def test_properties() -> None:
    code = Code.from_pyfunc(sample)
    co = sample.__code__
    assert code.argnames == ("a", "b", "c", "args", "kw")
    assert code.varnames == co.co_varnames
    assert code.names == co.co_names
    assert set(code.cellvars) == set(co.co_cellvars) == {"total", "kw"}
    assert code.freevars == ()
    assert code.name == "sample" and code.qualname == "sample"
    assert code.filename == co.co_filename and code.firstlineno == co.co_firstlineno
    assert isinstance(code.flags, Flag)
    assert Flag.VARARGS in code.flags and Flag.VARKEYWORDS in code.flags
    assert Flag.GENERATOR not in code.flags
    assert int(code.flags) == co.co_flags
    assert set(code.consts) <= set(co.co_consts)
    lines = code.lno_of_instr
    assert {lines[i] for i in code.instrs} - {None} == {
        line for _, _, line in co.co_lines() if line is not None
    }
    assert isinstance(code.instrs[0], ops.Instruction)
    assert code.to_pycode().co_consts[0] == "Docstring." or sys.version_info >= (3, 14)


def test_instruction_arguments_are_python_objects() -> None:
    def f(x: Any) -> Any:
        while x:
            x = g.attr + 1  # noqa: F821
        return x

    code = Code.from_pyfunc(f)
    by_name = {type(i).__name__: i for i in code}
    glob = by_name["LOAD_GLOBAL"]
    assert glob.arg == "g" and glob.push_null is False
    assert by_name["LOAD_ATTR"].arg == "attr"
    assert repr(by_name["BINARY_OP"]) == "BINARY_OP(<BinaryOp.ADD: 0>)"
    assert by_name["BINARY_OP"].equiv(ops.BINARY_OP("+"))
    jumps = [i for i in code if i.is_jump]
    assert jumps and all(isinstance(j.arg, ops.Instruction) and j.arg in code.instrs for j in jumps)


def test_code_is_immutable_and_replace_copies() -> None:
    code = Code.from_pyfunc(sample)
    first = code.instrs
    renamed = code.replace(name="other")
    assert renamed.name == "other" and code.name == "sample"
    assert renamed.instrs is not first and all(
        a is not b for a, b in zip(first, renamed.instrs, strict=True)
    )
    assert [repr(i) for i in renamed.instrs] == [repr(i) for i in first]
    with pytest.raises(AttributeError):
        code.instrs = ()  # type: ignore[misc]


def test_opcodes_of_the_running_python() -> None:
    assert ops.LOAD_CONST.opcode == dis.opmap["LOAD_CONST"]
    assert ops.BINARY_OP("+").arg.name == "ADD"
    with pytest.raises(AttributeError, match="has no opcode BINARY_ADD"):
        ops.BINARY_ADD  # noqa: B018
    with pytest.raises(TypeError):
        ops.LOAD_CONST()
    with pytest.raises(TypeError):
        ops.NOP(1)


def test_jump_to_instruction_outside_the_code_is_a_clear_error() -> None:
    def f(x: int) -> int:
        return 1 if x else 2

    code = Code.from_pyfunc(f)
    stray = ops.NOP()
    jump = next(i for i in code.instrs if i.is_jump)
    instrs = list(code.instrs)
    bad = Code(instrs)
    next(i for i in bad.instrs if i.is_jump).arg = stray
    with pytest.raises(BytecodeError, match="not one of its instructions"):
        bad.replace(name="f").to_pycode()
    assert jump.arg in code.instrs


def test_without_the_bytecode_package_the_import_error_names_the_extra():
    script = (
        "import sys\n"
        "sys.modules['bytecode'] = None  # as if the optional extra were not installed\n"
        "try:\n"
        "    import callweave.bytecode\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == (
        "callweave.bytecode needs the bytecode package, an optional extra: "
        "pip install 'callweave[bytecode]'"
    )
