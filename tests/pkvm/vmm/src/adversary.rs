// SPDX-License-Identifier: GPL-2.0
//! `--adversarial`: a host that tries to read what the guest kept private.
//!
//! Under pKVM a page becomes the guest's at its first stage-2 fault and
//! stays private until the guest shares it, so a probe must aim at pages
//! the guest is known to have touched: pages the host never handed over
//! are still the host's and readable, which says nothing. The probe set
//! is every page of the initrd (the guest kernel reads all of it while
//! unpacking, before any driver probes; boot the guest with
//! `initramfs_async=0`) and of the device tree (read at early boot),
//! minus the restricted DMA pool and the virtqueue rings.
//!
//! After unpacking, the guest frees the initrd to its page allocator, and
//! a page from there may later be shared on purpose: a DMA buffer that a
//! pviommu shares in place, a coherent allocation. A guest shares a page
//! only to hand it to the device, so every such page shows up in a
//! descriptor soon after. A probe that reads a page is therefore held as
//! a suspect, and only suspects that never appear in any descriptor by
//! the end of the run count as violations; the others count as
//! `readable_shared`. A denied read (EFAULT) is what a private page must
//! give.

use crate::guest_access::{AccessError, GuestAccess};
use crate::stats::{inc, Stats};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

const PAGE: u64 = 4096;

pub struct Adversary {
    /// Page addresses to probe, in round-robin order.
    targets: Vec<u64>,
    next: usize,
    per_round: u32,
    /// Known-shared ranges (the restricted pool).
    shared: Vec<(u64, u64)>,
    /// Pages read successfully that no descriptor had named yet.
    suspects: HashSet<u64>,
    pub first_violation: Option<u64>,
}

fn pages(base: u64, len: u64) -> impl Iterator<Item = u64> {
    let first = base & !(PAGE - 1);
    let end = (base + len).div_ceil(PAGE) * PAGE;
    (first..end).step_by(PAGE as usize)
}

fn overlaps(page: u64, ranges: &[(u64, u64)]) -> bool {
    ranges
        .iter()
        .any(|&(b, l)| l > 0 && page < b + l && page + PAGE > b)
}

impl Adversary {
    /// `private`: ranges the guest reads and never shares (initrd, DTB);
    /// `shared`: ranges it may share (the pool).
    pub fn new(private: &[(u64, u64)], shared: &[(u64, u64)], per_round: u32) -> Self {
        let mut targets: Vec<u64> = private
            .iter()
            .flat_map(|&(b, l)| pages(b, l))
            .filter(|p| !overlaps(*p, shared))
            .collect();
        targets.sort_unstable();
        targets.dedup();
        // Spread consecutive probes across the ranges: stride through the
        // list with a step coprime to its length.
        let n = targets.len();
        if n > 2 {
            let mut step = (n / 3).max(1) | 1;
            while gcd(step, n) != 1 {
                step += 2;
            }
            targets = (0..n).map(|i| targets[(i * step) % n]).collect();
        }
        Adversary {
            targets,
            next: 0,
            per_round,
            shared: shared.to_vec(),
            suspects: HashSet::new(),
            first_violation: None,
        }
    }

    pub fn targets(&self) -> usize {
        self.targets.len()
    }

    /// One round: `per_round` probes, skipping pages in `also_shared`
    /// (the rings, which move as the driver sets queues up). `seen`: the
    /// pages any descriptor has named so far.
    pub fn probe(
        &mut self,
        mem: &dyn GuestAccess,
        also_shared: &[(u64, u64)],
        seen: &HashSet<u64>,
        stats: &Stats,
    ) {
        if self.targets.is_empty() {
            return;
        }
        let mut buf = [0u8; 64];
        for _ in 0..self.per_round {
            let page = self.targets[self.next];
            self.next = (self.next + 1) % self.targets.len();
            if overlaps(page, also_shared) || overlaps(page, &self.shared) {
                inc(&stats.adv_skipped_shared);
                continue;
            }
            inc(&stats.adv_attempts);
            // Read from the middle of the page: any byte would do.
            match mem.read(page + 0x800, &mut buf) {
                Err(AccessError::Fault { .. }) => inc(&stats.adv_denied),
                Err(_) => inc(&stats.adv_errors),
                Ok(()) if seen.contains(&page) => inc(&stats.adv_readable_shared),
                Ok(()) => {
                    crate::vlog!("adversary: read guest page {page:#x} (suspect)");
                    self.suspects.insert(page);
                    inc(&stats.adv_readable_suspect);
                }
            }
        }
    }

    /// At the end of the run: suspects no descriptor ever named are
    /// violations (stored in `stats.adv_violations`).
    pub fn finish(&mut self, seen: &HashSet<u64>, stats: &Stats) {
        let mut v: Vec<u64> = self
            .suspects
            .iter()
            .copied()
            .filter(|p| !seen.contains(p))
            .collect();
        v.sort_unstable();
        self.first_violation = v.first().copied();
        stats
            .adv_violations
            .store(v.len() as u64, Ordering::Relaxed);
        stats
            .adv_violation_pages_total
            .store(self.suspects.len() as u64, Ordering::Relaxed);
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtqueue::tests::FakeMem;

    #[test]
    fn probes_private_pages_and_skips_shared_ones() {
        let mut mem = FakeMem::new(0x4000_0000, 0x40000);
        // initrd 0x4001_0000..0x4001_4000 (4 pages), dtb 1 page, pool overlapping one initrd page.
        let initrd = (0x4001_0000, 0x3001);
        let dtb = (0x4003_0000, 0x200);
        let pool = (0x4001_3000, 0x1000);
        for p in [0x4001_0000u64, 0x4001_1000, 0x4001_2000, 0x4003_0000] {
            mem.private.push(p);
        }
        let mut adv = Adversary::new(&[initrd, dtb], &[pool], 3);
        assert_eq!(adv.targets(), 4);
        let st = Stats::default();
        let none = HashSet::new();
        // Ring at 0x4001_1000 is skipped.
        adv.probe(&mem, &[(0x4001_1000, 0x100)], &none, &st);
        adv.probe(&mem, &[(0x4001_1000, 0x100)], &none, &st);
        let attempts = st.adv_attempts.load(Ordering::Relaxed);
        assert_eq!(attempts + st.adv_skipped_shared.load(Ordering::Relaxed), 6);
        assert_eq!(st.adv_denied.load(Ordering::Relaxed), attempts);
        assert_eq!(st.adv_violations.load(Ordering::Relaxed), 0);

        adv.finish(&none, &st);
        assert_eq!(st.adv_violations.load(Ordering::Relaxed), 0);

        // Pages the host can read: one later named by a descriptor
        // (shared on purpose), one never (a violation).
        mem.private
            .retain(|&p| p != 0x4003_0000 && p != 0x4001_0000);
        let st = Stats::default();
        for _ in 0..4 {
            adv.probe(&mem, &[], &none, &st);
        }
        assert_eq!(st.adv_readable_suspect.load(Ordering::Relaxed), 6); // 2 pages, 3 probes each
        let mut seen = HashSet::new();
        seen.insert(0x4001_0000);
        adv.probe(&mem, &[], &seen, &st);
        adv.probe(&mem, &[], &seen, &st);
        assert!(st.adv_readable_shared.load(Ordering::Relaxed) >= 1);
        adv.finish(&seen, &st);
        assert_eq!(st.adv_violations.load(Ordering::Relaxed), 1);
        assert_eq!(adv.first_violation, Some(0x4003_0000));
    }
}
