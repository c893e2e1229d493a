"""callweave's bytecode cache: where a rewritten module's entry lives, its key, reads, writes.

A rewritten module is cached beside its ordinary bytecode in its own file
(``mod.cpython-311.callweave.pyc``). Its header is a PEP 552 hash-based pyc's (magic number,
flags ``0b11``, and the *key digest*: :func:`importlib.util.source_hash` of the source followed
by :func:`key_suffix`: callweave's version and build, :data:`FORMAT`, the hash of the rules
that apply to the module, the optimisation level, the magic number) followed by the source's
*stamp* (its ``st_mtime_ns``, ``st_size`` and ``st_ctime_ns``, :func:`source_stamp`) and the
digest of the key suffix alone (:data:`HEADER_SIZE` bytes in all).

An entry whose stamp and suffix digest match the source's stat and the current key suffix is
current without reading the source, as CPython trusts a timestamp pyc whose source mtime and
size match (here with nanoseconds, and the inode change time besides). Otherwise the source is
read and hashed, and an entry whose key digest matches is current all the same: its stamp is
refreshed (:func:`refresh_stamp`), so the next import is cheap again. A stamp is stored only
once the source's mtime is :data:`SETTLED_NS` old (:func:`settled_stamp`): an edit in the
same clock tick as the cached version's cannot have that version's stamp.

The header ends with the payload's length (4 bytes, little-endian). The payload is
``marshal.dumps((code, stored[1:], key digest))``, where ``stored`` is plain data the hook
validates (:func:`valid_meta`) before it trusts an entry: a header that matches says nothing
about the payload. The key digest in the payload must be the header's: it names the runtime
names the code uses. The profiled functions' rows (``stored[0]``, the biggest part of
``stored``) follow the payload, raw, to the end of the file: they are read into their own
``bytes`` object, not copied out of the payload by marshal.

A warm import unmarshals and checks only what every import needs (the constant slots, the
number of profiled functions): each profiled function's row and the site table stay marshalled
``bytes`` (the rows in one blob, with a table of their offsets: a handful of objects per
entry, not one per function), checked by a CRC-32 at import and unmarshalled and validated when
first needed (:class:`EntryMeta`: a profiled function's first entry, ``stats()``, a wrapper
given its call sites).
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import struct
import sys
import threading
from types import CodeType
from typing import Any, cast

from callweave import _native

__all__ = [
    "CACHE_SUFFIX",
    "FORMAT",
    "HEADER_SIZE",
    "SETTLED_NS",
    "Entry",
    "EntryMeta",
    "ProfileSite",
    "cache_note",
    "cache_path",
    "cache_path_beside",
    "key_suffix",
    "load_entry",
    "malformed",
    "read_entry",
    "refresh_stamp",
    "settled_stamp",
    "source_stamp",
    "valid_meta",
    "valid_profile_sites",
    "write_entry",
]

CACHE_SUFFIX = ".callweave.pyc"
#: Bumped when what the cache holds changes (2: injected names come from the source hash;
#: 3: runtime names in module globals, paused yields, unlocated entry/exit, star-call binder;
#: 4: the meta has the constant-slot table, the code is cached before slots are loaded;
#: 5: profiled functions' rows and the site table marshalled apart, read lazily: EntryMeta;
#: 7: the profiled functions' rows in one blob with a table of offsets;
#: 8: the source's stat stamp and the key suffix's digest in the header, the key digest in
#: the payload; 9: the payload's length in the header, the profiled functions' rows raw
#: after the payload).
FORMAT = 9

#: A hash-based pyc's flags word (PEP 552: hash-based, check_source).
_FLAGS = (3).to_bytes(4, "little")

#: What an entry starts with: the magic number and the flags.
_MAGIC_FLAGS = importlib.util.MAGIC_NUMBER + _FLAGS

#: Magic number, flags, key digest (8), source stamp (24), key suffix digest (8), the
#: payload's length (4).
HEADER_SIZE = 52

#: The stamp of an entry that is validated by its key digest alone (see :func:`settled_stamp`).
_NO_STAMP = bytes(24)

#: How old a source's mtime must be for its stamp to be stored: more than any file system's
#: timestamp granularity (FAT's 2 s), so a later edit cannot have the same mtime.
SETTLED_NS = 2_000_000_000


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


def cache_note() -> str | None:
    """What ``callweave check`` says when rewritten modules cannot be cached, else None.

    Under ``sys.dont_write_bytecode`` (``PYTHONDONTWRITEBYTECODE`` set, or ``python -B``)
    callweave writes no cache entry, as CPython writes no ``.pyc``: every process rewrites
    every matched module again, a cold import each time instead of a warm one.
    """
    if not sys.dont_write_bytecode:
        return None
    why = (
        "PYTHONDONTWRITEBYTECODE is set"
        if os.environ.get("PYTHONDONTWRITEBYTECODE")
        else "sys.dont_write_bytecode is true (python -B)"
    )
    return (
        f"callweave: {why}: rewritten modules are not cached, so every process rewrites"
        " every matched module when it imports it (a cold import, several times a cached"
        " one); unset it to cache them (entries already in __pycache__ are still read)"
    )


def cache_path(source_path: str) -> str | None:
    """Where the module at ``source_path`` is cached (None: no cache, as importlib decides)."""
    try:
        base = importlib.util.cache_from_source(source_path)
    except NotImplementedError:
        return None
    return base[: -len(".pyc")] + CACHE_SUFFIX


def cache_path_beside(cached: str) -> str | None:
    """Where the module whose ordinary bytecode is at ``cached`` is cached (:func:`cache_path`).

    ``cached`` is importlib's ``cache_from_source`` of the source (a module's ``__cached__``):
    None unless it ends with ``.pyc``.
    """
    if not cached.endswith(".pyc"):
        return None
    return cached[: -len(".pyc")] + CACHE_SUFFIX


def key_suffix(fullname: str, rules_hash: str, *, pytest: bool) -> bytes:
    """What is hashed after the source: everything else the rewritten code depends on.

    Args:
        fullname: The module's name.
        rules_hash: The hash of the rules that apply to the module.
        pytest: Whether pytest's assertion rewriting is applied too.
    """
    parts = (fullname, _KEY_MIDDLE, rules_hash, _KEY_TAIL, "pytest" if pytest else "")
    return b"\0callweave\0" + "\0".join(parts).encode()


#: The parts of the key suffix that are the same for every module of the process (joined once:
#: the suffix is computed at every import): callweave's version and build, the format...
_KEY_MIDDLE = "\0".join((_native.__version__, _BUILD_ID, str(FORMAT)))
#: ...the optimisation level and the magic number.
_KEY_TAIL = "\0".join((str(sys.flags.optimize), importlib.util.MAGIC_NUMBER.hex()))


def source_stamp(st: os.stat_result) -> bytes:
    """The stamp of a source file's stat: ``st_mtime_ns``, ``st_size``, ``st_ctime_ns``.

    The inode change time (``st_ctime_ns``; on Windows the creation time) changes whenever the
    file is written or its times are set: an edit that restores the old mtime (``cp -p``,
    ``os.utime``) is seen too.
    """
    return _STAMP.pack(st.st_mtime_ns, st.st_size, st.st_ctime_ns)


#: A stamp's layout: three signed 64-bit little-endian integers.
_STAMP = struct.Struct("<qqq")


def settled_stamp(st: os.stat_result | None, now_ns: int) -> bytes:
    """The stamp to store for a source whose content was read after ``now_ns``.

    A source modified less than :data:`SETTLED_NS` before ``now_ns`` gets no stamp (its entry
    is validated by the key digest until an import finds its mtime settled and stores the
    stamp): an edit after the read, in the same timestamp tick, would keep the mtime.

    Args:
        st: The source's stat, taken before its content was read (None: no stamp).
        now_ns: ``time.time_ns()`` taken after the stat and before the read.
    """
    if st is None or now_ns - st.st_mtime_ns <= SETTLED_NS:
        return _NO_STAMP
    return source_stamp(st)


_SITE_TYPES: tuple[type | tuple[type, ...], ...]
_SITE_TYPES = (int, str, int, int, int, int, str, (str, type(None)), bool)


_SLOT_TYPES = (str, str, int, str, int, int, int, int, str)


def _valid_slots(slots: Any, slot_rules: range) -> bool:
    if type(slots) is not list:
        return False
    for slot in slots:
        if not (type(slot) is tuple and len(slot) == len(_SLOT_TYPES)):
            return False
        if not all(type(v) is t for v, t in zip(slot, _SLOT_TYPES, strict=True)):
            return False
        if slot[2] not in slot_rules:
            return False
    return True


def _valid_sites(sites: Any) -> bool:
    if type(sites) is not list:
        return False
    for site in sites:
        if not (type(site) is tuple and len(site) == len(_SITE_TYPES)):
            return False
        if not all(isinstance(v, t) for v, t in zip(site, _SITE_TYPES, strict=True)):
            return False
    return True


#: A profiled function's site as the runtime takes it: text, callee, line, end line, column,
#: end column.
ProfileSite = tuple[str, str | None, int, int, int, int]


def _profile_site(row: tuple[Any, ...]) -> ProfileSite:
    return (row[6], row[7], row[2], row[3], row[4], row[5])


def _valid_row(row: Any, rule_indices: range) -> bool:
    # A profiled function's row, its sites aside (see valid_profile_sites).
    if not (type(row) is tuple and len(row) == 4):
        return False
    qualname, first_line, rule_index, sites = row
    if type(qualname) is not str or type(first_line) is not int or type(rule_index) is not int:
        return False
    return rule_index in rule_indices and type(sites) is list


def _valid_profile(row: Any, rule_indices: range) -> bool:
    return _valid_row(row, rule_indices) and valid_profile_sites(row[3])


def valid_profile_sites(sites: list[Any]) -> bool:
    """Whether each of a cached row's sites is a :data:`ProfileSite`."""
    for site in sites:
        # A ProfileSite, checked field by field (a function's first entry checks its row here).
        if not (type(site) is tuple and len(site) == 6):
            return False
        text, callee, line, end_line, col, end_col = site
        if not (
            isinstance(text, str)
            and (callee is None or isinstance(callee, str))
            and isinstance(line, int)
            and isinstance(end_line, int)
            and isinstance(col, int)
            and isinstance(end_col, int)
        ):
            return False
    return True


