"""When the exit report is written: at exit, in forked and multiprocessing children, on SIGTERM.

:func:`arm` (called by :func:`callweave.hook.install`) arranges for the configured report to
be written once per process:

- at normal interpreter exit (``atexit``: the end of the program, ``sys.exit()``, an uncaught
  exception, Ctrl-C);
- in a multiprocessing child, which leaves through ``os._exit`` after running
  multiprocessing's finalizers (a finalizer is registered in each child);
- on SIGTERM in the main process (``docker stop``, ``systemctl stop``, ``kill``): a handler
  writes the report and then ends the process by SIGTERM again, with the signal's default
  action, so the exit status (``-SIGTERM``, 143 in a shell) is what it would be without
  callweave. The handler is installed only where SIGTERM has its default disposition (a
  program's own handler, or ``SIG_IGN``, is left alone) and only from the main thread.

Child processes keep SIGTERM's default action (a forked child gets it back; SIGTERM is
blocked across the fork meanwhile): a Python-level handler runs only when the main thread
next checks for signals, and a SIGTERM that lands just before a blocking call (a pool worker
waiting for the task queue's lock, which ``Pool.terminate()`` holds while it terminates the
workers) would then never run, so ``terminate()`` followed by ``join()`` would hang. So that
a terminated pool (``with Pool() as p:`` calls ``terminate()``) loses nothing its workers
finished, a worker of ``multiprocessing.Pool`` saves its profile at the end of each task,
before the task's result is sent, in its parent's spool directory; the parent merges what its
dead workers left into its own report, and says in one line how many of them died inside a
task (see "pool spool" below). Other children ended by SIGTERM write no report.

A child process (forked, spawned, or started by ``subprocess`` with this interpreter) writes
its own report, with its pid in the file name, and only when it profiled something.

Data is lost where no code can run: SIGKILL (and other signals whose default action kills,
except SIGTERM and SIGINT), ``os._exit()`` outside multiprocessing's children, a crash;
for a pool worker, only what it profiled in the task it died in.
"""

from __future__ import annotations

import atexit
import contextlib
import marshal
import os
import signal
import struct
import sys
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from callweave._metapath import spec_from_others
from callweave.config import Report

__all__ = ["arm", "write_report_once"]

_state: dict[str, Any] = {
    "spec": None,  # the Report to write, or None
    "child": False,  # a child of an instrumented process: pid in the file name
    "written": False,  # written (or being written) in this process
    "writing": False,  # being written now
    "pending": None,  # a signal that arrived while the report was being written
    "spool": None,  # the token of this process's spool (its pool workers' profiles)
    "spooler": None,  # a pool worker's _Spooler (its files in its parent's spool), or None
    "pool_worker": None,  # multiprocessing.pool.worker, where it was replaced by _pool_worker
    "parent_spool": None,  # a fork or forkserver child's parent's spool token, or None
    "fork_masked": False,  # SIGTERM blocked by _before_fork
    "mp_armed": False,  # hooked into multiprocessing (imported by the program, or by us)
}
_registered = False


def _report_spec() -> Report | None:
    """The configured report; a child process writes to its own file (pid in the name)."""
    spec: Report | None = _state["spec"]
    if spec is None or not _state["child"] or spec.path is None:
        return spec
    path = spec.path
    return Report(spec.kind, path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}"))


