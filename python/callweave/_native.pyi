"""Type stubs for callweave's native extension module."""

from types import CodeType

__version__: str

class CallweaveError(Exception): ...
class RewriteError(CallweaveError): ...
class ParseError(RewriteError): ...

class Rule:
    """A rewrite rule: which functions, how their calls are routed, which calls."""

    @staticmethod
    def wrap(
        *,
        wrapper: str,
        sites: str | None = None,
        functions: list[str] | None = None,
        at: tuple[str, int] | None = None,
        ignore_builtins: bool = False,
        blacklist: list[str] | None = None,
        whitelist: list[str] | None = None,
    ) -> Rule: ...
    @staticmethod
    def profile(
        *,
        enter: str,
        exit: str,
        timer: str,
        atimer: str,
        record: str,
        functions: list[str] | None = None,
        at: tuple[str, int] | None = None,
        ignore_builtins: bool = False,
        blacklist: list[str] | None = None,
        whitelist: list[str] | None = None,
    ) -> Rule: ...
    def selects(self, qualname: str) -> bool: ...

class DottedGlobs:
    """Dotted-name globs: ``.`` separates levels, ``*`` matches one level, ``**`` any depth."""

    def __init__(self, patterns: list[str]) -> None: ...
    def matches(self, name: str) -> bool: ...
    @property
    def patterns(self) -> list[str]: ...

SiteRow = tuple[int, str, int, int, int, int, str, str | None, bool]
FunctionRow = tuple[str, int, int, list[int], tuple[int, int, list[int]] | None, str, str]

class Rewritten:
    """The result of a rewrite."""

    @property
    def source(self) -> str: ...
    @property
    def changed(self) -> bool: ...
    @property
    def sites(self) -> list[SiteRow]: ...
    @property
    def functions(self) -> list[FunctionRow]: ...
    def original_line(self, line: int) -> int: ...
    def remap_code(
        self,
        code: CodeType,
        call_opcodes: bytes,
        extended_arg: int,
        *,
        forward_jumps: bytes | None = None,
        backward_jumps: bytes | None = None,
        returns: bytes | None = None,
        terminators: bytes | None = None,
        for_iter: tuple[int, int] | None = None,
        jump_forward: tuple[int, int] | None = None,
    ) -> CodeType: ...

def rewrite(
    source: str, rules: list[Rule], builtins: frozenset[str] | set[str] | None = None
) -> Rewritten: ...
def decode_source(bytes: bytes) -> str: ...
