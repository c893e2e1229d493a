"""``CodeTransformer``: rewrite instruction sequences matched by :func:`pattern` methods.

A transform runs, on a copy of a code object's instructions:

1. the table hooks :meth:`CodeTransformer.transform_consts` (by default: transform the nested
   code objects), :meth:`~CodeTransformer.transform_names` and
   :meth:`~CodeTransformer.transform_varnames`; each gets a tuple and returns one of the same
   length, and every instruction using an entry gets the new entry;
2. the patterns, left to right: at each instruction the patterns of the current startcode are
   tried in definition order (a base class's first); the first with a non-empty match gets the
   matched instructions and returns their replacement, and matching resumes after the match
   (replacements are not matched again); an instruction no pattern matches is kept.

Jumps to, and exception handlers starting at, a replaced instruction that no replacement
:meth:`~callweave.bytecode.Instruction.steal` s move to the first instruction of the
replacement (or the next instruction, if the replacement is empty). A new instruction
without a position or an exception handler gets those of the first matched instruction, so
it stays in the same ``try`` block and line. Untouched instructions keep their positions.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from callweave._make_function import make_function
from callweave.bytecode.code import _LOCALS, _NAMES, BytecodeError, Code, _const_key, copy_instrs
from callweave.bytecode.instructions import Instruction
from callweave.bytecode.patterns import DEFAULT_STARTCODE, pattern

__all__ = ["CodeTransformer"]

F = TypeVar("F", bound=Callable[..., Any])

_CONST_OPS = frozenset({"LOAD_CONST", "RETURN_CONST"})


class CodeTransformer:
    """Base class of bytecode transformers; an instance decorates functions.

    Subclasses define :func:`pattern` methods and may override the table hooks.
    """

    _patterns: ClassVar[tuple[tuple[pattern, str], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, list[pattern]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                patterns = getattr(value, "_callweave_patterns", None)
                if patterns is not None:
                    found[attr] = list(patterns)
                elif attr in found:
                    del found[attr]  # overridden by a plain method
        cls._patterns = tuple((p, attr) for attr, ps in found.items() for p in ps)

    def __init__(self) -> None:
        self._code: Code | None = None
        self._startcode: Any = DEFAULT_STARTCODE

    # --- state ---

    @property
    def code(self) -> Code:
        """The code object being transformed.

        Raises:
            RuntimeError: no transform is running.
        """
        if self._code is None:
            raise RuntimeError("no code is being transformed")
        return self._code

    @property
    def startcode(self) -> Any:
        """The current startcode (:data:`DEFAULT_STARTCODE` at the start of each code)."""
        return self._startcode

    def begin(self, startcode: Any) -> None:
        """Enters ``startcode``: only the patterns listing it are tried from now on."""
        self._startcode = startcode

    @contextmanager
    def _context(self, code: Code) -> Iterator[None]:
        saved = self._code, self._startcode
        self._code, self._startcode = code, DEFAULT_STARTCODE
        try:
            yield
        finally:
            self._code, self._startcode = saved

    # --- hooks ---

    def transform_consts(self, consts: tuple[Any, ...]) -> tuple[Any, ...]:
        """The new constants; by default transforms the nested code objects."""
        return tuple(
            self.transform(Code.from_pycode(const)).to_pycode()
            if isinstance(const, types.CodeType)
            else const
            for const in consts
        )

    def transform_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The new ``co_names`` (global, attribute and import names); unchanged by default."""
        return names

    def transform_varnames(self, varnames: tuple[str, ...]) -> tuple[str, ...]:
        """The new local variable names (parameters first); unchanged by default."""
        return varnames

    def prepare(self, instrs: Sequence[Instruction]) -> None:
        """Called with the instructions (after the table hooks) before the patterns run."""

    # --- transforming ---

    def transform(
        self, code: Code, *, name: str | None = None, filename: str | None = None
    ) -> Code:
        """The transformed copy of ``code`` (``code`` itself never changes)."""
        with self._context(code):
            instrs = list(copy_instrs(code.instrs))
            self._apply_consts(instrs)
            self._apply_names(instrs)
            argnames = self._apply_varnames(instrs, code.argnames)
            self.prepare(instrs)
            out = self._apply_patterns(instrs)
            fields: dict[str, Any] = {
                "argnames": argnames,
                "argcount": code.argcount,
                "posonlyargcount": code.posonlyargcount,
                "kwonlyargcount": code.kwonlyargcount,
                "cellvars": code.cellvars,
                "freevars": code.freevars,
                "name": code.name if name is None else name,
                "qualname": code.qualname,
                "filename": code.filename if filename is None else filename,
                "firstlineno": code.firstlineno,
                "flags": code.flags,
                "docstring": code.docstring,
            }
            return Code._adopt(tuple(out), **fields)

    def _apply_consts(self, instrs: list[Instruction]) -> None:
        consts: dict[object, Any] = {}
        for instr in instrs:
            if instr.opname in _CONST_OPS:
                consts.setdefault(_const_key(instr.arg), instr.arg)
        old = tuple(consts.values())
        new = tuple(self.transform_consts(old))
        if len(new) != len(old):
            raise BytecodeError(
                f"{self.code.qualname}: transform_consts returned {len(new)} constants for "
                f"{len(old)}"
            )
        mapping = dict(zip(consts, new, strict=True))
        for instr in instrs:
            if instr.opname in _CONST_OPS:
                instr.arg = mapping[_const_key(instr.arg)]

    def _apply_names(self, instrs: list[Instruction]) -> None:
        _rename(instrs, _NAMES, (), self.transform_names, self.code.qualname, "names")

    def _apply_varnames(
        self, instrs: list[Instruction], argnames: tuple[str, ...]
    ) -> tuple[str, ...]:
        return _rename(
            instrs, _LOCALS, argnames, self.transform_varnames, self.code.qualname, "varnames"
        )[1]

    def _apply_patterns(self, instrs: list[Instruction]) -> list[Instruction]:
        patterns = type(self)._patterns
        if not patterns:
            return instrs
        originals = {id(instr) for instr in instrs}
        out: list[Instruction] = []
        pos = 0
        while pos < len(instrs):
            for pat, attr in patterns:
                if self._startcode not in pat.startcodes:
                    continue
                end = pat.match(instrs, pos)
                if end is None:
                    continue
                matched = instrs[pos:end]
                result = list(getattr(self, attr)(*matched) or ())
                for item in result:
                    if not isinstance(item, Instruction):
                        raise TypeError(
                            f"{type(self).__name__}.{attr} produced {item!r}, not an Instruction"
                        )
                    if id(item) not in originals:
                        if item.location is None:
                            item.location = matched[0].location
                        if item.handler is None:
                            item.handler = matched[0].handler
                kept = {id(item) for item in result}
                successor = result[0] if result else (instrs[end] if end < len(instrs) else None)
                for old in matched:
                    if id(old) in kept or not (old._target_of or old._handler_of):
                        continue
                    if successor is None:
                        raise BytecodeError(
                            f"{self.code.qualname}: {attr} removed {old!r}, a jump target, "
                            "from the end of the code"
                        )
                    _retarget(old, successor)
                out.extend(result)
                pos = end
                break
            else:
                out.append(instrs[pos])
                pos += 1
        return out

    # --- functions ---

    def __call__(self, f: F) -> F:
        """A new function with ``f``'s transformed code and everything else of ``f``.

        Name, qualname, module, docstring, defaults, keyword defaults, closure, annotations
        and ``__dict__`` are kept.
        """
        code = getattr(f, "__code__", None)
        if not isinstance(f, types.FunctionType) or not isinstance(code, types.CodeType):
            raise TypeError(f"{type(self).__name__} transforms Python functions, not {f!r}")
        new_code = self.transform(Code.from_pycode(code)).to_pycode()
        return _rebuild(f, new_code)  # type: ignore[return-value]


