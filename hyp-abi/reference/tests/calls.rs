// SPDX-License-Identifier: GPL-2.0-only

//! Every call of the reference hypervisor and every error path.

mod common;

use common::*;
use pviommu_reference_hyp::abi::call::{
    Func, Stat, Status, ABI_VERSION, FEATURE_APPLY, FEATURE_STATS, FEATURE_WRITE_ONLY, NR_FUNCS,
    NR_STATS,
};
use pviommu_reference_hyp::{Access, GuestRam, OutOfRange, Perm, VecRam};
use std::cell::RefCell;
use std::ops::Range;

const OK: i64 = 0;
const NOT_SUPPORTED: i64 = Status::NotSupported as i64;
const INVALID: i64 = Status::InvalidParameter as i64;
const DENIED: i64 = Status::Denied as i64;
const BAD_STATE: i64 = Status::BadState as i64;

#[test]
fn version_reports_abi_and_limits() {
    let mut g = Guest::bare();
    let r = g.call(VERSION, [0; 6]);
    assert_eq!(r.status, OK);
    assert_eq!(
        r.ret,
        [
            u64::from(ABI_VERSION),
            FEATURE_APPLY | FEATURE_STATS | FEATURE_WRITE_ONLY,
            16
        ]
    );
    assert_eq!(ABI_VERSION, 0x2_0002);
    assert_eq!(
        (FEATURE_APPLY, FEATURE_STATS, FEATURE_WRITE_ONLY),
        (1, 2, 4)
    );
}

#[test]
fn stats_reads_the_counters_by_index() {
    let mut g = Guest::new();
    g.map(20, 2, 3);
    g.sync();
    g.map(20, 2, 0);
    g.sync();
    g.set_entry(21, 0x10);
    g.push(21, 1);
    g.sync();
    let stat = |g: &mut Guest, s: Stat| {
        let r = g.call(STATS, [s as u64, 0, 0, 0, 0, 0]);
        assert_eq!(
            (r.status, r.ret[1], r.ret[2]),
            (OK, NR_STATS as u64, 0),
            "{s:?}"
        );
        r.ret[0]
    };
    let c = g.hyp.counters().clone();
    assert_eq!(stat(&mut g, Stat::Drains), c.drains);
    assert_eq!(stat(&mut g, Stat::Records), 3);
    assert_eq!(stat(&mut g, Stat::PagesShared), 2 + POOL_PAGES);
    assert_eq!(stat(&mut g, Stat::PagesUnshared), 2);
    assert_eq!(stat(&mut g, Stat::Invalidations), 1);
    assert_eq!(stat(&mut g, Stat::Refused), 1, "the invalid entry 2");
    assert_eq!(stat(&mut g, Stat::Absent), 0);
    assert_eq!(stat(&mut g, Stat::Busy), 0);
    // Past the last counter, and a reserved argument.
    assert_eq!(
        g.call(STATS, [NR_STATS as u64, 0, 0, 0, 0, 0]).status,
        INVALID
    );
    assert_eq!(g.call(STATS, [u64::MAX, 0, 0, 0, 0, 0]).status, INVALID);
    assert_eq!(g.call(STATS, [0, 1, 0, 0, 0, 0]).status, INVALID);
    // Valid before INIT: the counters are the guest's, not the ring's.
    assert_eq!(Guest::bare().call(STATS, [0; 6]).status, OK);
}

#[test]
fn reserved_arguments_must_be_zero() {
    let mut g = Guest::new();
    for (func, used) in [
        (VERSION, 0),
        (SYNC, 0),
        (RESET, 0),
        (SHARE, 3),
        (UNSHARE, 2),
        (APPLY, 2),
    ] {
        for i in used..6 {
            let mut args = [0; 6];
            args[..used].copy_from_slice(&[POOL_GFN + 20, 1, 1][..used]);
            args[i] = 1;
            assert_eq!(g.call(func, args).status, INVALID, "func {func} arg {i}");
        }
    }
    assert!(g.hyp.is_initialised());
}

