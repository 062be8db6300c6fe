// SPDX-License-Identifier: GPL-2.0

//! The guest side of the SMCCC transport (arm64 pKVM): each call is one
//! `HVC` fast call, function ID `Func::smccc_id()`, arguments in `x1..x6`,
//! status in `x0` and return values in `x1..x3`.
//!
//! An `HVC` is synchronous: the vCPU does not run again until the
//! hypervisor has answered, so unlike the mailbox there is nothing to
//! poll and no timeout. What comes back is hypervisor-written and is
//! checked by the callers (`hyp_abi::check`), as for every transport.

use super::abi::call::Status;
use super::abi::call::{Func, NR_ARGS};
use super::abi::check::{check_version, VersionInfo};
use super::engine::Hypercalls;
use super::mailbox::{RawResult, TransportError};

/// The instruction that traps to the hypervisor, as the platform issues
/// it (`arm_smccc_1_1_invoke()` in the kernel; a mock in tests).
pub trait Conduit {
    /// Issues fast call `function_id` with `x1..x6 = args` and returns
    /// `x0..x3`.
    fn call(&self, function_id: u32, args: [u64; NR_ARGS]) -> [u64; 4];
}

/// The SMCCC transport over a conduit.
pub struct Smccc<C: Conduit> {
    conduit: C,
}

impl<C: Conduit> Smccc<C> {
    /// A transport that issues its calls through `conduit`.
    pub const fn new(conduit: C) -> Self {
        Self { conduit }
    }
}

impl<C: Conduit> Hypercalls for Smccc<C> {
    fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
        let r = self.conduit.call(func.smccc_id(), args);
        Ok(RawResult {
            // x0 is a signed 64-bit status (SMCCC returns -1 as all ones).
            status: r[0] as i64,
            ret: [r[1], r[2], r[3]],
        })
    }
}

/// What `VERSION` says about the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// The hypervisor implements this major version of the ABI.
    Present(VersionInfo),
    /// The hypervisor answered `NOT_SUPPORTED`: it has no pviommu service
    /// (stock pKVM, or the host answered a call EL2 does not handle).
    Absent,
    /// The hypervisor answered, but not as ABI `ABI_MAJOR` allows
    /// (another major version, or a malformed answer).
    Refused(i64),
}

/// Asks the hypervisor for the pviommu service: one `VERSION` call.
///
/// Only meaningful once the vendor-hyp UID identified KVM (the kernel's
/// `kvm_init_hyp_services()` did that): on another hypervisor, function
/// IDs of the vendor-hyp range may mean anything.
pub fn discover<T: Hypercalls>(t: &T) -> Discovery {
    match t.call(Func::Version, [0; NR_ARGS]) {
        Ok(r) if r.status == Status::NotSupported as i64 => Discovery::Absent,
        Ok(r) => match check_version(r.status, &r.ret) {
            // `check_version` accepts only `ABI_MAJOR`.
            Ok(v) => Discovery::Present(v),
            Err(_) => Discovery::Refused(r.status),
        },
        Err(_) => Discovery::Refused(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::call::{ABI_MAJOR, ABI_VERSION, FEATURE_APPLY, SMCCC_FUNC_BASE};
    use core::cell::Cell;

    /// A conduit that records its last call and gives a fixed answer.
    struct Scripted {
        answer: [u64; 4],
        seen: Cell<Option<(u32, [u64; NR_ARGS])>>,
        calls: Cell<u32>,
    }

    impl Conduit for Scripted {
        fn call(&self, id: u32, args: [u64; NR_ARGS]) -> [u64; 4] {
            self.seen.set(Some((id, args)));
            self.calls.set(self.calls.get() + 1);
            self.answer
        }
    }

    fn smccc(answer: [u64; 4]) -> Smccc<Scripted> {
        Smccc::new(Scripted {
            answer,
            seen: Cell::new(None),
            calls: Cell::new(0),
        })
    }

    #[test]
    fn a_call_uses_the_function_id_and_passes_all_six_arguments() {
        let t = smccc([0, 7, 8, 9]);
        let r = t.call(Func::Init, [1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(r.status, 0);
        assert_eq!(r.ret, [7, 8, 9]);
        assert_eq!(t.conduit.calls.get(), 1);
        assert_eq!(
            t.conduit.seen.get(),
            Some((SMCCC_FUNC_BASE + 1, [1, 2, 3, 4, 5, 6]))
        );
    }

    #[test]
    fn all_ones_in_x0_is_not_supported() {
        let t = smccc([u64::MAX, 0, 0, 0]);
        assert_eq!(t.call(Func::Sync, [0; 6]).unwrap().status, -1);
        assert_eq!(discover(&t), Discovery::Absent);
    }

    #[test]
    fn a_hypervisor_with_the_service_is_found() {
        let t = smccc([0, u64::from(ABI_VERSION), FEATURE_APPLY, 16]);
        match discover(&t) {
            Discovery::Present(v) => {
                assert_eq!(v.major, ABI_MAJOR);
                assert_eq!(v.features & FEATURE_APPLY, FEATURE_APPLY);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_major_version_or_a_bad_status_is_refused() {
        let older = u64::from(ABI_VERSION) - (1 << 16);
        assert!(matches!(
            discover(&smccc([0, older, 0, 16])),
            Discovery::Refused(0)
        ));
        assert!(matches!(
            discover(&smccc([(-3i64) as u64, 0, 0, 0])),
            Discovery::Refused(-3)
        ));
        // SMCCC's NOT_REQUIRED is not a status of this ABI: hostile.
        assert!(matches!(
            discover(&smccc([(-2i64) as u64, 0, 0, 0])),
            Discovery::Refused(-2)
        ));
    }
}
