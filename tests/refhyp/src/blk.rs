// SPDX-License-Identifier: GPL-2.0-only
//! vhost-user-blk backend on the rust-vmm crates, enforcing the host view.
//!
//! The vhost-user protocol, vring set-up and queue walking come from
//! `vhost-user-backend` and `virtio-queue`, the queue service from
//! `device`; every guest memory access they and this file make goes
//! through `CheckedMemory`, indirect descriptor tables included.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::VringMutex;
use virtio_bindings::virtio_blk::*;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

use crate::checked_memory::CheckedMemory;
use crate::counters::DeviceCounters;
use crate::device::{self, Chain, Completion, Device, DeviceCore, Gm};
use crate::host::Host;

const SECTOR_SHIFT: u32 = 9;
const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
/// Data descriptors per request (`seg_max`), offered in the config space.
pub const SEG_MAX: u32 = 254;
/// Largest data descriptor (`size_max`), offered in the config space.
pub const SIZE_MAX: u32 = 1 << 20;
/// A chain longer than header + `SEG_MAX` + status is malformed.
const MAX_DESCS: usize = SEG_MAX as usize + 2;
/// Size of `struct virtio_blk_outhdr`: type, reserved, sector.
const OUTHDR_SIZE: u32 = 16;
/// The serial `VIRTIO_BLK_T_GET_ID` returns.
const DEVICE_ID: &[u8] = b"pviommu-refhyp";

pub struct BlkDevice {
    core: DeviceCore,
    disk: File,
    capacity_sectors: u64,
}

impl BlkDevice {
    pub fn new(host: Arc<Host>, disk: File, queues: u16) -> io::Result<BlkDevice> {
        let len = disk.metadata()?.len();
        Ok(BlkDevice {
            core: DeviceCore::new(host, "blk", false, queues.into()),
            disk,
            capacity_sectors: len >> SECTOR_SHIFT,
        })
    }

    /// The disk's counters are the host's `device` section.
    fn count(&self, f: impl FnOnce(&mut DeviceCounters)) {
        self.core.count_host(|g| f(&mut g.dev));
    }

    /// `struct virtio_blk_config`, as far as the offered features use it.
    fn config_space(&self) -> Vec<u8> {
        let mut c = vec![0u8; std::mem::size_of::<virtio_blk_config>()];
        c[0..8].copy_from_slice(&self.capacity_sectors.to_le_bytes());
        c[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        c[34..36].copy_from_slice(&(self.core.num_queues() as u16).to_le_bytes());
        c
    }

    /// Runs one request; the status byte is the last byte of the chain.
    /// When not even the status byte can be written the request is left
    /// uncompleted rather than let the guest read a stale status.
    fn process(&self, chain: Chain<'_>, mem: &CheckedMemory) -> Completion {
        let descs: Vec<Descriptor> = chain.take(MAX_DESCS + 1).collect();
        let dev = |f: fn(&mut DeviceCounters)| self.count(f);
        let Some(last) = descs.last() else {
            // Even the head descriptor was unreadable: nothing to answer into.
            dev(|d| d.malformed_chains += 1);
            dev(|d| d.requests_dropped += 1);
            return Completion::Dropped;
        };
        // A loop or an over-long chain still has NEXT set where we stopped.
        let malformed = descs.len() > MAX_DESCS
            || last.has_next()
            || descs.len() < 2
            || !last.is_write_only()
            || last.len() == 0;
        let n = descs.len() as u64;
        self.count(|d| d.descriptors += n);
        let status = if malformed {
            dev(|d| d.malformed_chains += 1);
            VIRTIO_BLK_S_IOERR as u8
        } else {
            self.count(|d| d.data_descriptors += n - 2);
            self.execute(&descs[0], &descs[1..descs.len() - 1], mem)
        };
        match u32::from(status) {
            VIRTIO_BLK_S_OK => dev(|d| d.requests_ok += 1),
            VIRTIO_BLK_S_UNSUPP => dev(|d| d.requests_unsupported += 1),
            _ => dev(|d| d.requests_ioerr += 1),
        }
        if !last.is_write_only() || last.len() == 0 {
            dev(|d| d.requests_dropped += 1);
            return Completion::Dropped;
        }
        let status_addr = last.addr().0.checked_add(u64::from(last.len()) - 1);
        let written = status_addr.is_some_and(|a| mem.write_obj(status, GuestAddress(a)).is_ok());
        if !written {
            dev(|d| d.requests_dropped += 1);
            return Completion::Dropped;
        }
        let written = if status == VIRTIO_BLK_S_OK as u8 {
            self.bytes_to_guest(&descs)
        } else {
            0
        };
        Completion::Used(written + 1)
    }

    /// Bytes a successful request put into device-writable data buffers.
    fn bytes_to_guest(&self, descs: &[Descriptor]) -> u32 {
        descs[1..descs.len() - 1]
            .iter()
            .filter(|d| d.is_write_only())
            .map(|d| d.len())
            .fold(0u32, u32::saturating_add)
    }

    fn execute(&self, hdr: &Descriptor, data: &[Descriptor], mem: &CheckedMemory) -> u8 {
        if hdr.is_write_only() || hdr.len() != OUTHDR_SIZE {
            self.count(|d| d.malformed_chains += 1);
            return VIRTIO_BLK_S_IOERR as u8;
        }
        let mut raw = [0u8; OUTHDR_SIZE as usize];
        if mem.read_slice(&mut raw, hdr.addr()).is_err() {
            return VIRTIO_BLK_S_IOERR as u8;
        }
        let req_type = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let sector = u64::from_le_bytes([
            raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15],
        ]);
        let ok = match req_type {
            VIRTIO_BLK_T_IN => self.read_disk(sector, data, mem),
            VIRTIO_BLK_T_OUT => self.write_disk(sector, data, mem),
            VIRTIO_BLK_T_FLUSH => self.disk.sync_data().is_ok(),
            VIRTIO_BLK_T_GET_ID => self.get_id(data, mem),
            _ => return VIRTIO_BLK_S_UNSUPP as u8,
        };
        if ok {
            VIRTIO_BLK_S_OK as u8
        } else {
            VIRTIO_BLK_S_IOERR as u8
        }
    }

