// SPDX-License-Identifier: GPL-2.0-only
//! The vhost-user-blk backend under the host view: data integrity when the
//! guest shares properly, and I/O errors, dropped requests and counted
//! violations for every way a driver (or a hostile guest) can get it wrong.

mod support;

use support::blk::*;
use support::virtq::{RawDesc, BAR2_GPA, F_NEXT, F_WRITE};
use support::*;

/// Program, guest after INIT and `share` (see `start_shared`), and a
/// connected driver.
fn setup(tag: &str, extra: &[&str], share: impl FnOnce(&mut Guest)) -> (Refhyp, Guest, BlkDriver) {
    let (h, g) = start_shared(tag, extra, share);
    let d = BlkDriver::connect(&h, &g);
    (h, g, d)
}

#[test]
fn shared_buffers_round_trip_at_4k_64k_1m() {
    let (h, g, mut d) = setup("roundtrip", &[], |g| {
        BlkDriver::share_all(g);
    });
    let mut total = 0u64;
    for (i, len) in [4096u32, 64 << 10, 1 << 20].into_iter().enumerate() {
        let data = pattern(len as usize, i as u8);
        let sector = 8 * i as u64;
        g.write(DATA_GPA, &data);
        assert_eq!(d.request(&g, T_OUT, sector, len), (S_OK, 1));
        g.write(DATA_GPA, &vec![0; len as usize]);
        assert_eq!(d.request(&g, T_IN, sector, len), (S_OK, len + 1));
        assert_eq!(g.read(DATA_GPA, len as usize), data, "{len} bytes");
        total += u64::from(len);
    }
    assert_eq!(d.request(&g, T_FLUSH, 0, 0), (S_OK, 1));
    assert_eq!(d.request(&g, 99, 0, 0), (S_UNSUPP, 1));
    let c = h.stop();
    assert_eq!(c.get("device", "violations"), 0);
    assert_eq!(c.get("hyp", "violations"), 0);
    assert_eq!(c.get("device", "bytes_read"), total);
    assert_eq!(c.get("device", "bytes_written"), total);
    assert_eq!(c.get("device", "requests_ok"), 7);
    assert_eq!(c.get("device", "requests_unsupported"), 1);
    // Six data requests of one data descriptor each, a flush and an
    // unsupported request of header and status only.
    assert_eq!(c.get("device", "data_descriptors"), 6);
    assert_eq!(c.get("device", "descriptors"), 6 * 3 + 2 * 2);
}

#[test]
fn unshared_data_fails_with_ioerr_and_writes_nothing() {
    let (h, g, mut d) = setup("unshared", &[], |g| {
        g.share_range(DESC_GPA, 3 * 4096, PERM_RW);
        g.share_range(HDR_GPA, 2 * 4096, PERM_RW);
    });
    // Data page deliberately not shared.
    g.write(DATA_GPA, &pattern(4096, 7));
    assert_eq!(d.request(&g, T_OUT, 0, 4096), (S_IOERR, 1));
    assert_eq!(d.request(&g, T_IN, 0, 4096), (S_IOERR, 1));
    assert_eq!(
        g.read(DATA_GPA, 4096),
        pattern(4096, 7),
        "device wrote a private page"
    );
    let disk = std::fs::read(&h.disk_path).unwrap();
    assert!(
        disk[..4096].iter().all(|&b| b == 0),
        "private data reached the disk"
    );
    let c = h.stop();
    assert_eq!(c.get("device", "violations"), 2);
    assert_eq!(c.get("device", "requests_ioerr"), 2);
    // One more fault exit, not a violation: the framework's read of the
    // used index when the rings are set up finds the rings shared in the
    // table and ring but not drained yet, and the fault drains them.
    assert_eq!(c.get("hyp", "exits_fault"), 3);
    assert_eq!(c.get("device", "mapping_faults"), 0);
}

