"""codetransformer's bytecode API on CPython 3.11+, built on the ``bytecode`` package.

- :class:`Code`: a code object as a tuple of :mod:`~callweave.bytecode.instructions`
  (``Code.from_pyfunc(f)``, ``Code.from_pycode(co)``, ``code.to_pycode()``);
- :mod:`callweave.bytecode.instructions`: one class per opcode of the running Python;
- :class:`CodeTransformer` with :func:`pattern` methods over instruction sequences
  (``matchany``, ``var``, ``plus``, ``option``, ``seq``, ``|``, ``~``).

Needs the ``bytecode`` package: ``pip install callweave[bytecode]``.
"""

try:
    import bytecode as _bytecode_package  # noqa: F401  (checked before the modules below use it)
except ImportError as _missing:
    raise ImportError(
        "callweave.bytecode needs the bytecode package, an optional extra: "
        "pip install 'callweave[bytecode]'"
    ) from _missing

from callweave.bytecode import instructions
from callweave.bytecode.code import BytecodeError, Code, Flag
from callweave.bytecode.instructions import ExceptHandler, Instruction
from callweave.bytecode.patterns import (
    DEFAULT_STARTCODE,
    matchany,
    option,
    pattern,
    plus,
    seq,
    var,
)
from callweave.bytecode.transformer import CodeTransformer

__all__ = [
    "DEFAULT_STARTCODE",
    "BytecodeError",
    "Code",
    "CodeTransformer",
    "ExceptHandler",
    "Flag",
    "Instruction",
    "instructions",
    "matchany",
    "option",
    "pattern",
    "plus",
    "seq",
    "var",
]
