// SPDX-License-Identifier: GPL-2.0

//! Event counters, exported through debugfs (`/sys/kernel/debug/pviommu/`).

use core::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        /// The driver's counters; each is a relaxed `AtomicU64`.
        #[derive(Default)]
        pub struct Stats {
            $($(#[doc = $doc])+ pub $name: AtomicU64,)+
        }

        impl Stats {
            /// An all-zero set of counters.
            pub const fn new() -> Self {
                Self { $($name: AtomicU64::new(0),)+ }
            }

            /// Calls `f(name, counter)` for every counter, in order.
            pub fn for_each<'s>(&'s self, mut f: impl FnMut(&'static str, &'s AtomicU64)) {
                $(f(stringify!($name), &self.$name);)+
            }
        }
    };
}

counters! {
    /// Buffers mapped (map_page, each sg entry, coherent allocations).
    maps,
    /// Buffers unmapped.
    unmaps,
    /// Pages whose table entry became shared.
    pages_shared,
    /// Pages whose table entry went back to none.
    pages_unshared,
    /// Ring records published.
    ring_records,
    /// Ring records spared: a mapping that continued the run of frames
    /// its buffer's earlier mappings left pending joined that run's
    /// record (`map_page_batch`).
    records_merged,
    /// Times the ring was full and a SYNC made room.
    ring_full,
    /// SYNC hypercalls.
    hcall_sync,
    /// SHARE hypercalls.
    hcall_share,
    /// UNSHARE hypercalls.
    hcall_unshare,
    /// APPLY hypercalls (a ring record the ring had no room for).
    hcall_apply,
    /// Records applied with APPLY because the ring stayed full.
    ring_bypassed,
    /// Other hypercalls (VERSION, INIT, RESET).
    hcall_other,
    /// Buffers that went through the bounce pool.
    bounced,
    /// Bytes copied to or from the bounce pool.
    bounced_bytes,
    /// Bounce-pool pages in use now (a gauge, not a count).
    pool_pages_used,
    /// Most bounce-pool pages in use at once.
    pool_high_water,
    /// Mappings refused because the bounce pool was full.
    pool_exhausted,
    /// Chunks in the bounce pool now (a gauge; the first is the pool
    /// registered at INIT).
    pool_chunks,
    /// Pages shared with SHARE to grow the bounce pool.
    pool_grow_pages,
    /// SHARE hypercalls that grew the bounce pool (not counted in
    /// `hcall_share`, which counts the mappings' calls).
    hcall_pool_share,
    /// Chunks the pool could not add: no memory, or SHARE failed.
    pool_grow_failed,
    /// Mappings refused because the device's DMA mask cannot reach them.
    unreachable,
    /// Mapping failures of any kind (DMA_MAPPING_ERROR returned).
    map_errors,
    /// Unshares the hypervisor failed or did not confirm.
    unshare_errors,
    /// Pages left shared because their unshare failed (never reused).
    pages_leaked,
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
