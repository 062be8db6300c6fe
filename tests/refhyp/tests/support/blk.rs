// SPDX-License-Identifier: GPL-2.0-only
//! A scripted virtio-blk driver: one split virtqueue in guest RAM, set up
//! over vhost-user the way QEMU does it.

use super::virtq::{self, RawDesc, VirtioDriver, F_INDIRECT};
use super::{Guest, Refhyp};

pub const QSIZE: u16 = 16;
/// Queue 0 of `virtq`'s layout.
pub const DESC_GPA: u64 = virtq::QUEUES_GPA;
pub const AVAIL_GPA: u64 = DESC_GPA + 0x1000;
pub const USED_GPA: u64 = DESC_GPA + 0x2000;
pub const HDR_GPA: u64 = 0x30_0000;
pub const STATUS_GPA: u64 = 0x30_1000;
pub const DATA_GPA: u64 = 0x40_0000;
/// Indirect descriptor tables (up to 64 KiB).
pub const INDIRECT_GPA: u64 = 0x38_0000;

pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;
/// What the test leaves in the status byte, to see whether it was written.
pub const S_UNTOUCHED: u8 = 0xee;

pub struct BlkDriver {
    pub vd: VirtioDriver,
}

impl BlkDriver {
    /// Sets up queue 0 (see `VirtioDriver::connect`).
    pub fn connect(h: &Refhyp, g: &Guest) -> BlkDriver {
        BlkDriver {
            vd: VirtioDriver::connect(&h.blk_path, g, 1, QSIZE),
        }
    }

    fn q(&mut self) -> &mut virtq::Vq {
        &mut self.vd.queues[0]
    }

    /// Writes descriptors at the given indices and offers `head`; no kick.
    pub fn offer_raw(&mut self, g: &Guest, descs: &[(u16, RawDesc)], head: u16) {
        self.q().offer_raw(g, descs, head);
    }

    /// Offers `chain` through one indirect descriptor at INDIRECT_GPA.
    pub fn offer_indirect(&mut self, g: &Guest, chain: &[(u64, u32, bool)]) {
        virtq::write_table(g, INDIRECT_GPA, &virtq::link(chain, 0, u16::MAX));
        let len = 16 * chain.len() as u32;
        let head = RawDesc {
            addr: INDIRECT_GPA,
            len,
            flags: F_INDIRECT,
            next: 0,
        };
        self.offer_raw(g, &[(0, head)], 0);
    }

    /// Offers a chain of `(addr, len, device_writes)` from descriptor 0 on.
    pub fn offer(&mut self, g: &Guest, chain: &[(u64, u32, bool)]) {
        let descs = virtq::link(chain, 0, QSIZE);
        self.offer_raw(g, &descs, 0);
    }

    pub fn kick(&self) {
        self.vd.queues[0].kick();
    }

    pub fn used_idx(&self, g: &Guest) -> u16 {
        self.vd.queues[0].used_idx(g)
    }

    /// Waits for the next used element; returns (id, len).
    pub fn wait_used(&mut self, g: &Guest) -> (u32, u32) {
        self.q().wait_used(g)
    }

    /// Writes a request header and resets the status byte.
    pub fn header(g: &Guest, req_type: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&req_type.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        g.write(HDR_GPA, &h);
        g.write(STATUS_GPA, &[S_UNTOUCHED]);
    }

    /// One well-formed request with `len` bytes of data at `DATA_GPA`;
    /// returns (status byte, used len) once completed.
    pub fn request(&mut self, g: &Guest, req_type: u32, sector: u64, len: u32) -> (u8, u32) {
        Self::header(g, req_type, sector);
        let device_writes = req_type == T_IN;
        let mut chain = vec![(HDR_GPA, 16, false)];
        if len > 0 {
            chain.push((DATA_GPA, len, device_writes));
        }
        chain.push((STATUS_GPA, 1, true));
        self.offer(g, &chain);
        self.kick();
        let (id, used_len) = self.wait_used(g);
        assert_eq!(id, 0);
        (g.read(STATUS_GPA, 1)[0], used_len)
    }

    /// Shares every page the requests above use, read-write.
    pub fn share_all(g: &mut Guest) {
        g.share_range(DESC_GPA, 3 * 4096, super::PERM_RW);
        g.share_range(HDR_GPA, 2 * 4096, super::PERM_RW);
        g.share_range(DATA_GPA, 1 << 20, super::PERM_RW);
    }
}