def write_report_once() -> None:
    """Writes the configured report if this process has not written it yet (never raises).

    The report includes the profiles that this process's dead pool workers saved (see "pool
    spool"). A child that ran nothing profiled (multiprocessing's resource tracker or
    forkserver, a helper subprocess) writes nothing. A SIGTERM that arrives meanwhile ends
    the process once the report is written, except in a pool worker (below).
    """
    if _state["written"] or _state["spec"] is None:
        return
    _state["written"] = _state["writing"] = True
    try:
        from callweave.profiler import stats
        from callweave.reports import write_exit_report

        spooler: _Spooler | None = _state["spooler"]
        # A pool worker may be ending normally just as Pool.terminate() sends SIGTERM: its
        # report and the removal of its saved profile must not be parted (the parent would
        # count that profile twice), so SIGTERM is ignored meanwhile: no handler, which could
        # be left pending, just SIG_IGN for a moment in a process that is ending anyway.
        with _sigterm_ignored(spooler is not None):
            own = stats()
            spooled, taken = _take_spool()
            if not (_state["child"] and not any(s.count for s in (*own, *spooled))):
                write_exit_report(_report_spec(), stats=[*own, *spooled])
            # Only now are the saved profiles in a report.
            token = _state["spool"]
            _discard(taken, _spool_dir(token) if token is not None else None)
            if spooler is not None:
                spooler.close()
                _discard(spooler.paths(), spooler.directory)
                _state["spooler"] = None
    finally:
        _state["writing"] = False
        pending = _state["pending"]
        if pending is not None:
            _die(pending)


@contextlib.contextmanager
def _sigterm_ignored(ignore: bool) -> Iterator[None]:
    """Ignores SIGTERM inside the block where ``ignore`` and SIGTERM has its default action.

    A SIGTERM that arrives meanwhile is dropped: only for a process that is ending.
    """
    ignored = False
    if ignore:
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                ignored = True
        except (ValueError, OSError, AttributeError):  # not the main thread
            pass
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _die(signum: int) -> None:
    """Ends the process by ``signum`` with its default action, as if callweave were absent."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    # Still alive: the program blocks the signal (sigprocmask); it kills when unblocked.


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: write the report (or let the write under way finish), then die by SIGTERM."""
    if _state["writing"]:
        # Signal handlers run in the main thread, between bytecodes: here, inside the
        # writer (atexit, a multiprocessing finalizer, this handler itself).
        _state["pending"] = signum
        return
    write_report_once()
    _die(signum)


def _install_sigterm_handler() -> None:
    """Installs the SIGTERM handler where SIGTERM has its default disposition."""
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the program's own handler (or SIG_IGN, or ours already) decides
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_sigterm)
            return
    except (ValueError, OSError, AttributeError):  # not the main interpreter; no SIGTERM
        pass
    # signal.signal() works only in the main thread of the main interpreter: say what that
    # costs, once, where it can still be fixed (install the hook from the main thread).
    warnings.warn(
        "callweave: the hook was installed outside the main thread, so a SIGTERM will end "
        "the process without writing the report (install it from the main thread)",
        RuntimeWarning,
        stacklevel=4,
    )


# ----------------------------------------------------------------------------- pool spool
#
# ``Pool.terminate()`` (which ``with Pool() as p:`` calls) ends the workers by SIGTERM, with its
# default action: no code runs in them. So a worker of ``multiprocessing.Pool`` saves its
# profile at the end of each task, before the task's result is sent, to a file in its
# parent's spool directory: whatever ends the worker, a task whose result reached the parent
# is saved. A worker that ends normally writes its own report and removes its files; the
# parent merges the files its dead workers left into its own report. Each worker also keeps
# one byte that says whether it is inside a task, so that the parent can say, in one line,
# that a worker died in the middle of one (whose profile is lost).
#
# A save is cheap: none when nothing was recorded since the last one (``_native.
# profile_counts()``, the reset epoch and each function's count, is unchanged), and only the
# functions whose count changed are serialised again (their native aggregates as a tuple of
# numbers, marshalled); the statistics objects are made by the parent, from the slot.
#
# Files in a spool directory (mode 0700, a random name under the temporary directory):
# ``PID.0.spool`` and ``PID.1.spool``, the worker's profile after its last task and the one
# before (see _Spooler), and ``PID.busy`` (``1`` inside a task).

_SPOOL_KEY = "callweave_spool"  # in multiprocessing's per-process config, copied to children


def _spool_dir(token: str) -> Path:
    """The spool directory of the process that made ``token`` (made by its first worker)."""
    import tempfile  # only where a spool is used: a pool worker, an exit with dead workers

    return Path(tempfile.gettempdir()) / f"callweave-pool-{token}"


