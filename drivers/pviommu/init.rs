// SPDX-License-Identifier: GPL-2.0

//! Driver initialisation, called once at boot from `pviommu_initcall.c`.

use crate::hyp_abi::call::{ABI_MAJOR, ABI_MINOR};
use kernel::prelude::*;

/// Entry point of the driver, called from the C `fs_initcall_sync`.
///
/// Returns 0 or a negative errno, as initcalls do.
#[no_mangle]
extern "C" fn pviommu_rust_init() -> core::ffi::c_int {
    pr_info!(
        "paravirtual IOMMU driver, ABI {}.{}\n",
        ABI_MAJOR,
        ABI_MINOR
    );
    0
}