#[test]
fn device_write_needs_read_write() {
    let (h, g, mut d) = setup("readonly", &[], |g| {
        g.share_range(DESC_GPA, 3 * 4096, PERM_RW);
        g.share_range(HDR_GPA, 2 * 4096, PERM_RW);
        g.share_range(DATA_GPA, 4096, PERM_READ);
    });
    assert_eq!(
        d.request(&g, T_OUT, 0, 4096),
        (S_OK, 1),
        "reading a READ page is fine"
    );
    assert_eq!(
        d.request(&g, T_IN, 0, 4096),
        (S_IOERR, 1),
        "writing it is not"
    );
    assert_eq!(h.stop().get("device", "violations"), 1);
}

#[test]
fn descriptors_outside_ram_or_in_the_ivshmem_bar_fail() {
    let (mut h, g, mut d) = setup("outside", &[], |g| {
        BlkDriver::share_all(g);
    });
    for addr in [
        RAM_SIZE,
        RAM_SIZE - 2048,
        BAR2_GPA,
        BAR2_GPA + 4096,
        u64::MAX - 4095,
    ] {
        BlkDriver::header(&g, T_IN, 0);
        d.offer(
            &g,
            &[
                (HDR_GPA, 16, false),
                (addr, 4096, true),
                (STATUS_GPA, 1, true),
            ],
        );
        d.kick();
        let (_, len) = d.wait_used(&g);
        assert_eq!(
            (g.read(STATUS_GPA, 1)[0], len),
            (S_IOERR, 1),
            "data at {addr:#x}"
        );
    }
    assert!(h.alive());
    let c = h.stop();
    assert_eq!(c.get("device", "violations"), 5);
}

#[test]
fn unwritable_status_byte_drops_the_request() {
    let (h, g, mut d) = setup("status", &[], |g| {
        g.share_range(DESC_GPA, 3 * 4096, PERM_RW);
        g.share_range(HDR_GPA, 4096, PERM_RW);
        g.share_range(DATA_GPA, 4096, PERM_RW);
        g.share_range(STATUS_GPA, 4096, PERM_READ);
    });
    BlkDriver::header(&g, T_IN, 0);
    d.offer(
        &g,
        &[
            (HDR_GPA, 16, false),
            (DATA_GPA, 4096, true),
            (STATUS_GPA, 1, true),
        ],
    );
    d.kick();
    let c = h.wait_counter("device", "requests_dropped", 1);
    assert_eq!(d.used_idx(&g), 0, "a dropped request must not complete");
    assert_eq!(g.read(STATUS_GPA, 1)[0], S_UNTOUCHED);
    assert_eq!(c.get("device", "requests_ok"), 1, "the I/O itself was fine");
    assert_eq!(c.get("device", "violations"), 1);
}

#[test]
fn unshared_header_fails() {
    let (h, g, mut d) = setup("header", &[], |g| {
        g.share_range(DESC_GPA, 3 * 4096, PERM_RW);
        g.share_range(STATUS_GPA, 4096, PERM_RW);
        g.share_range(DATA_GPA, 4096, PERM_RW);
    });
    assert_eq!(d.request(&g, T_IN, 0, 4096), (S_IOERR, 1));
    assert_eq!(h.stop().get("device", "violations"), 1);
}

#[test]
fn unshared_rings_are_not_touched_until_shared() {
    let (mut h, mut g, mut d) = setup("rings", &[], |g| {
        g.share_range(HDR_GPA, 2 * 4096, PERM_RW);
        g.share_range(DATA_GPA, 4096, PERM_RW);
    });
    BlkDriver::header(&g, T_IN, 0);
    d.offer(
        &g,
        &[
            (HDR_GPA, 16, false),
            (DATA_GPA, 4096, true),
            (STATUS_GPA, 1, true),
        ],
    );
    d.kick();
    let c = h.wait_counter("device", "violations", 1);
    assert_eq!(c.get("device", "requests"), 0);
    assert_eq!(d.used_idx(&g), 0);
    assert!(h.alive());
    // Once the guest shares the rings, the next kick serves the request.
    g.share_range(DESC_GPA, 3 * 4096, PERM_RW);
    d.kick();
    d.wait_used(&g);
    assert_eq!(g.read(STATUS_GPA, 1)[0], S_OK);
    h.stop();
}

