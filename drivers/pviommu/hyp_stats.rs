// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/pviommu/hyp_stats`: the hypervisor's own counters
//! of this guest (`STATS`, `logic/src/hyp_stats.rs`), one `name value`
//! line each:
//!
//! ```text
//! drains 1204
//! records 2210
//! invalidations 301
//! ```
//!
//! Reading costs one call per counter and changes nothing.

use core::fmt;

use crate::hyp_abi::call::FEATURE_STATS;
use crate::hyp_probe::IrqsOff;
use crate::init::driver;
use crate::logic::hyp_stats::read;

/// The file's (empty) data.
pub(crate) static HYP_STATS: () = ();

/// Reads `hyp_stats`.
pub(crate) fn show(_: &&'static (), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Some(d) = driver() else {
        return writeln!(f, "# hyp_stats: the pviommu is not active");
    };
    if d.features & FEATURE_STATS == 0 {
        return writeln!(
            f,
            "# hyp_stats: the hypervisor has no STATS (FEATURE_STATS)"
        );
    }
    let mut result = Ok(());
    let read = read(
        &IrqsOff(d.engine.hypercalls().inner()),
        &mut |stat, value| {
            result = result.and(writeln!(f, "{} {}", stat.name(), value));
        },
    );
    result?;
    match read {
        Ok(_) => Ok(()),
        Err(e) => writeln!(f, "# hyp_stats: {:?}", e),
    }
}
