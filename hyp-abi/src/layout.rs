// SPDX-License-Identifier: GPL-2.0-only

//! Granule, table encoding and ring layout constants.
//!
//! All multi-byte fields in guest memory are little-endian. Addresses are
//! guest-physical; a frame number (gfn) is `gpa >> PAGE_SHIFT`.

/// Log2 of the ABI granule: 4 KiB whatever the guest's own page size.
pub const PAGE_SHIFT: u32 = 12;
/// The ABI granule in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// Bits of a table entry that hold the permission.
pub const TABLE_PERM_MASK: u8 = 0x03;
/// Bits of a table entry that are reserved and must be zero.
pub const TABLE_RESERVED_MASK: u8 = 0xfc;

/// The access the host is granted to one guest page.
///
/// The encoding is the table entry's: bit 0 lets the host read the page
/// (DMA to a device), bit 1 lets it write the page (DMA from a device).
/// Write without read (`2`, since ABI 2.2) is valid only with a hypervisor
/// that reports `FEATURE_WRITE_ONLY`; any other treats it as no access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Perm {
    /// The host may not access the page.
    None = 0,
    /// The host may read the page.
    Read = 1,
    /// The host may write the page but not read it (`FEATURE_WRITE_ONLY`):
    /// a device that only writes a buffer cannot read what the page held.
    Write = 2,
    /// The host may read and write the page.
    ReadWrite = 3,
}

impl Perm {
    /// Returns the table-entry encoding of this permission.
    pub const fn bits(self) -> u8 {
        self as u8
    }

    /// Decodes a table entry; `None` for an invalid or reserved-bit entry.
    pub const fn from_entry(entry: u8) -> Option<Perm> {
        match entry {
            0 => Some(Perm::None),
            1 => Some(Perm::Read),
            2 => Some(Perm::Write),
            3 => Some(Perm::ReadWrite),
            _ => None,
        }
    }

    /// Decodes a table entry the way the hypervisor must: fail safe to `None`.
    pub const fn from_entry_or_none(entry: u8) -> Perm {
        match Perm::from_entry(entry) {
            Some(perm) => perm,
            None => Perm::None,
        }
    }

    /// Returns the least permission that grants both `self` and `other`.
    pub const fn union(self, other: Perm) -> Perm {
        Perm::from_entry_or_none(self.bits() | other.bits())
    }

    /// Returns whether `self` grants everything `need` asks for.
    pub const fn allows(self, need: Perm) -> bool {
        self.bits() & need.bits() == need.bits()
    }
}

/// Size of the ring header page; the records follow it.
pub const RING_HEADER_SIZE: u64 = PAGE_SIZE;
/// Offset of `producer: u64` in the ring header (guest-owned).
pub const RING_PRODUCER_OFFSET: u64 = 0;
/// Offset of `consumer: u64` in the ring header (hypervisor-owned).
pub const RING_CONSUMER_OFFSET: u64 = 64;
/// Size of one ring record.
pub const RING_RECORD_SIZE: u64 = 16;
/// Offset of `gfn: u64` in a ring record.
pub const RECORD_GFN_OFFSET: u64 = 0;
/// Offset of `nr_pages: u32` in a ring record.
pub const RECORD_NR_PAGES_OFFSET: u64 = 8;
/// Offset of `seq: u32` in a ring record.
pub const RECORD_SEQ_OFFSET: u64 = 12;
/// Smallest `ring_order` the ABI allows.
pub const RING_ORDER_MIN: u32 = 1;
/// Largest `ring_order` the ABI allows; a hypervisor may support less.
pub const RING_ORDER_MAX: u32 = 20;

/// Returns the bytes a ring of `1 << order` records occupies, header included.
pub const fn ring_bytes(order: u32) -> u64 {
    RING_HEADER_SIZE + (RING_RECORD_SIZE << order)
}

/// Returns the value a published record at `index` carries in `seq`.
pub const fn record_seq(index: u64) -> u32 {
    // Truncation is the protocol: the 32-bit sequence tells laps apart.
    (index.wrapping_add(1) & 0xffff_ffff) as u32
}

/// A ring record as the hypervisor reads it from guest memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RingRecord {
    /// First frame whose table entry changed.
    pub gfn: u64,
    /// Number of frames from `gfn` on; zero is malformed.
    pub nr_pages: u32,
    /// `record_seq(index)` once published.
    pub seq: u32,
}

impl RingRecord {
    /// Decodes a record from its 16 little-endian bytes.
    pub const fn from_le_bytes(b: &[u8; 16]) -> RingRecord {
        RingRecord {
            gfn: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            nr_pages: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            seq: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        }
    }

    /// Encodes a record as 16 little-endian bytes.
    pub fn to_le_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.gfn.to_le_bytes());
        b[8..12].copy_from_slice(&self.nr_pages.to_le_bytes());
        b[12..].copy_from_slice(&self.seq.to_le_bytes());
        b
    }
}

const _: () = {
    assert!(core::mem::size_of::<RingRecord>() == RING_RECORD_SIZE as usize);
    assert!(core::mem::offset_of!(RingRecord, gfn) == RECORD_GFN_OFFSET as usize);
    assert!(core::mem::offset_of!(RingRecord, nr_pages) == RECORD_NR_PAGES_OFFSET as usize);
    assert!(core::mem::offset_of!(RingRecord, seq) == RECORD_SEQ_OFFSET as usize);
    assert!(core::mem::size_of::<Perm>() == 1);
};
