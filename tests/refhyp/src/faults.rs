// SPDX-License-Identifier: GPL-2.0-only
//! Fault injection at the transport layer, around the state machine's
//! `call()`: the state machine itself stays the reference.
//!
//! The guest driver's robustness tests use it to see refused syncs, refused
//! or partial unshares, and slow drains.

use std::time::Duration;

use pviommu_reference_hyp::abi::call::{Func, Status, NR_ARGS};

use crate::counters::FaultCounters;

/// Which faults to inject, from the command line, and what was injected.
#[derive(Debug, Default)]
pub struct FaultPlan {
    /// Fail this many more `SYNC` calls (`NO_MEMORY`: the hypervisor
    /// could not revoke, which the guest must contain).
    pub fail_syncs: u64,
    /// Fail this many more `UNSHARE` calls (`NO_MEMORY`).
    pub fail_unshares: u64,
    /// Answer this many more `SYNC` calls `BUSY` (transient: the guest
    /// retries and must lose nothing).
    pub busy_syncs: u64,
    /// Answer this many more `UNSHARE` calls `BUSY`.
    pub busy_unshares: u64,
    /// Pass at most this many pages to each `UNSHARE`; the state machine
    /// then reports the smaller count as partial progress.
    pub partial_unshare: Option<u64>,
    /// Answer this many more `SYNC` calls `SUCCESS` without draining or
    /// invalidating: a broken hypervisor, for the adversary to catch.
    pub lie_syncs: u64,
    /// Sleep this long before every drain (queue kick or `SYNC`).
    pub drain_delay: Duration,
    /// Sleep this long between checking a device payload access (512
    /// bytes or more) and copying it: a slow device whose copies are in
    /// flight when the guest revokes. Read without the host lock.
    pub copy_delay: Duration,
    pub counters: FaultCounters,
}

/// What to do with one call.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answer with this status without calling the state machine.
    Refuse(Status),
    /// Answer `SUCCESS` without calling the state machine (a lie).
    Pretend,
    /// Call the state machine with these (possibly changed) arguments.
    Forward([u64; NR_ARGS]),
}

/// `UNSHARE`'s argument holding the number of pages (a0 is the first frame).
const UNSHARE_NR_PAGES_ARG: usize = 1;

impl FaultPlan {
    /// Decides the fate of one call, consuming one injected fault if any.
    pub fn before_call(&mut self, func: u32, mut args: [u64; NR_ARGS]) -> Verdict {
        match Func::from_raw(func) {
            Some(Func::Sync) if self.fail_syncs > 0 => {
                self.fail_syncs -= 1;
                self.counters.syncs_failed += 1;
                Verdict::Refuse(Status::NoMemory)
            }
            Some(Func::Unshare) if self.fail_unshares > 0 => {
                self.fail_unshares -= 1;
                self.counters.unshares_failed += 1;
                Verdict::Refuse(Status::NoMemory)
            }
            Some(Func::Sync) if self.lie_syncs > 0 => {
                self.lie_syncs -= 1;
                self.counters.syncs_lied += 1;
                Verdict::Pretend
            }
            Some(Func::Sync) if self.busy_syncs > 0 => {
                self.busy_syncs -= 1;
                self.counters.syncs_busy += 1;
                Verdict::Refuse(Status::Busy)
            }
            Some(Func::Unshare) if self.busy_unshares > 0 => {
                self.busy_unshares -= 1;
                self.counters.unshares_busy += 1;
                Verdict::Refuse(Status::Busy)
            }
            Some(Func::Unshare) => {
                if let Some(max) = self.partial_unshare {
                    if args[UNSHARE_NR_PAGES_ARG] > max {
                        args[UNSHARE_NR_PAGES_ARG] = max;
                        self.counters.unshares_truncated += 1;
                    }
                }
                Verdict::Forward(args)
            }
            _ => Verdict::Forward(args),
        }
    }

    /// Returns how long to stall before a drain, counting the stall.
    pub fn drain_delay(&mut self) -> Duration {
        if !self.drain_delay.is_zero() {
            self.counters.drains_delayed += 1;
        }
        self.drain_delay
    }

    /// Whether `func` drains the ring (and so suffers `drain_delay`).
    pub fn drains(func: u32) -> bool {
        Func::from_raw(func) == Some(Func::Sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_exactly_n_syncs() {
        let mut p = FaultPlan {
            fail_syncs: 2,
            ..Default::default()
        };
        let sync = Func::Sync as u32;
        assert_eq!(
            p.before_call(sync, [0; 6]),
            Verdict::Refuse(Status::NoMemory)
        );
        assert_eq!(
            p.before_call(sync, [0; 6]),
            Verdict::Refuse(Status::NoMemory)
        );
        assert_eq!(p.before_call(sync, [0; 6]), Verdict::Forward([0; 6]));
        assert_eq!(p.counters.syncs_failed, 2);
    }

    #[test]
    fn busy_is_not_a_failure() {
        let mut p = FaultPlan {
            busy_syncs: 1,
            busy_unshares: 1,
            ..Default::default()
        };
        let (sync, unshare) = (Func::Sync as u32, Func::Unshare as u32);
        assert_eq!(p.before_call(sync, [0; 6]), Verdict::Refuse(Status::Busy));
        assert_eq!(p.before_call(sync, [0; 6]), Verdict::Forward([0; 6]));
        assert_eq!(
            p.before_call(unshare, [1, 1, 0, 0, 0, 0]),
            Verdict::Refuse(Status::Busy)
        );
        assert_eq!((p.counters.syncs_busy, p.counters.syncs_failed), (1, 0));
        assert_eq!(p.counters.unshares_busy, 1);
    }

    #[test]
    fn truncates_unshares_only() {
        let mut p = FaultPlan {
            partial_unshare: Some(2),
            ..Default::default()
        };
        let unshare = Func::Unshare as u32;
        assert_eq!(
            p.before_call(unshare, [100, 8, 0, 0, 0, 0]),
            Verdict::Forward([100, 2, 0, 0, 0, 0])
        );
        assert_eq!(
            p.before_call(unshare, [100, 1, 0, 0, 0, 0]),
            Verdict::Forward([100, 1, 0, 0, 0, 0])
        );
        let share = Func::Share as u32;
        assert_eq!(
            p.before_call(share, [100, 8, 3, 0, 0, 0]),
            Verdict::Forward([100, 8, 3, 0, 0, 0])
        );
        assert_eq!(p.counters.unshares_truncated, 1);
    }
}
