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
use kernel::interrupt::local_interrupt_disable;
use kernel::prelude::*;

use crate::hyp_abi::call::{Func, FEATURE_STATS, NR_ARGS};
use crate::init::{driver, KernelTransport};
use crate::logic::engine::Hypercalls;
use crate::logic::hyp_stats::read;
use crate::logic::mailbox::{RawResult, TransportError};

/// The driver's transport with interrupts off around each call, as the
/// mailbox's per-CPU slots require (harmless for `HVC`).
struct IrqsOff<'a>(&'a KernelTransport);

impl Hypercalls for IrqsOff<'_> {
    fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
        let _irq = local_interrupt_disable();
        Hypercalls::call(self.0, func, args)
    }
}

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
    let read = read(&IrqsOff(d.engine.hypercalls()), &mut |stat, value| {
        result = result.and(writeln!(f, "{} {}", stat.name(), value));
    });
    result?;
    match read {
        Ok(_) => Ok(()),
        Err(e) => writeln!(f, "# hyp_stats: {:?}", e),
    }
}