#[test]
fn used_ring_needs_read_write() {
    let (h, g, mut d) = setup("usedro", &[], |g| {
        g.share_range(DESC_GPA, 2 * 4096, PERM_RW);
        g.share_range(USED_GPA, 4096, PERM_READ);
        g.share_range(HDR_GPA, 2 * 4096, PERM_RW);
    });
    BlkDriver::header(&g, T_FLUSH, 0);
    d.offer(&g, &[(HDR_GPA, 16, false), (STATUS_GPA, 1, true)]);
    d.kick();
    let c = h.wait_counter("device", "violations", 1);
    assert_eq!(d.used_idx(&g), 0);
    assert_eq!(c.get("device", "requests"), 1, "{}", c.0);
}

#[test]
fn descriptor_loop_is_malformed() {
    let (mut h, g, mut d) = setup("loop", &[], |g| {
        BlkDriver::share_all(g);
    });
    BlkDriver::header(&g, T_IN, 0);
    let hdr = RawDesc {
        addr: HDR_GPA,
        len: 16,
        flags: F_NEXT,
        next: 1,
    };
    let status = RawDesc {
        addr: STATUS_GPA,
        len: 1,
        flags: F_NEXT | F_WRITE,
        next: 0,
    };
    d.offer_raw(&g, &[(0, hdr), (1, status)], 0);
    d.kick();
    let (_, len) = d.wait_used(&g);
    assert_eq!((g.read(STATUS_GPA, 1)[0], len), (S_IOERR, 1));
    assert!(h.alive());
    // A self-loop on a read-only descriptor has no status byte at all.
    let selfloop = RawDesc {
        addr: HDR_GPA,
        len: 16,
        flags: F_NEXT,
        next: 2,
    };
    d.offer_raw(&g, &[(2, selfloop)], 2);
    d.kick();
    let c = h.wait_counter("device", "requests_dropped", 1);
    assert_eq!(c.get("device", "malformed_chains"), 2);
    assert!(h.alive());
}

#[test]
fn next_index_out_of_the_table_is_malformed() {
    let (mut h, g, mut d) = setup("badnext", &[], |g| {
        BlkDriver::share_all(g);
    });
    BlkDriver::header(&g, T_IN, 0);
    let hdr = RawDesc {
        addr: HDR_GPA,
        len: 16,
        flags: F_NEXT,
        next: 999,
    };
    d.offer_raw(&g, &[(0, hdr)], 0);
    d.kick();
    h.wait_counter("device", "malformed_chains", 1);
    // A head index out of the table.
    d.offer_raw(&g, &[], 4000);
    d.kick();
    h.wait_counter("device", "kicks", 3);
    assert!(h.alive());
    h.stop();
}

#[test]
fn oversized_chains_fail() {
    let (mut h, g, mut d) = setup("oversized", &[], |g| {
        BlkDriver::share_all(g);
    });
    // One descriptor larger than size_max.
    assert_eq!(d.request(&g, T_IN, 0, 2 << 20), (S_IOERR, 1));
    // Past the end of the disk, and a length that is not whole sectors.
    assert_eq!(d.request(&g, T_IN, DISK_SIZE / 512 - 1, 4096), (S_IOERR, 1));
    assert_eq!(d.request(&g, T_IN, u64::MAX / 512, 4096), (S_IOERR, 1));
    assert_eq!(d.request(&g, T_OUT, 0, 100), (S_IOERR, 1));
    // Every descriptor of the queue in one chain: 14 data segments of 4 KiB.
    BlkDriver::header(&g, T_IN, 0);
    let mut chain = vec![(HDR_GPA, 16, false)];
    chain.extend((0..QSIZE as u64 - 2).map(|i| (DATA_GPA + i * 4096, 4096, true)));
    chain.push((STATUS_GPA, 1, true));
    d.offer(&g, &chain);
    d.kick();
    let (_, len) = d.wait_used(&g);
    assert_eq!((g.read(STATUS_GPA, 1)[0], len), (S_OK, 14 * 4096 + 1));
    // A garbage available index (more than a queue ahead) stops the queue.
    g.write(AVAIL_GPA + 2, &0x8000u16.to_le_bytes());
    d.kick();
    h.wait_counter("device", "kicks", 7);
    assert!(h.alive());
    h.stop();
}

