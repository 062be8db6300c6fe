// SPDX-License-Identifier: GPL-2.0-only
//! A scripted guest for the reference hypervisor: no QEMU, no kernel.
//!
//! The tests start the real program, connect to its ivshmem socket as QEMU
//! would (the client side of the ivshmem server protocol), write the pviommu
//! table, ring and mailbox bytes straight into the RAM and shared-memory
//! files, ring the doorbell through the eventfd QEMU would write, and drive
//! the vhost-user backends through the `vhost` crate's frontend.

#![allow(dead_code)]

pub mod blk;
pub mod virtq;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

pub const PAGE: u64 = 4096;
pub const RAM_SIZE: u64 = 64 << 20;
pub const SHM_SIZE: u64 = 64 << 10;
pub const DISK_SIZE: u64 = 4 << 20;

/// Guest-physical layout the scripted guest uses.
pub const TABLE_GPA: u64 = 0x10_0000;
pub const TABLE_FRAMES: u64 = RAM_SIZE / PAGE;
pub const RING_GPA: u64 = 0x11_0000;
pub const RING_ORDER: u64 = 4;
pub const POOL_GPA: u64 = 0x12_0000;
pub const POOL_PAGES: u64 = 1;

// ABI numbers, spelled out so the tests check the wire, not a shared constant.
pub const FUNC_VERSION: u32 = 0;
pub const FUNC_INIT: u32 = 1;
pub const FUNC_SYNC: u32 = 2;
pub const FUNC_SHARE: u32 = 3;
pub const FUNC_UNSHARE: u32 = 4;
pub const FUNC_APPLY: u32 = 6;
pub const FUNC_STATS: u32 = 7;
/// Functions defined by ABI 2.1 (numbers `0..NR_FUNCS`).
pub const NR_FUNCS: u32 = 8;
pub const ABI_2_2: u64 = 0x2_0002;
pub const FEATURE_APPLY: u64 = 1;
pub const FEATURE_STATS: u64 = 2;
pub const FEATURE_WRITE_ONLY: u64 = 4;
pub const ST_SUCCESS: i64 = 0;
pub const ST_NOT_SUPPORTED: i64 = -1;
pub const ST_INVALID: i64 = -3;
pub const ST_DENIED: i64 = -0x100;
pub const ST_BUSY: i64 = -0x101;
pub const ST_NO_MEMORY: i64 = -0x102;
pub const ST_BAD_STATE: i64 = -0x103;
/// Every status ABI 2.0 defines (-2, SMCCC `NOT_REQUIRED`, is not one).
pub const ST_ALL: [i64; 7] = [
    ST_SUCCESS,
    ST_NOT_SUPPORTED,
    ST_INVALID,
    ST_DENIED,
    ST_BUSY,
    ST_NO_MEMORY,
    ST_BAD_STATE,
];
pub const PERM_NONE: u8 = 0;
pub const PERM_READ: u8 = 1;
pub const PERM_RW: u8 = 3;

const SLOTS_OFFSET: u64 = 4096;
const SLOT_SIZE: u64 = 128;

fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "refhyp-test-{}-{tag}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The program under test, stopped (SIGTERM) on drop.
pub struct Refhyp {
    child: Child,
    pub dir: PathBuf,
    pub ram_path: PathBuf,
    pub ivshmem_path: PathBuf,
    pub blk_path: PathBuf,
    pub disk_path: PathBuf,
    pub counters_path: PathBuf,
    pub net_path: PathBuf,
    pub vsock_path: PathBuf,
    pub rng_path: PathBuf,
    pub console_path: PathBuf,
    /// What the console backend writes.
    pub console_out: PathBuf,
}