#[test]
fn unknown_function_is_not_supported() {
    let mut g = Guest::new();
    for func in [NR_FUNCS as u32, 8, 0x8000, u32::MAX] {
        assert_eq!(g.call(func, [0; 6]).status, NOT_SUPPORTED);
    }
    assert_eq!(g.hyp.counters().calls_unknown, 4);
    assert_eq!(g.hyp.counters().statuses[1], 4);
}

#[test]
fn init_registers_and_shares_the_pool() {
    let g = Guest::new();
    for gfn in POOL_GFN..POOL_GFN + POOL_PAGES {
        assert_eq!(g.hyp.host_perm(gfn), Perm::ReadWrite);
    }
    assert_eq!(g.hyp.host_perm(POOL_GFN + POOL_PAGES), Perm::None);
    assert_eq!(g.hyp.counters().pages_shared, POOL_PAGES);
    assert_eq!(g.consumer_in_ram(), 0);
}

#[test]
fn init_twice_is_bad_state() {
    let mut g = Guest::new();
    assert_eq!(g.call(INIT, init_args()).status, BAD_STATE);
}

#[test]
fn init_rejects_malformed_arguments() {
    let cases: [(usize, u64); 9] = [
        (0, 1),             // Table misaligned.
        (1, 0),             // Empty table.
        (1, 1 << 40),       // Table too large.
        (2, 4097),          // Ring misaligned.
        (3, 0),             // Ring order below the minimum.
        (3, 17),            // Ring order above what this hypervisor supports.
        (3, u64::MAX),      // Ring order not a u32.
        (4, 12),            // Pool misaligned.
        (5, u64::MAX >> 4), // Pool size overflows.
    ];
    for (i, v) in cases {
        let mut g = Guest::bare();
        let mut args = init_args();
        args[i] = v;
        assert_eq!(g.call(INIT, args).status, INVALID, "arg {i} = {v:#x}");
        assert!(!g.hyp.is_initialised());
    }
}

#[test]
fn init_denies_overlap_and_non_ram() {
    let cases: [(usize, u64); 6] = [
        (2, TABLE_GFN << 12),       // Ring on the table.
        (4, (RING_GFN + 1) << 12),  // Pool on the ring's second page.
        (4, TABLE_GFN << 12),       // Pool on the table.
        (4, HOLE.start << 12),      // Pool in the hole.
        (4, (RAM_PAGES - 2) << 12), // Pool past the end of RAM.
        (0, RAM_PAGES << 12),       // Table outside RAM.
    ];
    for (i, v) in cases {
        let mut g = Guest::bare();
        let mut args = init_args();
        args[i] = v;
        assert_eq!(g.call(INIT, args).status, DENIED, "arg {i} = {v:#x}");
    }
}

#[test]
fn calls_before_init_are_bad_state() {
    let mut g = Guest::bare();
    assert_eq!(g.call(SYNC, [0; 6]).status, BAD_STATE);
    assert_eq!(g.call(SHARE, [20, 1, 1, 0, 0, 0]).status, BAD_STATE);
    assert_eq!(g.call(UNSHARE, [20, 1, 0, 0, 0, 0]).status, BAD_STATE);
    assert_eq!(g.call(RESET, [0; 6]).status, OK);
    assert_eq!(g.hyp.drain(&g.ram).records, 0);
    assert_eq!(g.hyp.counters().drains, 0);
}

#[test]
fn sync_applies_records_and_invalidates_once() {
    let mut g = Guest::new();
    g.map(20, 3, 3);
    g.map(30, 1, 1);
    let r = g.sync();
    assert_eq!((r.status, r.ret), (OK, [2, 0, 4]));
    assert_eq!(g.hyp.host_perm(20), Perm::ReadWrite);
    assert_eq!(g.hyp.host_perm(30), Perm::Read);
    assert_eq!(
        g.hyp.counters().invalidations,
        0,
        "sharing needs no invalidation"
    );
    assert_eq!(g.consumer_in_ram(), 2);
    g.map(20, 3, 0);
    g.map(30, 1, 0);
    let r = g.sync();
    assert_eq!(r.ret, [2, 4, 0]);
    assert_eq!(g.hyp.counters().invalidations, 1);
    assert_eq!(g.hyp.host_perm(21), Perm::None);
    // Nothing pending: no further invalidation.
    assert_eq!(g.sync().ret, [0, 0, 0]);
    assert_eq!(g.hyp.counters().invalidations, 1);
}

