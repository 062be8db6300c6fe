// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/pviommu/`: one read-only file per counter, the
//! hypervisor's own counters (`hyp_stats`), the hypervisor conformance
//! probe (`hyp_probe`), the bounce thresholds (`bounce_threshold`), the
//! `SYNC` latencies (`sync_latency`) and
//! the map/unmap microbenchmark (`map_bench`), on
//! `kernel::debugfs`.

use core::fmt;
use kernel::debugfs::Dir;
use kernel::prelude::*;

use crate::hyp_probe;
use crate::hyp_stats;
use crate::latency;
use crate::logic::stats::{Stats, Value};
use crate::map_bench;
use crate::threshold;

/// Longest counter name, NUL included.
const NAME_MAX: usize = 32;

fn show(value: &Value<'static, 'static>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "{}", value.get())
}

/// Keeps a debugfs file for the kernel's lifetime: the counters and the
/// driver are never torn down.
fn keep<T>(file: impl PinInit<T, Error>) {
    match KBox::pin_init(file, GFP_KERNEL) {
        Ok(f) => core::mem::forget(f),
        Err(e) => pr_warn!("debugfs: cannot create a file ({:?})\n", e),
    }
}

/// Creates the directory and its files. Failures only cost the files:
/// the driver works without them.
pub(crate) fn register(stats: &'static Stats<'static>) {
    let dir = Dir::new(c"pviommu");
    stats.for_each(|name, value| {
        let mut buf = [0u8; NAME_MAX];
        let n = name.len().min(NAME_MAX - 1);
        buf[..n].copy_from_slice(&name.as_bytes()[..n]);
        let Ok(cname) = CStr::from_bytes_until_nul(&buf) else {
            return;
        };
        keep(dir.read_callback_file(cname, Ok::<_, Error>(value), &show));
    });
    keep(dir.read_callback_file(
        c"hyp_stats",
        Ok::<_, Error>(&hyp_stats::HYP_STATS),
        &hyp_stats::show,
    ));
    keep(dir.read_callback_file(
        c"sync_latency",
        Ok::<_, Error>(&latency::SYNCS),
        &latency::show,
    ));
    keep(dir.read_callback_file(
        c"bounce_threshold",
        Ok::<_, Error>(&threshold::FILE),
        &threshold::show,
    ));
    keep(dir.read_callback_file(
        c"hyp_probe",
        Ok::<_, Error>(&hyp_probe::PROBE),
        &hyp_probe::show,
    ));
    keep(dir.read_write_callback_file(
        c"map_bench",
        Ok::<_, Error>(&map_bench::LAST),
        &map_bench::show,
        &map_bench::run,
    ));
    // The files hold references to the directory's entry.
    core::mem::forget(dir);
}
