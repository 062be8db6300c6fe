// SPDX-License-Identifier: GPL-2.0

//! The SMCCC conduit on arm64: the `HVC` itself is made in C
//! (`pviommu_smccc.c`, since `arm_smccc_1_1_invoke()` is a macro), and
//! KVM's service discovery is read from the kernel.

use kernel::ffi::c_long;

use crate::hyp_abi::call::NR_ARGS;
use crate::logic::smccc::Conduit;

extern "C" {
    fn pviommu_kvm_guest() -> bool;
    fn pviommu_pkvm_guest() -> bool;
    fn pviommu_pkvm_granule() -> c_long;
    fn pviommu_smccc_call(function_id: u32, args: *const u64, ret: *mut u64);
}

/// Whether the vendor-hyp UID identified KVM.
pub(crate) fn kvm_guest() -> bool {
    // SAFETY: reads a bitmap that is written once, before initcalls.
    unsafe { pviommu_kvm_guest() }
}

/// Whether KVM offers pKVM's protected-guest services.
pub(crate) fn pkvm_guest() -> bool {
    // SAFETY: as `kvm_guest()`.
    unsafe { pviommu_pkvm_guest() }
}

/// pKVM's sharing granule in bytes; `None` if `HYP_MEMINFO` failed.
///
/// Call only when `pkvm_guest()` is true.
pub(crate) fn pkvm_granule() -> Option<u64> {
    // SAFETY: an SMCCC call without memory arguments.
    let r = unsafe { pviommu_pkvm_granule() };
    u64::try_from(r).ok()
}

/// The kernel's SMCCC conduit (`HVC` under KVM).
pub(crate) struct KernelConduit;

impl Conduit for KernelConduit {
    fn call(&self, function_id: u32, args: [u64; NR_ARGS]) -> [u64; 4] {
        let mut ret = [0u64; 4];
        // SAFETY: `args` holds the six values the C side reads, `ret` the
        // four it writes; neither outlives the call.
        unsafe { pviommu_smccc_call(function_id, args.as_ptr(), ret.as_mut_ptr()) };
        ret
    }
}
