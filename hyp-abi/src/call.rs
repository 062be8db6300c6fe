// SPDX-License-Identifier: GPL-2.0-only

//! Call numbers, SMCCC function IDs, status codes and the errno mapping.
//!
//! A call takes six 64-bit arguments `a0..a5` and returns a status and
//! three 64-bit values `r0..r2`, whatever the transport (SMCCC `HVC` or the
//! MMIO mailbox). Arguments a call does not use are reserved and must be 0.

use super::error::{EAGAIN, EBUSY, EINVAL, EIO, ENOMEM, EOPNOTSUPP, EPERM};

/// ABI major version: incompatible changes bump it. 2.0 moved the SMCCC
/// function IDs and renumbered the status codes.
pub const ABI_MAJOR: u16 = 2;
/// ABI minor version: compatible additions bump it. 2.1 added `STATS`,
/// 2.2 write-only table entries (`FEATURE_WRITE_ONLY`).
pub const ABI_MINOR: u16 = 2;
/// The version as `VERSION` returns it in `r0`: `(major << 16) | minor`.
pub const ABI_VERSION: u32 = ((ABI_MAJOR as u32) << 16) | ABI_MINOR as u32;
/// Feature bit (`VERSION` `r1`): the hypervisor implements `APPLY`, so the
/// guest can revoke or grant a frame range without a ring record. Defined
/// in ABI 1.1 and kept unchanged in 2.0; a guest checks this bit, not the
/// minor version, before it calls `APPLY`.
pub const FEATURE_APPLY: u64 = 1 << 0;
/// Feature bit (`VERSION` `r1`): the hypervisor implements `STATS`, so
/// the guest can read the hypervisor's own counters of its work (ABI 2.1).
pub const FEATURE_STATS: u64 = 1 << 1;
/// Feature bit (`VERSION` `r1`): the hypervisor enforces `Perm::Write`
/// (table entry 2, and `SHARE`'s permission 2) as write-only, so a device
/// that only writes a buffer (`DMA_FROM_DEVICE`) cannot read what its
/// pages held before (ABI 2.2). Without it, entry 2 means no access.
pub const FEATURE_WRITE_ONLY: u64 = 1 << 2;
/// Feature bits defined by ABI 2.2. Undefined bits are reserved: a
/// hypervisor returns them as 0 and a guest ignores them, so that a later
/// minor version can define them without breaking this one.
pub const FEATURES_KNOWN: u64 = FEATURE_APPLY | FEATURE_STATS | FEATURE_WRITE_ONLY;

/// Number of arguments of every call.
pub const NR_ARGS: usize = 6;
/// Number of return values of every call.
pub const NR_RETS: usize = 3;

/// Base of the SMCCC function IDs: fast call, SMC64, vendor-specific
/// hypervisor service (owner 6), function numbers from 0x8000 on.
///
/// KVM owns vendor-hyp function numbers 0..127 (`ARM_SMCCC_KVM_NUM_FUNCS`);
/// 0x8000 is far outside that block and its growth. Provisional: the
/// numbers are not allocated by any authority yet. A guest issues them only
/// after the vendor-hyp UID call identified KVM (see the spec).
pub const SMCCC_FUNC_BASE: u32 = 0xC600_8000;

/// The functions of the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Func {
    /// Version and feature discovery.
    Version = 0,
    /// Register the table, the ring and the bounce pool.
    Init = 1,
    /// Drain the ring and complete every pending unshare.
    Sync = 2,
    /// Share a frame range directly.
    Share = 3,
    /// Unshare a frame range directly, with invalidation.
    Unshare = 4,
    /// Unshare everything and return to the un-initialised state.
    Reset = 5,
    /// Apply the table entries of a frame range without the ring, with
    /// invalidation (`FEATURE_APPLY`, since ABI 1.1).
    Apply = 6,
    /// Read one of the hypervisor's counters of this guest
    /// (`FEATURE_STATS`, since ABI 2.1).
    Stats = 7,
}

/// Number of defined functions.
pub const NR_FUNCS: usize = 8;

