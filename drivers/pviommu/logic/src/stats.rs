// SPDX-License-Identifier: GPL-2.0

//! Event counters and gauges, exported through debugfs
//! (`/sys/kernel/debug/pviommu/`).
//!
//! Every map and unmap counts several events. Shared atomics would make
//! the CPUs mapping at the same time fight over their cache lines, so
//! each CPU adds to a block of its own ([`CpuCounters`], 128-byte
//! aligned so that no two blocks share a line or an adjacent-line
//! prefetch pair) and reading a counter sums the blocks. Where the CPU
//! comes from is the caller's business (`this_cpu`): the kernel passes
//! the running CPU's number, tests pass what they like. An add that runs
//! on another CPU than the one it asked about (it was preempted) is still
//! atomic, so no event is lost; it only shares a line for a moment.
//!
//! The three gauges of the bounce pool stay global atomics: their value
//! (not a sum) decides when the pool grows, and the bounce path writes
//! the pool's shared bitmap anyway.

use core::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])+ $variant:ident = $name:literal,)+) => {
        /// An event counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Counter {
            /// Every counter, in order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)+];

            /// Its name in debugfs.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)+
                }
            }
        }
    };
}

counters! {
    /// Buffers mapped (map_page, each sg entry, coherent allocations).
    Maps = "maps",
    /// Buffers unmapped.
    Unmaps = "unmaps",
    /// Pages whose table entry became shared.
    PagesShared = "pages_shared",
    /// Pages whose table entry went back to none.
    PagesUnshared = "pages_unshared",
    /// Ring records published.
    RingRecords = "ring_records",
    /// Ring records spared: a mapping that continued the run of frames
    /// its buffer's earlier mappings left pending joined that run's
    /// record (`map_page_batch`).
    RecordsMerged = "records_merged",
    /// Times the ring was full and a SYNC made room.
    RingFull = "ring_full",
    /// SYNC hypercalls.
    HcallSync = "hcall_sync",
    /// SHARE hypercalls.
    HcallShare = "hcall_share",
    /// UNSHARE hypercalls.
    HcallUnshare = "hcall_unshare",
    /// APPLY hypercalls (a ring record the ring had no room for).
    HcallApply = "hcall_apply",
    /// Records applied with APPLY because the ring stayed full.
    RingBypassed = "ring_bypassed",
    /// Other hypercalls (VERSION, INIT, RESET).
    HcallOther = "hcall_other",
    /// Buffers that went through the bounce pool.
    Bounced = "bounced",
    /// Bytes copied to or from the bounce pool.
    BouncedBytes = "bounced_bytes",
    /// Mappings refused because the bounce pool was full.
    PoolExhausted = "pool_exhausted",
    /// Pages shared with SHARE to grow the bounce pool.
    PoolGrowPages = "pool_grow_pages",
    /// SHARE hypercalls that grew the bounce pool (not counted in
    /// `hcall_share`, which counts the mappings' calls).
    HcallPoolShare = "hcall_pool_share",
    /// Chunks the pool could not add: no memory, or SHARE failed.
    PoolGrowFailed = "pool_grow_failed",
    /// Mappings refused because the device's DMA mask cannot reach them.
    Unreachable = "unreachable",
    /// Mapping failures of any kind (DMA_MAPPING_ERROR returned).
    MapErrors = "map_errors",
    /// Unshares the hypervisor failed or did not confirm.
    UnshareErrors = "unshare_errors",
    /// Pages left shared because their unshare failed (never reused).
    PagesLeaked = "pages_leaked",
}

/// How many counters there are.
const COUNTERS: usize = Counter::ALL.len();

/// One CPU's counters.
#[repr(align(128))]
pub struct CpuCounters([AtomicU64; COUNTERS]);

impl CpuCounters {
    /// All zero.
    pub const fn new() -> Self {
        CpuCounters([const { AtomicU64::new(0) }; COUNTERS])
    }
}

impl Default for CpuCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// The driver's counters and gauges.
pub struct Stats<'a> {
    /// One block per CPU slot; CPU `n` adds to slot `n % cpus.len()`.
    cpus: &'a [CpuCounters],
    /// The number of the CPU running the caller.
    this_cpu: fn() -> usize,
    /// The only block when `cpus` is empty.
    shared: CpuCounters,
    /// Bounce-pool pages in use now (a gauge, not a count).
    pub pool_pages_used: AtomicU64,
    /// Most bounce-pool pages in use at once.
    pub pool_high_water: AtomicU64,
    /// Chunks in the bounce pool now (a gauge; the first is the pool
    /// registered at INIT).
    pub pool_chunks: AtomicU64,
}

