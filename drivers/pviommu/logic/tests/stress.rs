// SPDX-License-Identifier: GPL-2.0

//! The engine under real parallelism: several threads map and unmap
//! overlapping buffers (shared pages, both permissions, sub-page bounces)
//! through one engine, as CPUs do through the kernel driver, while the
//! mock hypervisor drains the small ring on every `SYNC`. At the end every
//! table entry is back to none, the pool is empty, and nothing failed.

use pviommu_hyp_abi::layout::PAGE_SIZE;
use pviommu_logic::engine::Batch;
use pviommu_logic::policy::{Dir, Mode};
use pviommu_logic::selftest::Fixture;
use pviommu_logic::stats::Counter;

const THREADS: u64 = 4;
const ROUNDS: u64 = 50_000;

#[test]
fn concurrent_maps_keep_the_table_exact() {
    let fixture = Fixture::new();
    // The OS may preempt a thread between reserving and publishing a ring
    // record (the kernel cannot: interrupts are off there), which holds
    // the consumer back; waiting threads yield so that it can publish.
    let ran = fixture.with_relax(
        Mode::Share,
        std::thread::yield_now,
        |e, _hyp, _copier, fx| {
            std::thread::scope(|scope| {
                for t in 0..THREADS {
                    scope.spawn(move || {
                        // A small xorshift per thread: reproducible, no crate.
                        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t + 1);
                        for _ in 0..ROUNDS {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            // Frames 0..16 overlap between threads.
                            let gfn = x % 16;
                            let pages = 1 + (x >> 8) % 3;
                            let dir = match (x >> 16) % 3 {
                                0 => Dir::ToDevice,
                                1 => Dir::FromDevice,
                                _ => Dir::Bidirectional,
                            };
                            // One in four buffers is sub-page and bounces.
                            let (phys, size) = if (x >> 20) % 4 == 0 {
                                (gfn * PAGE_SIZE + 64, 256)
                            } else {
                                (gfn * PAGE_SIZE, pages * PAGE_SIZE)
                            };
                            let dma = e.map(phys, size, dir, true).expect("map");
                            let mut batch = Batch::default();
                            e.unmap(dma, size, dir, true, &mut batch);
                            e.finish(batch).expect("unmap");
                        }
                    });
                }
            });
            for gfn in 0..32 {
                assert_eq!(
                    fx.entry(gfn),
                    0,
                    "frame {gfn} still shared after every unmap"
                );
            }
            assert_eq!(e.pool().used(), 0, "bounce slots leaked");
            assert!(!e.is_broken());
            let s = fx.stats();
            assert_eq!(s.get(Counter::MapErrors), 0);
            assert_eq!(s.get(Counter::UnshareErrors), 0);
            assert_eq!(s.get(Counter::Maps), THREADS * ROUNDS);
            assert_eq!(s.get(Counter::Unmaps), THREADS * ROUNDS);
            assert!(
                s.get(Counter::RingFull) > 0,
                "the 4-record ring never filled"
            );
        },
    );
    assert!(ran.is_some(), "fixture builds");
}