class EntryMeta:
    """What a rewrite says about its module beside the code, read as the hook needs it.

    ``slots`` (the constant slots, ``configured.slot_row``) are read at every import. Each
    profiled function's row ``(qualname, first line, rule index, sites)`` (sites as
    :data:`ProfileSite`), the module's site table (the engine's rows, for wrappers given
    their call sites) and the qualnames of every rewritten function (for strict mode's rule
    checks) are kept as marshalled bytes until first asked for (:meth:`profile`,
    :meth:`sites`, :meth:`qualnames`): a warm import registers a profiled function when it
    is first entered.

    Attributes:
        slots: The constant slots, loaded into the code at every import.
    """

    __slots__ = (
        "_names",
        "_names_blob",
        "_offsets",
        "_profiles",
        "_profiles_blob",
        "_sites",
        "_sites_blob",
        "slots",
    )

    def __init__(
        self,
        slots: list[tuple[Any, ...]],
        profiles: list[Any],
        sites: Any,
        sites_blob: bytes,
        names: list[str] | None,
        names_blob: bytes,
        profiles_blob: bytes = b"",
        offsets: bytes = b"",
    ) -> None:
        """Meta from its parts (:meth:`of_rewrite`, :func:`valid_meta`)."""
        self.slots = slots
        #: Per profiled function (the profile table's order): its row, or None while it is
        #: only in ``_profiles_blob``, between two of ``_offsets`` (4-byte little-endian).
        self._profiles = profiles
        self._profiles_blob = profiles_blob
        self._offsets = offsets
        self._sites = sites
        self._sites_blob = sites_blob
        self._names = names
        self._names_blob = names_blob

    @classmethod
    def of_rewrite(
        cls,
        functions: list[Any],
        sites: list[Any],
        slots: list[tuple[Any, ...]],
        *,
        keep_sites: bool,
    ) -> EntryMeta:
        """The meta of a fresh rewrite.

        Args:
            functions: Per rewritten function ``(qualname, first line, rule indices,
                profile)`` with ``profile`` None or ``(index, rule index, site ids)``.
            sites: The engine's site rows.
            slots: The constant slots.
            keep_sites: Keep the site table (a wrapper of the module's rules is given call
                sites; the rules are part of the cache key). Without it, :meth:`sites` is
                empty and the cache entry is smaller.
        """
        profiles = [
            (qualname, line, profile[1], [_profile_site(sites[i]) for i in profile[2]])
            for qualname, line, _rules, profile in functions
            if profile is not None
        ]
        names = [qualname for qualname, _line, _rules, _profile in functions]
        return cls(slots, profiles, sites if keep_sites else [], b"", names, b"")

    @property
    def profiled(self) -> int:
        """The number of profiled functions (the size of the profile table)."""
        return len(self._profiles)

    def profile(self, index: int, rule_indices: range) -> tuple[str, int, int, list[ProfileSite]]:
        """Profiled function ``index``: qualname, first line, rule index, sites.

        Raises:
            RuntimeError: The cached row is malformed although the entry's checksum matched
                (a cache file written by something other than callweave).
        """
        row = self._profiles[index]
        if row is None:
            row = self._read_row(index)
            if not _valid_profile(row, rule_indices):
                raise malformed()
            self._profiles[index] = row
        return cast(tuple[str, int, int, list[ProfileSite]], row)

    def row(self, index: int, rule_indices: range) -> tuple[str, int, int, list[Any]]:
        """Profiled function ``index`` as :meth:`profile` gives it, its sites not checked.

        For a caller that checks the sites itself: ``_native.FunctionProfile`` checks each
        one as it converts it (a malformed site raises TypeError, ValueError or OverflowError
        there), or :func:`valid_profile_sites`. The row is read again on the next call.

        Raises:
            RuntimeError: The row is malformed (see :meth:`profile`).
        """
        row = self._profiles[index]
        if row is None:
            row = self._read_row(index)
            if not _valid_row(row, rule_indices):
                raise malformed()
        return cast(tuple[str, int, int, list[Any]], row)

    def _read_row(self, index: int) -> Any:
        """Row ``index`` unmarshalled from the blob, unchecked (None for bad offsets)."""
        offsets = self._offsets
        start = int.from_bytes(offsets[4 * index : 4 * index + 4], "little")
        end = int.from_bytes(offsets[4 * index + 4 : 4 * index + 8], "little")
        return self._load(self._profiles_blob[start:end]) if start <= end else None

    def rows(self) -> tuple[bytes, bytes] | None:
        """The profiled functions' rows as cached: their blob and its offsets, or None.

        See :meth:`stored`. None for the meta of a fresh rewrite: its rows are not marshalled.
        """
        if self._profiles_blob or not self._profiles:
            return self._profiles_blob, self._offsets
        return None

    def sites(self) -> list[tuple[Any, ...]]:
        """The engine's site rows (``Site.row()``).

        Raises:
            RuntimeError: The cached rows are malformed (see :meth:`profile`).
        """
        if self._sites is None:
            sites = self._load(self._sites_blob)
            if not _valid_sites(sites):
                raise malformed()
            self._sites = sites
        return cast(list[tuple[Any, ...]], self._sites)

    def qualnames(self) -> list[str]:
        """The qualnames of every function the module's rules rewrote.

        Raises:
            RuntimeError: The cached list is malformed (see :meth:`profile`).
        """
        if self._names is None:
            names = self._load(self._names_blob)
            if type(names) is not list or not all(type(n) is str for n in names):
                raise malformed()
            self._names = names
        return self._names

    @staticmethod
    def _load(blob: bytes) -> Any:
        try:
            return marshal.loads(blob)
        except Exception:  # marshal raises EOFError, ValueError, TypeError... on bad data
            return None

    def stored(self) -> tuple[bytes, bytes, bytes, bytes, int, list[tuple[Any, ...]]]:
        """The cached form: ``(profiled rows, offsets, site rows, qualnames, CRC-32, slots)``.

        The rows (one blob; the offsets of each row's start and of the end, 4-byte
        little-endian) and the qualnames are marshalled.
        """
        if self._profiles_blob or not self._profiles:
            profiles, offsets = self._profiles_blob, self._offsets
        else:
            rows = [marshal.dumps(p) for p in self._profiles]
            profiles = b"".join(rows)
            ends = [0]
            for row in rows:
                ends.append(ends[-1] + len(row))
            offsets = b"".join(e.to_bytes(4, "little") for e in ends)
        sites = self._sites_blob if self._sites is None else marshal.dumps(self._sites)
        names = self._names_blob if self._names is None else marshal.dumps(self._names)
        return (profiles, offsets, sites, names, _crc(profiles, offsets, sites, names), self.slots)


