// SPDX-License-Identifier: GPL-2.0-only
//! The mailbox transport and the state machine behind it, driven through a
//! real ivshmem client connection: calls, hostile slot contents, hostile
//! frame numbers, fault injection.

mod support;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use support::*;

/// A small deterministic generator for garbage.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn version_init_and_completion_interrupt() {
    let h = Refhyp::start("version", &["--completion-irq"]);
    let mut g = Guest::connect(&h);
    let (st, ret) = g.call(FUNC_VERSION, [0; 6]);
    assert_eq!(
        (st, ret[0], ret[1]),
        (
            ST_SUCCESS,
            ABI_2_2,
            FEATURE_APPLY | FEATURE_STATS | FEATURE_WRITE_ONLY
        )
    );
    // The hypervisor raises our vector once the doorbell is served (just
    // after the answer is published).
    wait_for(|| g.irq.read().ok());
    g.init();
    let (st, _) = g.call(
        FUNC_INIT,
        [
            TABLE_GPA,
            TABLE_FRAMES,
            RING_GPA,
            RING_ORDER,
            POOL_GPA,
            POOL_PAGES,
        ],
    );
    assert_eq!(st, ST_BAD_STATE, "a second INIT is refused");
    let c = h.stop();
    assert_eq!(c.get("hyp", "exits_hypercall"), 3);
    assert_eq!(c.get("device", "doorbells"), 3);
    assert_eq!(c.get("device", "mailbox_calls"), 3);
}

#[test]
fn no_completion_interrupt_by_default() {
    let h = Refhyp::start("noirq", &[]);
    let mut g = Guest::connect(&h);
    let (st, _) = g.call(FUNC_VERSION, [0; 6]);
    assert_eq!(st, ST_SUCCESS);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        g.irq.read().is_err(),
        "the guest polls: no interrupt is raised for it"
    );
    h.stop();
}

#[test]
fn one_doorbell_serves_every_pending_slot() {
    let h = Refhyp::start("batch", &[]);
    let g = Guest::connect(&h);
    for slot in 0..8 {
        let mut s = [0u8; 128];
        s[0..4].copy_from_slice(&FUNC_VERSION.to_le_bytes());
        s[56..60].copy_from_slice(&1u32.to_le_bytes());
        g.write_slot_raw(slot, &s);
    }
    g.ring_doorbell();
    for slot in 0..8 {
        let s = wait_for(|| {
            let s = g.read_slot_raw(slot);
            (s[96..100] == 1u32.to_le_bytes()).then_some(s)
        });
        assert_eq!(&s[64..72], &0i64.to_le_bytes());
    }
    assert_eq!(h.stop().get("device", "doorbells"), 1);
}

#[test]
fn garbage_mailbox_is_answered_not_fatal() {
    let mut h = Refhyp::start("garbage", &[]);
    let mut g = Guest::connect(&h);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let nr_slots = (SHM_SIZE - 4096) / 128;
    for round in 0..4 {
        // Clobber the header too: the slot count must come from the size.
        let junk: Vec<u8> = (0..64).map(|_| rng.next() as u8).collect();
        g.shm.write_all_at(&junk, 0).unwrap();
        for slot in 0..nr_slots {
            let mut s = [0u8; 128];
            for b in s.iter_mut() {
                *b = rng.next() as u8;
            }
            // Half the slots call a real function with garbage arguments.
            if slot % 2 == 0 {
                s[0..4].copy_from_slice(&((rng.next() % u64::from(NR_FUNCS)) as u32).to_le_bytes());
            }
            g.write_slot_raw(slot, &s);
        }
        g.ring_doorbell();
        for slot in 0..nr_slots {
            let s = wait_for(|| {
                let s = g.read_slot_raw(slot);
                (s[56..60] == s[96..100]).then_some(s)
            });
            let status = i64::from_le_bytes(s[64..72].try_into().unwrap());
            assert!(
                ST_ALL.contains(&status),
                "round {round} slot {slot}: status {status}"
            );
        }
        assert!(h.alive());
    }
    // Slot 0 still works afterwards; its sequence is whatever was there.
    let (st, _) = g.call(FUNC_VERSION, [0; 6]);
    assert_eq!(st, ST_SUCCESS);
    let c = h.stop();
    assert_eq!(c.get("device", "mailbox_calls"), 4 * nr_slots + 1);
    assert_eq!(c.get("device", "violations"), 0);
}

