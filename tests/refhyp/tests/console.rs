// SPDX-License-Identifier: GPL-2.0-only
//! The vhost-user console backend under the host view: what the guest
//! transmits from shared buffers reaches the output file with its
//! checksum; a buffer it did not share is a violation and writes nothing.

mod support;

use support::virtq::*;
use support::*;

const TXQ: usize = 1;

/// The console with its two queues, after `share`.
fn start(tag: &str, share: impl FnOnce(&mut Guest)) -> Dev {
    Dev::start(tag, |h| &h.console_path, 2, 16, share)
}

#[test]
fn shared_output_reaches_the_host() {
    let mut con = start("out", |g| {
        VirtioDriver::share_rings(g, 2);
        g.share_range(BUF_GPA, 2 * PAGE, PERM_READ);
    });
    con.g.write(BUF_GPA, b"hello, ");
    con.g.write(BUF_GPA + PAGE, b"host\n");
    assert_eq!(con.request(TXQ, &[(BUF_GPA, 7, false)]), 0);
    // One line in two descriptors.
    let chain = [(BUF_GPA, 7, false), (BUF_GPA + PAGE, 5, false)];
    con.request(TXQ, &chain);
    let out = b"hello, hello, host\n";
    let c = con.h.counters();
    assert_eq!(std::fs::read(&con.h.console_out).unwrap(), out);
    assert_eq!(c.get("console", "checksum"), fnv1a(out));
    assert_eq!(c.get("console", "bytes_read"), out.len() as u64);
    assert_eq!(c.get("console", "violations"), 0);
    con.h.stop();
}

#[test]
fn unshared_output_is_a_violation_and_writes_nothing() {
    let mut con = start("denied", |g| {
        VirtioDriver::share_rings(g, 2);
        g.share_range(BUF_GPA, PAGE, PERM_READ);
    });
    con.g.write(BUF_GPA, b"shared");
    con.g.write(BUF_GPA + PAGE, b"private");
    con.request(TXQ, &[(BUF_GPA + PAGE, 7, false)]);
    // The whole chain is checked before a byte is taken.
    con.request(TXQ, &[(BUF_GPA, 6, false), (BUF_GPA + PAGE, 7, false)]);
    let c = con.h.counters();
    assert!(std::fs::read(&con.h.console_out).unwrap().is_empty());
    assert_eq!(c.get("console", "violations"), 2);
    assert_eq!(c.get("console", "requests_failed"), 2);
    con.h.stop();
}

#[test]
fn device_writable_output_is_malformed() {
    let mut con = start("writable", |g| {
        VirtioDriver::share_rings(g, 2);
        g.share_range(BUF_GPA, PAGE, PERM_RW);
    });
    con.request(TXQ, &[(BUF_GPA, 6, false), (BUF_GPA + 8, 6, true)]);
    assert!(con.h.alive());
    let c = con.h.stop();
    assert_eq!(c.get("console", "malformed_chains"), 1);
    assert_eq!(c.get("console", "bytes_read"), 0);
}