// `NR_FUNCS` sizes per-function arrays, and counters index them with
// `Func as usize`: every number below it must decode to its function, and
// the next one to none.
const _: () = {
    let mut raw = 0;
    while raw < NR_FUNCS as u32 {
        assert!(matches!(Func::from_raw(raw), Some(f) if f as u32 == raw));
        raw += 1;
    }
    assert!(Func::from_raw(NR_FUNCS as u32).is_none());
};

impl Func {
    /// Decodes a function number; `None` if it is not defined.
    pub const fn from_raw(raw: u32) -> Option<Func> {
        match raw {
            0 => Some(Func::Version),
            1 => Some(Func::Init),
            2 => Some(Func::Sync),
            3 => Some(Func::Share),
            4 => Some(Func::Unshare),
            5 => Some(Func::Reset),
            6 => Some(Func::Apply),
            7 => Some(Func::Stats),
            _ => None,
        }
    }

    /// Returns the SMCCC function ID of this function.
    pub const fn smccc_id(self) -> u32 {
        SMCCC_FUNC_BASE + self as u32
    }

    /// Decodes an SMCCC function ID; `None` if it is not one of ours.
    pub const fn from_smccc_id(id: u32) -> Option<Func> {
        match id.checked_sub(SMCCC_FUNC_BASE) {
            Some(raw) => Func::from_raw(raw),
            None => None,
        }
    }

    /// Returns how many leading arguments the function uses; the rest must be 0.
    pub const fn nr_args(self) -> usize {
        match self {
            Func::Version | Func::Sync | Func::Reset => 0,
            Func::Init => 6,
            Func::Share => 3,
            Func::Unshare | Func::Apply => 2,
            Func::Stats => 1,
        }
    }

    /// Returns the lower-case name used in counters and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Func::Version => "version",
            Func::Init => "init",
            Func::Sync => "sync",
            Func::Share => "share",
            Func::Unshare => "unshare",
            Func::Reset => "reset",
            Func::Apply => "apply",
            Func::Stats => "stats",
        }
    }
}

/// The counters `STATS` reads, by index (`a0`). Each counts events of
/// this guest since it was created (`RESET` does not clear them) and only
/// ever grows (wrapping at 2^64). `STATS` is valid before `INIT`.
/// `STATS` returns the value in `r0` and the number of counters the
/// hypervisor keeps in `r1`; an index at or past that number is
/// `InvalidParameter`. A hypervisor may keep more counters than a guest
/// knows; later minor versions only append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stat {
    /// Ring drains: on exits, on `SYNC` and on faults.
    Drains = 0,
    /// Published ring records read.
    Records = 1,
    /// Malformed records and producer values skipped.
    BadRecords = 2,
    /// Frames whose host access was widened.
    PagesShared = 3,
    /// Frames whose host access was reduced.
    PagesUnshared = 4,
    /// Invalidations of the host's translations (TLB invalidation
    /// sequences); one covers every reduction completed with it.
    Invalidations = 5,
    /// Table entries or direct calls that asked for access the
    /// hypervisor refused: the table or ring, memory outside guest RAM,
    /// an invalid encoding, a page in a state it cannot share.
    Refused = 6,
    /// Frames a table entry named that the guest has not populated yet
    /// (not in its stage 2): left without host access.
    Absent = 7,
    /// `BUSY` answers: calls or drains that ran out of their budget.
    Busy = 8,
}

/// Number of counters ABI 2.1 defines.
pub const NR_STATS: usize = 9;

/// Every counter, in index order.
pub const STATS: [Stat; NR_STATS] = [
    Stat::Drains,
    Stat::Records,
    Stat::BadRecords,
    Stat::PagesShared,
    Stat::PagesUnshared,
    Stat::Invalidations,
    Stat::Refused,
    Stat::Absent,
    Stat::Busy,
];

const _: () = {
    let mut i = 0;
    while i < NR_STATS {
        assert!(STATS[i] as usize == i);
        i += 1;
    }
};

