"""An immutable view of a code object as a tuple of :class:`Instruction` objects.

Assembly (jump offsets and ``EXTENDED_ARG``, inline caches, the exception table, the location
table, ``co_stacksize``) is done by the `bytecode <https://bytecode.readthedocs.io>`_ package;
this module only maps its abstract instructions (labels, ``TryBegin``/``TryEnd`` pseudo
instructions) to instructions that point at each other: a jump's ``arg`` is its target and
every instruction knows the :class:`ExceptHandler` that covers it, as CPython's own compiler
models the exception table.
"""

from __future__ import annotations

import dis
import enum
import inspect
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import bytecode.bytecode as _bcb
import bytecode.instr as _bc
from bytecode.flags import CompilerFlags

from callweave.bytecode.instructions import ExceptHandler, Instruction
from callweave.errors import CallweaveError

__all__ = ["BytecodeError", "Code", "Flag"]


class BytecodeError(CallweaveError, ValueError):
    """Instructions that cannot make a valid code object; the message names the function."""


Flag = enum.IntFlag(  # type: ignore[misc]
    "Flag",
    {
        name[3:]: value
        for name, value in vars(inspect).items()
        if name.startswith("CO_") and isinstance(value, int)
    },
    module=__name__,
)
Flag.__doc__ = "The ``co_flags`` bits (``Flag.OPTIMIZED``, ``Flag.GENERATOR``...)."


def copy_instrs(instrs: Iterable[Instruction]) -> tuple[Instruction, ...]:
    """Copies instructions, re-pointing jumps and handlers at the copies.

    Jumps to, and handlers starting at, instructions outside ``instrs`` keep their targets
    (which :meth:`Code.to_pycode` then reports).
    """
    originals = tuple(instrs)
    mapping: dict[Instruction, Instruction] = {}
    for old in originals:
        new = type(old).__new__(type(old))
        Instruction.__init__(new, None if old.is_jump or not old.has_arg else old.arg)
        if not old.has_arg:
            new._arg = None
        new.push_null, new.method, new.location = old.push_null, old.method, old.location
        mapping[old] = new
    handlers: dict[ExceptHandler, ExceptHandler] = {}
    for old in originals:
        new = mapping[old]
        if old.is_jump:
            new.arg = mapping.get(old.arg, old.arg)
        if old.handler is not None:
            handler = handlers.get(old.handler)
            if handler is None:
                target = mapping.get(old.handler.target, old.handler.target)
                handler = ExceptHandler(target, old.handler.lasti, old.handler.depth)
                target._handler_of.add(handler)
                handlers[old.handler] = handler
            new.handler = handler
    return tuple(mapping[old] for old in originals)


def _const_key(value: object) -> object:
    """A key that tells apart constants Python considers equal (``1``, ``1.0``, ``True``)."""
    if isinstance(value, (tuple, frozenset)):
        return (type(value), tuple(_const_key(item) for item in value))
    try:
        hash(value)
    except TypeError:
        return (type(value), id(value))
    if isinstance(value, float | complex):
        return (type(value), repr(value))
    return (type(value), value)


