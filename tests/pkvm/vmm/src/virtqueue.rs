// SPDX-License-Identifier: GPL-2.0
//! A split virtqueue walked through [`GuestAccess`].
//!
//! `virtio-queue`'s own `Queue` reaches the rings through vm-memory's
//! `VolatileSlice`s, i.e. by dereferencing host pointers into guest RAM,
//! which under pKVM would turn a private page into a SIGSEGV of the VMM.
//! So the ring walk is done here, with `virtio-queue`'s descriptor layout
//! and `virtio-bindings`' flag values, and every load and store of the
//! rings goes through the fallible accessor.

use crate::guest_access::{AccessError, GuestAccess};
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor;
use vm_memory::ByteValued;

/// One buffer of a descriptor chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    /// Device-writable (the driver reads it back).
    pub write: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    Access(AccessError),
    /// The driver published an index outside the ring.
    BadIndex(u16),
    /// A chain loops or is longer than the ring.
    ChainTooLong,
    /// Indirect descriptors were not offered.
    Indirect,
    /// The queue was not set up by the driver.
    NotReady,
}

impl From<AccessError> for QueueError {
    fn from(e: AccessError) -> Self {
        QueueError::Access(e)
    }
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::Access(e) => write!(f, "{e}"),
            QueueError::BadIndex(i) => write!(f, "descriptor index {i} outside the ring"),
            QueueError::ChainTooLong => write!(f, "descriptor chain loops or exceeds the ring"),
            QueueError::Indirect => write!(f, "indirect descriptor (not negotiated)"),
            QueueError::NotReady => write!(f, "queue not ready"),
        }
    }
}

/// The driver-programmed state of one split queue.
#[derive(Debug, Clone, Default)]
pub struct SplitQueue {
    pub size: u16,
    pub ready: bool,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// Next avail ring slot the device will consume.
    pub next_avail: u16,
    /// Next used ring slot the device will fill.
    pub next_used: u16,
}

impl SplitQueue {
    /// The guest-physical ranges the rings occupy (descriptor table,
    /// available ring, used ring), for the adversary to leave alone.
    pub fn ring_ranges(&self) -> [(u64, u64); 3] {
        let n = u64::from(self.size);
        [
            (self.desc, 16 * n),
            (self.avail, 6 + 2 * n),
            (self.used, 6 + 8 * n),
        ]
    }

    /// The head of the next available chain, if the driver published one.
    pub fn pop(&mut self, mem: &dyn GuestAccess) -> Result<Option<u16>, QueueError> {
        if !self.ready || self.size == 0 {
            return Err(QueueError::NotReady);
        }
        let avail_idx = mem.read_u16(self.avail + 2)?;
        if avail_idx == self.next_avail {
            return Ok(None);
        }
        let slot = u64::from(self.next_avail % self.size);
        let head = mem.read_u16(self.avail + 4 + 2 * slot)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        if head >= self.size {
            return Err(QueueError::BadIndex(head));
        }
        Ok(Some(head))
    }

    /// The buffers of the chain starting at `head`.
    pub fn chain(&self, mem: &dyn GuestAccess, head: u16) -> Result<Vec<Buf>, QueueError> {
        let mut bufs = Vec::new();
        let mut idx = head;
        loop {
            if idx >= self.size {
                return Err(QueueError::BadIndex(idx));
            }
            if bufs.len() >= usize::from(self.size) {
                return Err(QueueError::ChainTooLong);
            }
            let mut d = Descriptor::default();
            mem.read(self.desc + 16 * u64::from(idx), d.as_mut_slice())?;
            let flags = u32::from(d.flags());
            if flags & VRING_DESC_F_INDIRECT != 0 {
                return Err(QueueError::Indirect);
            }
            bufs.push(Buf {
                addr: d.addr().0,
                len: d.len(),
                write: flags & VRING_DESC_F_WRITE != 0,
            });
            if flags & VRING_DESC_F_NEXT == 0 {
                return Ok(bufs);
            }
            idx = d.next();
        }
    }

