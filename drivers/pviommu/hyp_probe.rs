// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/pviommu/hyp_probe`: reading it runs the conformance
//! probe (`logic/src/probe.rs`) against the hypervisor the guest runs on
//! and prints one KTAP-style line per call:
//!
//! ```text
//! ok 1 version_with_a_reserved_argument
//! not ok 3 share_of_a_table_page # status -3
//! # hyp_probe: 9 passed, 1 failed, 1 SYNC
//! ```
//!
//! Every probe is a call a conforming hypervisor refuses without changing
//! anything, so reading the file is harmless on a correct hypervisor; on
//! a wrong one the lines say what it accepted.

use core::fmt;
use kernel::interrupt::local_interrupt_disable;
use kernel::prelude::*;

use crate::hyp_abi::call::{Func, NR_ARGS};
use crate::init::{driver, KernelTransport};
use crate::logic::engine::Hypercalls;
use crate::logic::mailbox::{RawResult, TransportError};
use crate::logic::probe::run;

/// The driver's transport with interrupts off around each call, as the
/// mailbox's per-CPU slots require (harmless for `HVC`). Also used by
/// `hyp_stats`.
pub(crate) struct IrqsOff<'a>(pub(crate) &'a KernelTransport);

impl Hypercalls for IrqsOff<'_> {
    fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
        let _irq = local_interrupt_disable();
        Hypercalls::call(self.0, func, args)
    }
}

/// The file's (empty) data.
pub(crate) static PROBE: () = ();

/// Reads `hyp_probe`.
pub(crate) fn show(_: &&'static (), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Some(d) = driver() else {
        return writeln!(f, "# hyp_probe: the pviommu is not active");
    };
    let mut n = 0;
    let mut result = Ok(());
    let out = run(
        &IrqsOff(d.engine.hypercalls().inner()),
        &d.registration,
        &mut |name, ok, status| {
            n += 1;
            let line = if ok {
                writeln!(f, "ok {} {}", n, name)
            } else {
                writeln!(f, "not ok {} {} # status {}", n, name, status)
            };
            result = result.and(line);
        },
    );
    result?;
    writeln!(
        f,
        "# hyp_probe: {} passed, {} failed, {} SYNC",
        out.passed, out.failed, out.syncs
    )
}
