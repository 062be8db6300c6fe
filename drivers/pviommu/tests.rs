// SPDX-License-Identifier: GPL-2.0

//! The driver's KUnit suites: the ABI constants, and the engine's
//! self-tests (`logic/src/selftest.rs`) against the in-kernel mock
//! hypervisor, the same cases `cargo test` runs in userspace.

use crate::hyp_abi::call::{ABI_MAJOR, ABI_MINOR, ABI_VERSION};
use crate::kunit::{expect_eq, expect_true, kunit_suite, Test};
use crate::logic::selftest::{self, Check};

/// The driver speaks ABI 1.0, encoded as `VERSION` returns it.
fn abi_version_is_1_0(test: &Test) {
    expect_eq!(test, (ABI_MAJOR, ABI_MINOR), (1, 0));
    expect_eq!(test, ABI_VERSION, 0x0001_0000);
    expect_true!(test, ABI_VERSION >> 16 == u32::from(ABI_MAJOR));
}

kunit_suite!(pviommu_abi, [abi_version_is_1_0]);

impl Check for Test {
    fn check(&self, ok: bool, what: &str) {
        self.expect(
            ok,
            c"drivers/pviommu/logic/src/selftest.rs",
            0,
            format_args!("expected {}", what),
        );
    }
}

macro_rules! engine_cases {
    ($($name:ident),+ $(,)?) => {
        $(
            /// One engine self-test, run against the mock hypervisor.
            fn $name(test: &Test) {
                selftest::$name(test);
            }
        )+
        kunit_suite!(pviommu_engine, [$($name),+]);
    };
}

engine_cases!(
    map_is_exit_free,
    entry_is_union_of_live_mappings,
    sub_page_buffers_bounce,
    page_crossing_buffer_bounces,
    one_sync_per_unmap_call,
    full_ring_forces_a_sync,
    failed_unshare_breaks_the_engine,
    sync_mode_follows_partial_progress,
    pool_exhaustion_is_an_error,
);
