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

Child processes keep SIGTERM's default action (a forked child gets it back): a Python-level
handler runs only when the main thread next checks for signals, and a SIGTERM that lands just
before a blocking call (a pool worker waiting for the task queue's lock, which
``Pool.terminate()`` holds while it terminates the workers) would then never run, so
``terminate()`` followed by ``join()`` would hang. A child ended by SIGTERM (``Pool.terminate()``,
which ``with Pool() as p:`` calls) therefore writes no report: ``close()`` and ``join()`` keep
everything.

A child process (forked, spawned, or started by ``subprocess`` with this interpreter) writes
its own report, with its pid in the file name, and only when it profiled something.

Data is lost where no code can run: SIGKILL (and other signals whose default action kills,
except SIGTERM and SIGINT), ``os._exit()`` outside multiprocessing's children, a crash.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import warnings
from types import FrameType
from typing import Any

from callweave.config import Report

__all__ = ["arm", "write_report_once"]

_state: dict[str, Any] = {
    "spec": None,  # the Report to write, or None
    "child": False,  # a child of an instrumented process: pid in the file name
    "written": False,  # written (or being written) in this process
    "writing": False,  # being written now
    "pending": None,  # a signal that arrived while the report was being written
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

    A child that ran nothing profiled (multiprocessing's resource tracker or forkserver, a
    helper subprocess) writes nothing. A SIGTERM that arrives meanwhile ends the process once
    the report is written.
    """
    if _state["written"] or _state["spec"] is None:
        return
    _state["written"] = _state["writing"] = True
    try:
        from callweave.profiler import stats
        from callweave.reports import write_exit_report

        if not (_state["child"] and not any(s.count for s in stats())):
            write_exit_report(_report_spec())
    finally:
        _state["writing"] = False
        pending = _state["pending"]
        if pending is not None:
            _die(pending)


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


def _after_fork_in_child() -> None:
    # A forked child starts with the parent's aggregates: it reports only its own work, to its
    # own file, also when it leaves through os._exit (multiprocessing runs its finalizers).
    from callweave.profiler import reset_stats

    reset_stats()
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:  # forked from another thread: not this child's main thread
            pass
    _state["child"] = True
    _state["written"] = _state["writing"] = False
    _state["pending"] = None


class _Token:
    """A weak-referenceable key for multiprocessing's after-fork registry."""


_MP_TOKEN = _Token()


def _register_mp_finalizer(_token: object) -> None:
    import multiprocessing.util

    _state["child"] = True
    multiprocessing.util.Finalize(None, write_report_once, exitpriority=0)


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
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _registered = True
    # multiprocessing children leave through os._exit after running multiprocessing's
    # finalizers, not atexit; Process._bootstrap clears the finalizers it inherited and then
    # runs the after-fork hooks, where the report's finalizer is registered anew.
    import multiprocessing.util

    multiprocessing.util.register_after_fork(_MP_TOKEN, _register_mp_finalizer)
    if not _state["child"]:
        _install_sigterm_handler()
