// SPDX-License-Identifier: GPL-2.0-only
//! The vhost-user-rng backend under the host view: shared buffers are
//! filled, unshared or read-only ones are violations that fail the
//! request and leave the buffer untouched.

mod support;

use support::virtq::*;
use support::*;

const UNTOUCHED: u8 = 0xa5;

fn setup(tag: &str, share: impl FnOnce(&mut Guest)) -> (Refhyp, Guest, VirtioDriver) {
    start(tag, &[], |h| &h.rng_path, 1, 16, share)
}

/// Offers one request of `chain`, kicks, returns the used length.
fn request(g: &Guest, d: &mut VirtioDriver, chain: &[(u64, u32, bool)]) -> u32 {
    let q = &mut d.queues[0];
    q.offer(g, chain);
    q.kick();
    q.wait_used(g).1
}

#[test]
fn shared_buffers_are_filled() {
    let (h, g, mut d) = setup("fill", |g| {
        VirtioDriver::share_rings(g, 1);
        g.share_range(BUF_GPA, 8 * PAGE, PERM_RW);
    });
    g.write(BUF_GPA, &[UNTOUCHED; 3 * 4096]);
    assert_eq!(request(&g, &mut d, &[(BUF_GPA, 4096, true)]), 4096);
    // Two descriptors in one request.
    let chain = [(BUF_GPA + 4096, 100, true), (BUF_GPA + 8192, 4096, true)];
    assert_eq!(request(&g, &mut d, &chain), 4196);
    for (addr, len) in [
        (BUF_GPA, 4096),
        (BUF_GPA + 4096, 100),
        (BUF_GPA + 8192, 4096),
    ] {
        let data = g.read(addr, len);
        let same = data.iter().filter(|&&b| b == UNTOUCHED).count();
        assert!(
            same < len / 16,
            "{len} bytes at {addr:#x}: {same} untouched"
        );
    }
    assert_eq!(g.read(BUF_GPA + 4196, 100), vec![UNTOUCHED; 100]);
    let c = h.stop();
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
    let (h, g, mut d) = setup("denied", |g| {
        VirtioDriver::share_rings(g, 1);
        g.share_range(BUF_GPA + 4096, PAGE, PERM_READ);
        g.share_range(BUF_GPA + 8192, PAGE, PERM_RW);
    });
    g.write(BUF_GPA, &[UNTOUCHED; 3 * 4096]);
    assert_eq!(request(&g, &mut d, &[(BUF_GPA, 4096, true)]), 0);
    assert_eq!(request(&g, &mut d, &[(BUF_GPA + 4096, 64, true)]), 0);
    // A shared first descriptor does not save a chain whose second is not.
    let chain = [(BUF_GPA + 8192, 64, true), (BUF_GPA, 64, true)];
    assert_eq!(request(&g, &mut d, &chain), 0);
    assert_eq!(g.read(BUF_GPA, 3 * 4096), vec![UNTOUCHED; 3 * 4096]);
    let c = h.stop();
    assert_eq!(c.get("rng", "violations"), 3);
    assert_eq!(c.get("rng", "requests_failed"), 3);
    assert_eq!(c.get("rng", "bytes_written"), 0);
    // The disk saw none of them; the totals include them.
    assert_eq!(c.get("device", "violations"), 3);
    assert_eq!(c.get("hyp", "violations"), 3);
}

#[test]
fn device_readable_buffers_are_malformed() {
    let (mut h, g, mut d) = setup("readable", |g| {
        VirtioDriver::share_rings(g, 1);
        g.share_range(BUF_GPA, PAGE, PERM_RW);
    });
    assert_eq!(request(&g, &mut d, &[(BUF_GPA, 64, false)]), 0);
    assert!(h.alive());
    let c = h.stop();
    assert_eq!(c.get("rng", "malformed_chains"), 1);
    assert_eq!(c.get("rng", "violations"), 0);
}

#[test]
fn unshared_rings_are_violations_until_shared() {
    let (mut h, mut g, mut d) = setup("rings", |g| {
        g.share_range(BUF_GPA, PAGE, PERM_RW);
    });
    d.queues[0].offer(&g, &[(BUF_GPA, 64, true)]);
    d.queues[0].kick();
    let c = h.wait_counter("rng", "violations", 1);
    assert_eq!(c.get("rng", "requests"), 0);
    assert_eq!(d.queues[0].used_idx(&g), 0);
    assert!(h.alive());
    VirtioDriver::share_rings(&mut g, 1);
    d.queues[0].kick();
    assert_eq!(d.queues[0].wait_used(&g).1, 64);
    h.stop();
}