#[test]
fn unmapped_buffers_are_unreachable_after_sync() {
    let (h, mut g, mut d) = setup("strict", &[], |g| {
        BlkDriver::share_all(g);
    });
    assert_eq!(d.request(&g, T_IN, 0, 4096), (S_OK, 4097));
    g.unshare_range(DATA_GPA, 4096);
    assert_eq!(d.request(&g, T_IN, 0, 4096), (S_IOERR, 1));
    let c = h.stop();
    assert_eq!(c.get("device", "violations"), 1);
    assert!(c.get("hyp", "invalidations") >= 1);
}

#[test]
fn adversary_is_denied_after_every_unmap() {
    let (h, mut g, mut d) = setup("adversary", &["--adversarial"], |g| {
        BlkDriver::share_all(g);
    });
    for round in 0..3u64 {
        g.share_range(DATA_GPA, 64 << 10, PERM_RW);
        assert_eq!(
            d.request(&g, T_IN, 16 * round, 64 << 10),
            (S_OK, (64 << 10) + 1)
        );
        g.unshare_range(DATA_GPA, 64 << 10);
    }
    let c = h.stop();
    // 16 pages revoked per round, each attacked with a read and a write
    // right after its SYNC, and some again at later exits; the table, the
    // ring and never-shared pages at every exit.
    assert_eq!(c.get("adversary", "confirmed"), 3 * 16);
    assert!(
        c.get("adversary", "attempts_revoked") >= 3 * 16 * 2,
        "{}",
        c.0
    );
    assert!(c.get("adversary", "attempts_registered") > 0);
    assert!(c.get("adversary", "attempts_never_shared") > 0);
    assert_eq!(c.get("adversary", "attempts_reused"), 0);
    assert_eq!(
        c.get("device", "adversarial_denied"),
        c.get("device", "adversarial_attempts")
    );
    assert_eq!(c.get("device", "adversarial_allowed"), 0);
    assert_eq!(c.get("device", "violations"), 0);
}

/// A hypervisor bug: `SYNC` answers `SUCCESS` without revoking anything.
/// The adversary learns what the guest unmapped from the guest's own table
/// and ring, not from the state machine (which still grants the pages), so
/// it attacks them and gets through.
#[test]
fn the_adversary_catches_a_sync_that_revokes_nothing() {
    // With a stale TLB, a kick that drains the unmap's record before the
    // SYNC does not revoke either: only the (skipped) invalidation would.
    let flags = ["--adversarial", "--stale-tlb", "--lie-syncs", "1"];
    let (h, mut g, mut d) = setup("liar", &flags, |g| {
        BlkDriver::share_all(g);
    });
    assert_eq!(d.request(&g, T_IN, 0, 4096), (S_OK, 4097));
    g.unshare_range(DATA_GPA, 4096);
    let c = h.stop();
    assert_eq!(c.get("faults", "syncs_lied"), 1);
    // The revoked page, read and written right after the SYNC (and again
    // at any later exit); nothing else.
    assert!(c.get("adversary", "allowed_revoked") >= 2, "{}", c.0);
    assert_eq!(
        c.get("device", "adversarial_allowed"),
        c.get("adversary", "allowed_revoked")
    );
}

#[test]
fn adversary_notices_a_downgrade_to_read_only() {
    let (h, mut g, mut d) = setup("downgrade", &["--adversarial"], |g| {
        BlkDriver::share_all(g);
    });
    assert_eq!(d.request(&g, T_IN, 0, 4096), (S_OK, 4097));
    g.share_range(DATA_GPA, 4096, PERM_READ);
    assert_eq!(g.call(FUNC_SYNC, [0; 6]).0, ST_SUCCESS);
    let c = h.stop();
    // Writes only (the guest left the page readable): once after the
    // SYNC, and again at any later exit.
    assert!(c.get("adversary", "attempts_revoked") >= 1);
    assert_eq!(c.get("adversary", "confirmed"), 1);
    assert_eq!(c.get("device", "adversarial_allowed"), 0);
}

#[test]
fn no_enforce_lets_everything_through() {
    let (h, g, mut d) = setup("noenforce", &["--no-enforce"], |_| {});
    g.write(DATA_GPA, &pattern(4096, 3));
    assert_eq!(d.request(&g, T_OUT, 0, 4096), (S_OK, 1));
    let c = h.stop();
    assert_eq!(c.get("device", "violations"), 0);
    assert!(c.get("device", "unchecked_accesses") > 0);
}