impl<'a> Stats<'a> {
    /// Counters in `cpus`, one block per CPU (a CPU beyond the slots
    /// shares one), the running CPU's number given by `this_cpu`.
    pub const fn per_cpu(cpus: &'a [CpuCounters], this_cpu: fn() -> usize) -> Self {
        Stats {
            cpus,
            this_cpu,
            shared: CpuCounters::new(),
            pool_pages_used: AtomicU64::new(0),
            pool_high_water: AtomicU64::new(0),
            pool_chunks: AtomicU64::new(0),
        }
    }

    /// Counters in one block every CPU shares.
    pub const fn new() -> Self {
        Self::per_cpu(&[], cpu_zero)
    }

    /// The running CPU's block.
    fn block(&self) -> &CpuCounters {
        match self.cpus.len() {
            0 => &self.shared,
            n => &self.cpus[(self.this_cpu)() % n],
        }
    }

    /// Adds `n` to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.block().0[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// A counter's value: the sum over the CPUs. Events counted while it
    /// sums may or may not be in it.
    pub fn get(&self, counter: Counter) -> u64 {
        self.cpus
            .iter()
            .chain(core::iter::once(&self.shared))
            .fold(0, |sum, block| {
                sum.wrapping_add(block.0[counter as usize].load(Ordering::Relaxed))
            })
    }

    /// Calls `f(name, value)` for every counter and gauge, in order.
    pub fn for_each<'s>(&'s self, mut f: impl FnMut(&'static str, Value<'s, 'a>)) {
        for &c in Counter::ALL {
            f(c.name(), Value::Counter(self, c));
        }
        f("pool_pages_used", Value::Gauge(&self.pool_pages_used));
        f("pool_high_water", Value::Gauge(&self.pool_high_water));
        f("pool_chunks", Value::Gauge(&self.pool_chunks));
    }
}

/// The CPU number of a single shared block.
fn cpu_zero() -> usize {
    0
}

impl Default for Stats<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Something [`Stats::for_each`] names, to read when it is shown.
#[derive(Clone, Copy)]
pub enum Value<'s, 'a> {
    /// A counter, summed over the CPUs.
    Counter(&'s Stats<'a>, Counter),
    /// A gauge.
    Gauge(&'s AtomicU64),
}

impl Value<'_, '_> {
    /// The value now.
    pub fn get(self) -> u64 {
        match self {
            Value::Counter(stats, c) => stats.get(c),
            Value::Gauge(g) => g.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicUsize;

    static CPU: AtomicUsize = AtomicUsize::new(0);

    fn this_cpu() -> usize {
        CPU.load(Ordering::Relaxed)
    }

    #[test]
    fn each_cpu_counts_in_its_own_block_and_reads_sum_them() {
        let blocks = [CpuCounters::new(), CpuCounters::new()];
        let stats = Stats::per_cpu(&blocks, this_cpu);
        stats.add(Counter::Maps, 3);
        CPU.store(1, Ordering::Relaxed);
        stats.inc(Counter::Maps);
        // A CPU beyond the slots shares one.
        CPU.store(2, Ordering::Relaxed);
        stats.inc(Counter::Maps);
        CPU.store(0, Ordering::Relaxed);
        let in_block = |b: &CpuCounters| b.0[Counter::Maps as usize].load(Ordering::Relaxed);
        assert_eq!((in_block(&blocks[0]), in_block(&blocks[1])), (4, 1));
        assert_eq!(stats.get(Counter::Maps), 5);
        assert_eq!(stats.get(Counter::Unmaps), 0);
    }

    #[test]
    fn no_two_blocks_share_a_cache_line() {
        let blocks = [CpuCounters::new(), CpuCounters::new()];
        let (a, b) = (
            &blocks[0] as *const _ as usize,
            &blocks[1] as *const _ as usize,
        );
        assert!(b - a >= 128 && a % 128 == 0);
    }

    #[test]
    fn every_counter_and_gauge_is_named_once() {
        let stats = Stats::new();
        let mut names = [""; COUNTERS + 3];
        let mut n = 0;
        stats.for_each(|name, _| {
            names[n] = name;
            n += 1;
        });
        assert_eq!(n, COUNTERS + 3);
        for (i, a) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(a), "{a} twice");
        }
    }
}