#[test]
fn drain_reductions_wait_for_sync() {
    let mut g = Guest::new();
    g.map(20, 1, 3);
    g.sync();
    g.map(20, 1, 1);
    let s = g.hyp.drain(&g.ram);
    assert_eq!((s.records, s.pages_unshared), (1, 1));
    assert_eq!(g.hyp.counters().invalidations, 0);
    assert_eq!(g.sync().ret, [0, 0, 0]);
    assert_eq!(g.hyp.counters().invalidations, 1);
}

#[test]
fn records_beyond_a_gap_apply_but_consumer_stops() {
    let mut g = Guest::new();
    g.set_entry(20, 3);
    g.set_entry(21, 3);
    g.set_producer(2);
    g.write_record(1, 21, 1, 2);
    assert_eq!(g.sync().ret, [1, 0, 1]);
    assert_eq!(g.hyp.host_perm(21), Perm::ReadWrite);
    assert_eq!(g.hyp.host_perm(20), Perm::None);
    assert_eq!(g.hyp.consumer(), 0);
    g.write_record(0, 20, 1, 1);
    g.sync();
    assert_eq!(g.hyp.consumer(), 2);
    assert_eq!(g.consumer_in_ram(), 2);
    assert_eq!(g.hyp.host_perm(20), Perm::ReadWrite);
}

#[test]
fn stale_sequence_is_not_published() {
    let mut g = Guest::new();
    for _ in 0..RING_SIZE {
        g.map(20, 1, 3);
    }
    g.sync();
    assert_eq!(g.hyp.consumer(), RING_SIZE);
    // Reserve the next lap's first record without publishing: the slot
    // still holds the previous lap's sequence.
    g.set_entry(20, 0);
    g.set_producer(RING_SIZE + 1);
    assert_eq!(g.sync().ret, [0, 0, 0]);
    assert_eq!(g.hyp.host_perm(20), Perm::ReadWrite);
}

#[test]
fn malformed_records_are_counted_and_skipped() {
    let mut g = Guest::new();
    g.set_entry(20, 3);
    g.push(20, 0); // Zero pages.
    g.push(TABLE_FRAMES, 1); // Outside the table.
    g.push(TABLE_FRAMES - 1, 2); // Runs past the table.
    g.push(u64::MAX, u32::MAX); // Overflows.
    let r = g.sync();
    assert_eq!(r.ret, [4, 0, 0]);
    assert_eq!(g.hyp.counters().bad_records, 4);
    assert_eq!(g.hyp.consumer(), 4);
}

#[test]
fn hostile_producer_is_bounded() {
    let mut g = Guest::new();
    g.set_producer(u64::MAX);
    let r = g.sync();
    assert_eq!(r.status, OK);
    assert_eq!(g.hyp.counters().bad_records, 1);
    assert!(g.hyp.consumer() <= RING_SIZE);
}

#[test]
fn bad_table_entries_fail_safe_to_none() {
    let mut g = Guest::new();
    g.map(20, 1, 3);
    g.sync();
    for (i, bad) in [0x40u8, 4, 0x83, 0xff].into_iter().enumerate() {
        g.map(20 + i as u64, 1, bad);
    }
    g.sync();
    for gfn in 20..24 {
        assert_eq!(g.hyp.host_perm(gfn), Perm::None);
    }
    assert_eq!(g.hyp.counters().bad_table_entries, 4);
    assert_eq!(g.hyp.counters().invalidations, 1);
}

#[test]
fn table_ring_and_non_ram_pages_are_never_shared() {
    let mut g = Guest::new();
    g.map(TABLE_GFN, 1, 3);
    g.map(RING_GFN, 2, 1);
    g.map(HOLE.start, 2, 3);
    g.sync();
    for gfn in [
        TABLE_GFN,
        RING_GFN,
        RING_GFN + 1,
        HOLE.start,
        HOLE.start + 1,
    ] {
        assert_eq!(g.hyp.host_perm(gfn), Perm::None, "gfn {gfn}");
    }
    assert_eq!(g.hyp.counters().forbidden_shares, 5);
    for gfn in [TABLE_GFN, RING_GFN, HOLE.start, RAM_PAGES] {
        assert_eq!(
            g.call(SHARE, [gfn, 1, 1, 0, 0, 0]).status,
            DENIED,
            "gfn {gfn}"
        );
    }
}

