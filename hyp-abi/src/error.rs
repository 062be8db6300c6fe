// SPDX-License-Identifier: GPL-2.0-only

//! Guest-side errors and the errno values they map to.
//!
//! The errno numbers are the asm-generic ones, which x86_64 and arm64 share;
//! they are spelled out here because this crate cannot depend on the kernel.

use super::call::Status;

/// Operation not permitted.
pub const EPERM: i32 = 1;
/// I/O error: used for every answer of the hypervisor that breaks the ABI.
pub const EIO: i32 = 5;
/// Try again.
pub const EAGAIN: i32 = 11;
/// Out of memory.
pub const ENOMEM: i32 = 12;
/// Device or resource busy: the hypervisor is in the wrong state for the call.
pub const EBUSY: i32 = 16;
/// Invalid argument.
pub const EINVAL: i32 = 22;
/// Connection timed out: the hypervisor did not answer a call in time.
pub const ETIMEDOUT: i32 = 110;
/// Value too large for defined data type: a reference count would overflow.
pub const EOVERFLOW: i32 = 75;
/// Operation not supported.
pub const EOPNOTSUPP: i32 = 95;

/// Why a guest-side operation of this crate failed.
///
/// No variant is ever produced by a panic path: every input, including the
/// values the hypervisor writes, ends in one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An argument is malformed (zero length, invalid permission, bad size).
    InvalidArgument,
    /// A frame number lies outside the tracked range.
    OutOfRange,
    /// A per-page reference count would overflow.
    Overflow,
    /// A page is unmapped more often than it was mapped with that permission.
    Underflow,
    /// The ring has no free record: issue `SYNC` and retry. Never fatal.
    RingFull,
    /// The hypervisor broke the ABI (consumer index, return value or status).
    Hostile,
    /// The hypervisor returned this defined error status.
    Hyp(Status),
}

impl Error {
    /// Returns the negative errno the kernel reports for this error.
    pub const fn to_errno(self) -> i32 {
        match self {
            Error::InvalidArgument | Error::OutOfRange | Error::Underflow => -EINVAL,
            Error::Overflow => -EOVERFLOW,
            Error::RingFull => -EAGAIN,
            Error::Hostile => -EIO,
            Error::Hyp(status) => status.to_errno(),
        }
    }
}
