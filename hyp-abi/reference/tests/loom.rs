// SPDX-License-Identifier: GPL-2.0-only

//! The reference hypervisor's own drain against the guest's producer, under
//! the C11 memory model.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p pviommu-reference-hyp
//! --release --test loom`. The guest side is the real `Producer` and table
//! stores of `pviommu-hyp-abi`; the hypervisor side is `Hypervisor::drain`
//! and `SYNC` themselves, reading guest memory through a `GuestRam` whose
//! every load is Relaxed, as the copies of a real hypervisor are: only the
//! drain's own fences order them. Every interleaving loom explores must
//! apply every published record with the entry written before it, and
//! must never lose an unmap.

#![cfg(loom)]

use loom::sync::atomic::{AtomicU8, Ordering};
use loom::sync::Arc;
use loom::thread;
use pviommu_reference_hyp::abi::error::Error;
use pviommu_reference_hyp::abi::ring::{Producer, RingHeader, RingSlot};
use pviommu_reference_hyp::{Config, GuestRam, Hypervisor, OutOfRange, Perm};

/// Frames of guest RAM: the table in frame 0, the ring in frames 1 and 2,
/// buffers from frame 4.
const FRAMES: u64 = 8;
const RING_GPA: u64 = 4096;
const SLOTS_GPA: u64 = RING_GPA + 4096;
const SLOTS: usize = 2;

struct Shared {
    header: RingHeader,
    slots: [RingSlot; SLOTS],
    table: [AtomicU8; FRAMES as usize],
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        header: RingHeader::new(),
        slots: [RingSlot::new(), RingSlot::new()],
        table: std::array::from_fn(|_| AtomicU8::new(0)),
    })
}

/// Guest memory as the hypervisor reads it: each field the bytes touch is
/// loaded once, Relaxed; bytes outside the table and ring read as zero.
struct LoomRam<'a>(&'a Shared);

impl LoomRam<'_> {
    /// The field holding `gpa`: its first byte and its bytes.
    fn field(&self, gpa: u64) -> Result<(u64, Vec<u8>), OutOfRange> {
        let s = self.0;
        Ok(match gpa {
            g if g < FRAMES => (g, vec![s.table[g as usize].load(Ordering::Relaxed)]),
            g if (RING_GPA..RING_GPA + 8).contains(&g) => (
                RING_GPA,
                s.header
                    .producer
                    .load(Ordering::Relaxed)
                    .to_le_bytes()
                    .to_vec(),
            ),
            g if (RING_GPA + 64..RING_GPA + 72).contains(&g) => (
                RING_GPA + 64,
                s.header
                    .consumer
                    .load(Ordering::Relaxed)
                    .to_le_bytes()
                    .to_vec(),
            ),
            g if (SLOTS_GPA..SLOTS_GPA + 16 * SLOTS as u64).contains(&g) => {
                let base = g - (g - SLOTS_GPA) % 16;
                let slot = &s.slots[((g - SLOTS_GPA) / 16) as usize];
                match g - base {
                    0..=7 => (
                        base,
                        slot.gfn.load(Ordering::Relaxed).to_le_bytes().to_vec(),
                    ),
                    8..=11 => (
                        base + 8,
                        slot.nr_pages.load(Ordering::Relaxed).to_le_bytes().to_vec(),
                    ),
                    _ => (
                        base + 12,
                        slot.seq.load(Ordering::Relaxed).to_le_bytes().to_vec(),
                    ),
                }
            }
            g if g < FRAMES << 12 => (g, vec![0]),
            _ => return Err(OutOfRange),
        })
    }
}

impl GuestRam for LoomRam<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let mut i = 0;
        while i < buf.len() {
            let a = gpa.checked_add(i as u64).ok_or(OutOfRange)?;
            let (start, bytes) = self.field(a)?;
            let off = (a - start) as usize;
            let n = (bytes.len() - off).min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&bytes[off..off + n]);
            i += n;
        }
        Ok(())
    }

    /// The hypervisor writes only the ring's consumer index.
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let word = <[u8; 8]>::try_from(data).map_err(|_| OutOfRange)?;
        if gpa != RING_GPA + 64 {
            return Err(OutOfRange);
        }
        self.0
            .header
            .consumer
            .store(u64::from_le_bytes(word), Ordering::Relaxed);
        Ok(())
    }
}