#[test]
fn write_only_entries_let_the_host_write_but_not_read() {
    let mut g = Guest::new();
    g.map(20, 2, 2);
    g.sync();
    assert_eq!(g.hyp.host_perm(20), Perm::Write);
    let gpa = 20 * 4096;
    assert!(g.hyp.check_access(&g.ram, gpa, 8, Access::Write).is_ok());
    assert!(
        g.hyp.check_access(&g.ram, gpa, 8, Access::Read).is_err(),
        "a device that only writes cannot read what the page held"
    );
    assert_eq!(
        g.hyp.counters().bad_table_entries,
        0,
        "2 is valid since 2.2"
    );
    // Read-write narrowed to write-only is a reduction: invalidated.
    g.map(22, 1, 3);
    g.sync();
    let before = g.hyp.counters().invalidations;
    g.map(22, 1, 2);
    g.sync();
    assert_eq!(g.hyp.host_perm(22), Perm::Write);
    assert_eq!(g.hyp.counters().invalidations, before + 1);
    // SHARE takes write-only too.
    let r = g.call(SHARE, [30, 1, 2, 0, 0, 0]);
    assert_eq!((r.status, r.ret[0]), (OK, 1));
    assert_eq!(g.hyp.host_perm(30), Perm::Write);
}

#[test]
fn share_validates_and_reports_progress() {
    let mut g = Guest::new();
    assert_eq!(g.call(SHARE, [20, 1, 0, 0, 0, 0]).status, INVALID);
    assert_eq!(g.call(SHARE, [20, 1, 4, 0, 0, 0]).status, INVALID);
    assert_eq!(g.call(SHARE, [20, 0, 1, 0, 0, 0]).status, INVALID);
    assert_eq!(g.call(SHARE, [u64::MAX, 2, 1, 0, 0, 0]).status, INVALID);
    let r = g.call(SHARE, [20, 4, 1, 0, 0, 0]);
    assert_eq!((r.status, r.ret[0]), (OK, 4));
    assert_eq!(g.hyp.host_perm(23), Perm::Read);
    // Runs into the hole: partial progress.
    let r = g.call(SHARE, [HOLE.start - 2, 4, 3, 0, 0, 0]);
    assert_eq!((r.status, r.ret[0]), (OK, 2));
    let r = g.call(SHARE, [HOLE.start, 2, 3, 0, 0, 0]);
    assert_eq!((r.status, r.ret[0]), (DENIED, 0));
    // Narrowing read-write to read is an unshare and invalidates.
    let before = g.hyp.counters().invalidations;
    g.call(SHARE, [HOLE.start - 1, 1, 1, 0, 0, 0]);
    assert_eq!(g.hyp.host_perm(HOLE.start - 1), Perm::Read);
    assert_eq!(g.hyp.counters().invalidations, before + 1);
}

#[test]
fn share_stops_at_the_budget() {
    let mut g = Guest::bare();
    g.hyp = pviommu_reference_hyp::Hypervisor::new(pviommu_reference_hyp::Config {
        ram: std::iter::once(0..4096 << 12).collect(),
    });
    assert_eq!(g.call(INIT, init_args()).status, OK);
    let r = g.call(SHARE, [100, 2000, 3, 0, 0, 0]);
    assert_eq!((r.status, r.ret[0]), (OK, 512));
    assert_eq!(g.hyp.host_perm(611), Perm::ReadWrite);
    assert_eq!(g.hyp.host_perm(612), Perm::None);
}