def _crc(profiles: bytes, offsets: bytes, sites: bytes, names: bytes) -> int:
    # zlib's CRC-32 of the four blobs in a row, computed natively (zlib's table-driven one
    # was about 4% of a warm import of a module whose functions are all profiled).
    return _native.crc32(profiles, offsets, sites, names)


def malformed() -> RuntimeError:
    """The error of a cache entry whose function table is malformed despite its checksum."""
    return RuntimeError(
        "callweave: a cache entry's function table is malformed (delete the"
        " __pycache__/*.callweave.pyc files)"
    )


def valid_meta(stored: Any, slot_rules: range = range(0)) -> EntryMeta | None:
    """The meta of a cache entry's stored form, or None when it is not what callweave writes.

    The marshalled rows are checked by their CRC-32 here, their content when first read.

    Args:
        stored: The entry's stored meta (:meth:`EntryMeta.stored`).
        slot_rules: The indices a constant slot's rule may have (the transform rules).
    """
    if not (type(stored) is tuple and len(stored) == 6):
        return None
    profiles, offsets, sites, names, crc, slots = stored
    if not (
        type(profiles) is bytes
        and type(offsets) is bytes
        and type(sites) is bytes
        and type(names) is bytes
        and type(crc) is int
    ):
        return None
    # No rows and no offsets, or the offsets of n rows' starts and of the blob's end.
    if offsets and (len(offsets) % 4 or int.from_bytes(offsets[-4:], "little") != len(profiles)):
        return None
    if not offsets and profiles:
        return None
    if _native.crc32(profiles, offsets, sites, names) != crc:  # as _crc, one call less
        return None
    if slots or type(slots) is not list:  # an empty list is valid
        if not _valid_slots(slots, slot_rules):
            return None
    count = len(offsets) // 4 - 1 if offsets else 0
    return EntryMeta(slots, [None] * count, None, sites, None, names, profiles, offsets)