/// Not a check: how fast the enforcing path is on this machine
/// (`cargo test -p pviommu-refhyp --release -- --ignored --nocapture`).
#[test]
#[ignore]
fn measure_request_rate() {
    for extra in [&[][..], &["--no-enforce"][..]] {
        let (h, g, mut d) = setup("rate", extra, BlkDriver::share_all);
        for len in [4096u32, 64 << 10, 1 << 20] {
            let n = if len == 1 << 20 { 200 } else { 2000 };
            let t = std::time::Instant::now();
            for i in 0..n {
                let ty = if i % 2 == 0 { T_OUT } else { T_IN };
                assert_eq!(d.request(&g, ty, 0, len).0, S_OK);
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "{extra:?} {len:>8} B: {:>8.0} requests/s, {:>7.1} MiB/s",
                n as f64 / s,
                n as f64 * f64::from(len) / s / 1048576.0
            );
        }
        h.stop();
    }
}

#[test]
fn indirect_tables_are_checked_like_the_ring() {
    let (mut h, mut g, mut d) = setup("indirect", &[], BlkDriver::share_all);
    // 64 data segments of 4 KiB: more than the 16-entry queue holds.
    let data = pattern(64 * 4096, 9);
    g.write(DATA_GPA, &data);
    let mut chain = vec![(HDR_GPA, 16, false)];
    chain.extend((0..64).map(|i| (DATA_GPA + i * 4096, 4096, false)));
    chain.push((STATUS_GPA, 1, true));
    // The table itself is not shared yet: a violation, and with no
    // descriptor readable, no status byte to answer into.
    BlkDriver::header(&g, T_OUT, 0);
    d.offer_indirect(&g, &chain);
    d.kick();
    h.wait_counter("device", "requests_dropped", 1);
    assert_eq!(d.used_idx(&g), 0);
    g.share_range(INDIRECT_GPA, 16 * 66, PERM_READ);
    BlkDriver::header(&g, T_OUT, 0);
    d.offer_indirect(&g, &chain);
    d.kick();
    let (_, len) = d.wait_used(&g);
    assert_eq!((g.read(STATUS_GPA, 1)[0], len), (S_OK, 1));
    let disk = std::fs::read(&h.disk_path).unwrap();
    assert_eq!(&disk[..data.len()], &data[..]);
    // A table longer than seg_max + 2 is malformed.
    let mut long = vec![(HDR_GPA, 16, false)];
    long.extend((0..300).map(|_| (DATA_GPA, 512, false)));
    long.push((STATUS_GPA, 1, true));
    g.share_range(INDIRECT_GPA, 16 * 302, PERM_READ);
    BlkDriver::header(&g, T_OUT, 0);
    d.offer_indirect(&g, &long);
    d.kick();
    h.wait_counter("device", "malformed_chains", 2);
    assert!(h.alive());
    let c = h.stop();
    assert_eq!(c.get("device", "violations"), 1);
}

/// The vhost-user framework reads the used ring's index through its own
/// mapping of guest RAM when the frontend sets the ring's addresses
/// (`set_vring_addr`), outside `CheckedMemory`: the mapping itself must
/// refuse a page the guest has not shared, and count the access.
#[test]
fn a_raw_framework_access_to_an_unshared_page_is_caught() {
    let h = Refhyp::start("rawused", &[]);
    let mut g = Guest::connect(&h);
    g.init();
    g.share_range(HDR_GPA, 2 * 4096, PERM_RW);
    g.share_range(DATA_GPA, 4096, PERM_RW);
    // A private used index in the (not yet shared) used ring page.
    g.write(USED_GPA + 2, &7u16.to_le_bytes());
    let mut d = BlkDriver::connect(&h, &g);
    // A round trip: the backend has handled every message before it.
    vhost::VhostBackend::get_features(&d.vd.fe).unwrap();
    g.write(USED_GPA + 2, &0u16.to_le_bytes());
    g.share_range(DESC_GPA, 3 * 4096, PERM_RW);
    BlkDriver::header(&g, T_IN, 0);
    d.offer(
        &g,
        &[
            (HDR_GPA, 16, false),
            (DATA_GPA, 4096, true),
            (STATUS_GPA, 1, true),
        ],
    );
    d.kick();
    let c = h.wait_counter("device", "requests_ok", 1);
    wait_for(|| (d.used_idx(&g) != 0).then_some(()));
    assert_eq!(
        d.used_idx(&g),
        1,
        "the backend took its used index from a page the guest never shared"
    );
    assert_eq!(c.get("device", "mapping_faults"), 1, "{}", c.0);
    let c = h.stop();
    assert_eq!(c.get("device", "mapping_faults"), 1);
}

