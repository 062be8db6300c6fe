// SPDX-License-Identifier: GPL-2.0-only

//! Per-page state of the hypervisor: one byte per guest frame.
//!
//! Packing everything into one byte keeps the drain loop at one load and
//! one store per page.

/// Permission the last applied table entry grants (two bits).
pub(crate) const TABLE_SHIFT: u8 = 0;
/// Permission granted by a direct `SHARE` (two bits).
pub(crate) const DIRECT_SHIFT: u8 = 2;
/// The frame is guest RAM.
pub(crate) const RAM: u8 = 1 << 4;
/// The frame holds the table or the ring: it can never be shared.
pub(crate) const FORBIDDEN: u8 = 1 << 5;
/// Both permission fields.
pub(crate) const PERM_BITS: u8 = 0x0f;

/// Returns the host permission bits of a page: the union of both sources.
#[inline]
pub(crate) const fn host_bits(page: u8) -> u8 {
    ((page >> TABLE_SHIFT) | (page >> DIRECT_SHIFT)) & 0x3
}

/// Returns whether a page may be shared at all.
#[inline]
pub(crate) const fn shareable(page: u8) -> bool {
    page & (RAM | FORBIDDEN) == RAM
}
