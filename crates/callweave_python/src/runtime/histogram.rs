//! A fixed-size log-linear histogram of durations in nanoseconds: 16 sub-buckets per power of
//! two, so a reported percentile is within 1/16 of the true value. Memory is fixed (608
//! counters) whatever the number of samples.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two covered: up to 2^40 ns (about 18 minutes); longer samples land in the top
/// bucket.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as usize) * SUB as usize;

pub(crate) struct Histogram {
    counts: Box<[AtomicU64]>,
}

fn bucket_of(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (ns >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// A bucket's range `low..high` in nanoseconds.
fn range_of(bucket: usize) -> (u64, u64) {
    let b = bucket as u64;
    if b < SUB {
        return (b, b + 1);
    }
    let exp = (b / SUB) as u32 + SUB_BITS - 1;
    let sub = b % SUB;
    let width = 1u64 << (exp - SUB_BITS);
    let low = (SUB + sub) << (exp - SUB_BITS);
    (low, low + width)
}

/// A bucket's exclusive upper bound as Prometheus-style histograms see it: `high`, or None
/// for the top bucket, which also holds every longer sample.
pub(crate) fn upper_bound(high: u64) -> Option<u64> {
    (high < range_of(BUCKETS - 1).1).then_some(high)
}

/// The midpoint of a bucket's range.
fn value_of(bucket: usize) -> u64 {
    let b = bucket as u64;
    if b < SUB {
        return b;
    }
    let exp = (b / SUB) as u32 + SUB_BITS - 1;
    let sub = b % SUB;
    let low = (SUB + sub) << (exp - SUB_BITS);
    let width = 1u64 << (exp - SUB_BITS);
    low + width / 2
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one sample. Writers hold the GIL, so a relaxed load and store is exact.
    pub(crate) fn record(&self, ns: u64) {
        if let Some(c) = self.counts.get(bucket_of(ns)) {
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    pub(crate) fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// The buckets that hold samples, in increasing order: `(low_ns, high_ns, count)`, each
    /// bucket counting the samples in `low_ns..high_ns` (the top bucket also counts longer
    /// ones). The layout is fixed, so histograms of several processes add up bucket by bucket.
    pub(crate) fn buckets(&self) -> Vec<(u64, u64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then(|| {
                    let (low, high) = range_of(i);
                    (low, high, n)
                })
            })
            .collect()
    }

    /// The value below which `q` (0..=1) of the samples fall, or 0 without samples.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let total: u64 = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return value_of(i);
            }
        }
        value_of(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_within_one_sixteenth() {
        let mut last = 0;
        for ns in (0..5_000_000u64).step_by(997).chain([1 << 39, 1 << 41]) {
            let b = bucket_of(ns);
            assert!(b >= last);
            last = b;
            if (16..(1 << 40)).contains(&ns) {
                let v = value_of(b) as f64;
                assert!(
                    (v - ns as f64).abs() / ns as f64 <= 1.0 / 16.0,
                    "{ns} -> {v}"
                );
            }
        }
    }

    #[test]
    fn upper_bounds_are_the_next_buckets_first_values() {
        for b in 0..BUCKETS - 1 {
            let upper = range_of(b).1;
            assert_eq!(bucket_of(upper - 1), b, "bucket {b}");
            assert_eq!(bucket_of(upper), b + 1, "bucket {b}");
        }
        for k in SUB_BITS..=MAX_EXP {
            assert_eq!(range_of(bucket_of(1 << k) - 1).1, 1 << k);
        }
        let h = Histogram::new();
        for ns in [3, 1000, 1000, 1 << 45] {
            h.record(ns);
        }
        let uppers: Vec<(Option<u64>, u64)> = h
            .buckets()
            .into_iter()
            .map(|(_, high, n)| (upper_bound(high), n))
            .collect();
        assert_eq!(uppers, vec![(Some(4), 1), (Some(1024), 2), (None, 1)]);
    }

    #[test]
    fn quantiles() {
        let h = Histogram::new();
        for ns in 1..=1000u64 {
            h.record(ns * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.07, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.07, "{p99}");
        let buckets = h.buckets();
        assert_eq!(buckets.iter().map(|b| b.2).sum::<u64>(), 1000);
        for (low, high, _) in &buckets {
            assert!(low < high);
            let (b, e) = (bucket_of(*low), bucket_of(*high - 1));
            assert_eq!(b, e, "{low}..{high} is one bucket");
        }
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].0));
        h.reset();
        assert_eq!(h.quantile(0.5), 0);
        assert!(h.buckets().is_empty());
    }
}
