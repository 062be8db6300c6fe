// SPDX-License-Identifier: GPL-2.0-only

//! A test guest: byte-level RAM with a fixed table, ring and pool layout.

#![allow(dead_code)]

use pviommu_reference_hyp::{CallResult, Config, GuestRam, Hypervisor, VecRam};

/// Guest RAM pages: 0..256 with a hole at 192..224.
pub const RAM_PAGES: u64 = 256;
pub const HOLE: std::ops::Range<u64> = 192..224;
pub const TABLE_GFN: u64 = 0;
pub const TABLE_FRAMES: u64 = RAM_PAGES;
pub const RING_GFN: u64 = 1;
pub const RING_ORDER: u32 = 3;
pub const RING_SIZE: u64 = 1 << RING_ORDER;
pub const POOL_GFN: u64 = 8;
pub const POOL_PAGES: u64 = 4;

pub const VERSION: u32 = 0;
pub const INIT: u32 = 1;
pub const SYNC: u32 = 2;
pub const SHARE: u32 = 3;
pub const UNSHARE: u32 = 4;
pub const RESET: u32 = 5;
pub const APPLY: u32 = 6;
pub const STATS: u32 = 7;

pub struct Guest {
    pub ram: VecRam,
    pub hyp: Hypervisor,
}

pub fn config() -> Config {
    Config {
        ram: vec![0..HOLE.start << 12, HOLE.end << 12..RAM_PAGES << 12],
    }
}

pub fn init_args() -> [u64; 6] {
    [
        TABLE_GFN << 12,
        TABLE_FRAMES,
        RING_GFN << 12,
        RING_ORDER.into(),
        POOL_GFN << 12,
        POOL_PAGES,
    ]
}

impl Guest {
    /// A guest whose hypervisor is not initialised yet.
    pub fn bare() -> Guest {
        Guest {
            ram: VecRam::new(0..RAM_PAGES << 12),
            hyp: Hypervisor::new(config()),
        }
    }

    /// A guest after a successful INIT.
    pub fn new() -> Guest {
        let mut g = Guest::bare();
        let r = g.call(INIT, init_args());
        assert_eq!(r.status, 0, "init failed: {r:?}");
        g
    }

    pub fn call(&mut self, func: u32, args: [u64; 6]) -> CallResult {
        self.hyp.call(&self.ram, func, args)
    }

    pub fn set_entry(&self, gfn: u64, entry: u8) {
        self.ram.write((TABLE_GFN << 12) + gfn, &[entry]).unwrap();
    }

    pub fn write_record(&self, index: u64, gfn: u64, nr: u32, seq: u32) {
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&gfn.to_le_bytes());
        rec[8..12].copy_from_slice(&nr.to_le_bytes());
        rec[12..].copy_from_slice(&seq.to_le_bytes());
        let gpa = (RING_GFN << 12) + 4096 + 16 * (index % RING_SIZE);
        self.ram.write(gpa, &rec).unwrap();
    }

    pub fn set_producer(&self, producer: u64) {
        self.ram
            .write(RING_GFN << 12, &producer.to_le_bytes())
            .unwrap();
    }

    pub fn producer(&self) -> u64 {
        let mut b = [0u8; 8];
        self.ram.read(RING_GFN << 12, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    pub fn consumer_in_ram(&self) -> u64 {
        let mut b = [0u8; 8];
        self.ram.read((RING_GFN << 12) + 64, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    /// Reserves and publishes a record the way a well-behaved guest does.
    pub fn push(&self, gfn: u64, nr: u32) -> u64 {
        let index = self.producer();
        self.set_producer(index + 1);
        self.write_record(index, gfn, nr, (index + 1) as u32);
        index
    }

    /// Writes `entry` for `nr` frames from `gfn`, then publishes a record.
    pub fn map(&self, gfn: u64, nr: u32, entry: u8) {
        for g in gfn..gfn + u64::from(nr) {
            self.set_entry(g, entry);
        }
        self.push(gfn, nr);
    }

    pub fn sync(&mut self) -> CallResult {
        self.call(SYNC, [0; 6])
    }
}