#[test]
fn unshare_invalidates_and_keeps_table_permission() {
    let mut g = Guest::new();
    g.call(SHARE, [20, 2, 3, 0, 0, 0]);
    g.map(21, 1, 1);
    g.sync();
    let r = g.call(UNSHARE, [20, 2, 0, 0, 0, 0]);
    assert_eq!((r.status, r.ret[0]), (OK, 2));
    assert_eq!(g.hyp.host_perm(20), Perm::None);
    assert_eq!(
        g.hyp.host_perm(21),
        Perm::Read,
        "the table still grants read"
    );
    assert_eq!(g.hyp.counters().invalidations, 1);
    assert_eq!(g.call(UNSHARE, [HOLE.start, 1, 0, 0, 0, 0]).status, DENIED);
    assert_eq!(g.call(UNSHARE, [20, 0, 0, 0, 0, 0]).status, INVALID);
    assert_eq!(g.call(UNSHARE, [u64::MAX, 2, 0, 0, 0, 0]).status, INVALID);
    // Pool pages can be unshared like any direct share.
    assert_eq!(g.call(UNSHARE, [POOL_GFN, 1, 0, 0, 0, 0]).ret[0], 1);
    assert_eq!(g.hyp.host_perm(POOL_GFN), Perm::None);
}

#[test]
fn reset_unshares_everything_and_allows_init_again() {
    let mut g = Guest::new();
    g.map(20, 2, 3);
    g.sync();
    g.call(SHARE, [40, 1, 1, 0, 0, 0]);
    let r = g.call(RESET, [0; 6]);
    assert_eq!((r.status, r.ret[0]), (OK, 2 + 1 + POOL_PAGES));
    assert!(!g.hyp.is_initialised());
    for gfn in 0..RAM_PAGES {
        assert_eq!(g.hyp.host_perm(gfn), Perm::None);
    }
    assert_eq!(g.call(SYNC, [0; 6]).status, BAD_STATE);
    // A new INIT may even put the pool where the table was.
    let mut args = init_args();
    args[0] = 100 << 12;
    args[4] = 0;
    args[5] = 1;
    assert_eq!(g.call(INIT, args).status, OK);
    assert_eq!(g.hyp.host_perm(0), Perm::ReadWrite);
}

#[test]
fn a_new_init_moves_the_protected_pages() {
    let mut g = Guest::new();
    let ring_pages = (4096u64 + (16 << RING_ORDER)).div_ceil(4096);
    let old_ring = RING_GFN..RING_GFN + ring_pages;
    assert_eq!(g.hyp.registered(), Some((0..1, old_ring.clone())));
    assert_eq!(g.call(RESET, [0; 6]).status, OK);
    assert_eq!(g.hyp.registered(), None);
    // The next INIT puts the ring elsewhere: the old ring pages become
    // ordinary guest RAM, the new ones are protected.
    let mut args = init_args();
    args[2] = 60 << 12;
    assert_eq!(g.call(INIT, args).status, OK);
    assert_eq!(g.hyp.registered(), Some((0..1, 60..60 + ring_pages)));
    assert_eq!(g.call(SHARE, [old_ring.start, 1, 1, 0, 0, 0]).status, OK);
    assert_eq!(g.hyp.host_perm(old_ring.start), Perm::Read);
    assert_eq!(g.call(SHARE, [60, 1, 1, 0, 0, 0]).status, DENIED);
    assert_eq!(g.hyp.host_perm(60), Perm::None);
}

#[test]
fn counters_count_calls_and_statuses() {
    let mut g = Guest::new();
    g.sync();
    g.call(SHARE, [20, 1, 7, 0, 0, 0]);
    let c = g.hyp.counters();
    assert_eq!(c.calls[1], 1);
    assert_eq!(c.calls[2], 1);
    assert_eq!(c.calls[3], 1);
    assert_eq!(c.statuses[0], 2);
    assert_eq!(c.statuses[2], 1);
    assert_eq!(c.errors(), 1);
    let json = c.to_json();
    for key in [
        "\"exits_hypercall\":0",
        "\"drains\":1",
        "\"sync\":1",
        "\"invalid_parameter\":1",
        "\"violations\":0",
    ] {
        assert!(json.contains(key), "{key} missing in {json}");
    }
    assert!(json.starts_with('{') && json.ends_with('}'));
}

fn apply(g: &mut Guest, gfn: u64, nr: u64) -> pviommu_reference_hyp::CallResult {
    g.call(APPLY, [gfn, nr, 0, 0, 0, 0])
}

