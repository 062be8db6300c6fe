// SPDX-License-Identifier: GPL-2.0-only

//! Fuzzes the reference hypervisor over arbitrary guest memory and calls.
//!
//! The input is a little program: each operation writes guest bytes (the
//! table, the ring, anything), makes a call with arbitrary or plausible
//! arguments, drains, checks a host access or serves the mailbox. After
//! every operation the invariants the hypervisor promises are checked:
//! no panic, and the table and ring pages are never host-visible; after an
//! `APPLY`, the ring has not moved, progress is honest and every access it
//! removed is invalidated.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pviommu_reference_hyp::abi::call::{Func, NR_FUNCS};
use pviommu_reference_hyp::abi::mailbox::slot_offset;
use pviommu_reference_hyp::{
    init_region, serve_mailbox, Access, Config, GuestRam, Hypervisor, Perm, SharedRegion, VecRam, VecRegion,
};

/// Guest RAM: 192 pages, with a hole of 32 pages at gfn 128..160.
const RAM_PAGES: u64 = 192;
const HOLE: std::ops::Range<u64> = 128..160;

/// Returns the frames of a table and a ring `INIT` was asked to register:
/// one table byte per frame, and a ring of a header page plus 16-byte
/// records. Computed here, not by the hypervisor, so that a hypervisor
/// registering the wrong frames is caught too.
fn layout(table_gpa: u64, table_frames: u64, ring_gpa: u64, order: u64) -> Vec<u64> {
    let table = table_gpa >> 12..(table_gpa >> 12) + table_frames.div_ceil(4096);
    let ring_pages = (4096 + (16u64 << order)).div_ceil(4096);
    table.chain(ring_gpa >> 12..(ring_gpa >> 12) + ring_pages).collect()
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | (u64::from(self.u8()) << (8 * i)))
    }

    /// An argument: mostly small or page-shaped values, sometimes anything.
    fn arg(&mut self) -> u64 {
        match self.u8() % 6 {
            0 => 0,
            1 => u64::from(self.u8()),
            2 => u64::from(self.u8()) << 12,
            3 => u64::from(self.u8() % 4) + 1,
            4 => u64::MAX - u64::from(self.u8()),
            _ => self.u64(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let ram = VecRam::new(0..RAM_PAGES << 12);
    let region = VecRegion::new(16384);
    let config = Config {
        ram: vec![0..HOLE.start << 12, HOLE.end << 12..RAM_PAGES << 12],
    };
    let mut hyp = Hypervisor::new(config);
    let _ = init_region(&region, 1, 0);
    let mut input = Input(data);
    // Frames of the table and ring of the last INIT this program made
    // directly (op 0 or 1), or `None` after one the mailbox may have made.
    let mut protected: Option<Vec<u64>> = None;
    for _ in 0..256 {
        if input.0.is_empty() {
            break;
        }
        match input.u8() % 8 {
            0 => {
                // Every function, and the first unknown number.
                let func = u32::from(input.u8()) % (NR_FUNCS as u32 + 1);
                let args = [input.arg(), input.arg(), input.arg(), input.arg(), input.arg(), input.arg()];
                let consumer = hyp.consumer();
                let (unshared, invalidations) = (hyp.counters().pages_unshared, hyp.counters().invalidations);
                let r = hyp.call(&ram, func, args);
                if func == Func::Init as u32 && r.status == 0 {
                    protected = Some(layout(args[0], args[1], args[2], args[3]));
                }
                if func == Func::Apply as u32 {
                    let c = hyp.counters();
                    assert_eq!(hyp.consumer(), consumer, "APPLY moved the ring");
                    if c.pages_unshared != unshared {
                        assert!(c.invalidations > invalidations, "APPLY returned before invalidating");
                    }
                    if r.status == 0 {
                        assert!((1..=args[1]).contains(&r.ret[0]), "APPLY progress {:?} for {args:?}", r.ret);
                    } else {
                        assert_eq!(r.ret, [0; 3], "APPLY failed with progress");
                    }
                }
            }
            1 => {
                // A plausible INIT: table at gfn 0, ring after it, pool later.
                let frames = u64::from(input.u8()) + 1;
                let order = u64::from(input.u8() % 18);
                let ring_gfn = 1 + u64::from(input.u8() % 4);
                let pool_gfn = 40 + u64::from(input.u8() % 100);
                let pool_pages = u64::from(input.u8() % 40);
                let r = hyp.call(&ram, 1, [0, frames, ring_gfn << 12, order, pool_gfn << 12, pool_pages]);
                if r.status == 0 {
                    protected = Some(layout(0, frames, ring_gfn << 12, order));
                }
            }
            2 | 3 => {
                // Guest writes: records, table entries, producer, anything.
                let gpa = u64::from(input.u8()) << 8 | u64::from(input.u8());
                let gpa = gpa.wrapping_mul(u64::from(input.u8() % 16) + 1) % (RAM_PAGES << 12);
                let len = usize::from(input.u8() % 64);
                let bytes: Vec<u8> = (0..len).map(|_| input.u8()).collect();
                let _ = ram.write(gpa, &bytes);
            }
            4 => {
                // A well-formed record publish at an arbitrary index.
                let index = u64::from(input.u8());
                let gfn = u64::from(input.u8());
                let nr = u32::from(input.u8() % 8);
                let ring_gpa = 4096 * (1 + u64::from(input.u8() % 4));
                let mut rec = [0u8; 16];
                rec[..8].copy_from_slice(&gfn.to_le_bytes());
                rec[8..12].copy_from_slice(&nr.to_le_bytes());
                rec[12..].copy_from_slice(&((index + 1) as u32).to_le_bytes());
                let _ = ram.write(ring_gpa + 4096 + 16 * (index % 64), &rec);
                let _ = ram.write(ring_gpa, &(index + 1).to_le_bytes());
            }
            5 => {
                hyp.drain(&ram);
            }
            6 => {
                let gpa = input.arg();
                let len = input.arg();
                let access = if input.u8() & 1 == 0 { Access::Read } else { Access::Write };
                let _ = hyp.check_access(&ram, gpa, len, access);
            }
            _ => {
                let slot = u32::from(input.u8() % 4);
                let off = slot_offset(slot);
                let mut bytes = [0u8; 128];
                for b in bytes.iter_mut() {
                    *b = input.u8();
                }
                let _ = region.write(off, &bytes);
                let inits = hyp.counters().calls[Func::Init as usize];
                serve_mailbox(&mut hyp, &ram, &region);
                if hyp.counters().calls[Func::Init as usize] != inits {
                    // A slot made an INIT (maybe after a RESET) this
                    // program did not decode: only the hypervisor's own
                    // registration is known now.
                    protected = None;
                }
            }
        }
        if let Some((table, ring)) = hyp.registered() {
            let registered: Vec<u64> = table.chain(ring).collect();
            if let Some(expected) = &protected {
                assert_eq!(&registered, expected, "INIT registered another layout");
            }
            for gfn in registered {
                assert_eq!(hyp.host_perm(gfn), Perm::None, "table or ring page {gfn} is host-visible");
            }
        } else {
            assert!(!hyp.is_initialised(), "initialised without a registration");
        }
        for gfn in HOLE {
            assert_eq!(hyp.host_perm(gfn), Perm::None, "hole page {gfn} is host-visible");
        }
        let _ = hyp.counters().to_json();
    }
});
