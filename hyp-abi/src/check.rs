// SPDX-License-Identifier: GPL-2.0-only

//! Checks the guest applies to every answer of the hypervisor.
//!
//! The hypervisor is not trusted to be correct: a status outside the
//! defined set, a return value out of range or a consumer index that moves
//! backwards or past the producer is reported as `Error::Hostile` (`-EIO`),
//! never acted upon and never a panic.

use super::call::{Status, ABI_MAJOR, NR_RETS};
use super::error::Error;
use super::layout::RING_ORDER_MAX;
use super::mailbox::{nr_slots, MailboxHeader, MAILBOX_MAGIC};

/// What `VERSION` reported, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// ABI major version (always `ABI_MAJOR` once checked).
    pub major: u16,
    /// ABI minor version.
    pub minor: u16,
    /// Feature bits offered by the hypervisor, as reported: bits this ABI
    /// does not define are kept, not rejected, and the guest tests only
    /// the bits it knows (`features & FEATURE_APPLY`).
    pub features: u64,
    /// Largest `ring_order` the hypervisor accepts.
    pub max_ring_order: u32,
}

/// What `SYNC` reported, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncResult {
    /// Ring records applied by this call.
    pub records: u64,
    /// Pages whose host access was reduced by this call.
    pub unshared: u64,
    /// Pages whose host access was widened by this call.
    pub shared: u64,
}

/// Turns a raw status into `Ok` or the matching error.
pub fn check_status(raw: i64) -> Result<(), Error> {
    match Status::from_raw(raw) {
        Some(Status::Success) => Ok(()),
        Some(status) => Err(Error::Hyp(status)),
        None => Err(Error::Hostile),
    }
}

/// Checks the answer to `VERSION`.
///
/// A different major version is `Hyp(NotSupported)`: the guest declines.
/// A higher minor version and unknown feature bits are accepted: later
/// minor versions define new bits, which an older guest must ignore.
pub fn check_version(status: i64, ret: &[u64; NR_RETS]) -> Result<VersionInfo, Error> {
    check_status(status)?;
    let version = u32::try_from(ret[0]).map_err(|_| Error::Hostile)?;
    let max_ring_order = u32::try_from(ret[2]).map_err(|_| Error::Hostile)?;
    let major = (version >> 16) as u16;
    if major != ABI_MAJOR {
        return Err(Error::Hyp(Status::NotSupported));
    }
    if max_ring_order > RING_ORDER_MAX {
        return Err(Error::Hostile);
    }
    Ok(VersionInfo {
        major,
        minor: (version & 0xffff) as u16,
        features: ret[1],
        max_ring_order,
    })
}

/// Checks the answer to `SHARE` or `UNSHARE` of `requested` pages and
/// returns the pages done, which may be fewer (even zero) on success.
pub fn check_progress(status: i64, done: u64, requested: u64) -> Result<u64, Error> {
    check_status(status)?;
    if done > requested {
        return Err(Error::Hostile);
    }
    Ok(done)
}

/// Checks the answer to `SYNC` for a ring of `ring_size` records and a
/// table of `table_frames` entries.
///
/// One `SYNC` applies each ring slot at most once, so `r0 <= ring_size`.
/// Page counts can only come from applied records, each naming at most
/// `table_frames` frames, so `r1, r2 <= r0 * table_frames` (a page whose
/// entry another CPU flips during the call may count more than once, so
/// the tighter bound `table_frames` would not hold).
pub fn check_sync(
    status: i64,
    ret: &[u64; NR_RETS],
    ring_size: u64,
    table_frames: u64,
) -> Result<SyncResult, Error> {
    check_status(status)?;
    let pages = ret[0].saturating_mul(table_frames);
    if ret[0] > ring_size || ret[1] > pages || ret[2] > pages {
        return Err(Error::Hostile);
    }
    Ok(SyncResult {
        records: ret[0],
        unshared: ret[1],
        shared: ret[2],
    })
}

/// Checks a consumer index written by the hypervisor against the last one
/// the guest saw and the producer: it must be monotonic and not ahead.
///
/// Indices are compared modulo 2^64 over a window of at most `ring_size`,
/// like the ring itself.
pub fn check_consumer(prev: u64, new: u64, producer: u64, ring_size: u64) -> Result<u64, Error> {
    let advance = new.wrapping_sub(prev);
    let outstanding = producer.wrapping_sub(prev);
    if advance > outstanding || outstanding > ring_size {
        return Err(Error::Hostile);
    }
    Ok(new)
}

/// Checks the mailbox region header against the size of the BAR that holds
/// it and returns the number of slots the guest may use.
///
/// A wrong magic or major version means the device is not a pviommu
/// mailbox (`Hyp(NotSupported)`: the guest declines it); a region size or
/// slot count that disagrees with the BAR is hostile.
pub fn check_mailbox_header(header: &MailboxHeader, bar_size: u64) -> Result<u32, Error> {
    if header.magic != MAILBOX_MAGIC || (header.abi_version >> 16) as u16 != ABI_MAJOR {
        return Err(Error::Hyp(Status::NotSupported));
    }
    let max = nr_slots(bar_size).ok_or(Error::Hostile)?;
    if u64::from(header.region_size) != bar_size || header.nr_slots == 0 || header.nr_slots > max {
        return Err(Error::Hostile);
    }
    Ok(header.nr_slots)
}
