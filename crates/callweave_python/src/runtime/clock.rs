//! The profiler's clock: a calibrated TSC where quanta finds it stable (invariant TSC), else
//! the monotonic clock. Raw readings are ticks; conversion to nanoseconds happens off the hot
//! path.

use std::sync::OnceLock;

use pyo3::prelude::*;

static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();

/// The process-wide clock, calibrated on first use.
#[inline]
pub(crate) fn clock() -> &'static quanta::Clock {
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Ticks now.
#[inline]
pub(crate) fn ticks() -> u64 {
    clock().raw()
}

/// Nanoseconds in `ticks` ticks.
#[inline]
pub(crate) fn ticks_to_ns(ticks: u64) -> u64 {
    clock().delta_as_nanos(0, ticks)
}

/// Which source the clock reads: `"tsc"` when raw readings are CPU cycles, `"monotonic"` when
/// they are nanoseconds of the OS monotonic clock.
#[pyfunction]
pub(crate) fn clock_source() -> &'static str {
    let c = clock();
    let (a, b) = (c.raw(), c.raw() + 1_000_000_000);
    if c.delta_as_nanos(a, b) == 1_000_000_000 {
        "monotonic"
    } else {
        "tsc"
    }
}

/// The clock's current reading in nanoseconds (for tests and benchmarks).
#[pyfunction]
pub(crate) fn now_ns() -> u64 {
    ticks_to_ns(ticks())
}
