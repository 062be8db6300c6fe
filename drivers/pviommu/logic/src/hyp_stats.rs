// SPDX-License-Identifier: GPL-2.0

//! Reading the hypervisor's own counters of this guest (`STATS`, ABI 2.1).
//!
//! The guest's counters say what it asked for; these say what the
//! hypervisor did: records it read, pages it shared and revoked, the TLB
//! invalidations it issued and what it refused. Comparing the two is how a
//! test (or an operator) sees that the hypervisor applied what the guest
//! wrote. Every answer is checked like any other: a status outside the
//! ABI, or a counter count that changes between calls, is an error.

use super::abi::call::{Func, Stat, Status, NR_ARGS, STATS};
use super::engine::Hypercalls;

/// Why the counters could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsError {
    /// The transport failed.
    Transport,
    /// The hypervisor answered a defined, non-success status.
    Status(Status),
    /// The answer is outside the ABI (an undefined status, a counter
    /// count that changed, reserved return values not zero).
    Hostile,
}

/// Reads every counter both sides know, in index order, and calls `out`
/// with each; returns how many counters the hypervisor keeps.
pub fn read(h: &impl Hypercalls, out: &mut impl FnMut(Stat, u64)) -> Result<u64, StatsError> {
    let mut count = None;
    for stat in STATS {
        let mut args = [0u64; NR_ARGS];
        args[0] = stat as u64;
        let r = h
            .call(Func::Stats, args)
            .map_err(|_| StatsError::Transport)?;
        match Status::from_raw(r.status) {
            Some(Status::Success) => {}
            // A hypervisor with fewer counters than this guest knows.
            Some(Status::InvalidParameter) if count.is_some_and(|n| stat as u64 >= n) => break,
            Some(s) => return Err(StatsError::Status(s)),
            None => return Err(StatsError::Hostile),
        }
        let n = r.ret[1];
        if r.ret[2] != 0 || count.is_some_and(|c| c != n) || stat as u64 >= n {
            return Err(StatsError::Hostile);
        }
        count = Some(n);
        out(stat, r.ret[0]);
    }
    Ok(count.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::call::{NR_RETS, NR_STATS};
    use crate::mailbox::{RawResult, TransportError};
    use core::cell::Cell;

    /// Answers `STATS` with `value(index)`, keeping `count` counters.
    struct Fake<F: Fn(u64) -> (i64, [u64; NR_RETS])> {
        answer: F,
        calls: Cell<u32>,
    }

    impl<F: Fn(u64) -> (i64, [u64; NR_RETS])> Hypercalls for Fake<F> {
        fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
            assert_eq!(func, Func::Stats);
            assert!(args[1..].iter().all(|&a| a == 0), "reserved arguments");
            self.calls.set(self.calls.get() + 1);
            let (status, ret) = (self.answer)(args[0]);
            Ok(RawResult { status, ret })
        }
    }

    fn fake<F: Fn(u64) -> (i64, [u64; NR_RETS])>(answer: F) -> Fake<F> {
        Fake {
            answer,
            calls: Cell::new(0),
        }
    }

    /// Reads through `h`; returns the result and the counters `out` got.
    fn collect(h: &impl Hypercalls) -> (Result<u64, StatsError>, usize, [(u64, u64); NR_STATS]) {
        let mut got = [(u64::MAX, 0); NR_STATS];
        let mut n = 0;
        let r = read(h, &mut |s, v| {
            got[n] = (s as u64, v);
            n += 1;
        });
        (r, n, got)
    }

    #[test]
    fn reads_every_counter_in_order() {
        let h = fake(|i| (0, [100 + i, NR_STATS as u64, 0]));
        let (r, n, got) = collect(&h);
        assert_eq!((r, n), (Ok(NR_STATS as u64), NR_STATS));
        for (i, (s, v)) in got.into_iter().enumerate() {
            assert_eq!((s, v), (i as u64, 100 + i as u64));
        }
        assert_eq!(h.calls.get(), NR_STATS as u32);
    }

    #[test]
    fn a_hypervisor_with_fewer_counters_ends_the_list() {
        let h = fake(|i| if i < 4 { (0, [i, 4, 0]) } else { (-3, [0; 3]) });
        let (r, n, _) = collect(&h);
        assert_eq!((r, n), (Ok(4), 4));
    }

    #[test]
    fn hostile_answers_are_errors() {
        // An undefined status (SMCCC NOT_REQUIRED).
        assert_eq!(collect(&fake(|_| (-2, [0; 3]))).0, Err(StatsError::Hostile));
        // A count that changes between calls.
        let h = fake(|i| (0, [0, 20 + i, 0]));
        assert_eq!(collect(&h).0, Err(StatsError::Hostile));
        // A reserved return value set.
        let h = fake(|_| (0, [0, NR_STATS as u64, 1]));
        assert_eq!(collect(&h).0, Err(StatsError::Hostile));
        // Success for an index the hypervisor says it does not keep.
        let h = fake(|_| (0, [0, 0, 0]));
        assert_eq!(collect(&h).0, Err(StatsError::Hostile));
        // Refused from the first counter on: not a shorter list.
        let h = fake(|_| (-1, [0; 3]));
        assert_eq!(collect(&h).0, Err(StatsError::Status(Status::NotSupported)));
    }
}
