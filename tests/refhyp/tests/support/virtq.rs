// SPDX-License-Identifier: GPL-2.0-only
//! A scripted virtio driver for any of the backends: split virtqueues in
//! guest RAM, set up over vhost-user the way QEMU does it.
//!
//! Queue `q` lives at `QUEUES_GPA + q * QUEUE_STRIDE`: descriptor table,
//! then available ring one page up, then used ring one more page up.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::Path;

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

use super::{start_shared, wait_for, Guest, Refhyp, PAGE, PERM_READ, PERM_RW, RAM_SIZE, SHM_SIZE};

pub const QUEUES_GPA: u64 = 0x20_0000;
pub const QUEUE_STRIDE: u64 = 0x4000;
/// Where the test puts the ivshmem region in the memory table, as QEMU
/// announces BAR2 to vhost-user backends.
pub const BAR2_GPA: u64 = 0xfe00_0000;
/// A made-up frontend virtual address of gpa 0: the backend translates
/// vring addresses through the memory table's `userspace_addr`.
const VA_BASE: u64 = 0x7f00_0000_0000;

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;
pub const F_ACCESS_PLATFORM: u64 = 1 << 33;
pub const F_VERSION_1: u64 = 1 << 32;

/// One descriptor as the driver writes it.
#[derive(Clone, Copy, Debug)]
pub struct RawDesc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
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