impl Refhyp {
    pub fn start(tag: &str, extra: &[&str]) -> Refhyp {
        let dir = scratch_dir(tag);
        let disk_path = dir.join("disk.img");
        let disk = File::create(&disk_path).unwrap();
        disk.set_len(DISK_SIZE).unwrap();
        let r = |n: &str| dir.join(n);
        let (ram_path, ivshmem_path, blk_path, counters_path) = (
            r("ram"),
            r("ivshmem.sock"),
            r("blk.sock"),
            r("counters.json"),
        );
        let (net_path, vsock_path, rng_path, console_path, console_out) = (
            r("net.sock"),
            r("vsock.sock"),
            r("rng.sock"),
            r("console.sock"),
            r("console.out"),
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_pviommu-refhyp"))
            .arg("--ram-file")
            .arg(&ram_path)
            .args(["--ram-size", &RAM_SIZE.to_string()])
            .arg("--ivshmem-socket")
            .arg(&ivshmem_path)
            .args(["--ivshmem-size", &SHM_SIZE.to_string()])
            .arg("--blk-socket")
            .arg(&blk_path)
            .arg("--blk-image")
            .arg(&disk_path)
            .arg("--counters")
            .arg(&counters_path)
            .arg("--net-socket")
            .arg(&net_path)
            .arg("--vsock-socket")
            .arg(&vsock_path)
            .arg("--rng-socket")
            .arg(&rng_path)
            .arg("--console-socket")
            .arg(&console_path)
            .arg("--console-out")
            .arg(&console_out)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "READY\n");
        Refhyp {
            child,
            dir,
            ram_path,
            ivshmem_path,
            blk_path,
            disk_path,
            counters_path,
            net_path,
            vsock_path,
            rng_path,
            console_path,
            console_out,
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill() has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Asks for the counters (SIGUSR1) and returns the document.
    pub fn counters(&self) -> Counters {
        let _ = std::fs::remove_file(&self.counters_path);
        self.signal(libc::SIGUSR1);
        let doc = wait_for(|| std::fs::read_to_string(&self.counters_path).ok());
        Counters(doc)
    }

    /// Polls the counters until `section.key` reaches `at_least`.
    pub fn wait_counter(&self, section: &str, key: &str, at_least: u64) -> Counters {
        wait_for(|| {
            let c = self.counters();
            (c.get(section, key) >= at_least).then_some(c)
        })
    }

    /// Whether the process is still running (it must survive any input).
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Stops the program as the harness does; returns the final counters.
    pub fn stop(mut self) -> Counters {
        let _ = std::fs::remove_file(&self.counters_path);
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "refhyp exited with {status}");
        assert!(!self.ram_path.exists(), "RAM file left behind");
        for p in [
            &self.ivshmem_path,
            &self.blk_path,
            &self.net_path,
            &self.vsock_path,
            &self.rng_path,
            &self.console_path,
        ] {
            assert!(!p.exists(), "{} left behind", p.display());
        }
        Counters(std::fs::read_to_string(&self.counters_path).unwrap())
    }
}

impl Drop for Refhyp {
    fn drop(&mut self) {
        if self.alive() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The program, and a guest after INIT and `share`.
///
/// Sharing comes before a driver connects and enables its queues, as a
/// driver allocates its rings with the DMA API before DRIVER_OK: the
/// backend may look at a queue as soon as it is enabled.
pub fn start_shared(tag: &str, extra: &[&str], share: impl FnOnce(&mut Guest)) -> (Refhyp, Guest) {
    let h = Refhyp::start(tag, extra);
    let mut g = Guest::connect(&h);
    g.init();
    share(&mut g);
    (h, g)
}

/// A byte pattern that makes a misplaced or stale byte show up.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// FNV-1a, 32 bits, as the backends and the guest tools compute it.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    u64::from(h)
}

/// Polls `f` for up to 10 s.
pub fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// The counters document, with a lookup good enough for flat sections.
pub struct Counters(pub String);

impl Counters {
    /// `get("device", "violations")`: the first `"key":N` after the section start.
    pub fn get(&self, section: &str, key: &str) -> u64 {
        let s = &self.0;
        let start = s
            .find(&format!("\"{section}\":{{"))
            .unwrap_or_else(|| panic!("no section {section} in {s}"));
        let rest = &s[start..];
        let k = format!("\"{key}\":");
        let at = rest
            .find(&k)
            .unwrap_or_else(|| panic!("no {section}.{key} in {s}"))
            + k.len();
        rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap()
    }
}

/// QEMU's side of the ivshmem connection, plus the guest's view of RAM.
pub struct Guest {
    _sock: UnixStream,
    pub peer_id: i64,
    pub shm: File,
    /// The hypervisor's eventfd: writing it is what QEMU does on a doorbell.
    pub doorbell: EventFd,
    /// Our own vector: the hypervisor raises it after serving calls.
    pub irq: EventFd,
    pub ram: File,
    seq: u32,
    producer: u64,
}

fn recv_msg(sock: &UnixStream) -> (i64, Option<File>) {
    let mut buf = [0u8; 8];
    let (n, file) = sock.recv_with_fd(&mut buf).unwrap();
    assert_eq!(n, 8, "short ivshmem message");
    (i64::from_le_bytes(buf), file)
}

fn eventfd_of(file: File) -> EventFd {
    // SAFETY: the descriptor is an eventfd we now own (it came with the
    // message and nothing else holds it).
    unsafe { EventFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(file)) }
}

impl Guest {
    /// Connects as QEMU's ivshmem-doorbell with one vector does.
    pub fn connect(h: &Refhyp) -> Guest {
        let sock = UnixStream::connect(&h.ivshmem_path).unwrap();
        let (version, fd) = recv_msg(&sock);
        assert!(version == 0 && fd.is_none(), "protocol version");
        let (peer_id, fd) = recv_msg(&sock);
        assert!(fd.is_none() && peer_id > 0);
        let (minus_one, shm) = recv_msg(&sock);
        assert_eq!(minus_one, -1);
        let shm = shm.expect("shared memory fd");
        assert_eq!(shm.metadata().unwrap().len(), SHM_SIZE);
        let (hyp_id, db) = recv_msg(&sock);
        let (own_id, irq) = recv_msg(&sock);
        assert_eq!(own_id, peer_id);
        let mut hdr = [0u8; 64];
        shm.read_exact_at(&mut hdr, 0).unwrap();
        assert_eq!(&hdr[0..4], b"PIOM", "mailbox magic");
        assert_eq!(
            u32::from_le_bytes(hdr[16..20].try_into().unwrap()) as i64,
            hyp_id
        );
        let ram = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&h.ram_path)
            .unwrap();
        Guest {
            _sock: sock,
            peer_id,
            shm,
            doorbell: eventfd_of(db.expect("doorbell eventfd")),
            irq: eventfd_of(irq.expect("irq eventfd")),
            ram,
            seq: 0,
            producer: 0,
        }
    }

