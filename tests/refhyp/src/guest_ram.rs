// SPDX-License-Identifier: GPL-2.0-only
//! Guest RAM as the hypervisor sees it: the shared file behind QEMU's
//! `memory-backend-file,share=on`.
//!
//! Only the state machine (table and ring) reads guest RAM through this
//! type. Device code gets QEMU's memory table and goes through the host view
//! instead (`checked_memory`).

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::path::Path;

use pviommu_reference_hyp::{GuestRam, OutOfRange};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};

/// q35 puts the first `lowmem` bytes of RAM below the PCI hole and the rest
/// at 4 GiB (`pc_q35_init()`): 2 GiB when RAM reaches 2.75 GiB, else 2.75 GiB.
fn q35_lowmem(size: u64) -> u64 {
    if size >= 0xb000_0000 {
        0x8000_0000
    } else {
        0xb000_0000
    }
}

/// One piece of guest RAM: guest-physical range and where it starts in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamRegion {
    pub gpa: u64,
    pub file_offset: u64,
    pub len: u64,
}

/// Guest-physical layout of a q35 guest with `size` bytes of RAM.
pub fn q35_layout(size: u64) -> Vec<RamRegion> {
    let low = size.min(q35_lowmem(size));
    let mut v = vec![RamRegion {
        gpa: 0,
        file_offset: 0,
        len: low,
    }];
    if size > low {
        v.push(RamRegion {
            gpa: 1 << 32,
            file_offset: low,
            len: size - low,
        });
    }
    v
}

/// The guest RAM file, mapped shared.
pub struct RamFile {
    mem: GuestMemoryMmap<()>,
    layout: Vec<RamRegion>,
}

impl RamFile {
    /// Creates (or truncates) the file and sizes it, so that QEMU can map it
    /// with `share=on` and we see the same pages.
    pub fn create(path: &Path, size: u64) -> io::Result<RamFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(size)?;
        Self::map(file, size)
    }

    /// Maps an existing file of `size` bytes (tests open the file this way).
    pub fn map(file: File, size: u64) -> io::Result<RamFile> {
        let layout = q35_layout(size);
        let ranges: Vec<_> = layout
            .iter()
            .map(|r| {
                let len = usize::try_from(r.len).map_err(|_| io::ErrorKind::InvalidInput)?;
                let fd = file.try_clone()?;
                Ok((
                    GuestAddress(r.gpa),
                    len,
                    Some(FileOffset::new(fd, r.file_offset)),
                ))
            })
            .collect::<io::Result<_>>()?;
        let mem = GuestMemoryMmap::from_ranges_with_files(ranges)
            .map_err(|e| io::Error::other(format!("mapping guest RAM: {e}")))?;
        Ok(RamFile { mem, layout })
    }

    /// Guest-physical RAM ranges, for the state machine's configuration.
    pub fn ranges(&self) -> Vec<Range<u64>> {
        self.layout.iter().map(|r| r.gpa..r.gpa + r.len).collect()
    }
}

impl GuestRam for RamFile {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        // Volatile copies: the guest changes these bytes under our feet.
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| OutOfRange)
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| OutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_small_guest_is_flat() {
        assert_eq!(
            q35_layout(512 << 20),
            vec![RamRegion {
                gpa: 0,
                file_offset: 0,
                len: 512 << 20
            }]
        );
    }

    #[test]
    fn layout_big_guest_splits_at_2g() {
        let l = q35_layout(4 << 30);
        assert_eq!(l[0].len, 2 << 30);
        assert_eq!(
            (l[1].gpa, l[1].file_offset, l[1].len),
            (4 << 30, 2 << 30, 2 << 30)
        );
    }

    #[test]
    fn reads_and_writes_stay_in_range() {
        let dir = std::env::temp_dir().join(format!("refhyp-ram-{}", std::process::id()));
        let ram = RamFile::create(&dir, 1 << 20).unwrap();
        ram.write(4096, b"abc").unwrap();
        let mut b = [0u8; 3];
        ram.read(4096, &mut b).unwrap();
        assert_eq!(&b, b"abc");
        assert!(ram.read((1 << 20) - 1, &mut b).is_err());
        assert!(ram.write(u64::MAX - 1, b"x").is_err());
        std::fs::remove_file(dir).unwrap();
    }
}
