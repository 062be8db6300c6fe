// SPDX-License-Identifier: GPL-2.0

//! A map/unmap latency microbenchmark over the real mapping operations,
//! the pviommu's twin of the kernel's `dma_map_benchmark`.
//!
//! `dma_map_benchmark` binds a spare PCI device and times
//! `dma_map_single()`/`dma_unmap_single()`, which no longer reach the
//! pviommu: it only maps virtio devices, through `virtio_map_ops`. This
//! times the same loop through those operations, as virtio_ring calls
//! them: `map_page` of a page-owning buffer, then `unmap_page` and the
//! buffer's `unmap_flush` (the strict `SYNC`), with the real hypervisor.
//!
//! `echo "ITERATIONS [PAGES]" > /sys/kernel/debug/pviommu/map_bench` runs
//! it (one thread, `DMA_BIDIRECTIONAL`, PAGES a power of two up to 256,
//! like `dma_map_benchmark -t 1 -g PAGES -d 0`); reading the file gives
//! the averages in `dma_map_benchmark`'s words.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::time::{Instant, Monotonic};
use kernel::uaccess::UserSliceReader;

use crate::ffi::mem::phys_of_kvec;
use crate::ffi::virtio_map::{Direction, MapOps, Requester};
use crate::init::Pviommu;

/// The last run's results.
pub(crate) struct Results {
    iterations: AtomicU64,
    pages: AtomicU64,
    map_ns: AtomicU64,
    unmap_ns: AtomicU64,
    failures: AtomicU64,
}

pub(crate) static LAST: Results = Results {
    iterations: AtomicU64::new(0),
    pages: AtomicU64::new(0),
    map_ns: AtomicU64::new(0),
    unmap_ns: AtomicU64::new(0),
    failures: AtomicU64::new(0),
};

const MAX_PAGES: u64 = 256;
const MAX_ITERATIONS: u64 = 1 << 24;
const PAGE_SIZE: usize = 4096;

/// Reads `map_bench`: averages in µs with one decimal, as
/// `dma_map_benchmark` prints them.
pub(crate) fn show(r: &&'static Results, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let n = r.iterations.load(Ordering::Relaxed);
    if n == 0 {
        return writeln!(f, "not run: echo ITERATIONS [PAGES] > map_bench");
    }
    let tenths = |ns: u64| ns / n / 100;
    let (map, unmap) = (
        tenths(r.map_ns.load(Ordering::Relaxed)),
        tenths(r.unmap_ns.load(Ordering::Relaxed)),
    );
    writeln!(
        f,
        "iterations:{} granule:{} failures:{} average map latency(us):{}.{} average unmap latency(us):{}.{}",
        n,
        r.pages.load(Ordering::Relaxed),
        r.failures.load(Ordering::Relaxed),
        map / 10,
        map % 10,
        unmap / 10,
        unmap % 10
    )
}

/// Parses "ITERATIONS [PAGES]".
fn parse(text: &[u8]) -> Option<(u64, u64)> {
    let text = core::str::from_utf8(text).ok()?;
    let mut words = text.split_ascii_whitespace();
    let iterations: u64 = words.next()?.parse().ok()?;
    let pages: u64 = match words.next() {
        Some(w) => w.parse().ok()?,
        None => 1,
    };
    let ok = words.next().is_none()
        && (1..=MAX_ITERATIONS).contains(&iterations)
        && (1..=MAX_PAGES).contains(&pages)
        && pages.is_power_of_two();
    ok.then_some((iterations, pages))
}

/// Writes `map_bench`: runs the benchmark.
pub(crate) fn run(r: &&'static Results, input: &mut UserSliceReader) -> Result {
    let mut text = [0u8; 32];
    let len = input.len().min(text.len());
    input.read_slice(&mut text[..len])?;
    let Some((iterations, pages)) = parse(&text[..len]) else {
        pr_err!(
            "map_bench: expected \"ITERATIONS [PAGES]\", 1..={} iterations, PAGES a power of two up to {}\n",
            MAX_ITERATIONS,
            MAX_PAGES
        );
        return Err(EINVAL);
    };
    let ops = <Pviommu as MapOps>::get().ok_or(ENODEV)?;
    let bytes = pages as usize * PAGE_SIZE;
    // kmalloc aligns a power-of-two size to itself: the buffer owns its
    // pages, so it is shared in place, as a page-cache page would be.
    let mut buf = KVec::<u8>::with_capacity(bytes, GFP_KERNEL)?;
    buf.resize(bytes, 0, GFP_KERNEL)?;
    let phys = phys_of_kvec(&buf);
    let (mut map_ns, mut unmap_ns, mut failures) = (0u64, 0u64, 0u64);
    for _ in 0..iterations {
        let t = Instant::<Monotonic>::now();
        let dma = ops.map(
            phys,
            bytes as u64,
            Direction::Bidirectional,
            true,
            &Requester::ANY,
            None,
        );
        map_ns += t.elapsed().as_nanos() as u64;
        let Some(dma) = dma else {
            failures += 1;
            continue;
        };
        let t = Instant::<Monotonic>::now();
        ops.unmap(dma, bytes as u64, Direction::Bidirectional, true);
        ops.flush();
        unmap_ns += t.elapsed().as_nanos() as u64;
    }
    r.iterations.store(iterations, Ordering::Relaxed);
    r.pages.store(pages, Ordering::Relaxed);
    r.map_ns.store(map_ns, Ordering::Relaxed);
    r.unmap_ns.store(unmap_ns, Ordering::Relaxed);
    r.failures.store(failures, Ordering::Relaxed);
    Ok(())
}