    /// Checks the data descriptors' direction and that the request stays
    /// on the disk; returns the disk byte offset.
    fn data_extent(&self, sector: u64, data: &[Descriptor], device_writes: bool) -> Option<u64> {
        let mut total = 0u64;
        for d in data {
            if d.is_write_only() != device_writes || d.len() > SIZE_MAX {
                self.count(|d| d.malformed_chains += 1);
                return None;
            }
            total += u64::from(d.len());
        }
        let end = sector.checked_add(total >> SECTOR_SHIFT)?;
        if total % SECTOR_SIZE != 0 || end > self.capacity_sectors {
            return None;
        }
        Some(sector << SECTOR_SHIFT)
    }

    /// `VIRTIO_BLK_T_IN`: disk to guest, one descriptor at a time.
    fn read_disk(&self, sector: u64, data: &[Descriptor], mem: &CheckedMemory) -> bool {
        let Some(mut off) = self.data_extent(sector, data, true) else {
            return false;
        };
        let mut buf = Vec::new();
        for d in data {
            buf.resize(d.len() as usize, 0);
            if self.disk.read_exact_at(&mut buf, off).is_err()
                || mem.write_slice(&buf, d.addr()).is_err()
            {
                return false;
            }
            self.count(|c| c.bytes_written += u64::from(d.len()));
            off += u64::from(d.len());
        }
        true
    }

    /// `VIRTIO_BLK_T_OUT`: the whole payload is fetched (and so checked)
    /// before anything reaches the disk, so a denied buffer writes nothing.
    fn write_disk(&self, sector: u64, data: &[Descriptor], mem: &CheckedMemory) -> bool {
        let Some(off) = self.data_extent(sector, data, false) else {
            return false;
        };
        let mut buf = Vec::new();
        for d in data {
            let start = buf.len();
            buf.resize(start + d.len() as usize, 0);
            if mem.read_slice(&mut buf[start..], d.addr()).is_err() {
                return false;
            }
        }
        self.count(|c| c.bytes_read += buf.len() as u64);
        self.disk.write_all_at(&buf, off).is_ok()
    }

    fn get_id(&self, data: &[Descriptor], mem: &CheckedMemory) -> bool {
        let Some(d) = data.first() else {
            return false;
        };
        if !d.is_write_only() {
            return false;
        }
        let n = DEVICE_ID.len().min(d.len() as usize);
        mem.write_slice(&DEVICE_ID[..n], d.addr()).is_ok()
    }
}

impl Device for BlkDevice {
    const MAX_QUEUE_SIZE: usize = 1024;

    fn core(&self) -> &DeviceCore {
        &self.core
    }

    fn extra_features(&self) -> u64 {
        // INDIRECT_DESC (a base feature) matters here: Linux sends up to
        // `seg_max` segments in one request, more than QEMU's default
        // 128-entry queue holds without indirect tables (virtqueue_add()
        // warns and the request hangs).
        (1 << VIRTIO_BLK_F_SIZE_MAX)
            | (1 << VIRTIO_BLK_F_SEG_MAX)
            | (1 << VIRTIO_BLK_F_BLK_SIZE)
            | (1 << VIRTIO_BLK_F_FLUSH)
            | (1 << VIRTIO_BLK_F_MQ)
    }

    fn extra_protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        device::config_slice(&self.config_space(), offset, size)
    }

    fn serve(&self, index: usize, vrings: &[VringMutex<Gm>]) {
        self.core.serve_requests(vrings, index, |chain, mem| {
            self.count(|c| c.requests += 1);
            self.process(chain, mem)
        });
    }
}