#[test]
fn apply_shares_and_unshares_per_the_table() {
    let mut g = Guest::new();
    g.set_entry(20, 3);
    g.set_entry(21, 1);
    g.set_entry(22, 0);
    let r = apply(&mut g, 20, 3);
    assert_eq!((r.status, r.ret), (OK, [3, 0, 0]));
    assert_eq!(g.hyp.host_perm(20), Perm::ReadWrite);
    assert_eq!(g.hyp.host_perm(21), Perm::Read);
    assert_eq!(g.hyp.host_perm(22), Perm::None);
    assert_eq!(g.hyp.counters().pages_shared, POOL_PAGES + 2);
    assert_eq!(
        g.hyp.counters().invalidations,
        0,
        "sharing needs no invalidation"
    );
    // Narrowing and revoking are reductions, invalidated before returning.
    g.set_entry(20, 1);
    g.set_entry(21, 0);
    let r = apply(&mut g, 20, 2);
    assert_eq!((r.status, r.ret), (OK, [2, 0, 0]));
    assert_eq!(g.hyp.host_perm(20), Perm::Read);
    assert_eq!(g.hyp.host_perm(21), Perm::None);
    assert_eq!(g.hyp.counters().pages_unshared, 2);
    assert_eq!(g.hyp.counters().invalidations, 1);
    // Applying what is already applied changes nothing and invalidates nothing.
    assert_eq!(apply(&mut g, 20, 3).ret, [3, 0, 0]);
    assert_eq!(g.hyp.counters().invalidations, 1);
    // A bad entry fails safe to no access, as in a ring record.
    g.set_entry(20, 0x20);
    assert_eq!(apply(&mut g, 20, 1).ret, [1, 0, 0]);
    assert_eq!(g.hyp.host_perm(20), Perm::None);
    assert_eq!(g.hyp.counters().bad_table_entries, 1);
    assert_eq!(g.hyp.counters().invalidations, 2);
    // Only the table-derived permission is the table's: a direct share stays.
    g.call(SHARE, [30, 1, 3, 0, 0, 0]);
    assert_eq!(apply(&mut g, 30, 1).ret, [1, 0, 0]);
    assert_eq!(g.hyp.host_perm(30), Perm::ReadWrite);
}

#[test]
fn apply_completes_reductions_a_drain_left_pending() {
    let mut g = Guest::new();
    g.map(20, 1, 3);
    g.sync();
    g.map(20, 1, 0);
    assert_eq!(g.hyp.drain(&g.ram).pages_unshared, 1);
    assert_eq!(g.hyp.counters().invalidations, 0);
    g.set_entry(40, 1);
    assert_eq!(apply(&mut g, 40, 1).ret, [1, 0, 0]);
    assert_eq!(g.hyp.counters().invalidations, 1);
}

#[test]
fn apply_leaves_the_ring_for_the_next_drain() {
    let mut g = Guest::new();
    g.map(20, 1, 3);
    // Another CPU has reserved record 1 and not published it yet.
    g.set_producer(2);
    let r = apply(&mut g, 20, 1);
    assert_eq!((r.status, r.ret), (OK, [1, 0, 0]));
    assert_eq!(g.hyp.host_perm(20), Perm::ReadWrite);
    assert_eq!((g.hyp.consumer(), g.consumer_in_ram()), (0, 0));
    assert_eq!(g.producer(), 2);
    let c = g.hyp.counters();
    assert_eq!((c.drains, c.records_consumed, c.bad_records), (0, 0, 0));
    // The published record is still there: the next SYNC applies it (to
    // the entry as it is now) and stops at the unpublished one.
    g.set_entry(20, 1);
    assert_eq!(g.sync().ret, [1, 1, 0]);
    assert_eq!(g.hyp.host_perm(20), Perm::Read);
    assert_eq!(g.hyp.consumer(), 1);
    g.write_record(1, 20, 1, 2);
    assert_eq!(g.sync().ret, [1, 0, 0]);
    assert_eq!(g.hyp.consumer(), 2);
}

