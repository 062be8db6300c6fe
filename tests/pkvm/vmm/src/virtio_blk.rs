// SPDX-License-Identifier: GPL-2.0
//! The virtio block device: requests parsed from a descriptor chain and
//! served from a file, every guest byte moved through [`GuestAccess`].

use crate::guest_access::{AccessError, GuestAccess};
use crate::virtqueue::Buf;
use std::fs::File;
use std::os::unix::fs::FileExt;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};

pub const SECTOR: u64 = 512;
/// Largest single data transfer staged in the VMM (per buffer).
const MAX_BUF: u32 = 4 << 20;
pub const DISK_ID: &[u8] = b"pkvm-vmm-disk";

/// Device feature bits beyond the transport's (VERSION_1, ACCESS_PLATFORM).
pub fn device_features() -> u64 {
    (1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_FLUSH)
}

/// `struct virtio_blk_config` up to and including `seg_max`.
pub fn config_space(capacity_sectors: u64, seg_max: u32) -> [u8; 24] {
    let mut c = [0u8; 24];
    c[0..8].copy_from_slice(&capacity_sectors.to_le_bytes());
    c[12..16].copy_from_slice(&seg_max.to_le_bytes());
    c
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    In,
    Out,
    Flush,
    GetId,
    Other(u32),
}

/// A request as laid out in its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    pub sector: u64,
    /// Data buffers (device-readable for Out, device-writable otherwise).
    pub data: Vec<Buf>,
    /// Guest address of the status byte.
    pub status: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer than a header and a status buffer, or the header too short.
    Malformed(&'static str),
    Access(AccessError),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Malformed(why) => write!(f, "malformed request: {why}"),
            ParseError::Access(e) => write!(f, "request header: {e}"),
        }
    }
}

/// Splits a chain into header, data and status (virtio 1.x, 5.2.6).
pub fn parse(mem: &dyn GuestAccess, chain: &[Buf]) -> Result<Request, ParseError> {
    let (first, rest) = chain
        .split_first()
        .ok_or(ParseError::Malformed("empty chain"))?;
    if first.write || first.len < 16 {
        return Err(ParseError::Malformed(
            "header not a readable 16-byte buffer",
        ));
    }
    let last = rest
        .last()
        .ok_or(ParseError::Malformed("no status buffer"))?;
    if !last.write || last.len < 1 {
        return Err(ParseError::Malformed("status not a writable buffer"));
    }
    let mut hdr = [0u8; 16];
    mem.read(first.addr, &mut hdr).map_err(ParseError::Access)?;
    let ty = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let sector = u64::from_le_bytes([
        hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
    ]);
    let kind = match ty {
        VIRTIO_BLK_T_IN => Kind::In,
        VIRTIO_BLK_T_OUT => Kind::Out,
        VIRTIO_BLK_T_FLUSH => Kind::Flush,
        VIRTIO_BLK_T_GET_ID => Kind::GetId,
        t => Kind::Other(t),
    };
    // The status byte is the last byte of the last buffer; the rest of
    // that buffer (if any) is data.
    let mut data: Vec<Buf> = rest[..rest.len() - 1].to_vec();
    if last.len > 1 {
        data.push(Buf {
            addr: last.addr,
            len: last.len - 1,
            write: true,
        });
    }
    let want_write = kind != Kind::Out;
    if data.iter().any(|b| b.write != want_write) {
        return Err(ParseError::Malformed("data buffers of the wrong direction"));
    }
    Ok(Request {
        kind,
        sector,
        data,
        status: last.addr + u64::from(last.len) - 1,
    })
}

/// What serving one request did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: u8,
    /// Bytes the device wrote into the chain (data and status).
    pub used_len: u32,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Guest-memory accesses that failed.
    pub faults: u64,
    pub first_error: Option<String>,
}

pub struct BlockDevice {
    file: File,
    pub capacity_sectors: u64,
    pub read_only: bool,
}

