// SPDX-License-Identifier: GPL-2.0

//! The guest side of the MMIO mailbox transport (ivshmem-doorbell).
//!
//! The shared region is seen as `AtomicU64` words (the unsafe layer maps
//! it and builds the slice). A call fills the CPU's slot, publishes it with
//! a Release store of `req_seq`, rings the doorbell (the exit) and polls
//! `done_seq` with Acquire until it matches or the timeout expires.
//!
//! Everything read back is hypervisor-written and treated as hostile by
//! the callers (`hyp_abi::check`); this module only guarantees that a
//! misbehaving hypervisor cannot make a call hang forever or index out of
//! the region.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::abi::call::{Func, NR_ARGS, NR_RETS};
use super::abi::check::check_mailbox_header;
use super::abi::error::Error;
use super::abi::mailbox::{
    slot_offset, MailboxHeader, SLOT_ARGS_OFFSET, SLOT_DONE_SEQ_OFFSET, SLOT_FUNC_OFFSET,
    SLOT_REQ_SEQ_OFFSET, SLOT_RET_OFFSET, SLOT_STATUS_OFFSET,
};

/// What the transport needs from the platform.
pub trait Platform {
    /// Writes the doorbell register: the exit to the hypervisor.
    fn ring_doorbell(&self, value: u32);
    /// A monotonic clock in nanoseconds.
    fn now_ns(&self) -> u64;
    /// A pause in a polling loop.
    fn relax(&self);
    /// The current CPU (interrupts are disabled by the caller).
    fn cpu(&self) -> u32;
}

/// Transport failures, apart from what the status reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// The hypervisor did not complete the call in time.
    Timeout,
    /// The region is too small or malformed for the requested slot.
    BadRegion,
}

/// A raw call result: status and return values, unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawResult {
    /// The status word.
    pub status: i64,
    /// `r0..r2`.
    pub ret: [u64; NR_RETS],
}

/// Slots used at most; CPUs beyond share slots under a per-slot lock.
const MAX_USED_SLOTS: usize = 64;

/// The mailbox of one pviommu device.
pub struct Mailbox<'a, P: Platform> {
    region: &'a [AtomicU64],
    slots: u32,
    doorbell: u32,
    timeout_ns: u64,
    platform: P,
    /// Guest-private copies of each slot's last `req_seq`: the region's
    /// copy is hypervisor-writable.
    seqs: [AtomicU32; MAX_USED_SLOTS],
    /// Per-slot ownership, for CPUs that share a slot.
    locks: [AtomicU32; MAX_USED_SLOTS],
}

/// Why a region was declined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// Smaller than the header.
    TooSmall,
    /// Not a pviommu mailbox of this ABI major version (magic, version).
    NotPviommu(u32, u32),
    /// A header that disagrees with the region (size, slot count).
    Hostile,
}

/// Reads the header from the region's first 64 bytes.
pub fn read_header(region: &[AtomicU64]) -> Option<MailboxHeader> {
    let mut bytes = [0u8; 64];
    for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&region.get(i)?.load(Ordering::Acquire).to_le_bytes());
    }
    Some(MailboxHeader::from_le_bytes(&bytes))
}

impl<'a, P: Platform> Mailbox<'a, P> {
    /// Checks the region's header and builds the mailbox.
    pub fn new(region: &'a [AtomicU64], timeout_ns: u64, platform: P) -> Result<Self, RegionError> {
        let header = read_header(region).ok_or(RegionError::TooSmall)?;
        let slots = match check_mailbox_header(&header, region.len() as u64 * 8) {
            Ok(slots) => slots,
            Err(Error::Hyp(_)) => {
                return Err(RegionError::NotPviommu(header.magic, header.abi_version))
            }
            Err(_) => return Err(RegionError::Hostile),
        };
        Ok(Mailbox {
            region,
            slots: core::cmp::min(slots, MAX_USED_SLOTS as u32),
            doorbell: super::abi::mailbox::doorbell_value(
                header.hyp_peer_id as u16,
                header.doorbell_vector as u16,
            ),
            timeout_ns,
            platform,
            seqs: [const { AtomicU32::new(0) }; MAX_USED_SLOTS],
            locks: [const { AtomicU32::new(0) }; MAX_USED_SLOTS],
        })
    }

    /// Issues one call. The caller has interrupts disabled, so the slot of
    /// this CPU is not reused under it by an interrupt handler.
    pub fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
        let slot = self.platform.cpu() % self.slots;
        let lock = &self.locks[slot as usize % MAX_USED_SLOTS];
        while lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.platform.relax();
        }
        let result = self.call_locked(slot, func, args);
        lock.store(0, Ordering::Release);
        result
    }

    fn word(&self, slot: u32, offset: u64) -> Result<&AtomicU64, TransportError> {
        let index = (slot_offset(slot) + offset) / 8;
        self.region
            .get(index as usize)
            .ok_or(TransportError::BadRegion)
    }

    fn call_locked(
        &self,
        slot: u32,
        func: Func,
        args: [u64; NR_ARGS],
    ) -> Result<RawResult, TransportError> {
        let seq_mirror = &self.seqs[slot as usize % MAX_USED_SLOTS];
        let seq = seq_mirror.load(Ordering::Relaxed).wrapping_add(1);
        seq_mirror.store(seq, Ordering::Relaxed);

        // func and flags (zero) share one word.
        self.word(slot, SLOT_FUNC_OFFSET)?
            .store(u64::from(func as u32), Ordering::Relaxed);
        for (i, a) in args.iter().enumerate() {
            self.word(slot, SLOT_ARGS_OFFSET + 8 * i as u64)?
                .store(*a, Ordering::Relaxed);
        }
        // Release: the hypervisor that sees the new req_seq sees the call.
        self.word(slot, SLOT_REQ_SEQ_OFFSET)?
            .store(u64::from(seq), Ordering::Release);
        self.platform.ring_doorbell(self.doorbell);

        let done = self.word(slot, SLOT_DONE_SEQ_OFFSET)?;
        let start = self.platform.now_ns();
        // Acquire: the results written before done_seq are visible.
        while done.load(Ordering::Acquire) as u32 != seq {
            if self.platform.now_ns().wrapping_sub(start) > self.timeout_ns {
                return Err(TransportError::Timeout);
            }
            self.platform.relax();
        }
        let mut ret = [0u64; NR_RETS];
        for (i, r) in ret.iter_mut().enumerate() {
            *r = self
                .word(slot, SLOT_RET_OFFSET + 8 * i as u64)?
                .load(Ordering::Relaxed);
        }
        Ok(RawResult {
            status: self.word(slot, SLOT_STATUS_OFFSET)?.load(Ordering::Relaxed) as i64,
            ret,
        })
    }
}

impl<P: Platform> super::engine::Hypercalls for Mailbox<'_, P> {
    fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
        Mailbox::call(self, func, args)
    }

    fn relax(&self) {
        self.platform.relax();
    }
}