    pub fn write(&self, gpa: u64, data: &[u8]) {
        self.ram.write_all_at(data, gpa).unwrap();
    }

    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.ram.read_exact_at(&mut b, gpa).unwrap();
        b
    }

    /// Writes slot `slot` raw, without waiting (hostile-input tests).
    pub fn write_slot_raw(&self, slot: u64, bytes: &[u8; 128]) {
        self.shm
            .write_all_at(bytes, SLOTS_OFFSET + slot * SLOT_SIZE)
            .unwrap();
    }

    pub fn read_slot_raw(&self, slot: u64) -> [u8; 128] {
        let mut b = [0u8; 128];
        self.shm
            .read_exact_at(&mut b, SLOTS_OFFSET + slot * SLOT_SIZE)
            .unwrap();
        b
    }

    pub fn ring_doorbell(&self) {
        self.doorbell.write(1).unwrap();
    }

    /// One call through slot 0: write the slot, bump `req_seq`, ring, wait
    /// for `done_seq`. Returns (status, ret).
    pub fn call(&mut self, func: u32, args: [u64; 6]) -> (i64, [u64; 3]) {
        self.call_raw(func, 0, args)
    }

    pub fn call_raw(&mut self, func: u32, flags: u32, args: [u64; 6]) -> (i64, [u64; 3]) {
        let mut slot = self.read_slot_raw(0);
        // The next sequence follows the hypervisor's last answer, whatever
        // a hostile test left in the slot; reserved0 must be zero.
        let done = u32::from_le_bytes(slot[96..100].try_into().unwrap());
        self.seq = done;
        slot[60..64].fill(0);
        slot[0..4].copy_from_slice(&func.to_le_bytes());
        slot[4..8].copy_from_slice(&flags.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            slot[8 + 8 * i..16 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        self.seq = self.seq.wrapping_add(1);
        slot[56..60].copy_from_slice(&self.seq.to_le_bytes());
        self.write_slot_raw(0, &slot);
        self.ring_doorbell();
        let seq = self.seq;
        let done = wait_for(|| {
            let s = self.read_slot_raw(0);
            (u32::from_le_bytes(s[96..100].try_into().unwrap()) == seq).then_some(s)
        });
        let status = i64::from_le_bytes(done[64..72].try_into().unwrap());
        let mut ret = [0u64; 3];
        for (i, r) in ret.iter_mut().enumerate() {
            *r = u64::from_le_bytes(done[72 + 8 * i..80 + 8 * i].try_into().unwrap());
        }
        (status, ret)
    }

    /// Registers the table and ring (INIT).
    pub fn init(&mut self) {
        let (st, _) = self.call(
            FUNC_INIT,
            [
                TABLE_GPA,
                TABLE_FRAMES,
                RING_GPA,
                RING_ORDER,
                POOL_GPA,
                POOL_PAGES,
            ],
        );
        assert_eq!(st, ST_SUCCESS, "INIT");
    }

    /// The map path: table entries, then one ring record. No exit.
    pub fn set_perm(&mut self, gfn: u64, nr: u32, perm: u8) {
        self.write(TABLE_GPA + gfn, &vec![perm; nr as usize]);
        self.publish(gfn, nr);
    }

    /// Publishes a raw ring record (hostile tests pass any gfn).
    pub fn publish(&mut self, gfn: u64, nr: u32) {
        let index = self.producer;
        let pos = index & ((1 << RING_ORDER) - 1);
        let mut rec = [0u8; 16];
        rec[0..8].copy_from_slice(&gfn.to_le_bytes());
        rec[8..12].copy_from_slice(&nr.to_le_bytes());
        rec[12..16].copy_from_slice(&((index + 1) as u32).to_le_bytes());
        self.write(RING_GPA + PAGE + pos * 16, &rec);
        self.producer += 1;
        self.write(RING_GPA, &self.producer.to_le_bytes());
    }

    /// Shares `[gpa, gpa + len)` with `perm` through the table and ring.
    pub fn share_range(&mut self, gpa: u64, len: u64, perm: u8) {
        let first = gpa / PAGE;
        let last = (gpa + len - 1) / PAGE;
        self.set_perm(first, (last - first + 1) as u32, perm);
    }

    /// The unmap path: clear entries, publish, and one SYNC.
    pub fn unshare_range(&mut self, gpa: u64, len: u64) {
        self.share_range(gpa, len, PERM_NONE);
        let (st, _) = self.call(FUNC_SYNC, [0; 6]);
        assert_eq!(st, ST_SUCCESS, "SYNC");
    }
}
