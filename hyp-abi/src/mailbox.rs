// SPDX-License-Identifier: GPL-2.0-only

//! The MMIO mailbox transport used over QEMU's ivshmem-doorbell device.
//!
//! The shared region (BAR2, a power of two in size) starts with a 64-byte
//! header written by the hypervisor before the guest boots; call slots of
//! 128 bytes start at offset 4096. Ringing the doorbell (a 32-bit write of
//! `(peer << 16) | vector` at BAR0 offset 12) is the exit.

use super::call::{NR_ARGS, NR_RETS};

/// `magic` of the region header: the bytes "PIOM" read as a little-endian u32.
pub const MAILBOX_MAGIC: u32 = 0x4d4f_4950;
/// Size of the region header.
pub const MAILBOX_HEADER_SIZE: u64 = 64;
/// Offset of the first call slot in the region.
pub const MAILBOX_SLOTS_OFFSET: u64 = 4096;
/// Size of one call slot.
pub const MAILBOX_SLOT_SIZE: u64 = 128;
/// Most slots a region holds, whatever its size.
pub const MAILBOX_MAX_SLOTS: u32 = 1024;
/// Smallest region size.
pub const MAILBOX_MIN_REGION: u64 = 8192;
/// Offset of the doorbell register in ivshmem's BAR0.
pub const DOORBELL_OFFSET: u64 = 12;

/// Offset of `func` in a slot.
pub const SLOT_FUNC_OFFSET: u64 = 0;
/// Offset of `flags` in a slot.
pub const SLOT_FLAGS_OFFSET: u64 = 4;
/// Offset of `args[0]` in a slot.
pub const SLOT_ARGS_OFFSET: u64 = 8;
/// Offset of `req_seq` in a slot.
pub const SLOT_REQ_SEQ_OFFSET: u64 = 56;
/// Offset of `status` in a slot.
pub const SLOT_STATUS_OFFSET: u64 = 64;
/// Offset of `ret[0]` in a slot.
pub const SLOT_RET_OFFSET: u64 = 72;
/// Offset of `done_seq` in a slot.
pub const SLOT_DONE_SEQ_OFFSET: u64 = 96;

/// Returns the doorbell value that raises `vector` at ivshmem peer `peer`.
pub const fn doorbell_value(peer: u16, vector: u16) -> u32 {
    ((peer as u32) << 16) | vector as u32
}

/// Returns the number of call slots of a region of `region_size` bytes, or
/// `None` if the size is not a power of two of at least 8 KiB below 4 GiB.
pub const fn nr_slots(region_size: u64) -> Option<u32> {
    if !region_size.is_power_of_two()
        || region_size < MAILBOX_MIN_REGION
        || region_size > u32::MAX as u64
    {
        return None;
    }
    let n = (region_size - MAILBOX_SLOTS_OFFSET) / MAILBOX_SLOT_SIZE;
    if n > MAILBOX_MAX_SLOTS as u64 {
        Some(MAILBOX_MAX_SLOTS)
    } else {
        Some(n as u32)
    }
}

/// Returns the region offset of slot `slot`.
pub const fn slot_offset(slot: u32) -> u64 {
    MAILBOX_SLOTS_OFFSET + slot as u64 * MAILBOX_SLOT_SIZE
}

/// The region header, at offset 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MailboxHeader {
    /// `MAILBOX_MAGIC`.
    pub magic: u32,
    /// `ABI_VERSION` spoken by the hypervisor.
    pub abi_version: u32,
    /// Size of the whole region in bytes.
    pub region_size: u32,
    /// Number of call slots (`nr_slots(region_size)`).
    pub nr_slots: u32,
    /// Ivshmem peer id of the hypervisor: the guest rings this peer.
    pub hyp_peer_id: u32,
    /// Doorbell vector the hypervisor listens on.
    pub doorbell_vector: u32,
    /// Feature bits, as `VERSION` returns them.
    pub features: u64,
    /// Reserved, zero.
    pub reserved: [u64; 4],
}

