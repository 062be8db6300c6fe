// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/pviommu/sync_latency`: how long each `SYNC` took,
//! as a power-of-two histogram (`logic/src/latency.rs`), one line per
//! non-empty bucket, then the count, mean and maximum:
//!
//! ```text
//! 8-16us 1203
//! 16-32us 97
//! count 1300 mean_ns 10411 max_ns 30210
//! ```

use core::fmt;
use kernel::time::{Instant, Monotonic};

use crate::logic::latency::{Clock, Histogram};

/// The latencies of every `SYNC` the engine made.
pub(crate) static SYNCS: Histogram = Histogram::new();

/// The kernel's monotonic clock.
pub(crate) struct KernelClock;

impl Clock for KernelClock {
    type Instant = Instant<Monotonic>;

    fn now(&self) -> Self::Instant {
        Instant::now()
    }

    fn elapsed_ns(&self, since: Self::Instant) -> u64 {
        u64::try_from(since.elapsed().as_nanos()).unwrap_or(0)
    }
}

/// Reads `sync_latency`.
pub(crate) fn show(h: &&'static Histogram, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut result = Ok(());
    h.for_each(|lo, hi, n| {
        result = result.and(match hi {
            Some(hi) => writeln!(f, "{}-{}us {}", lo, hi, n),
            None => writeln!(f, "{}us- {}", lo, n),
        });
    });
    result?;
    let count = h.count();
    let mean = h.total_ns().checked_div(count).unwrap_or(0);
    writeln!(f, "count {} mean_ns {} max_ns {}", count, mean, h.max_ns())
}
