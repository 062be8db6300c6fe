// SPDX-License-Identifier: GPL-2.0-only
//! The host: the state machine plus everything around it that the devices
//! and the doorbell share.
//!
//! One lock covers the state machine, the devices' MMU, the fault plan
//! and the counters: exits are serialised anyway (a real hypervisor handles
//! one exit per vCPU and the table is the single source of truth). Device
//! data is copied outside the lock, after its range was checked, through
//! mappings the MMU keeps equal to the host view (`device_mmu`).
//!
//! A second lock, the gate, orders device requests against revocations:
//! a device request holds it for reading from its first check to its last
//! copy; every exit that may revoke (a doorbell, a queue kick) takes it for
//! writing before the state machine runs, so a `SYNC` answers only after
//! the requests that checked the pages it revokes have finished, and none
//! starts until the mappings no longer reach them. The gate is always
//! taken before the lock.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::thread;
use std::time::Duration;

use pviommu_reference_hyp::abi::layout::{PAGE_SHIFT, PAGE_SIZE};
use pviommu_reference_hyp::{
    mailbox_pending, Access, CallResult, Config, ExitKind, GuestRam, Hypervisor,
};
use vm_memory::{GuestMemoryMmap, Permissions};

use crate::adversary::Adversary;
use crate::cli::Options;
use crate::counters::{self, ClassCounters, DeviceCounters};
use crate::device_mmu::DeviceMmu;
use crate::faults::FaultPlan;
use crate::guest_ram::RamFile;
use crate::mailbox;
use crate::shared_region::ShmRegion;

pub struct HostInner {
    pub hyp: Hypervisor,
    /// The devices' mappings of guest RAM.
    pub mmu: DeviceMmu,
    pub faults: FaultPlan,
    pub dev: DeviceCounters,
    /// Per class, for the backends other than the disk.
    pub classes: BTreeMap<&'static str, ClassCounters>,
    /// The adversarial host (`--adversarial`).
    adversary: Option<Adversary>,
}

pub struct Host {
    /// Guest RAM for the state machine only; devices use QEMU's memory table.
    ram: RamFile,
    shm: ShmRegion,
    enforce: bool,
    /// `FaultPlan::copy_delay`, kept out of the lock: the device sleeps
    /// without it.
    copy_delay: Duration,
    /// Device requests (read) against revoking exits (write); see above.
    gate: RwLock<()>,
    inner: Mutex<HostInner>,
}

impl HostInner {
    /// Brings the devices' mappings up to date after the state machine
    /// ran: at once for grants, and for reductions when `may_revoke` (the
    /// caller holds the gate for writing). Logs device accesses the
    /// mappings refused since the last time.
    /// At the start of an exit: the adversary attacks (`--adversarial`).
    pub fn adversary_exit(&mut self, ram: &dyn GuestRam) {
        if let Some(a) = &mut self.adversary {
            a.on_exit(&mut self.mmu, ram, &mut self.dev);
        }
    }

    /// After a drain: the adversary's oracle reads what it applied.
    pub fn adversary_drained(&mut self, ram: &dyn GuestRam) {
        if let Some(a) = &mut self.adversary {
            a.after_drain(ram);
        }
    }

    /// Before a call is served: the adversary notes what the call is
    /// judged by.
    pub fn adversary_before(&mut self, ram: &dyn GuestRam, func: u32, args: &[u64; 6]) {
        if let Some(a) = &mut self.adversary {
            a.before_call(ram, func, args);
        }
    }

    /// After a call and before its answer is published (the guest still
    /// waits): the adversary attacks what the call revoked.
    pub fn adversary_after(
        &mut self,
        ram: &dyn GuestRam,
        func: u32,
        args: &[u64; 6],
        result: &CallResult,
    ) {
        if let Some(a) = &mut self.adversary {
            a.after_call(&mut self.mmu, ram, (func, args, result), &mut self.dev);
        }
    }

    pub fn sync_view(&mut self, may_revoke: bool) {
        self.mmu.sync(&mut self.hyp, may_revoke);
        if let Some((n, gfn, write)) = self.mmu.new_faults() {
            let access = if write { "write" } else { "read" };
            log::warn!(
                "violation: {n} device access(es) through the mappings refused, \
                 the last a {access} of gpa {:#x}",
                gfn << PAGE_SHIFT
            );
        }
    }
}