#[test]
fn malformed_calls_are_refused() {
    let h = Refhyp::start("malformed", &[]);
    let mut g = Guest::connect(&h);
    assert_eq!(g.call_raw(FUNC_VERSION, 1, [0; 6]).0, ST_INVALID, "flags");
    assert_eq!(
        g.call(FUNC_VERSION, [1, 0, 0, 0, 0, 0]).0,
        ST_INVALID,
        "reserved arg"
    );
    assert_eq!(
        g.call(0xdead, [0; 6]).0,
        ST_NOT_SUPPORTED,
        "unknown function"
    );
    assert_eq!(
        g.call(FUNC_SYNC, [0; 6]).0,
        ST_BAD_STATE,
        "SYNC before INIT"
    );
    // INIT naming memory outside RAM, or overlapping table and ring.
    let bad = [
        [
            TABLE_GPA,
            TABLE_FRAMES,
            RAM_SIZE + PAGE,
            RING_ORDER,
            POOL_GPA,
            1,
        ],
        [TABLE_GPA, TABLE_FRAMES, TABLE_GPA, RING_ORDER, POOL_GPA, 1],
        [
            TABLE_GPA + 1,
            TABLE_FRAMES,
            RING_GPA,
            RING_ORDER,
            POOL_GPA,
            1,
        ],
        [TABLE_GPA, u64::MAX, RING_GPA, RING_ORDER, POOL_GPA, 1],
        [TABLE_GPA, TABLE_FRAMES, RING_GPA, 63, POOL_GPA, 1],
        [
            TABLE_GPA,
            TABLE_FRAMES,
            RING_GPA,
            RING_ORDER,
            !0xfff,
            u64::MAX,
        ],
    ];
    for args in bad {
        let st = g.call(FUNC_INIT, args).0;
        assert!(st == ST_INVALID || st == ST_DENIED, "INIT {args:x?}: {st}");
    }
    g.init();
    h.stop();
}

#[test]
fn out_of_range_frames_are_refused() {
    let h = Refhyp::start("frames", &[]);
    let mut g = Guest::connect(&h);
    g.init();
    let ram_frames = RAM_SIZE / PAGE;
    // Direct shares beyond RAM, of the table itself, and wrapping ranges.
    assert_eq!(g.call(FUNC_SHARE, [ram_frames, 1, 3, 0, 0, 0]).0, ST_DENIED);
    assert_eq!(
        g.call(FUNC_SHARE, [TABLE_GPA / PAGE, 1, 3, 0, 0, 0]).0,
        ST_DENIED
    );
    assert_eq!(g.call(FUNC_SHARE, [u64::MAX, 2, 3, 0, 0, 0]).0, ST_INVALID);
    assert_eq!(
        g.call(FUNC_SHARE, [16, 1, 4, 0, 0, 0]).0,
        ST_INVALID,
        "perm 4"
    );
    assert_eq!(
        g.call(FUNC_UNSHARE, [ram_frames + 5, 1, 0, 0, 0, 0]).0,
        ST_DENIED
    );
    // Ring records naming frames past the table, zero frames, or wrapping.
    g.publish(TABLE_FRAMES, 1);
    g.publish(5, 0);
    g.publish(u64::MAX, u32::MAX);
    g.publish(TABLE_FRAMES - 1, 2);
    assert_eq!(g.call(FUNC_SYNC, [0; 6]).0, ST_SUCCESS);
    let c = h.stop();
    assert_eq!(c.get("hyp", "bad_records"), 4);
    assert_eq!(c.get("hyp", "pages_shared"), POOL_PAGES);
}

#[test]
fn apply_applies_the_table_without_the_ring() {
    let h = Refhyp::start("apply", &[]);
    let mut g = Guest::connect(&h);
    g.init();
    // Entries written, no record published: APPLY reads them directly.
    g.write(TABLE_GPA + 0x500, &[PERM_RW; 4]);
    let (st, ret) = g.call(FUNC_APPLY, [0x500, 4, 0, 0, 0, 0]);
    assert_eq!((st, ret), (ST_SUCCESS, [4, 0, 0]));
    g.write(TABLE_GPA + 0x500, &[PERM_NONE; 4]);
    let (st, ret) = g.call(FUNC_APPLY, [0x500, 4, 0, 0, 0, 0]);
    assert_eq!((st, ret), (ST_SUCCESS, [4, 0, 0]));
    assert_eq!(
        g.call(FUNC_APPLY, [TABLE_GPA / PAGE, 1, 0, 0, 0, 0]).0,
        ST_DENIED,
        "the table itself"
    );
    assert_eq!(
        g.call(FUNC_APPLY, [0x500, 1, 3, 0, 0, 0]).0,
        ST_INVALID,
        "reserved a2"
    );
    let c = h.stop();
    assert_eq!(c.get("hyp", "pages_shared"), POOL_PAGES + 4);
    assert_eq!(c.get("hyp", "pages_unshared"), 4);
    assert_eq!(c.get("hyp", "invalidations"), 1);
    assert_eq!(c.get("hyp", "drains"), 0, "the ring was not drained");
    assert_eq!(c.get("calls", "apply"), 4);
}

