// SPDX-License-Identifier: GPL-2.0-only
//! A scripted virtio-blk driver: one split virtqueue in guest RAM, set up
//! over vhost-user the way QEMU does it.

use std::os::fd::AsRawFd;

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

use super::{wait_for, Guest, Refhyp, RAM_SIZE, SHM_SIZE};

pub const QSIZE: u16 = 16;
pub const DESC_GPA: u64 = 0x20_0000;
pub const AVAIL_GPA: u64 = 0x20_1000;
pub const USED_GPA: u64 = 0x20_2000;
pub const HDR_GPA: u64 = 0x30_0000;
pub const STATUS_GPA: u64 = 0x30_1000;
pub const DATA_GPA: u64 = 0x40_0000;
/// Indirect descriptor tables (up to 64 KiB).
pub const INDIRECT_GPA: u64 = 0x38_0000;
/// Where the test puts the ivshmem region in the memory table, as QEMU
/// announces BAR2 to vhost-user backends.
pub const BAR2_GPA: u64 = 0xfe00_0000;
/// A made-up frontend virtual address of gpa 0: the backend translates
/// vring addresses through the memory table's `userspace_addr`.
const VA_BASE: u64 = 0x7f00_0000_0000;

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;
/// What the test leaves in the status byte, to see whether it was written.
pub const S_UNTOUCHED: u8 = 0xee;

/// One descriptor as the driver writes it.
#[derive(Clone, Copy, Debug)]
pub struct RawDesc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

pub struct BlkDriver {
    pub fe: Frontend,
    kick: EventFd,
    _call: EventFd,
    avail_idx: u16,
    used_seen: u16,
}

impl BlkDriver {
    /// Negotiates like QEMU with `iommu_platform=on` (ACCESS_PLATFORM
    /// offered, then cleared) and sets up queue 0.
    pub fn connect(h: &Refhyp, g: &Guest) -> BlkDriver {
        let mut fe = Frontend::connect(&h.blk_path, 1).unwrap();
        fe.set_owner().unwrap();
        let features = fe.get_features().unwrap();
        assert!(features & (1 << 33) != 0, "ACCESS_PLATFORM not offered");
        assert!(features & (1 << 32) != 0, "VERSION_1 not offered");
        fe.set_features(features & !(1 << 33)).unwrap();
        let pf = fe.get_protocol_features().unwrap();
        assert!(pf.contains(VhostUserProtocolFeatures::CONFIG));
        fe.set_protocol_features(
            pf & (VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ),
        )
        .unwrap();
        let regions = [
            VhostUserMemoryRegionInfo {
                guest_phys_addr: 0,
                memory_size: RAM_SIZE,
                userspace_addr: VA_BASE,
                mmap_offset: 0,
                mmap_handle: g.ram.as_raw_fd(),
            },
            VhostUserMemoryRegionInfo {
                guest_phys_addr: BAR2_GPA,
                memory_size: SHM_SIZE,
                userspace_addr: VA_BASE + BAR2_GPA,
                mmap_offset: 0,
                mmap_handle: g.shm.as_raw_fd(),
            },
        ];
        fe.set_mem_table(&regions).unwrap();
        let kick = EventFd::new(0).unwrap();
        let call = EventFd::new(0).unwrap();
        fe.set_vring_num(0, QSIZE).unwrap();
        fe.set_vring_addr(
            0,
            &VringConfigData {
                queue_max_size: QSIZE,
                queue_size: QSIZE,
                flags: 0,
                desc_table_addr: VA_BASE + DESC_GPA,
                used_ring_addr: VA_BASE + USED_GPA,
                avail_ring_addr: VA_BASE + AVAIL_GPA,
                log_addr: None,
            },
        )
        .unwrap();
        fe.set_vring_base(0, 0).unwrap();
        fe.set_vring_call(0, &call).unwrap();
        fe.set_vring_kick(0, &kick).unwrap();
        fe.set_vring_enable(0, true).unwrap();
        BlkDriver {
            fe,
            kick,
            _call: call,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    /// Writes descriptors at the given indices and offers `head`; no kick.
    pub fn offer_raw(&mut self, g: &Guest, descs: &[(u16, RawDesc)], head: u16) {
        for (i, d) in descs {
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&d.addr.to_le_bytes());
            b[8..12].copy_from_slice(&d.len.to_le_bytes());
            b[12..14].copy_from_slice(&d.flags.to_le_bytes());
            b[14..16].copy_from_slice(&d.next.to_le_bytes());
            g.write(DESC_GPA + 16 * u64::from(*i), &b);
        }
        let slot = u64::from(self.avail_idx % QSIZE);
        g.write(AVAIL_GPA + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        g.write(AVAIL_GPA + 2, &self.avail_idx.to_le_bytes());
    }

    /// Writes a descriptor table (an indirect one, or part of the ring's).
    pub fn write_table(g: &Guest, base: u64, descs: &[(u16, RawDesc)]) {
        for (i, d) in descs {
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&d.addr.to_le_bytes());
            b[8..12].copy_from_slice(&d.len.to_le_bytes());
            b[12..14].copy_from_slice(&d.flags.to_le_bytes());
            b[14..16].copy_from_slice(&d.next.to_le_bytes());
            g.write(base + 16 * u64::from(*i), &b);
        }
    }

    /// Links `(addr, len, device_writes)` into a chain from index 0 on.
    pub fn link(chain: &[(u64, u32, bool)]) -> Vec<(u16, RawDesc)> {
        chain
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, w))| {
                let last = i + 1 == chain.len();
                let flags = if w { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
                let next = if last { 0 } else { i as u16 + 1 };
                (
                    i as u16,
                    RawDesc {
                        addr,
                        len,
                        flags,
                        next,
                    },
                )
            })
            .collect()
    }

    /// Offers `chain` through one indirect descriptor at INDIRECT_GPA.
    pub fn offer_indirect(&mut self, g: &Guest, chain: &[(u64, u32, bool)]) {
        Self::write_table(g, INDIRECT_GPA, &Self::link(chain));
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
        let descs: Vec<(u16, RawDesc)> = chain
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, w))| {
                let last = i + 1 == chain.len();
                let flags = if w { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
                let next = if last { 0 } else { i as u16 + 1 };
                (
                    i as u16,
                    RawDesc {
                        addr,
                        len,
                        flags,
                        next,
                    },
                )
            })
            .collect();
        self.offer_raw(g, &descs, 0);
    }

    pub fn kick(&self) {
        self.kick.write(1).unwrap();
    }

    pub fn used_idx(&self, g: &Guest) -> u16 {
        u16::from_le_bytes(g.read(USED_GPA + 2, 2).try_into().unwrap())
    }

    /// Waits for the next used element; returns (id, len).
    pub fn wait_used(&mut self, g: &Guest) -> (u32, u32) {
        let seen = self.used_seen;
        wait_for(|| (self.used_idx(g) != seen).then_some(()));
        let slot = u64::from(seen % QSIZE);
        let e = g.read(USED_GPA + 4 + 8 * slot, 8);
        self.used_seen = seen.wrapping_add(1);
        (
            u32::from_le_bytes(e[0..4].try_into().unwrap()),
            u32::from_le_bytes(e[4..8].try_into().unwrap()),
        )
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
