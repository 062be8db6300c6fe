// SPDX-License-Identifier: GPL-2.0

//! The boot parameters, declared in `pviommu_initcall.c` (the driver has
//! no `module!` registration to carry them) and read once at init.

use core::ffi::{c_char, c_uint, c_ulong, CStr};

use kernel::str::CStrExt;

use crate::logic::policy::{Mode, OnRevokeFailure};

extern "C" {
    static pviommu_param_mode: *const c_char;
    static pviommu_param_on_revoke_failure: *const c_char;
    static pviommu_param_strict: bool;
    static pviommu_param_lazy_max_pages: c_uint;
    static pviommu_param_bounce_threshold: c_uint;
    static pviommu_param_pool_kib: c_uint;
    static pviommu_param_pool_max_kib: c_uint;
    static pviommu_param_ring_order: c_uint;
    static pviommu_param_timeout_ms: c_uint;
    static pviommu_param_required: bool;
    static pviommu_param_batch_maps: bool;
    fn pviommu_max_pfn() -> c_ulong;
}

/// The parameters, as given on the command line.
pub(crate) struct Params {
    /// `pviommu.mode`, or `Err(())` for a value that is not a mode.
    pub(crate) mode: Result<Mode, ()>,
    /// `pviommu.mode=off`: the driver stays inactive.
    pub(crate) off: bool,
    /// `pviommu.on_revoke_failure`, or `Err(())` for an unknown value.
    pub(crate) on_revoke_failure: Result<OnRevokeFailure, ()>,
    pub(crate) strict: bool,
    pub(crate) lazy_max_pages: u64,
    pub(crate) bounce_threshold: u64,
    pub(crate) pool_kib: u64,
    /// `pviommu.pool_max_kib`: how far the pool may grow.
    pub(crate) pool_max_kib: u64,
    pub(crate) ring_order: u32,
    /// How long a mailbox call may take; an `HVC` (arm64) cannot time
    /// out: the vCPU runs again only once the hypervisor answered.
    #[cfg_attr(not(CONFIG_X86_64), allow(dead_code))]
    pub(crate) timeout_ms: u64,
    pub(crate) required: bool,
    /// `pviommu.batch_maps`: a buffer's mappings share ring records.
    pub(crate) batch_maps: bool,
    /// Frames of RAM the table must cover.
    pub(crate) max_pfn: u64,
}

/// Reads the parameters. Called from the initcall, after the kernel parsed
/// the command line and before anything else reads or writes them (they
/// are read-only in sysfs: mode 0444).
pub(crate) fn read() -> Params {
    // SAFETY: the statics are defined in pviommu_initcall.c with the types
    // declared above; nothing writes them after command-line parsing, and
    // `pviommu_param_mode` and `pviommu_param_on_revoke_failure` are
    // NUL-terminated strings (literals or the command line's copies) that
    // live for the kernel's lifetime.
    unsafe {
        let raw_mode = if pviommu_param_mode.is_null() {
            None
        } else {
            Some(CStr::from_char_ptr(pviommu_param_mode.cast()).to_bytes())
        };
        let mode = raw_mode.and_then(Mode::parse).ok_or(());
        let on_revoke_failure = if pviommu_param_on_revoke_failure.is_null() {
            Err(())
        } else {
            OnRevokeFailure::parse(
                CStr::from_char_ptr(pviommu_param_on_revoke_failure.cast()).to_bytes(),
            )
            .ok_or(())
        };
        Params {
            mode,
            off: raw_mode == Some(b"off".as_slice()),
            on_revoke_failure,
            strict: pviommu_param_strict,
            lazy_max_pages: pviommu_param_lazy_max_pages.into(),
            bounce_threshold: pviommu_param_bounce_threshold.into(),
            pool_kib: pviommu_param_pool_kib.into(),
            pool_max_kib: pviommu_param_pool_max_kib.into(),
            ring_order: pviommu_param_ring_order,
            timeout_ms: pviommu_param_timeout_ms.into(),
            required: pviommu_param_required,
            batch_maps: pviommu_param_batch_maps,
            max_pfn: pviommu_max_pfn() as u64,
        }
    }
}