impl Stat {
    /// Returns the lower-case name used in debugfs and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::Drains => "drains",
            Stat::Records => "records",
            Stat::BadRecords => "bad_records",
            Stat::PagesShared => "pages_shared",
            Stat::PagesUnshared => "pages_unshared",
            Stat::Invalidations => "invalidations",
            Stat::Refused => "refused",
            Stat::Absent => "absent",
            Stat::Busy => "busy",
        }
    }
}

/// Status returned by every call.
///
/// `Success`, `NotSupported` and `InvalidParameter` have SMCCC's values
/// and meanings. -2 (SMCCC `NOT_REQUIRED`) is never returned and is not a
/// status: a guest treats it as any undefined value (a hostile answer).
/// The pviommu-specific statuses sit in a block SMCCC does not use, from
/// -0x100 down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Status {
    /// The call succeeded (possibly partially: see `r0`).
    Success = 0,
    /// The function or a feature it needs is not implemented (SMCCC
    /// `NOT_SUPPORTED`).
    NotSupported = -1,
    /// An argument is malformed or a reserved argument is not zero (SMCCC
    /// `INVALID_PARAMETER`).
    InvalidParameter = -3,
    /// The arguments name memory the guest may not use that way.
    Denied = -0x100,
    /// Transient: retry the same call.
    Busy = -0x101,
    /// The hypervisor cannot allocate what the call needs.
    NoMemory = -0x102,
    /// The call is not valid in the current state (e.g. not initialised).
    BadState = -0x103,
}

/// Number of defined statuses, `Success` included.
pub const NR_STATUSES: usize = 7;

/// Every status, in declaration order.
pub const STATUSES: [Status; NR_STATUSES] = [
    Status::Success,
    Status::NotSupported,
    Status::InvalidParameter,
    Status::Denied,
    Status::Busy,
    Status::NoMemory,
    Status::BadState,
];

// Every status decodes from its own value, and SMCCC NOT_REQUIRED (-2)
// decodes to none.
const _: () = {
    let all = STATUSES;
    let mut i = 0;
    while i < NR_STATUSES {
        assert!(matches!(Status::from_raw(all[i].raw()), Some(s) if s as i64 == all[i] as i64));
        i += 1;
    }
    assert!(Status::from_raw(-2).is_none());
};

impl Status {
    /// Decodes a raw status; `None` if the value is not defined.
    pub const fn from_raw(raw: i64) -> Option<Status> {
        match raw {
            0 => Some(Status::Success),
            -1 => Some(Status::NotSupported),
            // -2 is SMCCC NOT_REQUIRED: never a pviommu status.
            -3 => Some(Status::InvalidParameter),
            -0x100 => Some(Status::Denied),
            -0x101 => Some(Status::Busy),
            -0x102 => Some(Status::NoMemory),
            -0x103 => Some(Status::BadState),
            _ => None,
        }
    }

    /// Returns the raw value.
    pub const fn raw(self) -> i64 {
        self as i64
    }

    /// Returns the negative errno for this status, 0 for `Success`.
    pub const fn to_errno(self) -> i32 {
        match self {
            Status::Success => 0,
            Status::NotSupported => -EOPNOTSUPP,
            Status::InvalidParameter => -EINVAL,
            Status::Denied => -EPERM,
            Status::Busy => -EAGAIN,
            Status::NoMemory => -ENOMEM,
            Status::BadState => -EBUSY,
        }
    }

    /// Returns the lower-case name used in counters and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::NotSupported => "not_supported",
            Status::InvalidParameter => "invalid_parameter",
            Status::Denied => "denied",
            Status::Busy => "busy",
            Status::NoMemory => "no_memory",
            Status::BadState => "bad_state",
        }
    }
}

/// Maps a raw status from the hypervisor to a negative errno (0 on success).
///
/// This is the one mapping the guest uses. A value outside the defined set
/// is a broken or hostile hypervisor and maps to `-EIO`.
pub const fn errno_from_status(raw: i64) -> i32 {
    match Status::from_raw(raw) {
        Some(status) => status.to_errno(),
        None => -EIO,
    }
}

/// Returns whether every argument past the first `used` ones is zero.
pub fn reserved_args_zero(args: &[u64; NR_ARGS], used: usize) -> bool {
    args.iter().skip(used).all(|&a| a == 0)
}
