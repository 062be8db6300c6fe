// SPDX-License-Identifier: GPL-2.0-only

//! What the reference hypervisor counts, for tests and benchmarks.

use pviommu_hyp_abi::call::{Func, Status, NR_FUNCS, NR_STATUSES, STATUSES};
use std::fmt::Write;

/// Event counters; every field only grows until `Hypervisor::new`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Exits caused by a hypercall (doorbell or `HVC`).
    pub exits_hypercall: u64,
    /// Exits caused by a virtio queue kick.
    pub exits_queue_kick: u64,
    /// Exits caused by a host access fault (drain-on-fault).
    pub exits_fault: u64,
    /// Ring drains performed (by `SYNC`, kicks or faults).
    pub drains: u64,
    /// Published records applied.
    pub records_consumed: u64,
    /// Records that name frames outside the table, or zero frames, and
    /// producer values that are not within a ring size of the consumer.
    pub bad_records: u64,
    /// Table entries with reserved bits set or the invalid encoding 2.
    pub bad_table_entries: u64,
    /// Attempts to share a frame that is not RAM or holds the table or ring.
    pub forbidden_shares: u64,
    /// Pages whose host access was widened.
    pub pages_shared: u64,
    /// Pages whose host access was reduced.
    pub pages_unshared: u64,
    /// TLB invalidations performed.
    pub invalidations: u64,
    /// Host accesses refused after drain-on-fault.
    pub violations: u64,
    /// Calls by function number (`Func as usize`).
    pub calls: [u64; NR_FUNCS],
    /// Calls with an unknown function number.
    pub calls_unknown: u64,
    /// Calls by returned status, indexed by the status's position in
    /// `Status` (`Success` 0, `NotSupported` 1, `InvalidParameter` 2,
    /// `Denied` 3, `Busy` 4, `NoMemory` 5, `BadState` 6), not by its value.
    pub statuses: [u64; NR_STATUSES],
}

const FUNCS: [Func; NR_FUNCS] = [
    Func::Version,
    Func::Init,
    Func::Sync,
    Func::Share,
    Func::Unshare,
    Func::Reset,
    Func::Apply,
    Func::Stats,
];

// `to_json` names `calls[i]` after `FUNCS[i]`: the order must be the numbers'.
const _: () = {
    let mut i = 0;
    while i < NR_FUNCS {
        assert!(FUNCS[i] as usize == i);
        i += 1;
    }
};

// `statuses[i]` counts `STATUSES[i]`: `status_index` must agree.
const _: () = {
    let mut i = 0;
    while i < NR_STATUSES {
        assert!(status_index(STATUSES[i]) == i);
        i += 1;
    }
};

/// Returns the index of `status` in `Counters::statuses`.
const fn status_index(status: Status) -> usize {
    match status {
        Status::Success => 0,
        Status::NotSupported => 1,
        Status::InvalidParameter => 2,
        Status::Denied => 3,
        Status::Busy => 4,
        Status::NoMemory => 5,
        Status::BadState => 6,
    }
}

impl Counters {
    /// Returns how many calls answered `BUSY`.
    pub fn busy(&self) -> u64 {
        self.statuses[status_index(Status::Busy)]
    }

    /// Counts a call that returned the raw status `raw`; a value outside
    /// the defined set (which the reference never returns) is not counted.
    pub fn count_status(&mut self, raw: i64) {
        if let Some(status) = Status::from_raw(raw) {
            self.statuses[status_index(status)] += 1;
        }
    }

    /// Returns the number of calls that returned an error status.
    pub fn errors(&self) -> u64 {
        self.statuses.iter().skip(1).sum()
    }

    /// Returns the counters as one JSON object (stable key names).
    pub fn to_json(&self) -> String {
        let mut s = String::from("{");
        let fields: [(&str, u64); 12] = [
            ("exits_hypercall", self.exits_hypercall),
            ("exits_queue_kick", self.exits_queue_kick),
            ("exits_fault", self.exits_fault),
            ("drains", self.drains),
            ("records_consumed", self.records_consumed),
            ("bad_records", self.bad_records),
            ("bad_table_entries", self.bad_table_entries),
            ("forbidden_shares", self.forbidden_shares),
            ("pages_shared", self.pages_shared),
            ("pages_unshared", self.pages_unshared),
            ("invalidations", self.invalidations),
            ("violations", self.violations),
        ];
        for (name, v) in fields {
            let _ = write!(s, "\"{name}\":{v},");
        }
        s.push_str("\"calls\":{");
        for (i, f) in FUNCS.iter().enumerate() {
            let _ = write!(s, "\"{}\":{},", f.name(), self.calls[i]);
        }
        let _ = write!(s, "\"unknown\":{}}},\"statuses\":{{", self.calls_unknown);
        for (i, st) in STATUSES.iter().enumerate() {
            let sep = if i + 1 == NR_STATUSES { "" } else { "," };
            let _ = write!(s, "\"{}\":{}{sep}", st.name(), self.statuses[i]);
        }
        s.push_str("}}");
        s
    }
}