/// The host-view accesses a device access with `perm` needs: both for a
/// read-modify-write, since a write-only page (`Perm::Write`) must not be
/// read.
fn accesses_of(perm: Permissions) -> &'static [Access] {
    match perm {
        Permissions::Write => &[Access::Write],
        Permissions::ReadWrite => &[Access::Read, Access::Write],
        Permissions::Read | Permissions::No => &[Access::Read],
    }
}

impl Host {
    /// The host of a guest, as the command line `o` says (`--no-enforce`,
    /// `--adversarial`, `--stale-tlb`).
    pub fn new(ram: RamFile, shm: ShmRegion, faults: FaultPlan, o: &Options) -> Host {
        let enforce = o.enforce;
        let frames = ram.ranges().iter().map(|r| r.end >> PAGE_SHIFT).max();
        let mmu = DeviceMmu::new(frames.unwrap_or(0), enforce, o.stale_tlb);
        let hyp = Hypervisor::new(Config { ram: ram.ranges() });
        let adversary = o.adversarial.then(|| Adversary::new(&ram.ranges()));
        Host {
            ram,
            shm,
            enforce,
            copy_delay: faults.copy_delay,
            gate: RwLock::new(()),
            inner: Mutex::new(HostInner {
                hyp,
                mmu,
                faults,
                dev: DeviceCounters::default(),
                classes: BTreeMap::new(),
                adversary,
            }),
        }
    }

