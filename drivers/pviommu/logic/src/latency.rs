// SPDX-License-Identifier: GPL-2.0

//! How long the hypervisor takes to answer: a power-of-two histogram of
//! `SYNC` latencies, recorded by a [`Timed`] wrapper around the
//! transport, read as `/sys/kernel/debug/pviommu/sync_latency`.
//!
//! One `SYNC` per virtio buffer is what sharing in place costs (strict
//! mode); its latency against a copy's is the crossover that decides
//! whether a buffer is shared or bounced (`calibrate.rs`), so it is worth
//! watching while the guest runs, not only at boot.

use core::sync::atomic::{AtomicU64, Ordering};

use super::abi::call::{Func, NR_ARGS};
use super::engine::Hypercalls;
use super::mailbox::{RawResult, TransportError};

/// Buckets: `[0, 1)` us, then `[2^(i-1), 2^i)` us, the last one open.
pub const BUCKETS: usize = 22;

/// A monotonic clock.
pub trait Clock {
    /// A point in time.
    type Instant: Copy;

    /// Now.
    fn now(&self) -> Self::Instant;

    /// Nanoseconds since `since`.
    fn elapsed_ns(&self, since: Self::Instant) -> u64;
}

/// A lock-free latency histogram; any CPU, any context.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Histogram {
    /// An empty histogram.
    pub const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            count: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    /// The bucket of a latency of `ns` nanoseconds.
    pub fn bucket_of(ns: u64) -> usize {
        let us = ns / 1000;
        let i = (u64::BITS - us.leading_zeros()) as usize;
        core::cmp::min(i, BUCKETS - 1)
    }

    /// Records one latency.
    pub fn record(&self, ns: u64) {
        if let Some(b) = self.buckets.get(Self::bucket_of(ns)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Calls `f(lower_us, upper_us, count)` for each non-empty bucket;
    /// `upper_us` is `None` for the last, open one.
    pub fn for_each(&self, mut f: impl FnMut(u64, Option<u64>, u64)) {
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let lower = if i == 0 { 0 } else { 1u64 << (i - 1) };
            let upper = (i + 1 < BUCKETS).then(|| 1u64 << i);
            f(lower, upper, n);
        }
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Their sum, in nanoseconds.
    pub fn total_ns(&self) -> u64 {
        self.total_ns.load(Ordering::Relaxed)
    }

    /// The largest, in nanoseconds.
    pub fn max_ns(&self) -> u64 {
        self.max_ns.load(Ordering::Relaxed)
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// A transport whose `SYNC`s are timed into a histogram.
pub struct Timed<H, C> {
    inner: H,
    clock: C,
    syncs: &'static Histogram,
}

impl<H, C> Timed<H, C> {
    /// Wraps `inner`, recording its `SYNC` latencies in `syncs`.
    pub fn new(inner: H, clock: C, syncs: &'static Histogram) -> Self {
        Timed {
            inner,
            clock,
            syncs,
        }
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &H {
        &self.inner
    }
}

impl<H: Hypercalls, C: Clock> Hypercalls for Timed<H, C> {
    fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
        if func != Func::Sync {
            return self.inner.call(func, args);
        }
        let start = self.clock.now();
        let r = self.inner.call(func, args);
        self.syncs.record(self.clock.elapsed_ns(start));
        r
    }

    fn relax(&self) {
        self.inner.relax();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_microseconds() {
        assert_eq!(Histogram::bucket_of(0), 0);
        assert_eq!(Histogram::bucket_of(999), 0);
        assert_eq!(Histogram::bucket_of(1_000), 1);
        assert_eq!(Histogram::bucket_of(1_999), 1);
        assert_eq!(Histogram::bucket_of(2_000), 2);
        assert_eq!(Histogram::bucket_of(20_000), 5);
        assert_eq!(Histogram::bucket_of(u64::MAX), BUCKETS - 1);
    }

    struct Answer;

    impl Hypercalls for Answer {
        fn call(&self, _: Func, _: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
            Ok(RawResult {
                status: 0,
                ret: [0; 3],
            })
        }
    }

    /// Every reading is 7 us after the previous one.
    struct Ticks(core::cell::Cell<u64>);

    impl Clock for &Ticks {
        type Instant = u64;

        fn now(&self) -> u64 {
            self.0.set(self.0.get() + 7_000);
            self.0.get()
        }

        fn elapsed_ns(&self, since: u64) -> u64 {
            self.now() - since
        }
    }

    #[test]
    fn only_syncs_are_timed() {
        static H: Histogram = Histogram::new();
        let ticks = Ticks(core::cell::Cell::new(0));
        let t = Timed::new(Answer, &ticks, &H);
        for func in [Func::Version, Func::Sync, Func::Share, Func::Sync] {
            assert!(t.call(func, [0; NR_ARGS]).is_ok());
        }
        assert_eq!((H.count(), H.total_ns(), H.max_ns()), (2, 14_000, 7_000));
    }

    #[test]
    fn records_count_total_and_max() {
        static H: Histogram = Histogram::new();
        for ns in [500, 1_500, 1_600, 30_000] {
            H.record(ns);
        }
        let mut seen = [(0, None, 0); 3];
        let mut n = 0;
        H.for_each(|lo, hi, count| {
            if let Some(slot) = seen.get_mut(n) {
                *slot = (lo, hi, count);
            }
            n += 1;
        });
        assert_eq!(n, 3);
        assert_eq!(seen, [(0, Some(1), 1), (1, Some(2), 2), (16, Some(32), 1)]);
        assert_eq!((H.count(), H.total_ns(), H.max_ns()), (4, 33_600, 30_000));
    }
}