#[test]
fn apply_revokes_while_an_unpublished_record_fills_the_ring() {
    let mut g = Guest::new();
    g.map(40, 1, 3);
    g.sync();
    assert_eq!(g.hyp.host_perm(40), Perm::ReadWrite);
    // A CPU reserves the next record and is descheduled before publishing
    // it; the other CPUs fill the ring behind it. SYNC cannot free a slot.
    let held = g.producer();
    g.set_producer(held + 1);
    for _ in 1..RING_SIZE {
        g.push(20, 1);
    }
    g.sync();
    assert_eq!(g.hyp.consumer(), held);
    assert_eq!(g.producer() - g.hyp.consumer(), RING_SIZE, "still full");
    // The unmap of frame 40 has cleared its entry but can get no record.
    g.set_entry(40, 0);
    let before = g.hyp.counters().invalidations;
    let r = apply(&mut g, 40, 1);
    assert_eq!((r.status, r.ret), (OK, [1, 0, 0]));
    assert_eq!(g.hyp.host_perm(40), Perm::None);
    assert_eq!(g.hyp.counters().invalidations, before + 1);
    assert!(g
        .hyp
        .check_access(&g.ram, 40 << 12, 4096, Access::Read)
        .is_err());
    assert_eq!(g.hyp.consumer(), held);
}

/// Guest RAM that records every byte range the hypervisor reads or writes.
struct Watched<'a> {
    ram: &'a VecRam,
    reads: RefCell<Vec<Range<u64>>>,
    writes: RefCell<Vec<Range<u64>>>,
}

impl GuestRam for Watched<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        self.reads.borrow_mut().push(gpa..gpa + buf.len() as u64);
        self.ram.read(gpa, buf)
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        self.writes.borrow_mut().push(gpa..gpa + data.len() as u64);
        self.ram.write(gpa, data)
    }
}

#[test]
fn apply_reads_each_entry_once_and_never_the_ring() {
    let mut g = Guest::new();
    g.map(20, 4, 3);
    let watched = Watched {
        ram: &g.ram,
        reads: RefCell::new(Vec::new()),
        writes: RefCell::new(Vec::new()),
    };
    let r = g.hyp.call(&watched, APPLY, [18, 10, 0, 0, 0, 0]);
    assert_eq!((r.status, r.ret), (OK, [10, 0, 0]));
    let mut times = vec![0u32; (RAM_PAGES << 12) as usize];
    for range in watched.reads.borrow().iter() {
        for gpa in range.clone() {
            times[gpa as usize] += 1;
        }
    }
    let entries = (TABLE_GFN << 12) + 18..(TABLE_GFN << 12) + 28;
    for (gpa, &n) in times.iter().enumerate() {
        let want = u32::from(entries.contains(&(gpa as u64)));
        assert_eq!(n, want, "gpa {gpa:#x} read {n} times");
    }
    assert!(watched.writes.borrow().is_empty(), "wrote guest memory");
    assert_eq!(g.hyp.host_perm(23), Perm::ReadWrite);
}

#[test]
fn apply_before_init_is_bad_state() {
    let mut g = Guest::bare();
    g.set_entry(20, 3);
    assert_eq!(apply(&mut g, 20, 1).status, BAD_STATE);
    assert_eq!(g.hyp.host_perm(20), Perm::None);
    // After RESET too.
    let mut g = Guest::new();
    g.call(RESET, [0; 6]);
    assert_eq!(apply(&mut g, 20, 1).status, BAD_STATE);
}

#[test]
fn apply_rejects_zero_overflowing_and_reserved_arguments() {
    let mut g = Guest::new();
    g.set_entry(20, 3);
    assert_eq!(apply(&mut g, 20, 0).status, INVALID);
    assert_eq!(apply(&mut g, u64::MAX, 1).status, INVALID);
    assert_eq!(apply(&mut g, 2, u64::MAX).status, INVALID);
    for i in 2..6 {
        let mut args = [20, 1, 0, 0, 0, 0];
        args[i] = 1 << i;
        let r = g.call(APPLY, args);
        assert_eq!((r.status, r.ret), (INVALID, [0; 3]), "arg {i}");
    }
    assert_eq!(g.hyp.host_perm(20), Perm::None, "nothing was applied");
}