    /// Locks the shared state. A panic elsewhere must not take the whole
    /// hypervisor down with it, so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, HostInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn shm(&self) -> &ShmRegion {
        &self.shm
    }

    /// Registers the mappings of guest RAM a device backend was given, so
    /// that they follow the host view. `CheckedMemory` does it for the
    /// memory it wraps; a backend calls it from `update_memory` too, so the
    /// framework's own accesses before the first request are covered.
    pub fn adopt(&self, mem: &GuestMemoryMmap<()>) {
        self.lock().mmu.adopt(mem);
    }

    /// Enters a device request: revocations wait until it ends.
    pub fn device_request(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends a device request that faulted in the mappings: the guest's
    /// pages are mapped back in place of the scratch pages.
    pub fn after_faults(&self) {
        let mut g = self.lock();
        g.mmu.restore_now();
        g.sync_view(false);
    }

    /// Starts the thread that serves host faults on the devices' mappings:
    /// an access the mappings refuse is a fault exit, as for
    /// `CheckedMemory`: the ring is drained and the frame's table entry
    /// applied, and only then is the access refused (a violation).
    pub fn serve_faults(host: &Arc<Host>) -> io::Result<()> {
        let service = host.lock().mmu.fault_service();
        let host = host.clone();
        thread::Builder::new()
            .name("mmu-faults".into())
            .spawn(move || loop {
                let (gfn, write) = service.next();
                service.answer(host.mapping_fault(gfn, write));
            })?;
        Ok(())
    }

    /// A device access through the mappings faulted on frame `gfn`: drain,
    /// apply, and say whether the mappings allow it now.
    fn mapping_fault(&self, gfn: u64, write: bool) -> bool {
        let mut g = self.lock();
        let access = if write { Access::Write } else { Access::Read };
        let result = g
            .hyp
            .check_access(&self.ram, gfn << PAGE_SHIFT, PAGE_SIZE, access);
        g.adversary_drained(&self.ram);
        g.sync_view(false);
        // Bit 0 reads, bit 1 writes: a write-only page (ABI 2.2) takes
        // writes.
        let need = if write { 2 } else { 1 };
        let allowed = result.is_ok() && g.mmu.effective(gfn) & need == need;
        if allowed {
            if let Some(a) = &mut g.adversary {
                a.touched(gfn << PAGE_SHIFT, PAGE_SIZE);
            }
        }
        allowed
    }

    /// A doorbell write: an exit that serves every pending mailbox slot.
    pub fn on_doorbell(&self) -> usize {
        let _revoking = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let mut g = self.lock();
        g.dev.doorbells += 1;
        g.hyp.record_exit(ExitKind::Hypercall);
        g.adversary_exit(&self.ram);
        let served = mailbox::serve(&mut g, &self.ram, &self.shm);
        g.dev.mailbox_calls += served as u64;
        served
    }

    /// Serves the calls the guest made since the last look, if any, from
    /// the polling thread (`--poll-us`): the guest's doorbell for each is
    /// still an exit, counted when the doorbell is read.
    pub fn on_poll(&self) -> usize {
        if !mailbox_pending(&self.shm) {
            return 0;
        }
        let _revoking = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let mut g = self.lock();
        let served = mailbox::serve(&mut g, &self.ram, &self.shm);
        g.dev.mailbox_calls += served as u64;
        g.dev.polled_calls += served as u64;
        served
    }

    /// A queue notification: an exit, so the ring is drained before the
    /// device looks at the queue. `class` names a backend other than the
    /// disk, whose own counters count the kick too.
    pub fn on_queue_kick(&self, class: Option<&'static str>) {
        let _revoking = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let mut g = self.lock();
        g.dev.kicks += 1;
        if let Some(c) = class {
            g.class(c).kicks += 1;
        }
        g.hyp.record_exit(ExitKind::QueueKick);
        g.adversary_exit(&self.ram);
        let delay = g.faults.drain_delay();
        if !delay.is_zero() {
            // Sleep without the lock, as a slow hypervisor would, so the
            // guest's other exits queue up behind the drain and not the lock.
            drop(g);
            thread::sleep(delay);
            g = self.lock();
        }
        g.hyp.drain(&self.ram);
        g.adversary_drained(&self.ram);
        g.sync_view(true);
    }

    /// Checks one device access to guest memory against the host view.
    ///
    /// On a miss the state machine drains the ring once (the host faulted);
    /// a miss after that is a violation, counted (in `device.violations`,
    /// and per class for the backends other than the disk) and logged.
    pub fn check(
        &self,
        class: Option<&'static str>,
        gpa: u64,
        len: usize,
        perm: Permissions,
    ) -> bool {
        if len == 0 {
            return true;
        }
        let mut g = self.lock();
        if !self.enforce {
            g.dev.unchecked_accesses += 1;
            return true;
        }
        let drains = g.hyp.counters().drains;
        let mut denied = None;
        for &access in accesses_of(perm) {
            if g.hyp
                .check_access(&self.ram, gpa, len as u64, access)
                .is_err()
            {
                denied = Some(access);
                break;
            }
        }
        if g.hyp.counters().drains != drains {
            g.adversary_drained(&self.ram);
        }
        // A drain on this fault may have granted what the copy needs.
        g.sync_view(false);
        match denied {
            None => {
                if let Some(a) = &mut g.adversary {
                    a.touched(gpa, len as u64);
                }
                true
            }
            Some(access) => {
                g.dev.violations += 1;
                if let Some(c) = class {
                    g.class(c).violations += 1;
                }
                let who = class.unwrap_or("blk");
                log::warn!("violation: {who} {access:?} of {len} bytes at gpa {gpa:#x} denied");
                false
            }
        }
    }

    /// Stalls a checked device payload access before its copy, if the
    /// fault plan says so (`--copy-delay-ms`).
    pub fn delay_copy(&self, len: usize) {
        if self.copy_delay.is_zero() || len < 512 {
            return;
        }
        self.lock().faults.counters.copies_delayed += 1;
        thread::sleep(self.copy_delay);
    }

    /// The counters document: state machine, device, fault injector and
    /// the devices' MMU.
    pub fn counters_json(&self) -> String {
        let mut g = self.lock();
        g.dev.mapping_faults = g.mmu.faults();
        let mut sections = vec![
            ("hyp", g.hyp.counters().to_json()),
            ("device", g.dev.to_json()),
            ("classes", counters::classes_json(&g.classes)),
            ("faults", g.faults.counters.to_json()),
            ("mmu", g.mmu.counters.to_json()),
        ];
        if let Some(a) = &g.adversary {
            sections.push(("adversary", a.counters.to_json()));
        }
        counters::document(&sections)
    }
}

impl HostInner {
    /// The counters of one backend class, created on first use.
    pub fn class(&mut self, name: &'static str) -> &mut ClassCounters {
        self.classes.entry(name).or_default()
    }
}
