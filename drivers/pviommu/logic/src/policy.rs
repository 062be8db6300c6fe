// SPDX-License-Identifier: GPL-2.0

//! Which buffers are shared in place and which bounce, and with what
//! permission.

use super::abi::layout::{Perm, PAGE_SIZE};

/// How the driver makes DMA buffers visible to the host
/// (`pviommu.mode=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Share in place through the table and ring; unshare with one `SYNC`
    /// per unmap call. Sub-page buffers bounce.
    Share,
    /// Bounce every buffer through the pool shared at initialisation.
    Bounce,
    /// A `SHARE` hypercall at map and an `UNSHARE` at unmap (baseline).
    Sync,
}

impl Mode {
    /// Parses the `pviommu.mode=` value.
    pub fn parse(s: &[u8]) -> Option<Mode> {
        match s {
            b"share" => Some(Mode::Share),
            b"bounce" => Some(Mode::Bounce),
            b"sync" => Some(Mode::Sync),
            _ => None,
        }
    }

    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Share => "share",
            Mode::Bounce => "bounce",
            Mode::Sync => "sync",
        }
    }
}

/// What the driver does when the hypervisor fails to revoke the host's
/// access to memory the guest released (`pviommu.on_revoke_failure=`).
///
/// The unmap cannot fail: the memory goes back to its owner, who may
/// reuse it for secrets the host can then still read or change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnRevokeFailure {
    /// Panic: the guest stops before the memory can be reused (safe).
    Panic,
    /// Stop the virtio devices and go on; the memory may be reused while
    /// the host can still reach it (only for a host trusted not to).
    Stop,
}

impl OnRevokeFailure {
    /// Parses the `pviommu.on_revoke_failure=` value.
    pub fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"panic" => Some(Self::Panic),
            b"stop" => Some(Self::Stop),
            _ => None,
        }
    }

    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Stop => "stop",
        }
    }
}

/// DMA direction, as the DMA API passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// The device reads the buffer (`DMA_TO_DEVICE`).
    ToDevice,
    /// The device writes the buffer (`DMA_FROM_DEVICE`).
    FromDevice,
    /// Both (`DMA_BIDIRECTIONAL`).
    Bidirectional,
}

impl Dir {
    /// The host permission a mapping in this direction needs. A device
    /// that only writes (`DMA_FROM_DEVICE`) gets write-only access when
    /// the hypervisor enforces it (`write_only`, `FEATURE_WRITE_ONLY`), so
    /// it cannot read what the pages held before (as iommu-dma maps such
    /// buffers); read-write otherwise.
    pub fn perm(self, write_only: bool) -> Perm {
        match self {
            Dir::ToDevice => Perm::Read,
            Dir::FromDevice if write_only => Perm::Write,
            Dir::FromDevice | Dir::Bidirectional => Perm::ReadWrite,
        }
    }

    /// Whether data flows from the CPU to the device (copy in on map).
    pub fn to_device(self) -> bool {
        matches!(self, Dir::ToDevice | Dir::Bidirectional)
    }

    /// Whether data flows from the device to the CPU (copy out on unmap).
    pub fn from_device(self) -> bool {
        matches!(self, Dir::FromDevice | Dir::Bidirectional)
    }
}

/// Where one buffer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Zero-copy: the buffer's own pages are shared.
    InPlace,
    /// Copied through the bounce pool.
    Bounce,
}

/// Decides the route of a buffer of `size` bytes at physical `phys`.
///
/// Sharing a page exposes all of it, so only a buffer that covers whole
/// pages (page-aligned start and length) may be shared in place: anything
/// else could expose its neighbours on the same page. Below `threshold`
/// bytes a copy is cheaper than the sharing work, so small buffers bounce
/// too. In `bounce` mode everything bounces.
pub fn route(mode: Mode, phys: u64, size: u64, threshold: u64) -> Route {
    let owns_pages = size != 0 && phys % PAGE_SIZE == 0 && size % PAGE_SIZE == 0;
    match mode {
        Mode::Bounce => Route::Bounce,
        Mode::Share | Mode::Sync if owns_pages && size >= threshold => Route::InPlace,
        Mode::Share | Mode::Sync => Route::Bounce,
    }
}

/// Number of pages spanned by `[phys, phys + size)`.
pub fn pages_spanned(phys: u64, size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let first = phys / PAGE_SIZE;
    let last = (phys + (size - 1)) / PAGE_SIZE;
    last - first + 1
}