/// Explores `f` with at most two preemptions per execution (unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise): the drain makes a few dozen
/// loads, and an unbounded search does not end in useful time.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

/// A hypervisor after `INIT` of the table and a ring of two records.
fn hypervisor(s: &Shared) -> Hypervisor {
    let mut hyp = Hypervisor::new(Config {
        ram: vec![0..FRAMES << 12],
    });
    let r = hyp.call(&LoomRam(s), 1, [0, FRAMES, RING_GPA, 1, 0, 0]);
    assert_eq!(r.status, 0, "INIT");
    hyp
}

/// The guest's map and unmap path: the table entry first, then the record
/// that names it; a full ring waits for the hypervisor.
fn set(s: &Shared, gfn: u64, entry: u8) {
    s.table[gfn as usize].store(entry, Ordering::Relaxed);
    let p = Producer::new(&s.header, &s.slots).unwrap();
    loop {
        match p.push(gfn, 1) {
            Ok(()) => return,
            Err(Error::RingFull) => thread::yield_now(),
            Err(e) => panic!("push failed: {e:?}"),
        }
    }
}

/// Drains as exits would, until the drain has consumed `n` records: each
/// drain races the producers, and the yields let loom interleave them
/// (one drain before the producers run is not enough: loom does not
/// reorder a plain load against the producer's load and compare-exchange).
fn drain_until(hyp: &mut Hypervisor, s: &Shared, n: u64) {
    while hyp.consumer() < n {
        let stats = hyp.drain(&LoomRam(s));
        assert!(stats.consumer <= n, "consumed past the producer");
        thread::yield_now();
    }
}

#[test]
fn loom_drain_applies_what_two_producers_published() {
    model(|| {
        let s = shared();
        let mut hyp = hypervisor(&s);
        let a = {
            let s = s.clone();
            thread::spawn(move || set(&s, 4, 1))
        };
        let b = {
            let s = s.clone();
            thread::spawn(move || set(&s, 5, 3))
        };
        // A drain must neither take a record for applied without its
        // entry, nor move past one it did not apply: once it has consumed
        // both, both entries are in force, with no SYNC.
        drain_until(&mut hyp, &s, 2);
        assert_eq!(hyp.host_perm(4), Perm::Read);
        assert_eq!(hyp.host_perm(5), Perm::ReadWrite);
        a.join().unwrap();
        b.join().unwrap();
    });
}

#[test]
fn loom_an_unmap_is_never_lost() {
    model(|| {
        let s = shared();
        let mut hyp = hypervisor(&s);
        // Mapped read-write and drained, before the race.
        set(&s, 4, 3);
        hyp.drain(&LoomRam(&s));
        assert_eq!(hyp.host_perm(4), Perm::ReadWrite);
        let unmap = {
            let s = s.clone();
            thread::spawn(move || set(&s, 4, 0))
        };
        // Exits' drains race the unmap's record; once one has consumed it,
        // the unmap is applied.
        drain_until(&mut hyp, &s, 2);
        assert_eq!(hyp.host_perm(4), Perm::None, "an unmap was lost");
        unmap.join().unwrap();
        // And the guest's SYNC after its unmap completes it.
        assert_eq!(hyp.call(&LoomRam(&s), 2, [0; 6]).status, 0, "SYNC");
        assert_eq!(hyp.host_perm(4), Perm::None);
    });
}

#[test]
fn loom_wrap_around_with_a_full_ring() {
    model(|| {
        let s = shared();
        let mut hyp = hypervisor(&s);
        let p = {
            let s = s.clone();
            thread::spawn(move || {
                for gfn in 4..7 {
                    set(&s, gfn, 1);
                }
            })
        };
        // The producer needs the drain to make room for its third record.
        drain_until(&mut hyp, &s, 3);
        p.join().unwrap();
        for gfn in 4..7 {
            assert_eq!(hyp.host_perm(gfn), Perm::Read, "frame {gfn}");
        }
    });
}
