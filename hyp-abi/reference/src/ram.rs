// SPDX-License-Identifier: GPL-2.0-only

//! Byte access to guest-physical memory.

use std::cell::RefCell;
use std::ops::Range;

/// An access fell outside the memory behind a `GuestRam` or `SharedRegion`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

/// Guest-physical memory as the hypervisor sees it.
///
/// Implementations copy bytes; the guest may change them concurrently, which
/// is why the state machine validates everything it reads.
pub trait GuestRam {
    /// Copies `buf.len()` bytes from `gpa` into `buf`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange>;
    /// Copies `data` to `gpa`.
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange>;
}

/// Guest memory held in a vector: one contiguous range of gpas.
///
/// Used by the tests, the fuzz target and the cost benchmark.
#[derive(Debug)]
pub struct VecRam {
    base: u64,
    bytes: RefCell<Vec<u8>>,
}

impl VecRam {
    /// Returns zeroed memory covering `range`.
    pub fn new(range: Range<u64>) -> VecRam {
        let len = usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(0);
        VecRam {
            base: range.start,
            bytes: RefCell::new(vec![0; len]),
        }
    }

    /// Returns memory at `base` holding `bytes`.
    pub fn from_bytes(base: u64, bytes: Vec<u8>) -> VecRam {
        VecRam {
            base,
            bytes: RefCell::new(bytes),
        }
    }

    /// Returns the gpa range covered.
    pub fn range(&self) -> Range<u64> {
        self.base..self.base + self.bytes.borrow().len() as u64
    }

    fn span(&self, gpa: u64, len: usize) -> Result<Range<usize>, OutOfRange> {
        let start = usize::try_from(gpa.checked_sub(self.base).ok_or(OutOfRange)?)
            .map_err(|_| OutOfRange)?;
        let end = start.checked_add(len).ok_or(OutOfRange)?;
        if end > self.bytes.borrow().len() {
            return Err(OutOfRange);
        }
        Ok(start..end)
    }
}

impl GuestRam for VecRam {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let span = self.span(gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes.borrow()[span]);
        Ok(())
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let span = self.span(gpa, data.len())?;
        self.bytes.borrow_mut()[span].copy_from_slice(data);
        Ok(())
    }
}
