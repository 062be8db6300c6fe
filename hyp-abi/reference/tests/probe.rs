// SPDX-License-Identifier: GPL-2.0-only

//! The guest driver's conformance probe (`pviommu_logic::probe`) against
//! the reference hypervisor: every refusal the probe expects is the one
//! the reference gives. The driver runs the same probe against the
//! hypervisor it boots on (debugfs `hyp_probe`), pKVM's EL2 included.

// The driver's logic is not built under the loom model.
#![cfg(not(loom))]

mod common;

use common::*;
use pviommu_logic::engine::Hypercalls;
use pviommu_logic::mailbox::{RawResult, TransportError};
use pviommu_logic::probe::{run, Registration};
use pviommu_reference_hyp::abi::call::Func;
use std::cell::RefCell;

struct OnReference(RefCell<Guest>);

impl Hypercalls for OnReference {
    fn call(&self, func: Func, args: [u64; 6]) -> Result<RawResult, TransportError> {
        let r = self.0.borrow_mut().call(func as u32, args);
        Ok(RawResult {
            status: r.status,
            ret: r.ret,
        })
    }
}

/// A hypervisor that accepts everything.
struct Yes;

/// A hypervisor that answers BUSY to the first `n` calls.
struct BusyFirst(std::cell::Cell<u32>, OnReference);

impl Hypercalls for BusyFirst {
    fn call(&self, func: Func, args: [u64; 6]) -> Result<RawResult, TransportError> {
        if self.0.get() > 0 {
            self.0.set(self.0.get() - 1);
            return Ok(RawResult {
                status: pviommu_reference_hyp::abi::call::Status::Busy as i64,
                ret: [0; 3],
            });
        }
        self.1.call(func, args)
    }
}

impl Hypercalls for Yes {
    fn call(&self, _: Func, _: [u64; 6]) -> Result<RawResult, TransportError> {
        Ok(RawResult {
            status: 0,
            ret: [0; 3],
        })
    }
}

fn registration() -> Registration {
    Registration { init: init_args() }
}

#[test]
fn the_reference_refuses_what_the_probe_expects() {
    let hyp = OnReference(RefCell::new(Guest::new()));
    let mut failures = Vec::new();
    let out = run(&hyp, &registration(), &mut |name, ok, status| {
        if !ok {
            failures.push((name, status));
        }
    });
    assert_eq!(failures, []);
    assert_eq!((out.passed, out.failed, out.syncs), (10, 0, 1));
    // Nothing the probe did changed what the host may reach.
    let g = hyp.0.borrow();
    assert_eq!(g.hyp.counters().pages_shared, POOL_PAGES);
    assert_eq!(g.hyp.counters().pages_unshared, 0);
}

#[test]
fn a_hypervisor_that_accepts_everything_fails_the_probe() {
    let out = run(&Yes, &registration(), &mut |_, _, _| {});
    // Only the final SYNC, which must succeed, passes.
    assert_eq!((out.passed, out.failed), (1, 9));
}

#[test]
fn busy_answers_are_retried() {
    let hyp = BusyFirst(
        std::cell::Cell::new(3),
        OnReference(RefCell::new(Guest::new())),
    );
    let out = run(&hyp, &registration(), &mut |_, _, _| {});
    assert_eq!((out.passed, out.failed), (10, 0));
}