#[test]
fn fault_injection_fails_syncs_and_unshares() {
    let h = Refhyp::start(
        "faults",
        &[
            "--fail-syncs",
            "2",
            "--fail-unshares",
            "1",
            "--busy-syncs",
            "1",
        ],
    );
    let mut g = Guest::connect(&h);
    g.init();
    assert_eq!(g.call(FUNC_SYNC, [0; 6]).0, ST_NO_MEMORY);
    assert_eq!(g.call(FUNC_SYNC, [0; 6]).0, ST_NO_MEMORY);
    assert_eq!(g.call(FUNC_SYNC, [0; 6]).0, ST_BUSY);
    assert_eq!(g.call(FUNC_SYNC, [0; 6]).0, ST_SUCCESS);
    assert_eq!(g.call(FUNC_SHARE, [0x500, 4, 3, 0, 0, 0]).0, ST_SUCCESS);
    assert_eq!(g.call(FUNC_UNSHARE, [0x500, 4, 0, 0, 0, 0]).0, ST_NO_MEMORY);
    let (st, ret) = g.call(FUNC_UNSHARE, [0x500, 4, 0, 0, 0, 0]);
    assert_eq!((st, ret[0]), (ST_SUCCESS, 4));
    let c = h.stop();
    assert_eq!(c.get("faults", "syncs_failed"), 2);
    assert_eq!(c.get("faults", "unshares_failed"), 1);
    assert_eq!(c.get("faults", "syncs_busy"), 1);
    assert_eq!(c.get("hyp", "pages_unshared"), 4);
}

#[test]
fn fault_injection_reports_partial_unshares() {
    let h = Refhyp::start("partial", &["--partial-unshare", "3"]);
    let mut g = Guest::connect(&h);
    g.init();
    assert_eq!(g.call(FUNC_SHARE, [0x500, 8, 3, 0, 0, 0]).0, ST_SUCCESS);
    // The guest loops on partial progress, as the ABI requires.
    let (mut gfn, mut left, mut calls) = (0x500u64, 8u64, 0);
    while left > 0 {
        let (st, ret) = g.call(FUNC_UNSHARE, [gfn, left, 0, 0, 0, 0]);
        assert_eq!(st, ST_SUCCESS);
        assert!(ret[0] >= 1 && ret[0] <= 3, "progress {}", ret[0]);
        gfn += ret[0];
        left -= ret[0];
        calls += 1;
    }
    assert_eq!(calls, 3);
    let c = h.stop();
    assert_eq!(c.get("faults", "unshares_truncated"), 2);
    assert_eq!(c.get("hyp", "pages_unshared"), 8);
}

#[test]
fn fault_injection_delays_drains() {
    let h = Refhyp::start("delay", &["--drain-delay-ms", "100"]);
    let mut g = Guest::connect(&h);
    g.init();
    let t = Instant::now();
    assert_eq!(g.call(FUNC_SYNC, [0; 6]).0, ST_SUCCESS);
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(h.stop().get("faults", "drains_delayed"), 1);
}

#[test]
fn a_new_client_after_a_disconnect_gets_a_new_peer_id() {
    let h = Refhyp::start("reconnect", &[]);
    let first = Guest::connect(&h);
    let id = first.peer_id;
    drop(first);
    let mut second = Guest::connect(&h);
    assert_ne!(second.peer_id, id);
    assert_eq!(second.call(FUNC_VERSION, [0; 6]).0, ST_SUCCESS);
    h.stop();
}

#[test]
fn hostile_ivshmem_clients_do_not_stop_the_server() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let mut h = Refhyp::start("clients", &[]);
    // Gone before the handshake, and chatty (clients never send).
    drop(UnixStream::connect(&h.ivshmem_path).unwrap());
    let mut chatty = UnixStream::connect(&h.ivshmem_path).unwrap();
    let _ = chatty.write_all(&[0xff; 64]);
    let mut g = Guest::connect(&h);
    assert_eq!(g.call(FUNC_VERSION, [0; 6]).0, ST_SUCCESS);
    drop(chatty);
    assert_eq!(g.call(FUNC_VERSION, [0; 6]).0, ST_SUCCESS);
    assert!(h.alive());
    h.stop();
}