class Code:
    """A code object as instructions; immutable (``replace`` and transforms build copies).

    Args:
        instrs: the instructions; they are copied (see :func:`copy_instrs`).
        argnames: the parameter names, in ``co_varnames`` order.
        argcount, posonlyargcount, kwonlyargcount: as in the code object.
        cellvars, freevars: the cell and free variable names.
        name, qualname, filename, firstlineno: as in the code object.
        flags: the ``co_flags`` (a :class:`Flag`).
        docstring: the first constant of a function with a docstring (3.11, 3.12), or
            ``bytecode.UNSET``.
    """

    def __init__(
        self,
        instrs: Iterable[Instruction],
        argnames: Iterable[str] = (),
        *,
        argcount: int | None = None,
        posonlyargcount: int = 0,
        kwonlyargcount: int = 0,
        cellvars: Iterable[str] = (),
        freevars: Iterable[str] = (),
        name: str = "<code>",
        qualname: str | None = None,
        filename: str = "<code>",
        firstlineno: int = 1,
        flags: int = 0,
        docstring: Any = _bc.UNSET,
    ) -> None:
        self._instrs = copy_instrs(instrs)
        self._argnames = tuple(argnames)
        self._argcount = len(self._argnames) if argcount is None else argcount
        self._posonlyargcount = posonlyargcount
        self._kwonlyargcount = kwonlyargcount
        self._cellvars = tuple(cellvars)
        self._freevars = tuple(freevars)
        self._name = name
        self._qualname = name if qualname is None else qualname
        self._filename = filename
        self._firstlineno = firstlineno
        self._flags = Flag(flags)
        self._docstring = docstring

    # --- construction ---

    @classmethod
    def from_pyfunc(cls, f: Callable[..., Any]) -> Code:
        """The code of a Python function."""
        code = getattr(f, "__code__", None)
        if not isinstance(code, types.CodeType):
            raise TypeError(f"{f!r} is not a Python function")
        return cls.from_pycode(code)

    @classmethod
    def from_pycode(cls, co: types.CodeType) -> Code:
        """The instructions of a code object (nested code objects stay code objects)."""
        bc = _bcb.Bytecode.from_code(co)
        instrs: list[Instruction] = []
        labels: dict[_bc.Label, list[Instruction]] = {}
        pending_labels: list[_bc.Label] = []
        handlers: dict[_bc.TryBegin, ExceptHandler] = {}
        current: _bc.TryBegin | None = None
        label_of_handler: dict[ExceptHandler, _bc.Label] = {}
        jumps: list[Instruction] = []
        for item in bc:
            if isinstance(item, _bc.Label):
                pending_labels.append(item)
            elif isinstance(item, _bc.TryBegin):
                current = item
            elif isinstance(item, _bc.TryEnd):
                if item.entry is current:
                    current = None
            elif isinstance(item, _bc.Instr):
                instr = Instruction._from_bc(item)
                for label in pending_labels:
                    labels.setdefault(label, []).append(instr)
                pending_labels.clear()
                if instr.is_jump:
                    jumps.append(instr)
                if current is not None:
                    handler = handlers.get(current)
                    if handler is None:
                        depth = current.stack_depth
                        handler = ExceptHandler(
                            instr, current.push_lasti, depth if isinstance(depth, int) else 0
                        )
                        handlers[current] = handler
                        target = current.target
                        if not isinstance(target, _bc.Label):  # pragma: no cover
                            raise BytecodeError(f"{co.co_qualname}: unexpected handler target")
                        label_of_handler[handler] = target
                    instr.handler = handler
                instrs.append(instr)
            # SetLineno never comes out of Bytecode.from_code: locations are per instruction.

        def resolve(label: _bc.Label) -> Instruction:
            targets = labels.get(label)
            if not targets:
                raise BytecodeError(f"{co.co_qualname}: a jump target has no instruction")
            return targets[0]

        for jump in jumps:
            jump.arg = resolve(jump._arg)
        for handler, label in label_of_handler.items():
            handler.target = resolve(label)
            handler.target._handler_of.add(handler)
        return cls._adopt(
            tuple(instrs),
            argnames=tuple(bc.argnames),
            argcount=co.co_argcount,
            posonlyargcount=co.co_posonlyargcount,
            kwonlyargcount=co.co_kwonlyargcount,
            cellvars=co.co_cellvars,
            freevars=co.co_freevars,
            name=co.co_name,
            qualname=co.co_qualname,
            filename=co.co_filename,
            firstlineno=co.co_firstlineno,
            flags=co.co_flags,
            docstring=bc.docstring,
        )

    @classmethod
    def _adopt(cls, instrs: tuple[Instruction, ...], **fields: Any) -> Code:
        """A Code that owns ``instrs`` without copying them (they must be fresh)."""
        self = cls((), **fields)
        self._instrs = instrs
        return self

    def replace(self, **changes: Any) -> Code:
        """A copy with some fields changed (``instrs=``, ``name=``, ``consts``-free)."""
        fields: dict[str, Any] = {
            "instrs": self._instrs,
            "argnames": self._argnames,
            "argcount": self._argcount,
            "posonlyargcount": self._posonlyargcount,
            "kwonlyargcount": self._kwonlyargcount,
            "cellvars": self._cellvars,
            "freevars": self._freevars,
            "name": self._name,
            "qualname": self._qualname,
            "filename": self._filename,
            "firstlineno": self._firstlineno,
            "flags": self._flags,
            "docstring": self._docstring,
        }
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"Code.replace got unknown fields {sorted(unknown)}")
        fields.update(changes)
        instrs = fields.pop("instrs")
        argnames = fields.pop("argnames")
        return Code(instrs, argnames, **fields)

    # --- properties ---

    @property
    def instrs(self) -> tuple[Instruction, ...]:
        """The instructions."""
        return self._instrs

    def __iter__(self) -> Iterator[Instruction]:
        return iter(self._instrs)

    def __len__(self) -> int:
        return len(self._instrs)

    @property
    def argnames(self) -> tuple[str, ...]:
        """The parameter names (including ``*args`` and ``**kwargs``)."""
        return self._argnames

    @property
    def argcount(self) -> int:
        """``co_argcount``."""
        return self._argcount

    @property
    def posonlyargcount(self) -> int:
        """``co_posonlyargcount``."""
        return self._posonlyargcount

    @property
    def kwonlyargcount(self) -> int:
        """``co_kwonlyargcount``."""
        return self._kwonlyargcount

    @property
    def cellvars(self) -> tuple[str, ...]:
        """``co_cellvars``."""
        return self._cellvars

    @property
    def freevars(self) -> tuple[str, ...]:
        """``co_freevars``."""
        return self._freevars

    @property
    def name(self) -> str:
        """``co_name``."""
        return self._name

    @property
    def qualname(self) -> str:
        """``co_qualname``."""
        return self._qualname

    @property
    def filename(self) -> str:
        """``co_filename``."""
        return self._filename

    @property
    def firstlineno(self) -> int:
        """``co_firstlineno``."""
        return self._firstlineno

    @property
    def flags(self) -> Flag:
        """``co_flags`` as a :class:`Flag`."""
        return self._flags

    @property
    def docstring(self) -> Any:
        """The docstring constant (``bytecode.UNSET`` when there is none)."""
        return self._docstring

    @property
    def consts(self) -> tuple[Any, ...]:
        """The constants the instructions load, in order of first use, without duplicates.

        The docstring (3.11, 3.12) comes first, as in ``co_consts``.
        """
        seen: dict[object, Any] = {}
        if self._docstring is not _bc.UNSET:
            seen[_const_key(self._docstring)] = self._docstring
        for instr in self._instrs:
            if instr.opname in ("LOAD_CONST", "RETURN_CONST"):
                seen.setdefault(_const_key(instr.arg), instr.arg)
        return tuple(seen.values())

    @property
    def names(self) -> tuple[str, ...]:
        """The global, attribute and import names the instructions use (``co_names``)."""
        return tuple(dict.fromkeys(name for instr in self._instrs for name in _names_of(instr)))

    @property
    def varnames(self) -> tuple[str, ...]:
        """The parameters then the other local variables (``co_varnames``)."""
        names = dict.fromkeys(self._argnames)
        for instr in self._instrs:
            if instr.opcode in _LOCALS:
                names.update(dict.fromkeys(_split_names(instr.arg)))
        return tuple(names)

    @property
    def lno_of_instr(self) -> Mapping[Instruction, int | None]:
        """The line number of each instruction (``None`` for those without a line)."""
        return types.MappingProxyType({instr: instr.lineno for instr in self._instrs})

    def index(self, instr: Instruction) -> int:
        """The position of ``instr`` in :attr:`instrs`."""
        for i, candidate in enumerate(self._instrs):
            if candidate is instr:
                return i
        raise ValueError(f"{instr!r} is not in {self._qualname}")

    def __repr__(self) -> str:
        return f"<Code {self._qualname} ({len(self._instrs)} instructions)>"

    # --- assembly ---

    def _check_adjacency(self) -> None:
        for instr, following in zip(self._instrs, (*self._instrs[1:], None), strict=True):
            needed = _ADJACENT.get(instr.opname)
            if needed is not None and needed in dis.opmap and type(following).__name__ != needed:
                raise BytecodeError(
                    f"{self._qualname}: {instr!r} must be followed by {needed}, not "
                    f"{following!r}; CPython runs them as one unit"
                )

    def to_bytecode(self) -> _bcb.Bytecode:
        """The instructions as a :class:`bytecode.Bytecode` (labels, ``TryBegin``/``TryEnd``)."""
        members = {id(instr) for instr in self._instrs}
        labels: dict[Instruction, _bc.Label] = {}
        for instr in self._instrs:
            targets = []
            if instr.is_jump:
                targets.append(instr.arg)
            if instr.handler is not None:
                targets.append(instr.handler.target)
            for target in targets:
                if id(target) not in members:
                    raise BytecodeError(
                        f"{self._qualname}: {instr!r} refers to {target!r}, which is not one "
                        "of its instructions (replace it with steal())"
                    )
                labels.setdefault(target, _bc.Label())
        freevars = frozenset(self._freevars)
        bc = _bcb.Bytecode()
        bc.argnames = list(self._argnames)
        bc.argcount = self._argcount
        bc.posonlyargcount = self._posonlyargcount
        bc.kwonlyargcount = self._kwonlyargcount
        bc.cellvars = list(self._cellvars)
        bc.freevars = list(self._freevars)
        bc.name = self._name
        bc.qualname = self._qualname
        bc.filename = self._filename
        bc.first_lineno = self._firstlineno
        bc.flags = CompilerFlags(int(self._flags))
        bc.docstring = self._docstring
        # A try region is reopened at every jump target: code after an unconditional jump is
        # dead until the next target, and bytecode cannot compute the handler depth of a
        # TryBegin that only dead code reaches. CPython's compiler splits entries there too.
        open_try: _bc.TryBegin | None = None
        open_handler: ExceptHandler | None = None
        for instr in self._instrs:
            starts_block = instr in labels
            if open_try is not None and (instr.handler is not open_handler or starts_block):
                bc.append(_bc.TryEnd(open_try))
                open_try = None
            if starts_block:
                bc.append(labels[instr])
            open_handler = instr.handler
            if open_handler is not None and open_try is None:
                open_try = _bc.TryBegin(
                    labels[open_handler.target], open_handler.lasti, open_handler.depth
                )
                bc.append(open_try)
            try:
                new = _bc.Instr(
                    instr.opname,
                    instr._to_bc_arg(labels, freevars),
                    location=instr.location,
                )
            except (TypeError, ValueError) as exc:
                raise BytecodeError(f"{self._qualname}: bad instruction {instr!r}: {exc}") from None
            bc.append(new)
        if open_try is not None:
            bc.append(_bc.TryEnd(open_try))
        return bc

    def to_pycode(self) -> types.CodeType:
        """Assembles a code object; ``co_stacksize`` is computed from the instructions.

        Raises:
            BytecodeError: the instructions are not a valid code object (a jump to an
                instruction not in the code, an argument the opcode does not take, or an
                instruction that pops more than the stack holds); the message names the
                function.
        """
        self._check_adjacency()
        bc = self.to_bytecode()
        try:
            bc.compute_stacksize()
        except RuntimeError as exc:
            raise BytecodeError(
                f"{self._qualname}: the instructions do not keep a consistent stack depth "
                f"({exc}); the code object would crash the interpreter"
            ) from None
        try:
            return bc.to_code()
        except (RuntimeError, ValueError, TypeError) as exc:
            raise BytecodeError(f"{self._qualname}: cannot assemble: {exc}") from None


#: Pairs CPython executes as a unit (a specialized ``PRECALL`` skips over its ``CALL``; a
#: generator resumed by ``throw()`` looks for the ``RESUME`` right after ``YIELD_VALUE``):
#: anything between them would crash the interpreter or break ``yield from``.
_ADJACENT = {"YIELD_VALUE": "RESUME", "PRECALL": "CALL"}


def _split_names(arg: Any) -> tuple[str, ...]:
    if isinstance(arg, tuple):
        return tuple(item for item in arg if isinstance(item, str))
    return (arg,) if isinstance(arg, str) else ()


_LOCALS = frozenset(dis.haslocal)
_NAMES = frozenset(dis.hasname)


def _names_of(instr: Instruction) -> tuple[str, ...]:
    if instr.opcode in _NAMES:
        return _split_names(instr.arg)
    return ()