/// Links `(addr, len, device_writes)` into a chain at indices
/// `first, first + 1, ...` (modulo `size`).
pub fn link(chain: &[(u64, u32, bool)], first: u16, size: u16) -> Vec<(u16, RawDesc)> {
    let index = |i: usize| ((usize::from(first) + i) % usize::from(size)) as u16;
    chain
        .iter()
        .enumerate()
        .map(|(i, &(addr, len, w))| {
            let last = i + 1 == chain.len();
            let flags = if w { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            let next = if last { 0 } else { index(i + 1) };
            (
                index(i),
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

/// One split virtqueue of the scripted driver.
pub struct Vq {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub size: u16,
    kick: EventFd,
    _call: EventFd,
    avail_idx: u16,
    used_seen: u16,
    /// The next free descriptor index (chains are laid out round-robin).
    next_desc: u16,
    /// Device-writable buffers posted with `post`, by head index.
    posted: HashMap<u16, u64>,
}

impl Vq {
    /// Writes descriptors at the given indices and offers `head`; no kick.
    pub fn offer_raw(&mut self, g: &Guest, descs: &[(u16, RawDesc)], head: u16) {
        write_table(g, self.desc, descs);
        let slot = u64::from(self.avail_idx % self.size);
        g.write(self.avail + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        g.write(self.avail + 2, &self.avail_idx.to_le_bytes());
    }

    /// Offers a chain of `(addr, len, device_writes)` on free descriptors;
    /// returns its head index.
    pub fn offer(&mut self, g: &Guest, chain: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        let descs = link(chain, head, self.size);
        self.next_desc = ((usize::from(head) + chain.len()) % usize::from(self.size)) as u16;
        self.offer_raw(g, &descs, head);
        head
    }

    pub fn kick(&self) {
        self.kick.write(1).unwrap();
    }

    pub fn used_idx(&self, g: &Guest) -> u16 {
        u16::from_le_bytes(g.read(self.used + 2, 2).try_into().unwrap())
    }

    /// The next used element, if the device has put one: (id, len).
    pub fn try_used(&mut self, g: &Guest) -> Option<(u32, u32)> {
        let seen = self.used_seen;
        if self.used_idx(g) == seen {
            return None;
        }
        let slot = u64::from(seen % self.size);
        let e = g.read(self.used + 4 + 8 * slot, 8);
        self.used_seen = seen.wrapping_add(1);
        Some((
            u32::from_le_bytes(e[0..4].try_into().unwrap()),
            u32::from_le_bytes(e[4..8].try_into().unwrap()),
        ))
    }

    /// Waits for the next used element; returns (id, len).
    pub fn wait_used(&mut self, g: &Guest) -> (u32, u32) {
        wait_for(|| self.try_used(g))
    }

    /// Posts one device-writable buffer (a receive queue's) and kicks.
    pub fn post(&mut self, g: &Guest, addr: u64, len: u32) {
        let head = self.offer(g, &[(addr, len, true)]);
        self.posted.insert(head, addr);
        self.kick();
    }

    /// Waits for the next posted buffer the device used: (address, length).
    pub fn wait_buffer(&mut self, g: &Guest) -> (u64, u32) {
        let (id, len) = self.wait_used(g);
        let head = u16::try_from(id).expect("a head index");
        (self.posted.remove(&head).expect("a posted buffer"), len)
    }

    /// Shares the queue's three pages read-write.
    pub fn share(&self, g: &mut Guest) {
        g.share_range(self.desc, 3 * 4096, PERM_RW);
    }
}

/// A connected frontend and its queues.
pub struct VirtioDriver {
    pub fe: Frontend,
    pub queues: Vec<Vq>,
}

impl VirtioDriver {
    /// Negotiates like QEMU with `iommu_platform=on` (ACCESS_PLATFORM
    /// offered by the backend, then cleared, as QEMU has no vIOMMU to
    /// translate for it) and sets up `nqueues` queues of `size` entries.
    pub fn connect(path: &Path, g: &Guest, nqueues: u16, size: u16) -> VirtioDriver {
        let mut fe = Frontend::connect(path, u64::from(nqueues)).unwrap();
        fe.set_owner().unwrap();
        let features = fe.get_features().unwrap();
        assert!(
            features & F_ACCESS_PLATFORM != 0,
            "ACCESS_PLATFORM not offered"
        );
        assert!(features & F_VERSION_1 != 0, "VERSION_1 not offered");
        fe.set_features(features & !F_ACCESS_PLATFORM).unwrap();
        let pf = fe.get_protocol_features().unwrap();
        assert!(pf.contains(
            VhostUserProtocolFeatures::REPLY_ACK | VhostUserProtocolFeatures::BACKEND_REQ
        ));
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
        let mut queues = Vec::new();
        for q in 0..nqueues {
            let base = QUEUES_GPA + u64::from(q) * QUEUE_STRIDE;
            let vq = Vq {
                desc: base,
                avail: base + 0x1000,
                used: base + 0x2000,
                size,
                kick: EventFd::new(0).unwrap(),
                _call: EventFd::new(0).unwrap(),
                avail_idx: 0,
                used_seen: 0,
                next_desc: 0,
                posted: HashMap::new(),
            };
            let i = usize::from(q);
            fe.set_vring_num(i, size).unwrap();
            fe.set_vring_addr(
                i,
                &VringConfigData {
                    queue_max_size: size,
                    queue_size: size,
                    flags: 0,
                    desc_table_addr: VA_BASE + vq.desc,
                    used_ring_addr: VA_BASE + vq.used,
                    avail_ring_addr: VA_BASE + vq.avail,
                    log_addr: None,
                },
            )
            .unwrap();
            fe.set_vring_base(i, 0).unwrap();
            fe.set_vring_call(i, &vq._call).unwrap();
            fe.set_vring_kick(i, &vq.kick).unwrap();
            fe.set_vring_enable(i, true).unwrap();
            queues.push(vq);
        }
        VirtioDriver { fe, queues }
    }

    /// Shares every queue's rings read-write.
    pub fn share_rings(g: &mut Guest, nqueues: u16) {
        g.share_range(QUEUES_GPA, u64::from(nqueues) * QUEUE_STRIDE, PERM_RW);
    }
}

/// Where the device tests put their buffers: transmit buffers from here
/// on, a private page and the receive buffers above them.
pub const BUF_GPA: u64 = 0x50_0000;
/// A page the device tests never share.
pub const PRIVATE_GPA: u64 = BUF_GPA + 0x8000;
/// `RX_BUFS` receive buffers, a page each, posted in turn by `post_rx`.
pub const RX_BUFS_GPA: u64 = BUF_GPA + 0x1_0000;
pub const RX_BUFS: u64 = 16;
/// The receive queue of the devices that have one (net, vsock).
const RXQ: usize = 0;

/// A device under test: the program, the guest and a driver connected to
/// the device's backend. The tests of each device add their driver's
/// own steps in an `impl Dev` of their own.
pub struct Dev {
    pub h: Refhyp,
    pub g: Guest,
    pub d: VirtioDriver,
    /// Receive buffers posted with `post_rx`.
    rx_posted: u64,
}

impl Dev {
    /// Starts the program with a guest after INIT and `share` (see
    /// `start_shared`) and connects to the backend at `socket(&refhyp)`
    /// with `nqueues` queues of `size` entries.
    pub fn start(
        tag: &str,
        socket: impl Fn(&Refhyp) -> &Path,
        nqueues: u16,
        size: u16,
        share: impl FnOnce(&mut Guest),
    ) -> Dev {
        let (h, g) = start_shared(tag, &[], share);
        let d = VirtioDriver::connect(socket(&h), &g, nqueues, size);
        Dev {
            h,
            g,
            d,
            rx_posted: 0,
        }
    }

    /// Shares the rings of `nqueues` queues, two transmit pages from
    /// `BUF_GPA` read-only and the receive buffers read-write.
    pub fn share_buffers(g: &mut Guest, nqueues: u16) {
        VirtioDriver::share_rings(g, nqueues);
        g.share_range(BUF_GPA, 2 * PAGE, PERM_READ);
        g.share_range(RX_BUFS_GPA, RX_BUFS * PAGE, PERM_RW);
    }

    /// Offers `chain` on queue `q`, kicks and waits for it to be used;
    /// returns the used length.
    pub fn request(&mut self, q: usize, chain: &[(u64, u32, bool)]) -> u32 {
        let q = &mut self.d.queues[q];
        q.offer(&self.g, chain);
        q.kick();
        q.wait_used(&self.g).1
    }

    /// Posts the next `count` receive buffers, `len` bytes each, on the
    /// receive queue.
    pub fn post_rx(&mut self, count: u64, len: u32) {
        for _ in 0..count {
            let addr = RX_BUFS_GPA + (self.rx_posted % RX_BUFS) * PAGE;
            self.rx_posted += 1;
            self.d.queues[RXQ].post(&self.g, addr, len);
        }
    }
}
