// SPDX-License-Identifier: GPL-2.0
//! The MMIO bus: the UART and the virtio-blk device, their interrupt
//! lines, and what a queue notification does.

use crate::adversary::Adversary;
use crate::guest_access::GuestAccess;
use crate::layout::{UART_BASE, UART_SPI, VIRTIO_BASE, VIRTIO_SPI};
use crate::stats::{add, inc, Stats};
use crate::uart::{Pl011, UART_SIZE};
use crate::virtio_blk::{self, BlockDevice, Kind};
use crate::virtio_mmio::{Event, VirtioMmio, MMIO_SIZE};
use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;

/// Sets the level of SPI `spi`.
pub type IrqLine = Box<dyn Fn(u32, bool) + Send + Sync>;

pub const QUEUE_SIZE: u16 = 256;
/// virtio-mmio's status bit DEVICE_NEEDS_RESET.
const NEEDS_RESET: u32 = 0x40;

struct Blk {
    mmio: VirtioMmio,
    disk: BlockDevice,
    line: bool,
    /// Every page a descriptor has named (the adversary leaves them be).
    seen: HashSet<u64>,
}

struct Uart {
    dev: Pl011,
    line: bool,
}

pub struct Devices {
    uart: Mutex<Uart>,
    blk: Option<Mutex<Blk>>,
    adversary: Option<Mutex<Adversary>>,
    mem: Arc<dyn GuestAccess + Send + Sync>,
    irq: IrqLine,
    pub stats: Arc<Stats>,
    start: Instant,
    first_output: Mutex<Option<f64>>,
    first_notify: Mutex<Option<f64>>,
    first_error: Mutex<Option<String>>,
    out: Mutex<Box<dyn Write + Send>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Devices {
    pub fn new(
        mem: Arc<dyn GuestAccess + Send + Sync>,
        disk: Option<BlockDevice>,
        adversary: Option<Adversary>,
        irq: IrqLine,
        out: Box<dyn Write + Send>,
    ) -> Self {
        let blk = disk.map(|disk| {
            let config =
                virtio_blk::config_space(disk.capacity_sectors, u32::from(QUEUE_SIZE) - 2).to_vec();
            let mmio = VirtioMmio::new(
                VIRTIO_ID_BLOCK,
                virtio_blk::device_features(),
                config,
                1,
                QUEUE_SIZE,
            );
            Mutex::new(Blk {
                mmio,
                disk,
                line: false,
                seen: HashSet::new(),
            })
        });
        Devices {
            uart: Mutex::new(Uart {
                dev: Pl011::new(),
                line: false,
            }),
            blk,
            adversary: adversary.map(Mutex::new),
            mem,
            irq,
            stats: Arc::new(Stats::default()),
            start: Instant::now(),
            first_output: Mutex::new(None),
            first_notify: Mutex::new(None),
            first_error: Mutex::new(None),
            out: Mutex::new(out),
        }
    }

    pub fn first_output(&self) -> Option<f64> {
        *lock(&self.first_output)
    }
    pub fn first_notify(&self) -> Option<f64> {
        *lock(&self.first_notify)
    }
    pub fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }

    fn note_error(&self, e: String) {
        // The first few errors go to stderr as they happen.
        static LOGGED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if LOGGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 10 || crate::stats::verbose()
        {
            eprintln!("pkvm-vmm: {e}");
        }
        lock(&self.first_error).get_or_insert(e);
    }