#: A cache entry as read (:func:`read_entry`): its header, its payload, the profiled
#: functions' rows.
Entry = tuple[bytes, bytes, bytes]


def read_entry(cache: str | None) -> Entry | None:
    """The cache file's header, payload and rows when its header is callweave's, else None.

    The header's magic number and flags are checked, and the payload's length. The caller
    compares the stamp or the key digest (``header[8:48]``) and loads the payload
    (:func:`load_entry`); anything unreadable is a miss. Each part is read into its own
    ``bytes`` object (no part is copied out of another).
    """
    if cache is None:
        return None
    try:
        # Unbuffered: each part is read at once, a FileIO is enough.
        with open(cache, "rb", buffering=0) as f:
            header = f.read(HEADER_SIZE)
            if len(header) < HEADER_SIZE or header[:8] != _MAGIC_FLAGS:
                return None
            size = int.from_bytes(header[48:52], "little")
            # read() allocates what it is asked for: a corrupt length past the file's end is
            # a miss, not gigabytes.
            if size > os.fstat(f.fileno()).st_size - HEADER_SIZE:
                return None
            payload = f.read(size)
            rows = f.readall()
    except OSError:
        return None
    if len(payload) != size:
        return None
    return header, payload, rows


def load_entry(entry: Entry) -> tuple[CodeType, Any] | None:
    """The ``(code, stored meta)`` of an entry read by :func:`read_entry`, or None.

    Only the payload's outer shape and its key digest (the header's) are checked here; the
    caller validates the meta (:func:`valid_meta`, given the rows back in their place).
    Whatever fails to load is a miss: it is rewritten and replaced.
    """
    header, payload, rows = entry
    try:
        loaded = marshal.loads(payload)
    except Exception:  # marshal raises EOFError, ValueError, TypeError... on bad data
        return None
    if not (type(loaded) is tuple and len(loaded) == 3 and type(loaded[0]) is CodeType):
        return None
    if loaded[2] != header[8:16]:
        return None
    rest = loaded[1]
    return loaded[0], ((rows, *rest) if type(rest) is tuple else rest)


