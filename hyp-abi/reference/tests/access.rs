// SPDX-License-Identifier: GPL-2.0-only

//! Host access checks with drain-on-fault.

mod common;

use common::*;
use pviommu_reference_hyp::{Access, ExitKind, Violation};

#[test]
fn shared_pages_are_accessible_without_exit() {
    let mut g = Guest::new();
    g.map(20, 2, 3);
    g.sync();
    assert_eq!(
        g.hyp
            .check_access(&g.ram, (20 << 12) + 100, 8000, Access::Write),
        Ok(())
    );
    assert_eq!(
        g.hyp.check_access(&g.ram, 20 << 12, 0, Access::Read),
        Ok(())
    );
    assert_eq!(g.hyp.counters().exits_fault, 0);
}

#[test]
fn a_published_record_is_drained_on_fault() {
    let mut g = Guest::new();
    g.map(20, 1, 1);
    assert_eq!(
        g.hyp.check_access(&g.ram, 20 << 12, 4096, Access::Read),
        Ok(())
    );
    let c = g.hyp.counters();
    assert_eq!((c.exits_fault, c.drains, c.violations), (1, 1, 0));
}

#[test]
fn a_table_entry_without_record_is_applied_on_fault() {
    let mut g = Guest::new();
    g.set_entry(20, 3);
    assert_eq!(
        g.hyp.check_access(&g.ram, 20 << 12, 1, Access::Write),
        Ok(())
    );
}

#[test]
fn refused_accesses_are_violations() {
    let mut g = Guest::new();
    g.map(20, 1, 1);
    g.sync();
    let v = g.hyp.check_access(&g.ram, 20 << 12, 16, Access::Write);
    assert_eq!(
        v,
        Err(Violation {
            gpa: 20 << 12,
            len: 16,
            access: Access::Write
        })
    );
    // Straddling into an unshared page.
    assert!(g
        .hyp
        .check_access(&g.ram, (20 << 12) + 4090, 16, Access::Read)
        .is_err());
    // The table, the hole, beyond RAM, and an overflowing range.
    assert!(g.hyp.check_access(&g.ram, 0, 1, Access::Read).is_err());
    assert!(g
        .hyp
        .check_access(&g.ram, HOLE.start << 12, 1, Access::Read)
        .is_err());
    assert!(g
        .hyp
        .check_access(&g.ram, RAM_PAGES << 12, 1, Access::Read)
        .is_err());
    assert!(g
        .hyp
        .check_access(&g.ram, u64::MAX, 2, Access::Read)
        .is_err());
    assert!(g
        .hyp
        .check_access(&g.ram, 20 << 12, u64::MAX, Access::Read)
        .is_err());
    assert_eq!(g.hyp.counters().violations, 7);
}

#[test]
fn accesses_before_init_are_violations() {
    let mut g = Guest::bare();
    assert!(g
        .hyp
        .check_access(&g.ram, 20 << 12, 1, Access::Read)
        .is_err());
    assert_eq!(g.hyp.counters().violations, 1);
}

#[test]
fn exits_are_counted_by_kind() {
    let mut g = Guest::new();
    g.hyp.record_exit(ExitKind::Hypercall);
    g.hyp.record_exit(ExitKind::QueueKick);
    g.hyp.record_exit(ExitKind::QueueKick);
    let c = g.hyp.counters();
    assert_eq!(
        (c.exits_hypercall, c.exits_queue_kick, c.exits_fault),
        (1, 2, 0)
    );
}
