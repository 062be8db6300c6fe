// SPDX-License-Identifier: GPL-2.0-only
//! The vhost-user console backend under the host view: what the guest
//! transmits from shared buffers reaches the output file with its
//! checksum; a buffer it did not share is a violation and writes nothing.

mod support;

use support::virtq::*;
use support::*;

const TXQ: usize = 1;

fn setup(tag: &str, share: impl FnOnce(&mut Guest)) -> (Refhyp, Guest, VirtioDriver) {
    start(tag, &[], |h| &h.console_path, 2, 16, share)
}

fn transmit(g: &Guest, d: &mut VirtioDriver, chain: &[(u64, u32, bool)]) -> u32 {
    let q = &mut d.queues[TXQ];
    q.offer(g, chain);
    q.kick();
    q.wait_used(g).1
}

#[test]
fn shared_output_reaches_the_host() {
    let (h, g, mut d) = setup("out", |g| {
        VirtioDriver::share_rings(g, 2);
        g.share_range(BUF_GPA, 2 * PAGE, PERM_READ);
    });
    g.write(BUF_GPA, b"hello, ");
    g.write(BUF_GPA + PAGE, b"host\n");
    assert_eq!(transmit(&g, &mut d, &[(BUF_GPA, 7, false)]), 0);
    // One line in two descriptors.
    let chain = [(BUF_GPA, 7, false), (BUF_GPA + PAGE, 5, false)];
    transmit(&g, &mut d, &chain);
    let out = b"hello, hello, host\n";
    let c = h.counters();
    assert_eq!(std::fs::read(&h.console_out).unwrap(), out);
    assert_eq!(c.get("console", "checksum"), fnv1a(out));
    assert_eq!(c.get("console", "bytes_read"), out.len() as u64);
    assert_eq!(c.get("console", "violations"), 0);
    h.stop();
}

#[test]
fn unshared_output_is_a_violation_and_writes_nothing() {
    let (h, g, mut d) = setup("denied", |g| {
        VirtioDriver::share_rings(g, 2);
        g.share_range(BUF_GPA, PAGE, PERM_READ);
    });
    g.write(BUF_GPA, b"shared");
    g.write(BUF_GPA + PAGE, b"private");
    transmit(&g, &mut d, &[(BUF_GPA + PAGE, 7, false)]);
    // The whole chain is checked before a byte is taken.
    transmit(
        &g,
        &mut d,
        &[(BUF_GPA, 6, false), (BUF_GPA + PAGE, 7, false)],
    );
    let c = h.counters();
    assert!(std::fs::read(&h.console_out).unwrap().is_empty());
    assert_eq!(c.get("console", "violations"), 2);
    assert_eq!(c.get("console", "requests_failed"), 2);
    h.stop();
}

#[test]
fn device_writable_output_is_malformed() {
    let (mut h, g, mut d) = setup("writable", |g| {
        VirtioDriver::share_rings(g, 2);
        g.share_range(BUF_GPA, PAGE, PERM_RW);
    });
    transmit(&g, &mut d, &[(BUF_GPA, 6, false), (BUF_GPA + 8, 6, true)]);
    assert!(h.alive());
    let c = h.stop();
    assert_eq!(c.get("console", "malformed_chains"), 1);
    assert_eq!(c.get("console", "bytes_read"), 0);
}
