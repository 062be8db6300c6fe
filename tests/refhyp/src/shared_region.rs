// SPDX-License-Identifier: GPL-2.0-only
//! The ivshmem shared region (BAR2 in the guest): mailbox header and slots.
//!
//! Backed by a memfd whose descriptor the ivshmem server hands to QEMU.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use pviommu_reference_hyp::{OutOfRange, SharedRegion};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};

pub struct ShmRegion {
    file: File,
    // The region seen as a one-region "guest memory" at address 0: this
    // gives bounds-checked volatile copies for free.
    mem: GuestMemoryMmap<()>,
    size: usize,
}

impl ShmRegion {
    pub fn create(size: u64) -> io::Result<ShmRegion> {
        const NAME: &CStr = c"pviommu-ivshmem";
        // SAFETY: `NAME` is a valid NUL-terminated string; the flags are valid.
        let fd = unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size)?;
        Self::map(file, size)
    }

    /// Maps a region received from an ivshmem server (the tests' client side).
    pub fn map(file: File, size: u64) -> io::Result<ShmRegion> {
        let size = usize::try_from(size).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mem = GuestMemoryMmap::from_ranges_with_files([(
            GuestAddress(0),
            size,
            Some(FileOffset::new(file.try_clone()?, 0)),
        )])
        .map_err(|e| io::Error::other(format!("mapping shared region: {e}")))?;
        Ok(ShmRegion { file, mem, size })
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl SharedRegion for ShmRegion {
    fn size(&self) -> u64 {
        self.size as u64
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        self.mem
            .read_slice(buf, GuestAddress(off))
            .map_err(|_| OutOfRange)
    }

    fn write(&self, off: u64, data: &[u8]) -> Result<(), OutOfRange> {
        self.mem
            .write_slice(data, GuestAddress(off))
            .map_err(|_| OutOfRange)
    }
}