impl BlockDevice {
    pub fn new(file: File, read_only: bool) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(BlockDevice {
            file,
            capacity_sectors: len / SECTOR,
            read_only,
        })
    }

    /// Serves `req`, then writes its status byte.
    pub fn serve(&self, mem: &dyn GuestAccess, req: &Request) -> Outcome {
        let mut out = Outcome::default();
        let status = match self.transfer(mem, req, &mut out) {
            Ok(s) => s,
            Err(e) => {
                if matches!(e, Failure::Access(_)) {
                    out.faults += 1;
                }
                out.first_error.get_or_insert(e.to_string());
                VIRTIO_BLK_S_IOERR as u8
            }
        };
        out.status = status;
        match mem.write(req.status, &[status]) {
            Ok(()) => out.used_len += 1,
            Err(e) => {
                out.faults += 1;
                out.first_error.get_or_insert(format!("status byte: {e}"));
            }
        }
        out
    }

    fn transfer(
        &self,
        mem: &dyn GuestAccess,
        req: &Request,
        out: &mut Outcome,
    ) -> Result<u8, Failure> {
        match req.kind {
            Kind::In | Kind::Out => {
                let total: u64 = req.data.iter().map(|b| u64::from(b.len)).sum();
                let end = req
                    .sector
                    .checked_mul(SECTOR)
                    .and_then(|s| s.checked_add(total));
                if total % SECTOR != 0 || end.is_none_or(|e| e > self.capacity_sectors * SECTOR) {
                    return Err(Failure::Range(req.sector, total));
                }
                if req.kind == Kind::Out && self.read_only {
                    return Err(Failure::ReadOnly);
                }
                let mut off = req.sector * SECTOR;
                for b in &req.data {
                    if b.len > MAX_BUF {
                        return Err(Failure::TooBig(b.len));
                    }
                    let mut buf = vec![0u8; b.len as usize];
                    if req.kind == Kind::In {
                        self.file
                            .read_exact_at(&mut buf, off)
                            .map_err(Failure::Io)?;
                        mem.write(b.addr, &buf).map_err(Failure::Access)?;
                        out.used_len += b.len;
                        out.bytes_read += u64::from(b.len);
                    } else {
                        mem.read(b.addr, &mut buf).map_err(Failure::Access)?;
                        self.file.write_all_at(&buf, off).map_err(Failure::Io)?;
                        out.bytes_written += u64::from(b.len);
                    }
                    off += u64::from(b.len);
                }
                Ok(VIRTIO_BLK_S_OK as u8)
            }
            Kind::Flush => {
                self.file.sync_data().map_err(Failure::Io)?;
                Ok(VIRTIO_BLK_S_OK as u8)
            }
            Kind::GetId => {
                let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
                id[..DISK_ID.len()].copy_from_slice(DISK_ID);
                let mut left = &id[..];
                for b in &req.data {
                    let n = left.len().min(b.len as usize);
                    mem.write(b.addr, &left[..n]).map_err(Failure::Access)?;
                    out.used_len += n as u32;
                    left = &left[n..];
                }
                Ok(VIRTIO_BLK_S_OK as u8)
            }
            Kind::Other(_) => Ok(VIRTIO_BLK_S_UNSUPP as u8),
        }
    }
}

