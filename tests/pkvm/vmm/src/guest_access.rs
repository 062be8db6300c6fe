// SPDX-License-Identifier: GPL-2.0
//! The one way devices reach guest memory.
//!
//! A protected guest's private pages are not mapped in the host's stage 2:
//! a host load or store to one is an abort that pKVM injects back into the
//! host kernel (`host_inject_mem_abort`). Taken by a user-space instruction
//! that abort is a SIGSEGV; taken inside a `copy_{from,to}_user` it is
//! fixed up into `EFAULT`. So every device access here is a copy through
//! a pipe: `write(pipe, guest_hva, n)` reads guest memory with
//! `copy_from_user`, `read(pipe, guest_hva, n)` writes it with
//! `copy_to_user`, and a page the guest has not shared comes back as an
//! error, never as a crash.
//!
//! Not `process_vm_readv`: it pins the pages and copies from the kernel's
//! linear map, where the load is not a uaccess; arm64's fault handler then
//! treats the abort as a spurious translation fault and *force-reclaims*
//! the guest's page (`pkvm_force_reclaim_guest_page`, which zeroes and
//! poisons it), so the host would read zeros and destroy the guest's page
//! instead of getting an error.
//!
//! The guest's RAM address in this process is kept as an integer and is
//! only ever handed to the kernel; nothing in the VMM dereferences it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Why a guest-memory access failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    /// `[gpa, gpa + len)` is not inside guest RAM.
    OutOfRange { gpa: u64, len: u64 },
    /// The kernel refused the copy at `gpa` (EFAULT: a page the guest
    /// has not shared, under pKVM).
    Fault { gpa: u64, errno: i32 },
    /// The pipe itself misbehaved (should not happen).
    Pipe { errno: i32 },
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessError::OutOfRange { gpa, len } => {
                write!(f, "guest range {gpa:#x}+{len:#x} is outside guest RAM")
            }
            AccessError::Fault { gpa, errno } => write!(
                f,
                "host access to guest page {:#x} refused: {}",
                gpa & !0xfff,
                io::Error::from_raw_os_error(*errno)
            ),
            AccessError::Pipe { errno } => {
                write!(
                    f,
                    "copy pipe failed: {}",
                    io::Error::from_raw_os_error(*errno)
                )
            }
        }
    }
}

