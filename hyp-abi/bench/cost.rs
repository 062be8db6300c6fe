// SPDX-License-Identifier: GPL-2.0-only

//! Cost benchmark of the two hot paths, for `valgrind --tool=callgrind`.
//!
//! `cost map N` maps 4096 buffers of N pages through the guest's page
//! tracker and ring producer (the per-page work of `dma_map_*`), and
//! `cost drain [STRIDE]` lets the reference hypervisor drain 16384 one-page
//! records naming every STRIDE-th frame (1: adjacent buffers, the common
//! burst; 2: scattered buffers, each applied on its own).
//! The measured work runs inside `measured_map` and `measured_drain`, which
//! `callgrind.sh` selects with `--toggle-collect`, so setup is not counted.
//! Without valgrind it still runs and prints what it did.

use pviommu_hyp_abi::layout::Perm;
use pviommu_hyp_abi::ring::{Producer, RingHeader, RingSlot};
use pviommu_hyp_abi::tracker::PageTracker;
use pviommu_reference_hyp::{Config, GuestRam, Hypervisor, VecRam};
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU8};

const BUFFERS: u64 = 4096;
const RECORDS: u64 = 16384;

#[inline(never)]
fn measured_map(tracker: &PageTracker<'_>, producer: &Producer<'_>, bufs: &[(u64, u32)]) -> u64 {
    let mut records = 0;
    for &(gfn, nr) in bufs {
        let (progress, result) = tracker.map_range(gfn, nr, Perm::ReadWrite);
        if result.is_err() {
            return u64::MAX;
        }
        if let Some((g, n)) = progress.record() {
            if producer.push(g, n).is_err() {
                return u64::MAX;
            }
            records += 1;
        }
    }
    records
}

#[inline(never)]
fn measured_drain(hyp: &mut Hypervisor, ram: &dyn GuestRam) -> u64 {
    hyp.drain(ram).records
}

fn map(nr: u32) {
    let frames = (BUFFERS * u64::from(nr)) as usize;
    let state: Vec<AtomicU32> = (0..frames).map(|_| AtomicU32::new(0)).collect();
    let table: Vec<AtomicU8> = (0..frames).map(|_| AtomicU8::new(0)).collect();
    let header = Box::new(RingHeader::new());
    let slots: Vec<RingSlot> = (0..BUFFERS).map(|_| RingSlot::new()).collect();
    let tracker = PageTracker::new(&state, &table).unwrap();
    let producer = Producer::new(&header, &slots).unwrap();
    let bufs: Vec<(u64, u32)> = (0..BUFFERS).map(|i| (i * u64::from(nr), nr)).collect();
    let records = measured_map(&tracker, &producer, black_box(&bufs));
    assert_eq!(records, BUFFERS);
    println!("map: buffers={BUFFERS} pages_per_buffer={nr} pages={frames} records={records}");
}

fn drain(stride: u64) {
    let order = 14;
    // Table at gfn 0, ring at gfn 16, the records name gfns 8192 on, far
    // from frame 0 as in a real guest.
    let first = 8192;
    let table_frames = first + RECORDS * stride;
    let ring_gpa = 16 << 12;
    let ram_bytes = table_frames << 12;
    let ram = VecRam::new(0..ram_bytes);
    let mut hyp = Hypervisor::new(Config {
        ram: std::iter::once(0..ram_bytes).collect(),
    });
    let r = hyp.call(&ram, 1, [0, table_frames, ring_gpa, order, 0, 0]);
    assert_eq!(r.status, 0, "init: {r:?}");
    // The guest's side: table entries, then records, then the producer.
    ram.write(first, &vec![3u8; (RECORDS * stride) as usize])
        .unwrap();
    for i in 0..RECORDS {
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&(first + i * stride).to_le_bytes());
        rec[8..12].copy_from_slice(&1u32.to_le_bytes());
        rec[12..].copy_from_slice(&((i + 1) as u32).to_le_bytes());
        ram.write(ring_gpa + 4096 + 16 * i, &rec).unwrap();
    }
    ram.write(ring_gpa, &RECORDS.to_le_bytes()).unwrap();
    let records = measured_drain(&mut hyp, black_box(&ram));
    assert_eq!(records, RECORDS);
    assert_eq!(hyp.counters().pages_shared, RECORDS);
    println!("drain: records={records} stride={stride}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("map") => map(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1)),
        Some("drain") => drain(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1)),
        _ => {
            eprintln!("usage: cost map [PAGES_PER_BUFFER] | cost drain [GFN_STRIDE]");
            std::process::exit(2);
        }
    }
}
