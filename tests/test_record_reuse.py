"""A profiled function's entry reuses the record its last invocation ended, when nothing else
holds it; a record someone still holds is never restarted."""

import gc
import sys

from callweave import _native, flat_profile


def _table(**kwargs):
    """The entry callable of a registered one-site function, and its profile."""
    options = {"module": "m", "qualname": "f", "filename": "f.py", "line": 1, "time_limit": 10}
    options.update(kwargs)
    prof = _native.FunctionProfile(sites=[("g()", "g", 2, 2, 4, 7)], **options)
    return _native.ProfileTable([prof]).enter_function(), prof


def _one_invocation(enter, calls):
    rec = enter(0)
    for _ in range(calls):
        _native.time_call(rec, 0, abs, -1)
    _native.exit_record(rec)
    return rec


def test_a_record_still_held_is_not_restarted_by_later_invocations():
    enter, prof = _table()
    kept = _one_invocation(enter, 3)
    before = (kept.done, kept.total, kept.breakdown(), kept.paused)
    for calls in (1, 2, 5):
        rec = _one_invocation(enter, calls)
        assert rec is not kept
        del rec
    assert (kept.done, kept.total, kept.breakdown(), kept.paused) == before
    assert kept.breakdown()[0][:2] == (0, 3)
    assert prof.stats()["count"] == 4
    assert prof.stats()["sites"][0]["count"] == 3 + 1 + 2 + 5


def test_a_released_record_starts_the_next_invocation_fresh():
    enter, prof = _table()
    for calls in (4, 0, 2, 1):
        rec = enter(0)
        assert not rec.done and not rec.paused and rec.total == 0
        assert rec.breakdown() == []
        for _ in range(calls):
            _native.time_call(rec, 0, abs, -1)
        assert rec.breakdown()[0][:2] == (0, calls) if calls else rec.breakdown() == []
        _native.exit_record(rec)
        assert rec.done
        del rec
    assert prof.stats()["count"] == 4
    assert prof.stats()["sites"][0]["count"] == 7


def test_nested_invocations_of_one_function_never_share_a_record():
    enter, prof = _table()
    _one_invocation(enter, 1)  # leaves a spare
    outer = enter(0)
    inner = enter(0)
    assert inner is not outer
    _native.time_call(inner, 0, abs, -1)
    _native.exit_record(inner)
    del inner
    again = enter(0)  # the inner record, released: may be reused, never the open outer one
    assert again is not outer and not outer.done
    _native.exit_record(again)
    _native.exit_record(outer)
    assert prof.stats()["count"] == 4


def test_records_given_to_callbacks_and_kept_stay_as_they_ended():
    kept = []

    @flat_profile(time_limit=0, above_callback=lambda total, limit, calls, func: kept.append(calls))
    def work(n):
        for _ in range(n):
            abs(-1)

    for n in (1, 3, 2):
        work(n)
    assert [len(calls["abs"]) for calls in kept] == [1, 3, 2]


def test_invocations_do_not_accumulate_records():
    @flat_profile(time_limit=10, below_callback=None)
    def empty():
        pass

    empty()
    gc.collect()
    blocks = sys.getallocatedblocks()
    for _ in range(1000):
        empty()
    gc.collect()
    assert sys.getallocatedblocks() - blocks < 100