#[test]
fn apply_denies_frames_outside_ram_the_table_and_the_ring() {
    let mut g = Guest::new();
    for gfn in [TABLE_GFN, RING_GFN, RING_GFN + 1, HOLE.start, HOLE.end - 1] {
        g.set_entry(gfn, 3);
    }
    for gfn in [
        TABLE_GFN,
        RING_GFN,
        RING_GFN + 1,
        HOLE.start,
        HOLE.end - 1,
        RAM_PAGES,
        u64::MAX - 1,
    ] {
        let r = apply(&mut g, gfn, 1);
        assert_eq!((r.status, r.ret), (DENIED, [0; 3]), "gfn {gfn}");
        assert_eq!(g.hyp.host_perm(gfn), Perm::None, "gfn {gfn}");
    }
    assert_eq!(g.hyp.counters().statuses[3], 7);
    // A range that runs into a refused frame stops before it.
    g.set_entry(HOLE.start - 2, 3);
    g.set_entry(HOLE.start - 1, 1);
    let r = apply(&mut g, HOLE.start - 2, 4);
    assert_eq!((r.status, r.ret), (OK, [2, 0, 0]));
    assert_eq!(g.hyp.host_perm(HOLE.start - 1), Perm::Read);
    // The pool is neither: like a ring record, APPLY sets its table-derived
    // permission, and the direct share INIT made stays.
    let r = apply(&mut g, POOL_GFN, POOL_PAGES);
    assert_eq!((r.status, r.ret), (OK, [POOL_PAGES, 0, 0]));
    assert_eq!(g.hyp.host_perm(POOL_GFN), Perm::ReadWrite);

    // RAM beyond a smaller table is outside the table.
    let mut g = Guest::bare();
    let mut args = init_args();
    args[1] = 100;
    assert_eq!(g.call(INIT, args).status, OK);
    g.set_entry(99, 3);
    g.set_entry(100, 3);
    assert_eq!(apply(&mut g, 100, 1).status, DENIED);
    let r = apply(&mut g, 98, 4);
    assert_eq!((r.status, r.ret), (OK, [2, 0, 0]));
    assert_eq!(g.hyp.host_perm(99), Perm::ReadWrite);
    assert_eq!(g.hyp.host_perm(100), Perm::None);
}

#[test]
fn apply_stops_at_the_budget() {
    let mut g = Guest::bare();
    g.hyp = pviommu_reference_hyp::Hypervisor::new(pviommu_reference_hyp::Config {
        ram: std::iter::once(0..4096 << 12).collect(),
    });
    let mut args = init_args();
    args[1] = 4096;
    assert_eq!(g.call(INIT, args).status, OK);
    g.ram.write(100, &[3; 2000]).unwrap();
    let r = apply(&mut g, 100, 2000);
    assert_eq!((r.status, r.ret), (OK, [512, 0, 0]));
    assert_eq!(g.hyp.host_perm(611), Perm::ReadWrite);
    assert_eq!(g.hyp.host_perm(612), Perm::None);
    // The guest continues from `gfn + r0` until the range is done.
    let (mut gfn, mut left, mut calls) = (612, 2000 - 512, 1);
    while left > 0 {
        let r = apply(&mut g, gfn, left);
        assert_eq!(r.status, OK);
        assert!((1..=512).contains(&r.ret[0]), "progress {}", r.ret[0]);
        gfn += r.ret[0];
        left -= r.ret[0];
        calls += 1;
    }
    assert_eq!(calls, 4);
    assert_eq!(g.hyp.host_perm(2099), Perm::ReadWrite);
    assert_eq!(g.hyp.host_perm(2100), Perm::None);
    assert_eq!(g.hyp.counters().pages_shared, POOL_PAGES + 2000);
}

#[test]
fn apply_is_counted_by_function_and_status() {
    let mut g = Guest::new();
    apply(&mut g, 20, 1);
    apply(&mut g, HOLE.start, 1);
    let c = g.hyp.counters();
    assert_eq!(c.calls[Func::Apply as usize], 2);
    assert_eq!(
        (c.statuses[0], c.statuses[3]),
        (2, 1),
        "init, apply; denied"
    );
    let json = c.to_json();
    assert!(json.contains("\"apply\":2"), "{json}");
    assert!(json.contains("\"unknown\":0"), "{json}");
}
