// SPDX-License-Identifier: GPL-2.0-only
//! The vhost-user-rng backend under the host view: shared buffers are
//! filled, unshared or read-only ones are violations that fail the
//! request and leave the buffer untouched.

mod support;

use support::virtq::*;
use support::*;

const UNTOUCHED: u8 = 0xa5;

/// The rng with its one queue, after `share`.
fn start(tag: &str, share: impl FnOnce(&mut Guest)) -> Dev {
    Dev::start(tag, |h| &h.rng_path, 1, 16, share)
}

#[test]
fn shared_buffers_are_filled() {
    let mut r = start("fill", |g| {
        VirtioDriver::share_rings(g, 1);
        g.share_range(BUF_GPA, 8 * PAGE, PERM_RW);
    });
    r.g.write(BUF_GPA, &[UNTOUCHED; 3 * 4096]);
    assert_eq!(r.request(0, &[(BUF_GPA, 4096, true)]), 4096);
    // Two descriptors in one request.
    let chain = [(BUF_GPA + 4096, 100, true), (BUF_GPA + 8192, 4096, true)];
    assert_eq!(r.request(0, &chain), 4196);
    for (addr, len) in [
        (BUF_GPA, 4096),
        (BUF_GPA + 4096, 100),
        (BUF_GPA + 8192, 4096),
    ] {
        let data = r.g.read(addr, len);
        let same = data.iter().filter(|&&b| b == UNTOUCHED).count();
        assert!(
            same < len / 16,
            "{len} bytes at {addr:#x}: {same} untouched"
        );
    }
    assert_eq!(r.g.read(BUF_GPA + 4196, 100), vec![UNTOUCHED; 100]);
    let c = r.h.stop();
    assert_eq!(c.get("rng", "requests_ok"), 2);
    assert_eq!(c.get("rng", "bytes_written"), 8292);
    assert_eq!(c.get("rng", "violations"), 0);
    // Each kick, plus one when the queue is enabled (vhost-user-backend
    // looks at a queue once as it starts).
    assert!(c.get("rng", "kicks") >= 2);
    assert_eq!(c.get("hyp", "violations"), 0);
}

#[test]
fn unshared_or_read_only_buffers_fail_untouched() {
    let mut r = start("denied", |g| {
        VirtioDriver::share_rings(g, 1);
        g.share_range(BUF_GPA + 4096, PAGE, PERM_READ);
        g.share_range(BUF_GPA + 8192, PAGE, PERM_RW);
    });
    r.g.write(BUF_GPA, &[UNTOUCHED; 3 * 4096]);
    assert_eq!(r.request(0, &[(BUF_GPA, 4096, true)]), 0);
    assert_eq!(r.request(0, &[(BUF_GPA + 4096, 64, true)]), 0);
    // A shared first descriptor does not save a chain whose second is not.
    let chain = [(BUF_GPA + 8192, 64, true), (BUF_GPA, 64, true)];
    assert_eq!(r.request(0, &chain), 0);
    assert_eq!(r.g.read(BUF_GPA, 3 * 4096), vec![UNTOUCHED; 3 * 4096]);
    let c = r.h.stop();
    assert_eq!(c.get("rng", "violations"), 3);
    assert_eq!(c.get("rng", "requests_failed"), 3);
    assert_eq!(c.get("rng", "bytes_written"), 0);
    // The disk saw none of them; the totals include them.
    assert_eq!(c.get("device", "violations"), 3);
    assert_eq!(c.get("hyp", "violations"), 3);
}

#[test]
fn device_readable_buffers_are_malformed() {
    let mut r = start("readable", |g| {
        VirtioDriver::share_rings(g, 1);
        g.share_range(BUF_GPA, PAGE, PERM_RW);
    });
    assert_eq!(r.request(0, &[(BUF_GPA, 64, false)]), 0);
    assert!(r.h.alive());
    let c = r.h.stop();
    assert_eq!(c.get("rng", "malformed_chains"), 1);
    assert_eq!(c.get("rng", "violations"), 0);
}

#[test]
fn unshared_rings_are_violations_until_shared() {
    let mut r = start("rings", |g| {
        g.share_range(BUF_GPA, PAGE, PERM_RW);
    });
    let q = &mut r.d.queues[0];
    q.offer(&r.g, &[(BUF_GPA, 64, true)]);
    q.kick();
    let c = r.h.wait_counter("rng", "violations", 1);
    assert_eq!(c.get("rng", "requests"), 0);
    assert_eq!(q.used_idx(&r.g), 0);
    assert!(r.h.alive());
    VirtioDriver::share_rings(&mut r.g, 1);
    q.kick();
    assert_eq!(q.wait_used(&r.g).1, 64);
    r.h.stop();
}