def _own_spool_token() -> None:
    """Gives this process a spool of its own; its multiprocessing children learn its name.

    ``Process`` objects copy their creator's ``_config`` (a fork child inherits it, spawn and
    forkserver children get it pickled with the process object), so a pool worker finds its
    parent's token there while it starts, before it replaces it with its own. Until the
    program imports multiprocessing (no ``Process`` can be made before), the token is only
    kept: :func:`_arm_multiprocessing` publishes it then.
    """
    token = f"{os.getpid()}-{os.urandom(6).hex()}"
    _state["spool"] = token
    if _state["mp_armed"]:
        _publish_spool_token()


def _publish_spool_token() -> None:
    """Puts this process's spool token where the ``Process`` objects it makes copy it from."""
    import multiprocessing

    token = _state["spool"]
    if token is None:
        return
    try:
        process: Any = multiprocessing.current_process()
        process._config[_SPOOL_KEY] = token
    except (AttributeError, TypeError):  # not the multiprocessing we know: no spool
        pass


def _open_in(directory: Path, name: str) -> int:
    """Opens ``directory/name`` for writing (made, truncated), making the directory if need be."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    for _attempt in range(3):
        try:
            return os.open(directory / name, flags, 0o600)
        except FileNotFoundError:
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:  # a sibling worker made it
                pass
    # A sibling that ended removed the directory each time in between: give up.
    return os.open(directory / name, flags, 0o600)


def _write_all(fd: int, data: bytes, offset: int = 0) -> None:
    view = memoryview(data)
    while view:
        view = view[os.pwrite(fd, view, offset) :]
        offset = len(data) - len(view)


class _Spooler:
    """A pool worker's files in its parent's spool directory.

    The profile goes to two slot files in turn, each write one ``pwrite`` of a header
    (sequence number, length, CRC-32) and the payload: a write cut short by the worker's
    death leaves the other slot, one task older, intact, and the parent takes the newest slot
    whose checksum holds. (Replacing a file by rename costs milliseconds on ext4, which
    flushes the new file's data to disk when it replaces another.)

    A save costs little: nothing is written when no profile recorded anything since the last
    save (the native reset epoch and invocation counts are the same), and a function is
    serialised again only when its count changed. The payload is one chunk per function that
    recorded something: its static part, marshalled once (:func:`_static`), and its native
    aggregates (``FunctionProfile.aggregates()``, a tuple of numbers), marshalled; the parent
    makes the statistics (:func:`_read_slot`).
    """

    def __init__(self, directory: Path) -> None:
        from callweave import _native

        self.directory = directory
        self.pid = os.getpid()
        self.failed = False
        self.sequence = 0
        self.fds: list[int] = []
        self.busy_fd: int | None = None
        self._native = _native
        # What the last save held: the native reset epoch and counts, and per function (in
        # registration order) its profile, its static part (_static) and its chunk (b""
        # while it has recorded nothing).
        self.saved: tuple[int, list[int]] | None = None
        self.profiles: list[_native.FunctionProfile] = []
        self.statics: list[bytes] = []
        self.chunks: list[bytes] = []
        try:
            self.busy_fd = _open_in(directory, f"{self.pid}.busy")
            _write_all(self.busy_fd, b"0")
        except OSError as exc:
            self._failed(exc)

    def paths(self) -> list[Path]:
        return [self.directory / f"{self.pid}{ext}" for ext in (".0.spool", ".1.spool", ".busy")]

    def close(self) -> None:
        for fd in (*self.fds, self.busy_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fds, self.busy_fd = [], None

    def busy(self, busy: bool) -> None:
        """Marks this worker inside a task or not (one byte; never raises)."""
        if self.busy_fd is not None:
            try:
                os.pwrite(self.busy_fd, b"1" if busy else b"0", 0)
            except OSError as exc:
                self._failed(exc)

    def flush(self) -> None:
        """Writes this process's profile to the older slot, if it changed (never raises)."""
        if self.failed:
            return
        try:
            counts = self._native.profile_counts()
            saved = self.saved
            if counts == saved or (saved is None and not any(counts[1])):
                return  # nothing recorded since the last save: the newest slot holds it all
            resets, now = counts
            if len(now) > len(self.profiles):  # functions registered since
                self.profiles = self._native.all_profiles()
                new = self.profiles[len(self.statics) :]
                self.statics.extend(_static(p) for p in new)
                self.chunks.extend(b"" for _ in new)
            before = saved[1] if saved is not None and saved[0] == resets else []
            chunks = self.chunks
            for i, count in enumerate(now):
                if i >= len(before) or before[i] != count:
                    chunks[i] = _chunk(self.statics[i], self.profiles[i]) if count else b""
            if not self.fds:
                self.fds = [_open_in(self.directory, f"{self.pid}.{i}.spool") for i in (0, 1)]
            payload = b"".join(chunks)
            header = _SLOT_HEADER.pack(self.sequence, len(payload), zlib.crc32(payload))
            _write_all(self.fds[self.sequence % 2], header + payload)
            self.sequence += 1
            self.saved = counts
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if not self.failed:
            self.failed = True
            _say(
                f"could not save this pool worker's profile in {self.directory} "
                f"({type(exc).__name__}: {exc}); if the pool is terminated, it is lost"
            )


_SLOT_HEADER = struct.Struct("<QQI")  # sequence, payload length, CRC-32 of the payload
_CHUNK_HEADER = struct.Struct("<II")  # the lengths of one function's two marshalled parts


def _static(profile: Any) -> bytes:
    """What never changes of a profiled function, marshalled (made once per function).

    ``(module, qualname, filename, line, time_limit, sites)``, ``sites`` a tuple of
    ``(text, callee, line)``.
    """
    sites = tuple((text, callee, line) for text, callee, line, *_ in profile.sites)
    return marshal.dumps(
        (
            profile.module,
            profile.qualname,
            profile.filename,
            profile.line,
            profile.time_limit,
            sites,
        )
    )


def _chunk(static: bytes, profile: Any) -> bytes:
    """One function's part of a slot: two lengths, its :func:`_static` and its aggregates.

    The aggregates are ``profile.aggregates()`` (a tuple of numbers) marshalled; empty if the
    function has recorded nothing (read after the counts the caller compared: a newer count
    is seen as a change by the next save).
    """
    raw = profile.aggregates()
    if not raw[0]:
        return b""
    data = marshal.dumps(raw)
    return _CHUNK_HEADER.pack(len(static), len(data)) + static + data


def _stats_of(static: tuple[Any, ...], raw: tuple[Any, ...]) -> Any:
    """The ``FunctionStats`` of a chunk (what ``profiler.stats()`` gives for the function)."""
    from callweave.profiler import FunctionStats, SiteStats

    module, qualname, filename, line, limit, sites = static
    count, errors, total, low, high, p50, p95, p99, aggregates, above, histogram = raw
    return FunctionStats(
        module=module,
        qualname=qualname,
        filename=filename,
        line=line,
        time_limit=limit,
        count=count,
        errors=errors,
        total=total,
        mean=total / count if count else 0.0,
        min=low,
        max=high,
        p50=p50,
        p95=p95,
        p99=p99,
        sites=[
            SiteStats(text, callee, at, n, spent, spent / n if n else 0.0, most, nested)
            for (text, callee, at), (n, spent, most, nested) in zip(sites, aggregates, strict=True)
        ],
        above=above,
        histogram=[tuple(b) for b in histogram],
    )


def _read_slot(path: Path) -> tuple[int, list[Any]] | None:
    """A slot file's sequence number and statistics; None if it is empty or torn."""
    data = path.read_bytes()
    if len(data) < _SLOT_HEADER.size:
        return None
    sequence, length, crc = _SLOT_HEADER.unpack_from(data)
    payload = data[_SLOT_HEADER.size : _SLOT_HEADER.size + length]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None
    # Our own file, in our own 0700 directory, written by our own worker (same interpreter:
    # marshal's format is the same).
    functions = []
    at = 0
    while at < length:
        static, size = _CHUNK_HEADER.unpack_from(payload, at)
        at += _CHUNK_HEADER.size
        data = marshal.loads(payload[at + static : at + static + size])
        functions.append(_stats_of(marshal.loads(payload[at : at + static]), data))
        at += static + size
    return sequence, functions


class _SpooledQueue:
    """A pool's task or result queue, as a worker sees it: each task is marked and saved.

    ``multiprocessing.pool.worker`` takes a task with ``inqueue.get()`` and sends its result
    with ``outqueue.put()``; everything else is passed through.
    """

    def __init__(self, queue: Any, spooler: _Spooler) -> None:
        self._queue = queue
        self._spooler = spooler

    def get(self) -> Any:
        task = self._queue.get()
        if task is not None:  # None: the pool's sentinel, the worker ends
            self._spooler.busy(True)
        return task

    def put(self, obj: object) -> None:
        self._spooler.flush()
        self._spooler.busy(False)
        self._queue.put(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


def _say(message: str) -> None:
    """One line on stderr, ``callweave: ...`` (never raises)."""
    try:
        if sys.stderr is not None:
            sys.stderr.write(f"callweave: {' '.join(message.split())}\n")
            sys.stderr.flush()
    except Exception:  # nowhere left to say it
        pass


def _parent_token() -> str | None:
    """The spool token of this process's parent, if it is the parent's own (not stale)."""
    import multiprocessing

    config = getattr(multiprocessing.current_process(), "_config", None)
    token = config.get(_SPOOL_KEY) if isinstance(config, dict) else None
    parent = multiprocessing.parent_process()
    # A token names its maker: one copied on through a spawned process (which runs no
    # after-fork hook to replace it) is not the parent's.
    if not isinstance(token, str) or parent is None or token.partition("-")[0] != str(parent.pid):
        return None
    return token


def _pool_worker(*args: Any, **kwargs: Any) -> Any:
    """``multiprocessing.pool.worker`` in a worker process, saving each task's profile.

    Fork and forkserver workers run it instead of the target they were given (see
    :func:`_register_mp_finalizer`); a spawned worker unpickles it as its target, since a
    spawned child replaces ``multiprocessing.pool.worker`` with it when it is armed.
    """
    import multiprocessing.pool

    pool: Any = multiprocessing.pool  # `worker` is private: not in typeshed
    worker = _state["pool_worker"] or pool.worker
    if threading.current_thread() is not threading.main_thread():
        return worker(*args, **kwargs)  # a ThreadPool: this process's own report has it all
    # A fork or forkserver child learnt it in _register_mp_finalizer, a spawned one learns it
    # here, from the process object it was given.
    token = _state["parent_spool"] or _parent_token()
    _own_spool_token()  # for this worker's own children
    if token is None or _state["spec"] is None or len(args) < 2:
        return worker(*args, **kwargs)
    spooler = _Spooler(_spool_dir(token))
    _state["spooler"] = spooler
    queues = (_SpooledQueue(args[0], spooler), _SpooledQueue(args[1], spooler))
    return worker(*queues, *args[2:], **kwargs)


def _patch_spawned_pool_worker() -> None:
    """In a spawned multiprocessing child: a pool worker target unpickles as :func:`_pool_worker`.

    A spawned child runs no after-fork hook, and its target is pickled by name
    (``multiprocessing.pool.worker``): the name is made to lead to :func:`_pool_worker`
    before the target is unpickled. Costs the import of ``multiprocessing.pool`` (a few
    milliseconds) in spawned multiprocessing children only.
    """
    if "--multiprocessing-fork" not in getattr(sys, "orig_argv", ()):
        return
    import multiprocessing.pool

    pool: Any = multiprocessing.pool  # `worker` is private: not in typeshed
    if pool.worker is not _pool_worker:
        _state["pool_worker"] = pool.worker
        pool.worker = _pool_worker


def _take_spool() -> tuple[list[Any], list[Path]]:
    """What this process's dead pool workers left in its spool: their profiles, their files.

    Says in one line how many of them died inside a task (whose profile is lost).
    """
    token = _state["spool"]
    if token is None or not _state["mp_armed"]:
        # Without multiprocessing no worker learnt the token (see _arm_multiprocessing).
        return [], []
    directory = _spool_dir(token)
    try:
        names = os.listdir(directory)
    except OSError:
        return [], []
    try:
        import multiprocessing

        alive = {str(p.pid) for p in multiprocessing.active_children()}
    except Exception:
        alive = set()
    spooled: list[Any] = []
    taken: list[Path] = []
    slots: dict[str, tuple[int, list[Any]]] = {}
    cut = 0
    for name in sorted(names):
        pid, _dot, ext = name.partition(".")
        if pid in alive:
            continue  # a live worker writes its own report
        path = directory / name
        taken.append(path)
        try:
            if ext.endswith(".spool"):
                slot = _read_slot(path)
                if slot is not None and (pid not in slots or slot[0] > slots[pid][0]):
                    slots[pid] = slot
            elif ext == "busy" and path.read_bytes() == b"1":
                cut += 1
        except Exception as exc:
            _say(f"could not read a pool worker's saved profile {path}: {exc}")
    for _sequence, functions in slots.values():
        spooled.extend(functions)
    if cut:
        _say(
            f"{cut} pool worker{'s' if cut > 1 else ''} ended inside a task (Pool.terminate() "
            "while tasks ran, SIGKILL, os._exit or a crash): what those tasks profiled is not "
            "in the report; the tasks they finished are"
        )
    return spooled, taken


def _discard(paths: list[Path], directory: Path | None = None) -> None:
    """Removes spool files, then ``directory`` if it is empty now (never raises)."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass
    if directory is not None:
        try:
            os.rmdir(directory)
        except OSError:  # a live worker's files are still there, or it is gone already
            pass


def _before_fork() -> None:
    # A child forked while callweave's handler is installed would run with it until
    # _after_fork_in_child resets it, and a SIGTERM in between would set the handler's flag
    # and then be dropped (the child's handler is SIG_DFL by then): a pool worker still
    # starting when Pool.terminate() ran would go on, block on the task queue's lock, and
    # the pool would hang. SIGTERM is blocked across the fork: the child takes it once its
    # default action is back.
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        _state["fork_masked"] = True


def _after_fork_in_parent() -> None:
    if _state["fork_masked"]:
        _state["fork_masked"] = False
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _after_fork_in_child() -> None:
    # SIGTERM first, while it is blocked (see _before_fork).
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:  # not the main interpreter
            pass
    if _state["fork_masked"]:
        _state["fork_masked"] = False
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    # A forked child starts with the parent's aggregates: it reports only its own work, to its
    # own file, also when it leaves through os._exit (multiprocessing runs its finalizers).
    from callweave.profiler import reset_stats

    reset_stats()
    _state["child"] = True
    _state["written"] = _state["writing"] = False
    _state["pending"] = None
    _state["spooler"] = None
    # The parent's spool is the parent's to merge; a pool worker learns its parent's token
    # from its process object (_register_mp_finalizer, _pool_worker).
    _state["parent_spool"] = None
    if _state["spool"] is not None:
        _own_spool_token()


class _Token:
    """A weak-referenceable key for multiprocessing's after-fork registry."""


_MP_TOKEN = _Token()


def _register_mp_finalizer(_token: object) -> None:
    import multiprocessing.util

    _state["child"] = True
    multiprocessing.util.Finalize(None, write_report_once, exitpriority=0)
    # The process about to run (a fork or forkserver child): a pool worker saves its profile
    # at each task's end, and this process's own children learn its spool.
    process = multiprocessing.current_process()
    _state["parent_spool"] = _parent_token()
    _own_spool_token()
    target = getattr(process, "_target", None)
    pool = sys.modules.get("multiprocessing.pool")
    if pool is not None and target is not None and target is pool.worker:
        target_holder: Any = process
        target_holder._target = _pool_worker


def _arm_multiprocessing() -> None:
    """Hooks into multiprocessing, once it is imported (by the program, or by a spawned child).

    multiprocessing children leave through ``os._exit`` after running multiprocessing's
    finalizers, not ``atexit``; ``Process._bootstrap`` clears the finalizers it inherited and
    then runs the after-fork hooks, where the report's finalizer is registered anew. This
    process's spool token goes into its per-process config, which the ``Process`` objects it
    makes copy. Neither can matter before multiprocessing is imported: a process that never
    imports it does not pay for importing it (see :class:`_WhenImported`).
    """
    if _state["mp_armed"]:
        return
    import multiprocessing.util

    _state["mp_armed"] = True
    multiprocessing.util.register_after_fork(_MP_TOKEN, _register_mp_finalizer)
    _publish_spool_token()


class _WhenImported:
    """A ``sys.meta_path`` entry that runs a callback once a module has been imported.

    It finds the module's spec with the other finders (callweave's own included, so a module
    that a rule selects is still rewritten), and wraps its loader: once the module has been
    executed, the module's ``__loader__`` and ``__spec__.loader`` are the original loader
    again, this entry leaves ``sys.meta_path`` and the callback runs. It sits just before
    ``PathFinder`` (never at the head, where callweave's finder stays).
    """

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name = name
        self.callback = callback
        self._finding = threading.local()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name or getattr(self._finding, "active", False):
            return None
        self._finding.active = True
        try:
            spec = spec_from_others(fullname, path, target, lambda finder: finder is self)
        finally:
            self._finding.active = False
        if spec is None:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _CallbackLoader(spec.loader, self)
        return spec

    def invalidate_caches(self) -> None:
        """Nothing to invalidate."""

    def insert(self) -> None:
        """Puts this entry on ``sys.meta_path`` (again), just before ``PathFinder``."""
        import importlib.machinery

        meta_path = sys.meta_path
        if self in meta_path:
            return
        try:
            index = meta_path.index(importlib.machinery.PathFinder)
        except ValueError:
            index = len(meta_path)
        meta_path.insert(index, self)

    def fire(self) -> None:
        """Leaves ``sys.meta_path`` and runs the callback (the module is imported)."""
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        self.callback()


class _CallbackLoader:
    """Another loader, whose ``exec_module`` is followed by :meth:`_WhenImported.fire`."""

    def __init__(self, loader: Any, watcher: _WhenImported) -> None:
        self._loader = loader
        self._watcher = watcher

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        loader = self._loader
        try:
            loader.exec_module(module)
        finally:
            module.__loader__ = loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = loader
        self._watcher.fire()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_MP_WATCH = _WhenImported("multiprocessing", _arm_multiprocessing)


def arm(report: Report | None, *, child: bool) -> None:
    """Arranges for ``report`` to be written once when this process ends (see the module).

    Args:
        report: The report; None or a ``"none"`` report arranges nothing.
        child: This process is a child of an instrumented one.
    """
    global _registered
    _state["child"] = _state["child"] or child
    if report is None or report.kind == "none":
        return
    _state["spec"] = report
    if not _registered:
        atexit.register(write_report_once)
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
        _registered = True
    if _state["spool"] is None:
        _own_spool_token()
        _patch_spawned_pool_worker()
    # multiprocessing's after-fork hook and this process's spool token: now if the program has
    # imported multiprocessing already, else once it does (see _arm_multiprocessing).
    if "multiprocessing" in sys.modules:
        _arm_multiprocessing()
    elif not _state["mp_armed"]:
        _MP_WATCH.insert()
    if not _state["child"]:
        _install_sigterm_handler()
