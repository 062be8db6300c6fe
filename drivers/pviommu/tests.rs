// SPDX-License-Identifier: GPL-2.0

//! The driver's KUnit suites: the ABI constants, and the engine's
//! self-tests (`logic/src/selftest.rs`) against the in-kernel mock
//! hypervisor, the same cases `cargo test` runs in userspace.

use core::cell::Cell;
use kernel::prelude::*;

use crate::logic::selftest::{Case, Check};

/// Collects a self-test's failed expectations; each is logged with what
/// was expected, and the KUnit case asserts that there were none.
struct Expectations {
    case: &'static str,
    failed: Cell<u32>,
}

impl Check for Expectations {
    fn check(&self, ok: bool, what: &str) {
        if !ok {
            pr_err!("{}: expected {}\n", self.case, what);
            self.failed.set(self.failed.get() + 1);
        }
    }
}

/// Runs one self-test; returns how many of its expectations failed.
fn failures(case: &'static str, test: Case) -> u32 {
    let e = Expectations {
        case,
        failed: Cell::new(0),
    };
    test(&e);
    e.failed.get()
}

#[kunit_tests(pviommu_abi)]
mod abi {
    use crate::hyp_abi::call::{ABI_MAJOR, ABI_MINOR, ABI_VERSION};

    /// The driver speaks ABI 2.2, encoded as `VERSION` returns it.
    #[test]
    fn abi_version_is_2_2() {
        assert_eq!((ABI_MAJOR, ABI_MINOR), (2, 2));
        assert_eq!(ABI_VERSION, 0x0002_0002);
        assert!(ABI_VERSION >> 16 == u32::from(ABI_MAJOR));
    }
}

#[kunit_tests(pviommu_engine)]
mod engine {
    use super::failures;
    use crate::logic::selftest;

    #[test]
    fn map_is_exit_free() {
        assert_eq!(
            failures(stringify!(map_is_exit_free), selftest::map_is_exit_free),
            0
        );
    }

    #[test]
    fn entry_is_union_of_live_mappings() {
        assert_eq!(
            failures(
                stringify!(entry_is_union_of_live_mappings),
                selftest::entry_is_union_of_live_mappings
            ),
            0
        );
    }

    #[test]
    fn unmap_revokes_what_map_granted() {
        assert_eq!(
            failures(
                stringify!(unmap_revokes_what_map_granted),
                selftest::unmap_revokes_what_map_granted
            ),
            0
        );
    }

    #[test]
    fn sub_page_buffers_bounce() {
        assert_eq!(
            failures(
                stringify!(sub_page_buffers_bounce),
                selftest::sub_page_buffers_bounce
            ),
            0
        );
    }

    #[test]
    fn page_crossing_buffer_bounces() {
        assert_eq!(
            failures(
                stringify!(page_crossing_buffer_bounces),
                selftest::page_crossing_buffer_bounces
            ),
            0
        );
    }

    #[test]
    fn bounce_slots_never_leak() {
        assert_eq!(
            failures(
                stringify!(bounce_slots_never_leak),
                selftest::bounce_slots_never_leak
            ),
            0
        );
    }

    #[test]
    fn one_sync_per_unmap_call() {
        assert_eq!(
            failures(
                stringify!(one_sync_per_unmap_call),
                selftest::one_sync_per_unmap_call
            ),
            0
        );
    }

    #[test]
    fn one_sync_per_virtio_buffer() {
        assert_eq!(
            failures(
                stringify!(one_sync_per_virtio_buffer),
                selftest::one_sync_per_virtio_buffer
            ),
            0
        );
    }

    #[test]
    fn one_record_per_run_of_a_buffer() {
        assert_eq!(
            failures(
                stringify!(one_record_per_run_of_a_buffer),
                selftest::one_record_per_run_of_a_buffer
            ),
            0
        );
    }

    #[test]
    fn unpublished_record_blocks_no_revocation() {
        assert_eq!(
            failures(
                stringify!(unpublished_record_blocks_no_revocation),
                selftest::unpublished_record_blocks_no_revocation
            ),
            0
        );
    }

    #[test]
    fn dma_mask_is_honoured() {
        assert_eq!(
            failures(
                stringify!(dma_mask_is_honoured),
                selftest::dma_mask_is_honoured
            ),
            0
        );
    }

    #[test]
    fn full_ring_forces_a_sync() {
        assert_eq!(
            failures(
                stringify!(full_ring_forces_a_sync),
                selftest::full_ring_forces_a_sync
            ),
            0
        );
    }

    #[test]
    fn failed_unshare_breaks_the_engine() {
        assert_eq!(
            failures(
                stringify!(failed_unshare_breaks_the_engine),
                selftest::failed_unshare_breaks_the_engine
            ),
            0
        );
    }

    #[test]
    fn busy_is_retried() {
        assert_eq!(
            failures(stringify!(busy_is_retried), selftest::busy_is_retried),
            0
        );
    }

    #[test]
    fn sync_mode_follows_partial_progress() {
        assert_eq!(
            failures(
                stringify!(sync_mode_follows_partial_progress),
                selftest::sync_mode_follows_partial_progress
            ),
            0
        );
    }

    #[test]
    fn pool_exhaustion_is_an_error() {
        assert_eq!(
            failures(
                stringify!(pool_exhaustion_is_an_error),
                selftest::pool_exhaustion_is_an_error
            ),
            0
        );
    }

    #[test]
    fn full_pool_grows() {
        assert_eq!(
            failures(stringify!(full_pool_grows), selftest::full_pool_grows),
            0
        );
    }

    #[test]
    fn coherent_mask_is_honoured() {
        assert_eq!(
            failures(
                stringify!(coherent_mask_is_honoured),
                selftest::coherent_mask_is_honoured
            ),
            0
        );
    }

    #[test]
    fn thresholds_follow_direction() {
        assert_eq!(
            failures(
                stringify!(thresholds_follow_direction),
                selftest::thresholds_follow_direction
            ),
            0
        );
    }

    #[test]
    fn from_device_is_write_only() {
        assert_eq!(
            failures(
                stringify!(from_device_is_write_only),
                selftest::from_device_is_write_only
            ),
            0
        );
    }

    #[test]
    fn sync_mode_counts_shared_pages() {
        assert_eq!(
            failures(
                stringify!(sync_mode_counts_shared_pages),
                selftest::sync_mode_counts_shared_pages
            ),
            0
        );
    }

    #[test]
    fn every_case_is_run_here() {
        let here = [
            "map_is_exit_free",
            "entry_is_union_of_live_mappings",
            "unmap_revokes_what_map_granted",
            "sub_page_buffers_bounce",
            "page_crossing_buffer_bounces",
            "bounce_slots_never_leak",
            "one_sync_per_unmap_call",
            "one_sync_per_virtio_buffer",
            "one_record_per_run_of_a_buffer",
            "unpublished_record_blocks_no_revocation",
            "dma_mask_is_honoured",
            "full_ring_forces_a_sync",
            "failed_unshare_breaks_the_engine",
            "busy_is_retried",
            "sync_mode_follows_partial_progress",
            "pool_exhaustion_is_an_error",
            "full_pool_grows",
            "coherent_mask_is_honoured",
            "thresholds_follow_direction",
            "from_device_is_write_only",
            "sync_mode_counts_shared_pages",
        ];
        for (name, _) in selftest::CASES {
            assert!(here.contains(name));
        }
    }
}