enum Failure {
    Access(AccessError),
    Io(std::io::Error),
    Range(u64, u64),
    TooBig(u32),
    ReadOnly,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Access(e) => write!(f, "{e}"),
            Failure::Io(e) => write!(f, "disk file: {e}"),
            Failure::Range(s, n) => write!(f, "sector {s} + {n} bytes outside the disk"),
            Failure::TooBig(n) => write!(f, "buffer of {n} bytes too large"),
            Failure::ReadOnly => write!(f, "write to a read-only disk"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtqueue::tests::FakeMem;

    fn header(mem: &FakeMem, at: u64, ty: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&ty.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        mem.write(at, &h).unwrap();
    }

    fn disk(sectors: u64) -> (BlockDevice, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "pkvm-vmm-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(sectors * SECTOR).unwrap();
        (BlockDevice::new(f, false).unwrap(), path)
    }

    #[test]
    fn parses_the_linux_layout() {
        let mem = FakeMem::new(0x1000, 0x10000);
        header(&mem, 0x1000, VIRTIO_BLK_T_IN, 8);
        let chain = [
            Buf {
                addr: 0x1000,
                len: 16,
                write: false,
            },
            Buf {
                addr: 0x2000,
                len: 4096,
                write: true,
            },
            Buf {
                addr: 0x3000,
                len: 1,
                write: true,
            },
        ];
        let r = parse(&mem, &chain).unwrap();
        assert_eq!(r.kind, Kind::In);
        assert_eq!(r.sector, 8);
        assert_eq!(r.data, vec![chain[1]]);
        assert_eq!(r.status, 0x3000);
        // Data and status in one buffer.
        let r = parse(
            &mem,
            &[
                chain[0],
                Buf {
                    addr: 0x2000,
                    len: 513,
                    write: true,
                },
            ],
        )
        .unwrap();
        assert_eq!(
            r.data,
            vec![Buf {
                addr: 0x2000,
                len: 512,
                write: true
            }]
        );
        assert_eq!(r.status, 0x2200);
        assert!(parse(&mem, &chain[..1]).is_err());
        assert!(parse(&mem, &[chain[1], chain[2]]).is_err());
        // An OUT with a writable data buffer is malformed.
        header(&mem, 0x1000, VIRTIO_BLK_T_OUT, 0);
        assert!(matches!(parse(&mem, &chain), Err(ParseError::Malformed(_))));
    }

    #[test]
    fn writes_reads_and_fails_on_private_pages() {
        let (dev, path) = disk(64);
        let mut mem = FakeMem::new(0, 0x10000);
        let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 13) as u8).collect();
        mem.write(0x4000, &pattern).unwrap();
        let out = Request {
            kind: Kind::Out,
            sector: 2,
            data: vec![Buf {
                addr: 0x4000,
                len: 4096,
                write: false,
            }],
            status: 0x100,
        };
        let o = dev.serve(&mem, &out);
        assert_eq!((o.status, o.used_len, o.bytes_written), (0, 1, 4096));
        let inn = Request {
            kind: Kind::In,
            sector: 2,
            data: vec![Buf {
                addr: 0x8000,
                len: 4096,
                write: true,
            }],
            status: 0x101,
        };
        let o = dev.serve(&mem, &inn);
        assert_eq!((o.status, o.used_len, o.bytes_read), (0, 4097, 4096));
        let mut back = vec![0u8; 4096];
        mem.read(0x8000, &mut back).unwrap();
        assert_eq!(back, pattern);

        // Out of range.
        let far = Request {
            sector: 63,
            ..inn.clone()
        };
        assert_eq!(dev.serve(&mem, &far).status, VIRTIO_BLK_S_IOERR as u8);
        // A private data page: IOERR, counted, status still written.
        mem.private.push(0x8000);
        let o = dev.serve(&mem, &inn);
        assert_eq!((o.status, o.faults), (VIRTIO_BLK_S_IOERR as u8, 1));
        assert_eq!(mem.bytes.borrow()[0x101], VIRTIO_BLK_S_IOERR as u8);
        // GET_ID and an unknown type.
        let id = Request {
            kind: Kind::GetId,
            sector: 0,
            data: vec![Buf {
                addr: 0x200,
                len: 20,
                write: true,
            }],
            status: 0x300,
        };
        let o = dev.serve(&mem, &id);
        assert_eq!((o.status, o.used_len), (0, 21));
        assert_eq!(&mem.bytes.borrow()[0x200..0x200 + DISK_ID.len()], DISK_ID);
        let other = Request {
            kind: Kind::Other(99),
            ..id
        };
        assert_eq!(dev.serve(&mem, &other).status, VIRTIO_BLK_S_UNSUPP as u8);
        std::fs::remove_file(path).unwrap();
    }
}