def _source_mode(source_path: str) -> int:
    """The mode of the source's cache files (importlib's ``_calc_mode``)."""
    try:
        mode = os.stat(source_path).st_mode
    except OSError:
        mode = 0o666
    return (mode | 0o200) & 0o666


def write_entry(
    cache: str | None,
    source_path: str,
    header: tuple[bytes, bytes, bytes],
    code: CodeType,
    meta: EntryMeta,
) -> None:
    """Writes the entry atomically, as importlib writes ordinary bytecode.

    Nothing is written without a cache path or under ``sys.dont_write_bytecode``.

    Args:
        cache: The entry's path (:func:`cache_path`).
        source_path: The module's source (for the file's mode).
        header: The key digest, the stamp (:func:`settled_stamp`) and the key suffix's
            digest.
        code: The rewritten code, before its constant slots are loaded.
        meta: Its meta.
    """
    if cache is None or sys.dont_write_bytecode:
        return
    digest, stamp, suffix_digest = header
    stored = meta.stored()
    payload = marshal.dumps((code, stored[1:], digest))
    size = len(payload).to_bytes(4, "little")
    blob = _MAGIC_FLAGS + digest + stamp + suffix_digest + size + payload + stored[0]
    _write_atomic(cache, source_path, blob)


def refresh_stamp(
    cache: str | None, source_path: str, entry: Entry, stamp: bytes, suffix_digest: bytes
) -> bool:
    """Rewrites a current entry whose stamp is stale with the source's (atomically).

    Nothing is written without a cache path, under ``sys.dont_write_bytecode``, for a stamp
    that is not settled (:func:`settled_stamp`) or when the header already holds it.

    Args:
        cache: The entry's path.
        source_path: The module's source (for the file's mode).
        entry: The entry as read (:func:`read_entry`), its key digest the source's.
        stamp: The source's stamp, as :func:`settled_stamp` gives it.
        suffix_digest: The key suffix's digest.

    Returns:
        Whether the entry was rewritten.
    """
    if cache is None or sys.dont_write_bytecode or stamp == _NO_STAMP:
        return False
    header, payload, rows = entry
    if header[16:48] == stamp + suffix_digest:
        return False
    blob = header[:16] + stamp + suffix_digest + header[48:] + payload + rows
    return _write_atomic(cache, source_path, blob)


def _write_atomic(cache: str, source_path: str, blob: bytes) -> bool:
    """Writes ``blob`` at ``cache`` through a temporary file, replaced into place.

    The mode follows the source file's (importlib's ``_calc_mode``: the source's mode,
    owner-writable, under the umask) and the temporary file is created with
    ``O_EXCL | O_CREAT``: a file or symlink already at its name is never followed.

    Returns:
        Whether the file was written.
    """
    mode = _source_mode(source_path)
    tmp = f"{cache}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        fd = os.open(tmp, os.O_EXCL | os.O_CREAT | os.O_WRONLY, mode)
    except OSError:
        # Read-only directory, a file where __pycache__ should be, something already at
        # the temporary name: the module still imports; it is rewritten again next time.
        return False
    try:
        with open(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, cache)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True
