// SPDX-License-Identifier: GPL-2.0-only
//! The host: the state machine plus everything around it that the devices
//! and the doorbell share.
//!
//! One lock covers the state machine, the fault plan and the counters:
//! exits are serialised anyway (a real hypervisor handles one exit per vCPU
//! and the table is the single source of truth). Device data is copied
//! outside the lock, after its range was checked.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::thread;

use pviommu_reference_hyp::abi::layout::{PAGE_SHIFT, PAGE_SIZE};
use pviommu_reference_hyp::{Access, Config, ExitKind, GuestRam, Hypervisor, Perm};
use vm_memory::Permissions;

use crate::counters::{self, ClassCounters, DeviceCounters};
use crate::faults::FaultPlan;
use crate::guest_ram::RamFile;
use crate::mailbox;
use crate::shared_region::ShmRegion;

/// Most pages the adversary remembers; past this it forgets new ones (the
/// guests under test touch far fewer pages between two unmaps).
const MAX_TOUCHED_PAGES: usize = 1 << 20;

pub struct HostInner {
    pub hyp: Hypervisor,
    pub faults: FaultPlan,
    pub dev: DeviceCounters,
    /// Per class, for the backends other than the disk.
    pub classes: BTreeMap<&'static str, ClassCounters>,
    /// Pages the device reached, and whether it wrote them: the adversary
    /// comes back to them once the guest has unshared them.
    touched: BTreeMap<u64, u8>,
}

pub struct Host {
    /// Guest RAM for the state machine only; devices use QEMU's memory table.
    ram: RamFile,
    shm: ShmRegion,
    enforce: bool,
    adversarial: bool,
    inner: Mutex<HostInner>,
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

/// The table-entry bit of an access: what the adversary remembers.
fn bit_of(access: Access) -> u8 {
    match access {
        Access::Read => Perm::Read.bits(),
        Access::Write => Perm::Write.bits(),
    }
}

impl Host {
    pub fn new(
        ram: RamFile,
        shm: ShmRegion,
        faults: FaultPlan,
        enforce: bool,
        adversarial: bool,
    ) -> Host {
        let hyp = Hypervisor::new(Config { ram: ram.ranges() });
        Host {
            ram,
            shm,
            enforce,
            adversarial,
            inner: Mutex::new(HostInner {
                hyp,
                faults,
                dev: DeviceCounters::default(),
                classes: BTreeMap::new(),
                touched: BTreeMap::new(),
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

    /// A doorbell write: an exit that serves every pending mailbox slot.
    pub fn on_doorbell(&self) -> usize {
        let mut g = self.lock();
        g.dev.doorbells += 1;
        g.hyp.record_exit(ExitKind::Hypercall);
        let mut probe = |g: &mut HostInner| {
            if self.adversarial {
                self.probe_unshared(g);
            }
        };
        let served = mailbox::serve(&mut g, &self.ram, &self.shm, &mut probe);
        g.dev.mailbox_calls += served as u64;
        served
    }

    /// A queue notification: an exit, so the ring is drained before the
    /// device looks at the queue. `class` names a backend other than the
    /// disk, whose own counters count the kick too.
    pub fn on_queue_kick(&self, class: Option<&'static str>) {
        let mut g = self.lock();
        g.dev.kicks += 1;
        if let Some(c) = class {
            g.class(c).kicks += 1;
        }
        g.hyp.record_exit(ExitKind::QueueKick);
        let delay = g.faults.drain_delay();
        if !delay.is_zero() {
            // Sleep without the lock, as a slow hypervisor would, so the
            // guest's other exits queue up behind the drain and not the lock.
            drop(g);
            thread::sleep(delay);
            g = self.lock();
        }
        g.hyp.drain(&self.ram);
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
        match denied {
            None => {
                if self.adversarial {
                    for &access in accesses_of(perm) {
                        Self::remember(&mut g, gpa, len as u64, access);
                    }
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

    fn remember(g: &mut HostInner, gpa: u64, len: u64, access: Access) {
        let first = gpa >> PAGE_SHIFT;
        let last = gpa.saturating_add(len - 1) >> PAGE_SHIFT;
        for gfn in first..=last {
            if g.touched.len() >= MAX_TOUCHED_PAGES && !g.touched.contains_key(&gfn) {
                return;
            }
            *g.touched.entry(gfn).or_insert(0) |= bit_of(access);
        }
    }

    /// The adversary: every page the device reached and the guest has
    /// since unshared (or downgraded) is attacked through the host view,
    /// as a device access would be (drain-on-fault included). Each attempt
    /// must be denied.
    ///
    /// Runs after each call and before the guest sees its answer: the
    /// guest may not reuse (and so re-share) memory before its unmap
    /// returns, so an allowed attempt here is a hole in the enforcement,
    /// not a race with a legitimate new mapping.
    fn probe_unshared(&self, g: &mut HostInner) {
        // Pages where the device made an access the host view no longer
        // allows: unshared, or narrowed (to read-only, or to write-only).
        let stale: Vec<(u64, u8, Perm)> = g
            .touched
            .iter()
            .map(|(&gfn, &made)| (gfn, made, g.hyp.host_perm(gfn)))
            .filter(|&(_, made, perm)| made & !perm.bits() != 0)
            .collect();
        for (gfn, made, perm) in stale {
            // An unshared page is attacked both ways, a narrowed one in the
            // ways the device used and may no longer.
            let lost = if perm == Perm::None {
                Perm::ReadWrite.bits()
            } else {
                made & !perm.bits()
            };
            let attempts: Vec<Access> = [Access::Write, Access::Read]
                .into_iter()
                .filter(|&a| lost & bit_of(a) != 0)
                .collect();
            if perm == Perm::None {
                g.touched.remove(&gfn);
            } else {
                g.touched.insert(gfn, made & perm.bits());
            }
            let gpa = gfn << PAGE_SHIFT;
            for access in attempts {
                g.dev.adversarial_attempts += 1;
                match g.hyp.check_access(&self.ram, gpa, PAGE_SIZE, access) {
                    Err(_) => g.dev.adversarial_denied += 1,
                    Ok(()) => {
                        g.dev.adversarial_allowed += 1;
                        log::error!(
                            "adversary: {access:?} of unshared page gpa {gpa:#x} was allowed"
                        );
                        self.attack(gpa, access);
                    }
                }
            }
        }
    }

    /// Carries out an access the host view allowed: read the page, and for
    /// a write put the same bytes back (proof of reach without corrupting).
    fn attack(&self, gpa: u64, access: Access) {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        if self.ram.read(gpa, &mut page).is_ok() && matches!(access, Access::Write) {
            let _ = self.ram.write(gpa, &page);
        }
    }

    /// The counters document: state machine, device and fault injector.
    pub fn counters_json(&self) -> String {
        let g = self.lock();
        counters::document(
            &g.hyp.counters().to_json(),
            &g.dev,
            &g.classes,
            &g.faults.counters,
        )
    }
}

impl HostInner {
    /// The counters of one backend class, created on first use.
    pub fn class(&mut self, name: &'static str) -> &mut ClassCounters {
        self.classes.entry(name).or_default()
    }
}