/// A device copy checked before the guest's `SYNC` must land before that
/// `SYNC` returns, never after: revocation waits for in-flight accesses.
/// `--copy-delay-ms` holds the device between its check and its copy.
#[test]
fn a_copy_racing_a_sync_never_lands_after_it_returns() {
    let (h, mut g, mut d) = setup("copyrace", &["--copy-delay-ms", "1500"], |g| {
        BlkDriver::share_all(g);
    });
    let disk = std::fs::OpenOptions::new()
        .write(true)
        .open(&h.disk_path)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&disk, &pattern(4096, 1), 0).unwrap();
    g.write(DATA_GPA, &pattern(4096, 2));
    BlkDriver::header(&g, T_IN, 0);
    d.offer(
        &g,
        &[
            (HDR_GPA, 16, false),
            (DATA_GPA, 4096, true),
            (STATUS_GPA, 1, true),
        ],
    );
    d.kick();
    // The device has checked the data buffer and sleeps before its copy.
    h.wait_counter("faults", "copies_delayed", 1);
    g.unshare_range(DATA_GPA, 4096);
    let after_sync = g.read(DATA_GPA, 4096);
    d.wait_used(&g);
    assert_eq!(g.read(STATUS_GPA, 1)[0], S_OK);
    assert!(
        g.read(DATA_GPA, 4096) == after_sync,
        "the device's copy landed after SYNC returned"
    );
    let c = h.stop();
    assert_eq!(c.get("device", "violations"), 0);
}

/// The same raw access to a page the guest has shared in its table and
/// ring, but that no exit has drained yet, is a host fault, not a
/// violation: the mapping's fault drains the ring, as a checked access's
/// miss does, and the access proceeds.
#[test]
fn a_raw_framework_access_drains_on_fault() {
    let h = Refhyp::start("rawdrain", &[]);
    let mut g = Guest::connect(&h);
    g.init();
    BlkDriver::share_all(&mut g);
    g.write(USED_GPA + 2, &5u16.to_le_bytes());
    let mut d = BlkDriver::connect(&h, &g);
    vhost::VhostBackend::get_features(&d.vd.fe).unwrap();
    let c = h.counters();
    assert_eq!(c.get("hyp", "exits_fault"), 1, "{}", c.0);
    BlkDriver::header(&g, T_FLUSH, 0);
    d.offer(&g, &[(HDR_GPA, 16, false), (STATUS_GPA, 1, true)]);
    d.kick();
    h.wait_counter("device", "requests_ok", 1);
    wait_for(|| (d.used_idx(&g) != 5).then_some(()));
    assert_eq!(d.used_idx(&g), 6, "the shared used index was read");
    let c = h.stop();
    assert_eq!(c.get("device", "mapping_faults"), 0);
    assert_eq!(c.get("hyp", "violations"), 0);
}

/// A lazy guest: it unmaps a buffer (entry cleared, record published) but
/// skips the `SYNC`, an exit drains the record, and the guest reuses the
/// page. With `--stale-tlb` the host's cached translation outlives the
/// drain until an invalidation, so the adversary reaches the reused page.
fn lazy_unmap_then_reuse(flags: &[&str], sync: bool) -> Counters {
    let (h, mut g, mut d) = setup("lazy", flags, |g| {
        BlkDriver::share_all(g);
    });
    assert_eq!(d.request(&g, T_IN, 0, 4096), (S_OK, 4097));
    g.share_range(DATA_GPA, 4096, PERM_NONE);
    if sync {
        assert_eq!(g.call(FUNC_SYNC, [0; 6]).0, ST_SUCCESS);
    }
    // An exit that drains (a queue kick), then the reuse, then any exit.
    d.kick();
    h.wait_counter("hyp", "pages_unshared", 1);
    g.write(DATA_GPA, &pattern(4096, 0x55));
    assert_eq!(g.call(FUNC_STATS, [0; 6]).0, ST_SUCCESS);
    h.stop()
}