/// One call slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MailboxSlot {
    /// Function number (`Func`), not the SMCCC ID.
    pub func: u32,
    /// Must be zero.
    pub flags: u32,
    /// Call arguments.
    pub args: [u64; NR_ARGS],
    /// Request sequence: the guest writes it last, with Release.
    pub req_seq: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Call status.
    pub status: i64,
    /// Call return values.
    pub ret: [u64; NR_RETS],
    /// Completion sequence: the hypervisor writes it last, with Release.
    pub done_seq: u32,
    /// Reserved, zero.
    pub reserved1: [u32; 7],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<MailboxHeader>() == MAILBOX_HEADER_SIZE as usize);
    assert!(offset_of!(MailboxHeader, magic) == 0);
    assert!(offset_of!(MailboxHeader, abi_version) == 4);
    assert!(offset_of!(MailboxHeader, region_size) == 8);
    assert!(offset_of!(MailboxHeader, nr_slots) == 12);
    assert!(offset_of!(MailboxHeader, hyp_peer_id) == 16);
    assert!(offset_of!(MailboxHeader, doorbell_vector) == 20);
    assert!(offset_of!(MailboxHeader, features) == 24);
    assert!(size_of::<MailboxSlot>() == MAILBOX_SLOT_SIZE as usize);
    assert!(offset_of!(MailboxSlot, func) == SLOT_FUNC_OFFSET as usize);
    assert!(offset_of!(MailboxSlot, flags) == SLOT_FLAGS_OFFSET as usize);
    assert!(offset_of!(MailboxSlot, args) == SLOT_ARGS_OFFSET as usize);
    assert!(offset_of!(MailboxSlot, req_seq) == SLOT_REQ_SEQ_OFFSET as usize);
    assert!(offset_of!(MailboxSlot, status) == SLOT_STATUS_OFFSET as usize);
    assert!(offset_of!(MailboxSlot, ret) == SLOT_RET_OFFSET as usize);
    assert!(offset_of!(MailboxSlot, done_seq) == SLOT_DONE_SEQ_OFFSET as usize);
};

/// Reads a little-endian u32 at `off`; 0 if out of bounds.
fn le32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Reads a little-endian u64 at `off`; 0 if out of bounds.
fn le64(b: &[u8], off: usize) -> u64 {
    let lo = u64::from(le32(b, off));
    let hi = u64::from(le32(b, off + 4));
    lo | (hi << 32)
}

/// Writes `v` little-endian at `off`, ignoring out-of-bounds writes.
fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + v.len()) {
        dst.copy_from_slice(v);
    }
}

impl MailboxHeader {
    /// Decodes a header from its little-endian bytes.
    pub fn from_le_bytes(b: &[u8; 64]) -> MailboxHeader {
        MailboxHeader {
            magic: le32(b, 0),
            abi_version: le32(b, 4),
            region_size: le32(b, 8),
            nr_slots: le32(b, 12),
            hyp_peer_id: le32(b, 16),
            doorbell_vector: le32(b, 20),
            features: le64(b, 24),
            reserved: [le64(b, 32), le64(b, 40), le64(b, 48), le64(b, 56)],
        }
    }

    /// Encodes the header as little-endian bytes.
    pub fn to_le_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        put(&mut b, 0, &self.magic.to_le_bytes());
        put(&mut b, 4, &self.abi_version.to_le_bytes());
        put(&mut b, 8, &self.region_size.to_le_bytes());
        put(&mut b, 12, &self.nr_slots.to_le_bytes());
        put(&mut b, 16, &self.hyp_peer_id.to_le_bytes());
        put(&mut b, 20, &self.doorbell_vector.to_le_bytes());
        put(&mut b, 24, &self.features.to_le_bytes());
        for (i, r) in self.reserved.iter().enumerate() {
            put(&mut b, 32 + 8 * i, &r.to_le_bytes());
        }
        b
    }
}

impl MailboxSlot {
    /// Decodes a slot from its little-endian bytes.
    pub fn from_le_bytes(b: &[u8; 128]) -> MailboxSlot {
        let mut slot = MailboxSlot {
            func: le32(b, 0),
            flags: le32(b, 4),
            req_seq: le32(b, 56),
            reserved0: le32(b, 60),
            status: le64(b, 64) as i64,
            done_seq: le32(b, 96),
            ..MailboxSlot::default()
        };
        for (i, a) in slot.args.iter_mut().enumerate() {
            *a = le64(b, 8 + 8 * i);
        }
        for (i, r) in slot.ret.iter_mut().enumerate() {
            *r = le64(b, 72 + 8 * i);
        }
        for (i, r) in slot.reserved1.iter_mut().enumerate() {
            *r = le32(b, 100 + 4 * i);
        }
        slot
    }

    /// Encodes the slot as little-endian bytes.
    pub fn to_le_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        put(&mut b, 0, &self.func.to_le_bytes());
        put(&mut b, 4, &self.flags.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            put(&mut b, 8 + 8 * i, &a.to_le_bytes());
        }
        put(&mut b, 56, &self.req_seq.to_le_bytes());
        put(&mut b, 60, &self.reserved0.to_le_bytes());
        put(&mut b, 64, &self.status.to_le_bytes());
        for (i, r) in self.ret.iter().enumerate() {
            put(&mut b, 72 + 8 * i, &r.to_le_bytes());
        }
        put(&mut b, 96, &self.done_seq.to_le_bytes());
        for (i, r) in self.reserved1.iter().enumerate() {
            put(&mut b, 100 + 4 * i, &r.to_le_bytes());
        }
        b
    }
}