/// Reads and writes of guest-physical memory that may fail.
pub trait GuestAccess {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), AccessError>;
    fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), AccessError>;

    fn read_u16(&self, gpa: u64) -> Result<u16, AccessError> {
        let mut b = [0u8; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    #[cfg(test)]
    fn read_u32(&self, gpa: u64) -> Result<u32, AccessError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn write_u16(&self, gpa: u64, v: u16) -> Result<(), AccessError> {
        self.write(gpa, &v.to_le_bytes())
    }
}

/// Counters of the accessor, read for the final statistics.
#[derive(Default, Debug)]
pub struct AccessStats {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub faults: AtomicU64,
    pub out_of_range: AtomicU64,
}

struct Pipe {
    rd: OwnedFd,
    wr: OwnedFd,
    capacity: usize,
}

/// Guest RAM `[gpa_base, gpa_base + len)` mapped at `hva_base` in this
/// process, reached only through a pipe.
pub struct PipeAccess {
    gpa_base: u64,
    hva_base: usize,
    len: u64,
    pipe: Mutex<Pipe>,
    pub stats: AccessStats,
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

impl PipeAccess {
    /// `hva_base` is where guest RAM is mapped in this process: a number
    /// handed to `read(2)`/`write(2)`, never dereferenced here.
    pub fn new(gpa_base: u64, hva_base: usize, len: u64) -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors that we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors from pipe2.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A bigger pipe means fewer syscalls per request; 1 MiB is the
        // default pipe-max-size. Keep the default (64 KiB) if refused.
        // SAFETY: plain fcntl on our own descriptor.
        let got = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        // SAFETY: as above.
        let cap = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let capacity = if got > 0 {
            got as usize
        } else if cap > 0 {
            cap as usize
        } else {
            4096
        };
        Ok(PipeAccess {
            gpa_base,
            hva_base,
            len,
            pipe: Mutex::new(Pipe { rd, wr, capacity }),
            stats: AccessStats::default(),
        })
    }

    fn hva(&self, gpa: u64, len: usize) -> Result<usize, AccessError> {
        let off = gpa.checked_sub(self.gpa_base);
        match off {
            Some(off)
                if off
                    .checked_add(len as u64)
                    .is_some_and(|end| end <= self.len) =>
            {
                Ok(self.hva_base + off as usize)
            }
            _ => {
                self.stats.out_of_range.fetch_add(1, Ordering::Relaxed);
                Err(AccessError::OutOfRange {
                    gpa,
                    len: len as u64,
                })
            }
        }
    }

    /// Empties the pipe after a failed copy into guest memory.
    fn drain(p: &Pipe) {
        let mut scratch = [0u8; 4096];
        loop {
            // SAFETY: reading into our own buffer.
            let n =
                unsafe { libc::read(p.rd.as_raw_fd(), scratch.as_mut_ptr().cast(), scratch.len()) };
            if n <= 0 {
                break;
            }
        }
    }

    fn fault(&self, gpa: u64, errno: i32) -> AccessError {
        if errno == libc::EFAULT {
            self.stats.faults.fetch_add(1, Ordering::Relaxed);
            AccessError::Fault { gpa, errno }
        } else {
            AccessError::Pipe { errno }
        }
    }
}

impl GuestAccess for PipeAccess {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        let hva = self.hva(gpa, buf.len())?;
        let p = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(p.capacity);
            // Guest memory -> pipe: copy_from_user on the guest's pages.
            // SAFETY: the kernel validates the source; a fault is EFAULT.
            let n =
                unsafe { libc::write(p.wr.as_raw_fd(), (hva + done) as *const libc::c_void, want) };
            if n <= 0 {
                let e = if n == 0 { libc::EIO } else { errno() };
                return Err(self.fault(gpa + done as u64, e));
            }
            let n = n as usize;
            let mut got = 0;
            while got < n {
                // SAFETY: reading into our own buffer, within bounds.
                let m = unsafe {
                    libc::read(
                        p.rd.as_raw_fd(),
                        buf[done + got..].as_mut_ptr().cast(),
                        n - got,
                    )
                };
                if m <= 0 {
                    let e = if m == 0 { libc::EIO } else { errno() };
                    Self::drain(&p);
                    return Err(AccessError::Pipe { errno: e });
                }
                got += m as usize;
            }
            done += n;
        }
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_read
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), AccessError> {
        let hva = self.hva(gpa, buf.len())?;
        let p = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(p.capacity);
            // SAFETY: writing from our own buffer, within bounds.
            let n = unsafe { libc::write(p.wr.as_raw_fd(), buf[done..].as_ptr().cast(), want) };
            if n <= 0 {
                let e = if n == 0 { libc::EIO } else { errno() };
                Self::drain(&p);
                return Err(AccessError::Pipe { errno: e });
            }
            let n = n as usize;
            let mut put = 0;
            while put < n {
                // Pipe -> guest memory: copy_to_user on the guest's pages.
                // SAFETY: the kernel validates the destination.
                let m = unsafe {
                    libc::read(
                        p.rd.as_raw_fd(),
                        (hva + done + put) as *mut libc::c_void,
                        n - put,
                    )
                };
                if m <= 0 {
                    let e = if m == 0 { libc::EIO } else { errno() };
                    Self::drain(&p);
                    return Err(self.fault(gpa + (done + put) as u64, e));
                }
                put += m as usize;
            }
            done += n;
        }
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_written
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A mapping whose second page is inaccessible, standing in for a
    /// guest page the host may not touch.
    struct Holey {
        base: *mut libc::c_void,
        len: usize,
    }

    impl Holey {
        fn new(pages: usize, hole: usize) -> Holey {
            let len = pages * 4096;
            // SAFETY: anonymous private mapping owned by this struct.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(base, libc::MAP_FAILED);
            // SAFETY: within our mapping.
            let r = unsafe {
                libc::mprotect(
                    base.cast::<u8>().add(hole * 4096).cast(),
                    4096,
                    libc::PROT_NONE,
                )
            };
            assert_eq!(r, 0);
            Holey { base, len }
        }
    }

    impl Drop for Holey {
        fn drop(&mut self) {
            // SAFETY: our own mapping.
            unsafe { libc::munmap(self.base, self.len) };
        }
    }

    #[test]
    fn copies_round_trip_and_faults_become_errors() {
        let m = Holey::new(4, 1);
        let acc = PipeAccess::new(0x4000_0000, m.base as usize, m.len as u64).unwrap();
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        acc.write(0x4000_0000 + 100, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        acc.read(0x4000_0000 + 100, &mut back).unwrap();
        let first_bad = back.iter().zip(&data).position(|(a, b)| a != b);
        assert_eq!(first_bad, None);

        // Page 1 is the hole: both directions fail with EFAULT.
        let mut b = [0u8; 16];
        assert!(matches!(
            acc.read(0x4000_1000, &mut b),
            Err(AccessError::Fault {
                errno: libc::EFAULT,
                ..
            })
        ));
        assert!(matches!(
            acc.write(0x4000_1008, &[1, 2, 3]),
            Err(AccessError::Fault {
                errno: libc::EFAULT,
                ..
            })
        ));
        // Straddling into the hole fails too (after copying what comes
        // before the hole), and the pipe is left clean.
        let mut big = vec![0u8; 8192];
        assert!(acc.read(0x4000_0800, &mut big).is_err());
        assert!(acc.write(0x4000_0800, &big).is_err());
        acc.write(0x4000_2000 + 100, &data).unwrap();
        acc.read(0x4000_2000 + 100, &mut back).unwrap();
        assert!(back == data);
        assert_eq!(acc.stats.faults.load(Ordering::Relaxed), 4);

        // Outside RAM.
        assert!(matches!(
            acc.read(0x3fff_fff0, &mut b),
            Err(AccessError::OutOfRange { .. })
        ));
        assert!(matches!(
            acc.read(0x4000_3ff8, &mut b),
            Err(AccessError::OutOfRange { .. })
        ));
    }

    #[test]
    fn large_copies_exceed_the_pipe() {
        let pages = 512; // 2 MiB, more than the pipe holds
        let m = Holey::new(pages + 1, pages);
        let acc = PipeAccess::new(0, m.base as usize, (pages * 4096) as u64).unwrap();
        let data: Vec<u8> = (0..pages * 4096).map(|i| (i * 7 + 3) as u8).collect();
        acc.write(0, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        acc.read(0, &mut back).unwrap();
        assert!(back == data);
    }
}
