// SPDX-License-Identifier: GPL-2.0

//! A conformance probe of the hypervisor the driver runs on: calls that
//! a hypervisor implementing the ABI must refuse, each with the status the
//! spec gives it, made after `INIT` against the live registration.
//!
//! The same probe runs against the reference hypervisor (x86 harness) and
//! against pKVM's EL2 (arm64), so the two implementations are held to one
//! expectation. Every call it makes is one a correct hypervisor refuses
//! without changing anything; a wrong answer is reported, never acted on.

use super::abi::call::{Func, Status, NR_ARGS};
use super::abi::layout::{Perm, PAGE_SHIFT};
use super::engine::{Hypercalls, BUSY_TRIES};
use super::mailbox::{RawResult, TransportError};

/// What `INIT` registered, as the probe needs it.
#[derive(Clone, Copy, Debug)]
pub struct Registration {
    /// `INIT`'s six arguments, as the driver passed them.
    pub init: [u64; NR_ARGS],
}

impl Registration {
    fn table_gfn(&self) -> u64 {
        self.init[0] >> PAGE_SHIFT
    }
    fn table_frames(&self) -> u64 {
        self.init[1]
    }
    fn ring_gfn(&self) -> u64 {
        self.init[2] >> PAGE_SHIFT
    }
    fn pool_gfn(&self) -> u64 {
        self.init[4] >> PAGE_SHIFT
    }
}

/// One probe: a call and the status a conforming hypervisor answers.
struct Expect {
    name: &'static str,
    func: Func,
    args: [u64; NR_ARGS],
    status: Status,
}

/// A frame no guest has: far above any IPA space (52 bits).
const FAR_FRAME: u64 = 1 << 50;

fn expectations(r: &Registration) -> [Expect; 9] {
    let rw = u64::from(Perm::ReadWrite.bits());
    [
        Expect {
            name: "version_with_a_reserved_argument",
            func: Func::Version,
            args: [1, 0, 0, 0, 0, 0],
            status: Status::InvalidParameter,
        },
        Expect {
            name: "a_second_init",
            func: Func::Init,
            args: r.init,
            status: Status::BadState,
        },
        Expect {
            name: "share_of_a_table_page",
            func: Func::Share,
            args: [r.table_gfn(), 1, rw, 0, 0, 0],
            status: Status::Denied,
        },
        Expect {
            name: "share_of_a_ring_page",
            func: Func::Share,
            args: [r.ring_gfn(), 1, rw, 0, 0, 0],
            status: Status::Denied,
        },
        Expect {
            name: "share_with_an_undefined_permission",
            func: Func::Share,
            // A reserved bit: 2 (write-only) is defined since ABI 2.2.
            args: [r.pool_gfn(), 1, 4, 0, 0, 0],
            status: Status::InvalidParameter,
        },
        Expect {
            name: "share_of_zero_frames",
            func: Func::Share,
            args: [r.pool_gfn(), 0, rw, 0, 0, 0],
            status: Status::InvalidParameter,
        },
        Expect {
            name: "share_outside_guest_memory",
            func: Func::Share,
            args: [FAR_FRAME, 1, rw, 0, 0, 0],
            status: Status::Denied,
        },
        Expect {
            name: "apply_outside_the_table",
            func: Func::Apply,
            args: [r.table_frames(), 1, 0, 0, 0, 0],
            status: Status::Denied,
        },
        Expect {
            name: "unshare_with_a_reserved_argument",
            func: Func::Unshare,
            args: [r.pool_gfn(), 1, 1, 0, 0, 0],
            status: Status::InvalidParameter,
        },
    ]
}

/// What a probe run found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Calls answered as expected.
    pub passed: u32,
    /// Calls answered otherwise.
    pub failed: u32,
    /// `SYNC` calls made (a `BUSY` answer is retried).
    pub syncs: u32,
}

/// One call, retried while the hypervisor answers `BUSY` (transient for
/// every call, says the ABI), as the driver does.
fn call<H: Hypercalls>(
    h: &H,
    func: Func,
    args: [u64; NR_ARGS],
    out: &mut Outcome,
) -> Result<RawResult, TransportError> {
    let mut tries = 0;
    loop {
        if func == Func::Sync {
            out.syncs += 1;
        }
        let r = h.call(func, args)?;
        tries += 1;
        if r.status != Status::Busy as i64 || tries >= BUSY_TRIES {
            return Ok(r);
        }
    }
}

/// Runs the probe; `report(name, ok, status)` is called for each call
/// with the raw status received (0 when the transport failed).
pub fn run<H: Hypercalls>(
    h: &H,
    r: &Registration,
    report: &mut dyn FnMut(&'static str, bool, i64),
) -> Outcome {
    let mut out = Outcome::default();
    let mut tally = |out: &mut Outcome, name, ok, status| {
        report(name, ok, status);
        if ok {
            out.passed += 1;
        } else {
            out.failed += 1;
        }
    };
    for e in expectations(r) {
        let got = call(h, e.func, e.args, &mut out).map(|res| res.status);
        tally(
            &mut out,
            e.name,
            got == Ok(e.status as i64),
            got.unwrap_or(0),
        );
    }
    let sync = call(h, Func::Sync, [0; NR_ARGS], &mut out).map(|res| res.status);
    let ok = sync == Ok(Status::Success as i64);
    tally(&mut out, "sync_still_succeeds", ok, sync.unwrap_or(0));
    out
}