    /// Returns chain `head` to the driver with `len` bytes written.
    pub fn push_used(
        &mut self,
        mem: &dyn GuestAccess,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        let slot = u64::from(self.next_used % self.size);
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(self.used + 4 + 8 * slot, &elem)?;
        self.next_used = self.next_used.wrapping_add(1);
        // The element is visible before the index: the pipe's copy is
        // ordered (two syscalls, with the kernel's barriers in between).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        mem.write_u16(self.used + 2, self.next_used)?;
        Ok(())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Guest RAM as a vector, with optional "private" pages that fault.
    pub struct FakeMem {
        pub base: u64,
        pub bytes: RefCell<Vec<u8>>,
        pub private: Vec<u64>,
    }

    impl FakeMem {
        pub fn new(base: u64, len: usize) -> Self {
            FakeMem {
                base,
                bytes: RefCell::new(vec![0; len]),
                private: Vec::new(),
            }
        }
        fn check(&self, gpa: u64, len: usize) -> Result<usize, AccessError> {
            let off = gpa.checked_sub(self.base).ok_or(AccessError::OutOfRange {
                gpa,
                len: len as u64,
            })?;
            if off as usize + len > self.bytes.borrow().len() {
                return Err(AccessError::OutOfRange {
                    gpa,
                    len: len as u64,
                });
            }
            for p in &self.private {
                if gpa < p + 4096 && gpa + len as u64 > *p {
                    return Err(AccessError::Fault {
                        gpa: *p.max(&gpa),
                        errno: libc::EFAULT,
                    });
                }
            }
            Ok(off as usize)
        }
    }

    impl GuestAccess for FakeMem {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), AccessError> {
            let off = self.check(gpa, buf.len())?;
            buf.copy_from_slice(&self.bytes.borrow()[off..off + buf.len()]);
            Ok(())
        }
        fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), AccessError> {
            let off = self.check(gpa, buf.len())?;
            self.bytes.borrow_mut()[off..off + buf.len()].copy_from_slice(buf);
            Ok(())
        }
    }

    /// A driver's side of a queue in FakeMem.
    pub struct Driver {
        pub q: SplitQueue,
        pub free: u16,
        pub avail_idx: u16,
    }

    impl Driver {
        pub fn new(mem: &FakeMem, size: u16) -> Self {
            let base = mem.base;
            let q = SplitQueue {
                size,
                ready: true,
                desc: base,
                avail: base + 0x1000,
                used: base + 0x2000,
                ..Default::default()
            };
            Driver {
                q,
                free: 0,
                avail_idx: 0,
            }
        }
        /// Publishes a chain of (addr, len, write) buffers; returns the head.
        pub fn add(&mut self, mem: &FakeMem, bufs: &[(u64, u32, bool)]) -> u16 {
            let head = self.free;
            for (i, &(addr, len, write)) in bufs.iter().enumerate() {
                let idx = self.free;
                let mut flags = if write { VRING_DESC_F_WRITE as u16 } else { 0 };
                let next = idx + 1;
                if i + 1 < bufs.len() {
                    flags |= VRING_DESC_F_NEXT as u16;
                }
                let d = Descriptor::new(addr, len, flags, next % self.q.size);
                mem.write(self.q.desc + 16 * u64::from(idx), d.as_slice())
                    .unwrap();
                self.free = (self.free + 1) % self.q.size;
            }
            let slot = u64::from(self.avail_idx % self.q.size);
            mem.write_u16(self.q.avail + 4 + 2 * slot, head).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            mem.write_u16(self.q.avail + 2, self.avail_idx).unwrap();
            head
        }
        pub fn used(&self, mem: &FakeMem, i: u16) -> (u32, u32) {
            let slot = u64::from(i % self.q.size);
            (
                mem.read_u32(self.q.used + 4 + 8 * slot).unwrap(),
                mem.read_u32(self.q.used + 8 + 8 * slot).unwrap(),
            )
        }
    }

    #[test]
    fn pops_chains_and_pushes_used() {
        let mem = FakeMem::new(0x4000_0000, 0x10000);
        let mut drv = Driver::new(&mem, 8);
        let mut q = drv.q.clone();
        assert_eq!(q.pop(&mem).unwrap(), None);
        let h = drv.add(
            &mem,
            &[
                (0x4000_3000, 16, false),
                (0x4000_4000, 512, true),
                (0x4000_5000, 1, true),
            ],
        );
        assert_eq!(q.pop(&mem).unwrap(), Some(h));
        assert_eq!(q.pop(&mem).unwrap(), None);
        let c = q.chain(&mem, h).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[0],
            Buf {
                addr: 0x4000_3000,
                len: 16,
                write: false
            }
        );
        assert!(c[1].write && c[2].write);
        q.push_used(&mem, h, 513).unwrap();
        assert_eq!(mem.read_u16(drv.q.used + 2).unwrap(), 1);
        assert_eq!(drv.used(&mem, 0), (u32::from(h), 513));
    }

    #[test]
    fn rejects_loops_bad_indices_and_private_rings() {
        let mem = FakeMem::new(0, 0x10000);
        let drv = Driver::new(&mem, 4);
        let q = drv.q.clone();
        // Descriptor 0 -> 1 -> 0 ...
        mem.write(
            0,
            Descriptor::new(0x8000, 1, VRING_DESC_F_NEXT as u16, 1).as_slice(),
        )
        .unwrap();
        mem.write(
            16,
            Descriptor::new(0x8000, 1, VRING_DESC_F_NEXT as u16, 0).as_slice(),
        )
        .unwrap();
        assert_eq!(q.chain(&mem, 0), Err(QueueError::ChainTooLong));
        mem.write(
            16,
            Descriptor::new(0x8000, 1, VRING_DESC_F_NEXT as u16, 9).as_slice(),
        )
        .unwrap();
        assert_eq!(q.chain(&mem, 0), Err(QueueError::BadIndex(9)));
        mem.write(
            0,
            Descriptor::new(0x8000, 1, VRING_DESC_F_INDIRECT as u16, 0).as_slice(),
        )
        .unwrap();
        assert_eq!(q.chain(&mem, 0), Err(QueueError::Indirect));

        let mut mem2 = FakeMem::new(0, 0x10000);
        mem2.private.push(0x1000);
        let mut q2 = Driver::new(&mem2, 4).q;
        assert!(matches!(
            q2.pop(&mem2),
            Err(QueueError::Access(AccessError::Fault { .. }))
        ));
        let mut nq = SplitQueue::default();
        assert_eq!(nq.pop(&mem2), Err(QueueError::NotReady));
    }
}
