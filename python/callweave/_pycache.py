"""callweave's bytecode cache: where a rewritten module's entry lives, its key, reads, writes.

A rewritten module is cached beside its ordinary bytecode in its own file
(``mod.cpython-311.callweave.pyc``): a PEP 552 checked-hash pyc (flags ``0b11``) whose hash is
:func:`importlib.util.source_hash` of the source followed by :func:`key_suffix` (callweave's
version and build, :data:`FORMAT`, the hash of the rules that apply to the module, the
optimisation level, the magic number). The payload is ``marshal.dumps((code, meta))``, where
``meta`` is plain data the hook validates (:func:`valid_meta`) before it trusts an entry: a
header that matches says nothing about the payload.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import sys
import threading
from types import CodeType
from typing import Any

from callweave import _native

__all__ = [
    "CACHE_SUFFIX",
    "FORMAT",
    "cache_path",
    "key_suffix",
    "read_entry",
    "valid_meta",
    "write_entry",
]

CACHE_SUFFIX = ".callweave.pyc"
#: Bumped when what the cache holds changes (2: injected names come from the source hash;
#: 3: runtime names in module globals, paused yields, unlocated entry/exit, star-call binder;
#: 4: the meta has the constant-slot table, the code is cached before slots are loaded).
FORMAT = 4

#: A checked-hash pyc's flags word (PEP 552: hash-based, check_source).
_FLAGS = (3).to_bytes(4, "little")


def _build_id() -> str:
    """Identifies the installed native engine (its file's size and modification time).

    A rebuilt extension, such as a development build that changed the rewrite without
    changing the version, never reads another build's cache entries.
    """
    try:
        st = os.stat(_native.__file__)
    except (OSError, AttributeError, TypeError):
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


_BUILD_ID = _build_id()


def cache_path(source_path: str) -> str | None:
    """Where the module at ``source_path`` is cached (None: no cache, as importlib decides)."""
    try:
        base = importlib.util.cache_from_source(source_path)
    except NotImplementedError:
        return None
    return base[: -len(".pyc")] + CACHE_SUFFIX


def key_suffix(fullname: str, rules_hash: str, *, pytest: bool) -> bytes:
    """What is hashed after the source: everything else the rewritten code depends on.

    Args:
        fullname: The module's name.
        rules_hash: The hash of the rules that apply to the module.
        pytest: Whether pytest's assertion rewriting is applied too.
    """
    parts = [
        fullname,
        _native.__version__,
        _BUILD_ID,
        str(FORMAT),
        rules_hash,
        str(sys.flags.optimize),
        importlib.util.MAGIC_NUMBER.hex(),
        "pytest" if pytest else "",
    ]
    return b"\0callweave\0" + "\0".join(parts).encode()


def _is_int_list(value: Any, bound: int | None = None) -> bool:
    return type(value) is list and all(
        type(i) is int and (bound is None or 0 <= i < bound) for i in value
    )


_SITE_TYPES: tuple[type | tuple[type, ...], ...]
_SITE_TYPES = (int, str, int, int, int, int, str, (str, type(None)), bool)


_SLOT_TYPES = (str, str, int, str, int, int, int, int, str)


def valid_meta(meta: Any, rule_indices: range, slot_rules: range = range(0)) -> bool:
    """Whether a cache entry's meta has the shape the hook builds (indices in range).

    The meta is ``(functions, sites, slots)``: per rewritten function ``(qualname, first line,
    rule indices, profile)`` with ``profile`` None or ``(index, rule index, site ids)``, the
    engine's site rows, and the constant slots (``configured.slot_row``) whose values are
    loaded into the code when it is imported.

    Args:
        meta: The entry's meta.
        rule_indices: The indices a function's profile rule may have (the module's profile
            rules come after its transform and wrap rules).
        slot_rules: The indices a constant slot's rule may have (the transform rules).
    """
    if not (type(meta) is tuple and len(meta) == 3):
        return False
    functions, sites, slots = meta
    if type(functions) is not list or type(sites) is not list or type(slots) is not list:
        return False
    for slot in slots:
        if not (type(slot) is tuple and len(slot) == len(_SLOT_TYPES)):
            return False
        if not all(type(v) is t for v, t in zip(slot, _SLOT_TYPES, strict=True)):
            return False
        if slot[2] not in slot_rules:
            return False
    for site in sites:
        if not (type(site) is tuple and len(site) == len(_SITE_TYPES)):
            return False
        if not all(isinstance(v, t) for v, t in zip(site, _SITE_TYPES, strict=True)):
            return False
    for row in functions:
        if not (type(row) is tuple and len(row) == 4):
            return False
        qualname, first_line, rules, profile = row
        if type(qualname) is not str or type(first_line) is not int or not _is_int_list(rules):
            return False
        if profile is None:
            continue
        if not (type(profile) is tuple and len(profile) == 3):
            return False
        index, rule_index, site_ids = profile
        if type(index) is not int or type(rule_index) is not int:
            return False
        if rule_index not in rule_indices:
            return False
        if not _is_int_list(site_ids, len(sites)):
            return False
    return True


def read_entry(cache: str | None, digest: bytes) -> tuple[CodeType, Any] | None:
    """The cached ``(code, meta)`` for this digest, or None: any bad entry is a miss.

    Only the header and the payload's outer shape are checked here; the caller validates the
    meta (:func:`valid_meta`). Whatever fails to load is rewritten and replaced.
    """
    if cache is None:
        return None
    try:
        with open(cache, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    expected = importlib.util.MAGIC_NUMBER + _FLAGS
    if len(blob) < 16 or blob[:8] != expected:
        return None
    if blob[8:16] != digest:
        return None
    try:
        entry = marshal.loads(blob[16:])
    except Exception:  # marshal raises EOFError, ValueError, TypeError... on bad data
        return None
    if not (type(entry) is tuple and len(entry) == 2 and type(entry[0]) is CodeType):
        return None
    return entry[0], entry[1]


def write_entry(
    cache: str | None, source_path: str, digest: bytes, code: CodeType, meta: Any
) -> None:
    """Writes the entry atomically, as importlib writes ordinary bytecode.

    Nothing is written without a cache path or under ``sys.dont_write_bytecode``. The mode
    follows the source file's (importlib's ``_calc_mode``: the source's mode, owner-writable,
    under the umask) and the temporary file is created with ``O_EXCL | O_CREAT``: a file or
    symlink already at its name is never followed.
    """
    if cache is None or sys.dont_write_bytecode:
        return
    header = importlib.util.MAGIC_NUMBER + _FLAGS
    blob = header + digest + marshal.dumps((code, meta))
    try:
        mode = os.stat(source_path).st_mode
    except OSError:
        mode = 0o666
    mode = (mode | 0o200) & 0o666
    tmp = f"{cache}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        fd = os.open(tmp, os.O_EXCL | os.O_CREAT | os.O_WRONLY, mode)
    except OSError:
        # Read-only directory, a file where __pycache__ should be, something already at
        # the temporary name: the module still imports; it is rewritten again next time.
        return
    try:
        with open(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, cache)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