def _retarget(old: Instruction, new: Instruction) -> None:
    """Moves the jumps to, and handlers starting at, ``old`` onto ``new``."""
    for jump in list(old._target_of):
        jump.arg = new
    for handler in list(old._handler_of):
        handler.target = new
        new._handler_of.add(handler)
    old._handler_of.clear()


def _rename(
    instrs: list[Instruction],
    opcodes: frozenset[int],
    first: tuple[str, ...],
    hook: Callable[[tuple[str, ...]], Iterable[str]],
    qualname: str,
    what: str,
) -> tuple[dict[str, str], tuple[str, ...]]:
    names = dict.fromkeys(first)
    for instr in instrs:
        if instr.opcode in opcodes:
            arg = instr.arg
            names.update(
                dict.fromkeys(
                    a for a in (arg if isinstance(arg, tuple) else (arg,)) if isinstance(a, str)
                )
            )
    old = tuple(names)
    new = tuple(hook(old))
    if len(new) != len(old):
        raise BytecodeError(
            f"{qualname}: transform_{what} returned {len(new)} names for {len(old)}"
        )
    mapping = dict(zip(old, new, strict=True))
    if mapping:
        for instr in instrs:
            if instr.opcode in opcodes:
                arg = instr.arg
                if isinstance(arg, tuple):
                    instr.arg = tuple(mapping.get(a, a) if isinstance(a, str) else a for a in arg)
                elif isinstance(arg, str):
                    instr.arg = mapping[arg]
    return mapping, tuple(mapping[name] for name in first)


def _rebuild(f: types.FunctionType, code: types.CodeType) -> types.FunctionType:
    """A copy of ``f`` running ``code``, built so that its callers specialise (3.13)."""
    g = make_function(
        code,
        f.__globals__,
        f.__name__,
        f.__defaults__,
        f.__closure__,
        kwdefaults=None if f.__kwdefaults__ is None else dict(f.__kwdefaults__),
        annotations=dict(f.__annotations__),
        type_params=getattr(f, "__type_params__", ()),
    )
    g.__qualname__ = f.__qualname__
    g.__module__ = f.__module__
    g.__doc__ = f.__doc__
    g.__dict__.update(f.__dict__)
    return g
