// SPDX-License-Identifier: GPL-2.0-only

//! Every call of the reference hypervisor and every error path.

mod common;

use common::*;
use pviommu_reference_hyp::abi::call::{Status, ABI_VERSION};
use pviommu_reference_hyp::Perm;

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
    assert_eq!(r.ret, [u64::from(ABI_VERSION), 0, 16]);
    assert_eq!(ABI_VERSION, 0x1_0000);
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
    for func in [6, 7, 0x60, u32::MAX] {
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
    for (i, bad) in [2u8, 4, 0x83, 0xff].into_iter().enumerate() {
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
fn share_validates_and_reports_progress() {
    let mut g = Guest::new();
    assert_eq!(g.call(SHARE, [20, 1, 0, 0, 0, 0]).status, INVALID);
    assert_eq!(g.call(SHARE, [20, 1, 2, 0, 0, 0]).status, INVALID);
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