    /// Settles the adversary's suspects once the guest has stopped.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub fn finish_adversary(&self) -> Option<u64> {
        let adv = self.adversary.as_ref()?;
        let empty = HashSet::new();
        let guard = self.blk.as_ref().map(lock);
        let seen = guard.as_ref().map_or(&empty, |b| &b.seen);
        let mut a = lock(adv);
        a.finish(seen, &self.stats);
        a.first_violation
    }

    fn set_line(&self, spi: u32, cur: &mut bool, level: bool) {
        if *cur != level {
            *cur = level;
            if level {
                inc(&self.stats.interrupts);
            }
            (self.irq)(spi, level);
        }
    }

    /// A guest MMIO access; `false` if nothing is mapped there.
    pub fn mmio(&self, addr: u64, data: &mut [u8], write: bool) -> bool {
        if (UART_BASE..UART_BASE + UART_SIZE).contains(&addr) {
            inc(&self.stats.mmio_uart);
            let mut u = lock(&self.uart);
            if write {
                let changed = u.dev.write(addr - UART_BASE, data);
                let bytes = u.dev.take_output();
                if !bytes.is_empty() {
                    add(&self.stats.uart_bytes, bytes.len() as u64);
                    lock(&self.first_output).get_or_insert(self.start.elapsed().as_secs_f64());
                    let mut o = lock(&self.out);
                    let _ = o.write_all(&bytes);
                    let _ = o.flush();
                }
                if changed {
                    let level = u.dev.irq_level();
                    let mut line = u.line;
                    self.set_line(UART_SPI, &mut line, level);
                    u.line = line;
                }
            } else {
                u.dev.read(addr - UART_BASE, data);
            }
            return true;
        }
        if let Some(blk) = &self.blk {
            if (VIRTIO_BASE..VIRTIO_BASE + MMIO_SIZE).contains(&addr) {
                inc(&self.stats.mmio_virtio);
                let mut b = lock(blk);
                if !write {
                    b.mmio.read(addr - VIRTIO_BASE, data);
                    return true;
                }
                match b.mmio.write(addr - VIRTIO_BASE, data) {
                    Some(Event::Notify(q)) => self.notify(&mut b, q),
                    Some(Event::InterruptChanged) | Some(Event::Reset) => {
                        let level = b.mmio.irq_level();
                        let mut line = b.line;
                        self.set_line(VIRTIO_SPI, &mut line, level);
                        b.line = line;
                    }
                    Some(Event::DriverOk) | None => {}
                }
                return true;
            }
        }
        inc(&self.stats.mmio_unknown);
        if !write {
            data.fill(0);
        }
        true // reads as zero, writes ignored: keeps a probing guest alive
    }

    fn notify(&self, b: &mut Blk, qi: u32) {
        inc(&self.stats.notifications);
        lock(&self.first_notify).get_or_insert(self.start.elapsed().as_secs_f64());
        self.process(b, qi);
        // Probe after the chains just published are in `seen`.
        if let Some(adv) = &self.adversary {
            let rings: Vec<(u64, u64)> =
                b.mmio.queues.iter().flat_map(|q| q.ring_ranges()).collect();
            lock(adv).probe(self.mem.as_ref(), &rings, &b.seen, &self.stats);
        }
    }

    fn process(&self, b: &mut Blk, qi: u32) {
        if qi != 0 || b.mmio.status & NEEDS_RESET != 0 {
            crate::vlog!("notify queue {qi} ignored (status {:#x})", b.mmio.status);
            return;
        }
        let mem = self.mem.as_ref();
        let mut done = 0;
        loop {
            let head = match b.mmio.queues[0].pop(mem) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    // The driver's rings are unreadable: nothing more can be done.
                    inc(&self.stats.ring_faults);
                    let q = &b.mmio.queues[0];
                    self.note_error(format!(
                        "virtqueue (desc {:#x} avail {:#x} used {:#x}): {e}",
                        q.desc, q.avail, q.used
                    ));
                    b.mmio.status |= NEEDS_RESET;
                    break;
                }
            };
            let used_len = match b.mmio.queues[0].chain(mem, head) {
                Ok(chain) => {
                    for buf in &chain {
                        let first = buf.addr >> 12;
                        let last = (buf.addr + u64::from(buf.len.max(1)) - 1) >> 12;
                        b.seen.extend((first..=last).map(|p| p << 12));
                    }
                    match virtio_blk::parse(mem, &chain) {
                        Ok(req) => self.serve(b, &req),
                        Err(e) => {
                            inc(&self.stats.bad_chains);
                            if matches!(e, virtio_blk::ParseError::Access(_)) {
                                inc(&self.stats.request_faults);
                            }
                            self.note_error(format!("request: {e}"));
                            0
                        }
                    }
                }
                Err(e) => {
                    inc(&self.stats.bad_chains);
                    self.note_error(format!("descriptor chain: {e}"));
                    0
                }
            };
            if let Err(e) = b.mmio.queues[0].push_used(mem, head, used_len) {
                inc(&self.stats.ring_faults);
                self.note_error(format!("used ring: {e}"));
                b.mmio.status |= NEEDS_RESET;
                break;
            }
            done += 1;
        }
        if done > 0 {
            b.mmio.signal_used();
            let level = b.mmio.irq_level();
            let mut line = b.line;
            self.set_line(VIRTIO_SPI, &mut line, level);
            b.line = line;
        }
    }

    fn serve(&self, b: &Blk, req: &virtio_blk::Request) -> u32 {
        let s = &self.stats;
        inc(&s.requests);
        inc(match req.kind {
            Kind::In => &s.req_in,
            Kind::Out => &s.req_out,
            Kind::Flush => &s.req_flush,
            Kind::GetId => &s.req_get_id,
            Kind::Other(_) => &s.req_other,
        });
        let o = b.disk.serve(self.mem.as_ref(), req);
        crate::vlog!(
            "request {:?} sector {} bufs {:?} -> status {} used {}",
            req.kind,
            req.sector,
            req.data.iter().map(|d| (d.addr, d.len)).collect::<Vec<_>>(),
            o.status,
            o.used_len
        );
        add(&s.disk_bytes_read, o.bytes_read);
        add(&s.disk_bytes_written, o.bytes_written);
        add(&s.request_faults, o.faults);
        match u32::from(o.status) {
            VIRTIO_BLK_S_OK => inc(&s.req_ok),
            VIRTIO_BLK_S_IOERR => inc(&s.req_ioerr),
            VIRTIO_BLK_S_UNSUPP => inc(&s.req_unsupp),
            _ => {}
        }
        if let Some(e) = o.first_error {
            self.note_error(format!("block request at sector {}: {e}", req.sector));
        }
        o.used_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtqueue::tests::{Driver, FakeMem};
    use std::sync::atomic::Ordering;
    use virtio_bindings::virtio_mmio::*;

    // FakeMem is single-threaded; the bus needs Send + Sync. Wrap it.
    struct SyncMem(Mutex<FakeMem>);
    // SAFETY: every access goes through the mutex.
    unsafe impl Sync for SyncMem {}
    // SAFETY: as above.
    unsafe impl Send for SyncMem {}
    impl GuestAccess for SyncMem {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), crate::guest_access::AccessError> {
            lock(&self.0).read(gpa, buf)
        }
        fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), crate::guest_access::AccessError> {
            lock(&self.0).write(gpa, buf)
        }
    }

    fn w32(d: &Devices, off: u32, v: u32) {
        let mut b = v.to_le_bytes();
        assert!(d.mmio(VIRTIO_BASE + u64::from(off), &mut b, true));
    }

    #[test]
    fn a_request_end_to_end() {
        let path = std::env::temp_dir().join(format!("pkvm-vmm-dev-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(1 << 20).unwrap();
        let disk = BlockDevice::new(f, false).unwrap();
        let fake = FakeMem::new(0x4000_0000, 0x20000);
        let mut drv = Driver::new(&fake, 16);
        let q = drv.q.clone();
        let mem = Arc::new(SyncMem(Mutex::new(fake)));
        let levels = Arc::new(Mutex::new(Vec::new()));
        let l2 = levels.clone();
        let irq: IrqLine = Box::new(move |spi, level| lock(&l2).push((spi, level)));
        let dev = Devices::new(
            mem.clone(),
            Some(disk),
            None,
            irq,
            Box::new(std::io::sink()),
        );

        w32(&dev, VIRTIO_MMIO_QUEUE_NUM, 16);
        w32(&dev, VIRTIO_MMIO_QUEUE_DESC_LOW, q.desc as u32);
        w32(&dev, VIRTIO_MMIO_QUEUE_AVAIL_LOW, q.avail as u32);
        w32(&dev, VIRTIO_MMIO_QUEUE_USED_LOW, q.used as u32);
        w32(&dev, VIRTIO_MMIO_QUEUE_READY, 1);
        w32(&dev, VIRTIO_MMIO_STATUS, 0xf);

        // OUT of 4 KiB from 0x4000_8000 to sector 8.
        {
            let m = lock(&mem.0);
            let mut h = [0u8; 16];
            h[0] = 1;
            h[8] = 8;
            m.write(0x4000_4000, &h).unwrap();
            m.write(0x4000_8000, &[0x5a; 4096]).unwrap();
            drv.add(
                &m,
                &[
                    (0x4000_4000, 16, false),
                    (0x4000_8000, 4096, false),
                    (0x4000_5000, 1, true),
                ],
            );
        }
        w32(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(dev.stats.req_ok.load(Ordering::Relaxed), 1);
        assert!(dev.first_notify().is_some());
        assert_eq!(dev.stats.disk_bytes_written.load(Ordering::Relaxed), 4096);
        assert_eq!(*lock(&levels), vec![(VIRTIO_SPI, true)]);
        let mut st = [0u8; 4];
        dev.mmio(
            VIRTIO_BASE + u64::from(VIRTIO_MMIO_INTERRUPT_STATUS),
            &mut st,
            false,
        );
        assert_eq!(st[0], 1);
        w32(&dev, VIRTIO_MMIO_INTERRUPT_ACK, 1);
        assert_eq!(lock(&levels).last(), Some(&(VIRTIO_SPI, false)));
        assert_eq!(std::fs::read(&path).unwrap()[4096..8192], [0x5a; 4096]);

        // IN into a private page: IOERR, counted, used entry still returned.
        {
            let mut m = lock(&mem.0);
            let mut h = [0u8; 16];
            h[8] = 8;
            m.write(0x4000_4000, &h).unwrap();
            m.private.push(0x4000_9000);
            drv.add(
                &m,
                &[
                    (0x4000_4000, 16, false),
                    (0x4000_9000, 4096, true),
                    (0x4000_5000, 1, true),
                ],
            );
        }
        w32(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(dev.stats.req_ioerr.load(Ordering::Relaxed), 1);
        assert_eq!(dev.stats.request_faults.load(Ordering::Relaxed), 1);
        let m = lock(&mem.0);
        assert_eq!(m.read_u16(q.used + 2).unwrap(), 2);
        assert!(dev.first_error().unwrap().contains("refused"));
        drop(m);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn uart_output_reaches_the_writer() {
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                lock(&self.0).extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Arc::new(Mutex::new(Vec::new()));
        let mem = Arc::new(SyncMem(Mutex::new(FakeMem::new(0, 4096))));
        let dev = Devices::new(
            mem,
            None,
            None,
            Box::new(|_, _| {}),
            Box::new(Shared(buf.clone())),
        );
        for c in b"ok" {
            let mut d = [*c, 0, 0, 0];
            dev.mmio(UART_BASE, &mut d, true);
        }
        assert_eq!(&*lock(&buf), b"ok");
        assert!(dev.first_output().is_some());
        // Unmapped MMIO reads as zero and is counted.
        let mut d = [0xffu8; 4];
        dev.mmio(0x1234_0000, &mut d, false);
        assert_eq!(d, [0; 4]);
        assert_eq!(dev.stats.mmio_unknown.load(Ordering::Relaxed), 1);
    }
}