#[test]
fn a_lazy_guest_is_caught_with_a_stale_tlb() {
    let c = lazy_unmap_then_reuse(&["--adversarial", "--stale-tlb"], false);
    assert_eq!(c.get("adversary", "attempts_reused"), 2, "{}", c.0);
    assert_eq!(c.get("adversary", "allowed_reused"), 2, "{}", c.0);
    assert_eq!(
        c.get("device", "adversarial_allowed"),
        2,
        "only the reused page"
    );
    assert_eq!(c.get("mmu", "deferred"), 1);
}

#[test]
fn a_strict_guest_leaves_nothing_with_a_stale_tlb() {
    let c = lazy_unmap_then_reuse(&["--adversarial", "--stale-tlb"], true);
    assert_eq!(c.get("adversary", "attempts_reused"), 0, "{}", c.0);
    assert!(c.get("adversary", "attempts_revoked") >= 2);
    assert_eq!(c.get("device", "adversarial_allowed"), 0);
}

#[test]
fn an_eager_host_revokes_on_the_drain_without_a_stale_tlb() {
    let c = lazy_unmap_then_reuse(&["--adversarial"], false);
    assert_eq!(c.get("adversary", "attempts_reused"), 2, "{}", c.0);
    assert_eq!(c.get("device", "adversarial_allowed"), 0);
}

/// Not a check: what the adversary costs a `SYNC` of a 64 KiB buffer
/// (`cargo test -p pviommu-refhyp --release -- --ignored --nocapture`).
#[test]
#[ignore]
fn measure_sync_latency() {
    for extra in [&[][..], &["--adversarial", "--stale-tlb"][..]] {
        let (h, mut g, mut d) = setup("synclat", extra, BlkDriver::share_all);
        assert_eq!(d.request(&g, T_IN, 0, 4096).0, S_OK);
        let n = 500;
        let t = std::time::Instant::now();
        for _ in 0..n {
            g.share_range(DATA_GPA, 64 << 10, PERM_RW);
            g.unshare_range(DATA_GPA, 64 << 10);
        }
        println!("{extra:?}: {:?} per map + SYNC", t.elapsed() / n);
        h.stop();
    }
}

/// ABI 2.2: a write-only page (entry 2) takes device writes, and the
/// adversary does not take it for revoked: its oracle reads entry 2 as a
/// grant (before, it read it as no access and "reached" the page).
#[test]
fn a_write_only_page_is_written_and_not_a_false_alarm() {
    const PERM_WRITE: u8 = 2;
    let (h, mut g, mut d) = setup("writeonly", &["--adversarial", "--stale-tlb"], |g| {
        g.share_range(DESC_GPA, 3 * 4096, PERM_RW);
        g.share_range(HDR_GPA, 2 * 4096, PERM_RW);
        g.share_range(DATA_GPA, 4096, PERM_WRITE);
    });
    assert_eq!(d.request(&g, T_IN, 0, 4096), (S_OK, 4097), "a device write");
    assert_eq!(d.request(&g, T_OUT, 0, 4096), (S_IOERR, 1), "a device read");
    // Narrowed from read-write to write-only, and SYNCed.
    g.share_range(DATA_GPA, 4096, PERM_RW);
    assert_eq!(d.request(&g, T_OUT, 0, 4096), (S_OK, 1));
    g.share_range(DATA_GPA, 4096, PERM_WRITE);
    assert_eq!(g.call(FUNC_SYNC, [0; 6]).0, ST_SUCCESS);
    let c = h.stop();
    assert_eq!(
        c.get("device", "violations"),
        1,
        "the read of a write-only page"
    );
    assert_eq!(c.get("device", "adversarial_allowed"), 0, "{}", c.0);
}
