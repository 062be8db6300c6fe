// SPDX-License-Identifier: GPL-2.0-only

//! The change journal (`take_changes`): whatever enforces the host view
//! learns every frame whose host access changed, from every path that
//! changes one (drains, faults, every call).

mod common;

use common::*;
use proptest::prelude::*;
use pviommu_reference_hyp::{Access, Perm};
use std::ops::Range;

#[derive(Clone, Debug)]
enum Op {
    /// Table entries, then a published record.
    Map(u64, u32, u8),
    /// A table entry without a record (found by a fault or `APPLY`).
    Entry(u64, u8),
    Drain,
    Sync,
    Share(u64, u64, u64),
    Unshare(u64, u64),
    Apply(u64, u64),
    Check(u64, bool),
    Reset,
    Init,
}

fn op() -> impl Strategy<Value = Op> {
    let gfn = 0..RAM_PAGES + 8;
    prop_oneof![
        4 => (gfn.clone(), 1..6u32, prop_oneof![Just(0u8), Just(1), Just(3), any::<u8>()])
            .prop_map(|(g, n, e)| Op::Map(g, n, e)),
        2 => (gfn.clone(), prop_oneof![Just(0u8), Just(1), Just(3)]).prop_map(|(g, e)| Op::Entry(g, e)),
        2 => Just(Op::Drain),
        2 => Just(Op::Sync),
        1 => (gfn.clone(), 1..6u64, prop_oneof![Just(1u64), Just(3)]).prop_map(|(g, n, p)| Op::Share(g, n, p)),
        1 => (gfn.clone(), 1..6u64).prop_map(|(g, n)| Op::Unshare(g, n)),
        1 => (gfn.clone(), 1..6u64).prop_map(|(g, n)| Op::Apply(g, n)),
        2 => (gfn, any::<bool>()).prop_map(|(g, w)| Op::Check(g, w)),
        1 => Just(Op::Reset),
        1 => Just(Op::Init),
    ]
}

fn view(g: &Guest) -> Vec<Perm> {
    (0..RAM_PAGES + 8).map(|gfn| g.hyp.host_perm(gfn)).collect()
}

fn run(g: &mut Guest, op: &Op) {
    match *op {
        Op::Map(gfn, nr, entry) => {
            for f in gfn..(gfn + u64::from(nr)).min(TABLE_FRAMES) {
                g.set_entry(f, entry);
            }
            g.push(gfn, nr);
        }
        Op::Entry(gfn, entry) if gfn < TABLE_FRAMES => g.set_entry(gfn, entry),
        Op::Entry(..) => {}
        Op::Drain => {
            g.hyp.drain(&g.ram);
        }
        Op::Sync => {
            g.sync();
        }
        Op::Share(gfn, nr, perm) => {
            g.call(SHARE, [gfn, nr, perm, 0, 0, 0]);
        }
        Op::Unshare(gfn, nr) => {
            g.call(UNSHARE, [gfn, nr, 0, 0, 0, 0]);
        }
        Op::Apply(gfn, nr) => {
            g.call(APPLY, [gfn, nr, 0, 0, 0, 0]);
        }
        Op::Check(gfn, write) => {
            let access = if write { Access::Write } else { Access::Read };
            let _ = g.hyp.check_access(&g.ram, gfn << 12, 4096, access);
        }
        Op::Reset => {
            g.call(RESET, [0; 6]);
        }
        Op::Init => {
            g.call(INIT, init_args());
        }
    }
}

fn covered(ranges: &[Range<u64>], gfn: u64) -> bool {
    ranges.iter().any(|r| r.contains(&gfn))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_change_of_the_host_view_is_reported(ops in prop::collection::vec(op(), 1..60)) {
        let mut g = Guest::new();
        // INIT shared the pool: that is a change too.
        let mut ranges = Vec::new();
        g.hyp.take_changes(|r| ranges.push(r));
        for gfn in POOL_GFN..POOL_GFN + POOL_PAGES {
            prop_assert!(covered(&ranges, gfn), "pool frame {gfn} not reported");
        }
        let mut before = view(&g);
        for op in &ops {
            run(&mut g, op);
            let after = view(&g);
            let mut ranges: Vec<Range<u64>> = Vec::new();
            g.hyp.take_changes(|r| ranges.push(r));
            for w in ranges.windows(2) {
                prop_assert!(w[0].end < w[1].start, "ranges {ranges:?} not ascending and apart");
            }
            for (gfn, (b, a)) in before.iter().zip(&after).enumerate() {
                if b != a {
                    prop_assert!(
                        covered(&ranges, gfn as u64),
                        "{op:?} changed frame {gfn} from {b:?} to {a:?}, reported {ranges:?}"
                    );
                }
            }
            before = after;
        }
    }
}

#[test]
fn nothing_changed_reports_nothing() {
    let mut g = Guest::new();
    g.hyp.take_changes(|_| {});
    g.map(20, 1, 3);
    g.sync();
    let mut n = 0;
    g.hyp.take_changes(|r| {
        assert!(r.contains(&20));
        n += 1;
    });
    assert_eq!(n, 1);
    // Applying the same entry again changes nothing.
    g.map(20, 1, 3);
    g.sync();
    g.hyp
        .take_changes(|r| panic!("unchanged frames reported: {r:?}"));
}
