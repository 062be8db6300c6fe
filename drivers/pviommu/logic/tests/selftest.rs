// SPDX-License-Identifier: GPL-2.0

//! The engine's self-tests (`src/selftest.rs`) in userspace; the kernel
//! runs the same cases under KUnit.

use pviommu_logic::selftest::{self, Check};

struct Assert(&'static str);

impl Check for Assert {
    fn check(&self, ok: bool, what: &str) {
        assert!(ok, "{}: expected {}", self.0, what);
    }
}

macro_rules! cases {
    ($($name:ident),+ $(,)?) => {
        $(#[test]
        fn $name() {
            selftest::$name(&Assert(stringify!($name)));
        })+

        #[test]
        fn every_case_is_run_here() {
            let here = [$(stringify!($name)),+];
            for (name, _) in selftest::CASES {
                assert!(here.contains(name), "{name} is not run by cargo test");
            }
        }
    };
}

cases!(
    map_is_exit_free,
    entry_is_union_of_live_mappings,
    unmap_revokes_what_map_granted,
    sub_page_buffers_bounce,
    page_crossing_buffer_bounces,
    bounce_slots_never_leak,
    one_sync_per_unmap_call,
    one_sync_per_virtio_buffer,
    one_record_per_run_of_a_buffer,
    unpublished_record_blocks_no_revocation,
    dma_mask_is_honoured,
    full_ring_forces_a_sync,
    failed_unshare_breaks_the_engine,
    busy_is_retried,
    sync_mode_follows_partial_progress,
    pool_exhaustion_is_an_error,
    full_pool_grows,
    coherent_mask_is_honoured,
    thresholds_follow_direction,
    from_device_is_write_only,
    sync_mode_counts_shared_pages,
);
