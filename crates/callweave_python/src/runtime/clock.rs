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

/// Nanoseconds one pair of the profiler's clock readings takes, the best of `rounds` rounds of
/// `pairs` pairs: the floor under every timed figure (a timed call and a function's entry and
/// exit each read the clock twice). For `callweave.performance`.
#[pyfunction]
#[pyo3(signature = (pairs=100_000, rounds=5))]
pub(crate) fn clock_pair_ns(pairs: u32, rounds: u32) -> f64 {
    let pairs = pairs.max(1);
    let mut best = f64::INFINITY;
    for _ in 0..rounds.max(1) {
        let start = std::time::Instant::now();
        let mut sink = 0u64;
        for _ in 0..pairs {
            let a = std::hint::black_box(ticks());
            let b = std::hint::black_box(ticks());
            sink = sink.wrapping_add(b.wrapping_sub(a));
        }
        std::hint::black_box(sink);
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(pairs));
    }
    best
}
