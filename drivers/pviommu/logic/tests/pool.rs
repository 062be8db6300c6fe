// SPDX-License-Identifier: GPL-2.0

//! The bounce pool's chunks: an allocation stays inside one chunk, a
//! grown chunk is reachable by every lookup, and the pool refuses what it
//! cannot hold.

use std::sync::atomic::AtomicU64;

use pviommu_hyp_abi::layout::PAGE_SIZE;
use pviommu_logic::pool::{Pool, Slots};

const CHUNK: u64 = 4;
const MAX_CHUNKS: usize = 3;
const BASE0: u64 = 0x10_0000;
/// Not adjacent to chunk 0, and below it, as a later allocation may be.
const BASE1: u64 = 0x4000;
const BASE2: u64 = 0x80_0000;

struct Arrays {
    more: [AtomicU64; MAX_CHUNKS - 1],
    bitmap: [AtomicU64; 1],
    orig: [AtomicU64; CHUNK as usize * MAX_CHUNKS],
}

impl Arrays {
    fn new() -> Self {
        Arrays {
            more: [const { AtomicU64::new(0) }; MAX_CHUNKS - 1],
            bitmap: [const { AtomicU64::new(0) }; 1],
            orig: [const { AtomicU64::new(0) }; CHUNK as usize * MAX_CHUNKS],
        }
    }

    fn pool(&self) -> Pool<'_> {
        Pool::growable(BASE0, CHUNK, &self.more, &self.bitmap, &self.orig).unwrap()
    }
}

#[test]
fn a_full_chunk_refuses_until_the_pool_grows() {
    let a = Arrays::new();
    let pool = a.pool();
    assert_eq!((pool.chunks(), pool.slots(), pool.capacity()), (1, 4, 12));
    let s = pool.alloc(CHUNK, 0x9000).unwrap();
    assert_eq!(pool.slot_phys(s.first), BASE0);
    assert!(pool.alloc(1, 0).is_none(), "chunk 0 is full");

    assert!(pool.grow(BASE1));
    assert_eq!(pool.chunks(), 2);
    let t = pool.alloc(2, 0x2_0123).unwrap();
    assert_eq!(t.first / CHUNK, 1, "served from the new chunk");
    let dma = pool.slot_phys(t.first) + 0x123;
    assert!((BASE1..BASE1 + CHUNK * PAGE_SIZE).contains(&dma));
    assert!(pool.contains(dma, 2 * PAGE_SIZE - 0x123));
    assert_eq!(pool.slot_of(dma), t.first);
    assert_eq!(pool.orig_of(dma + PAGE_SIZE), Some(0x2_1123));
    assert!(pool.free(t));
    assert!(pool.free(s));
    assert_eq!(pool.used(), 0);
}

#[test]
fn no_allocation_spans_two_chunks() {
    let a = Arrays::new();
    let pool = a.pool();
    // Chunk 1 placed right after chunk 0 in slot numbers (slots 4..8),
    // though not in memory.
    assert!(pool.grow(BASE2));
    let head = pool.alloc(3, 0).unwrap();
    assert_eq!(head, Slots { first: 0, pages: 3 });
    // Slot 3 and slot 4 are consecutive numbers in different chunks.
    let pair = pool.alloc(2, 0).unwrap();
    assert_eq!(pair.first / CHUNK, (pair.first + 1) / CHUNK);
    assert!(
        !pool.contains(BASE0 + 3 * PAGE_SIZE, 2 * PAGE_SIZE),
        "a range past a chunk's end"
    );
    assert!(pool.alloc(CHUNK + 1, 0).is_none(), "larger than a chunk");
}

#[test]
fn free_refuses_slots_across_chunks_or_outside() {
    let a = Arrays::new();
    let pool = a.pool();
    assert!(pool.grow(BASE1));
    let all0 = pool.alloc(CHUNK, 0).unwrap();
    let all1 = pool.alloc(CHUNK, 0).unwrap();
    assert!(
        !pool.free(Slots { first: 3, pages: 2 }),
        "spans chunks 0 and 1"
    );
    assert!(
        !pool.free(Slots { first: 8, pages: 1 }),
        "chunk 2 is not live"
    );
    assert_eq!(
        pool.slot_of(0x1234_5000),
        pool.capacity(),
        "not pool memory"
    );
    assert!(!pool.free(Slots {
        first: pool.slot_of(0x1234_5000),
        pages: 1
    }));
    assert!(pool.free(all0) && pool.free(all1));
}

#[test]
fn growth_stops_at_the_maximum() {
    let a = Arrays::new();
    let pool = a.pool();
    assert!(!pool.grow(BASE1 + 1), "unaligned base refused");
    assert!(pool.grow(BASE1));
    assert!(pool.grow(BASE2));
    assert!(!pool.grow(0x90_0000), "beyond max_chunks");
    assert_eq!(pool.chunks(), MAX_CHUNKS as u64);
    assert!(!pool.contains(0x90_0000, 1));
    // Every chunk serves a whole-chunk allocation.
    for _ in 0..MAX_CHUNKS {
        assert!(pool.alloc(CHUNK, 0).is_some());
    }
    assert!(pool.alloc(1, 0).is_none());
}

#[test]
fn a_fixed_pool_never_grows() {
    let bitmap = [const { AtomicU64::new(0) }; 1];
    let orig = [const { AtomicU64::new(0) }; 8];
    let pool = Pool::new(BASE0, &bitmap, &orig).unwrap();
    assert_eq!((pool.chunk_slots(), pool.max_chunks()), (8, 1));
    assert!(!pool.grow(BASE1));
    assert!(pool.alloc(8, 0).is_some());
}

#[test]
fn bookkeeping_too_small_for_the_maximum_is_refused() {
    let more = [const { AtomicU64::new(0) }; 2];
    let bitmap = [const { AtomicU64::new(0) }; 1];
    let orig = [const { AtomicU64::new(0) }; 11];
    assert!(Pool::growable(BASE0, CHUNK, &more, &bitmap, &orig).is_none());
    let orig = [const { AtomicU64::new(0) }; 12];
    assert!(Pool::growable(BASE0, 0, &more, &bitmap, &orig).is_none());
    assert!(Pool::growable(BASE0 + 8, CHUNK, &more, &bitmap, &orig).is_none());
}

#[test]
fn pool_size_from_the_boot_parameters() {
    use pviommu_logic::pool::PoolSize;
    let size =
        |kib, max| PoolSize::new(kib, max).map(|s| (s.chunk_pages, s.initial_chunks, s.max_chunks));
    // The defaults: 4 MiB in four 1 MiB chunks, growing to 64 MiB.
    assert_eq!(size(4096, 65536), Some((256, 4, 64)));
    // Rounded up to whole chunks.
    assert_eq!(size(1536, 0), Some((256, 2, 2)));
    // A pool smaller than a chunk is one chunk of its size.
    assert_eq!(size(512, 65536), Some((128, 1, 64)));
    assert_eq!(size(0, 0), Some((1, 1, 1)));
    // A maximum below the initial size: never grow.
    assert_eq!(size(8192, 1024), Some((256, 8, 8)));
    // At most 64 chunks.
    assert_eq!(size(4096, 1 << 30), Some((256, 4, 64)));
    assert_eq!(size(65536, 0), Some((256, 64, 64)));
    assert_eq!(size(65537 + 1024, 0), None);
    assert_eq!(PoolSize::new(4096, 65536).unwrap().capacity(), 16384);
}
