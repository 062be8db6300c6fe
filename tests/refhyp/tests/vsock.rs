// SPDX-License-Identifier: GPL-2.0-only
//! The vhost-user-vsock backend and its echo peer under the host view:
//! connections, echo and credit when the guest shares properly;
//! violations that fail a packet without losing the echo's data, refused
//! ports and malformed packets when it does not.

mod support;

use support::virtq::*;
use support::*;

const RXQ: usize = 0;
const TXQ: usize = 1;
const GUEST_CID: u64 = 3;
const HOST_CID: u64 = 2;
const ECHO_PORT: u32 = 1234;
const OP_REQUEST: u16 = 1;
const OP_RESPONSE: u16 = 2;
const OP_RST: u16 = 3;
const OP_SHUTDOWN: u16 = 4;
const OP_RW: u16 = 5;
const OP_CREDIT_UPDATE: u16 = 6;
const TX_HDR: u64 = BUF_GPA;
const TX_DATA: u64 = BUF_GPA + 0x1000;
const RX_BUF_SIZE: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hdr {
    src_cid: u64,
    dst_cid: u64,
    src_port: u32,
    dst_port: u32,
    len: u32,
    op: u16,
    flags: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
}

impl Hdr {
    fn to_guest(op: u16, port: u32) -> Hdr {
        Hdr {
            src_cid: GUEST_CID,
            dst_cid: HOST_CID,
            src_port: port,
            dst_port: ECHO_PORT,
            len: 0,
            op,
            flags: 0,
            buf_alloc: 64 << 10,
            fwd_cnt: 0,
        }
    }

    fn bytes(&self) -> [u8; 44] {
        let mut b = [0u8; 44];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&1u16.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }

    fn parse(b: &[u8]) -> Hdr {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        Hdr {
            src_cid: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            dst_cid: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            op: u16::from_le_bytes(b[30..32].try_into().unwrap()),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }
}

/// The vsock device with its three queues, after `share`.
fn start(tag: &str, share: impl FnOnce(&mut Guest)) -> Dev {
    Dev::start(tag, |h| &h.vsock_path, 3, 64, share)
}

fn share_all(g: &mut Guest) {
    Dev::share_buffers(g, 3);
}

/// The vsock driver's steps.
impl Dev {
    /// Sends a packet: header descriptor, then `data` at `data_at`.
    fn send_at(&mut self, mut hdr: Hdr, data: &[u8], data_at: u64) {
        hdr.len = data.len() as u32;
        self.g.write(TX_HDR, &hdr.bytes());
        let mut chain = vec![(TX_HDR, 44, false)];
        if !data.is_empty() {
            self.g.write(data_at, data);
            chain.push((data_at, data.len() as u32, false));
        }
        assert_eq!(self.request(TXQ, &chain), 0);
    }

    fn send(&mut self, hdr: Hdr, data: &[u8]) {
        self.send_at(hdr, data, TX_DATA);
    }

    /// The next used receive buffer: (used length, header, payload).
    fn recv(&mut self) -> (u32, Option<Hdr>, Vec<u8>) {
        let (addr, len) = self.d.queues[RXQ].wait_buffer(&self.g);
        if len < 44 {
            return (len, None, Vec::new());
        }
        let hdr = Hdr::parse(&self.g.read(addr, 44));
        let data = self.g.read(addr + 44, hdr.len as usize);
        assert_eq!(len, 44 + hdr.len);
        (len, Some(hdr), data)
    }

    fn recv_hdr(&mut self) -> Hdr {
        self.recv().1.expect("a packet")
    }

    /// REQUEST from `port`, RESPONSE back.
    fn connect(&mut self, port: u32) {
        self.send(Hdr::to_guest(OP_REQUEST, port), &[]);
        let r = self.recv_hdr();
        assert_eq!(
            (r.op, r.src_cid, r.dst_cid),
            (OP_RESPONSE, HOST_CID, GUEST_CID)
        );
        assert_eq!((r.src_port, r.dst_port), (ECHO_PORT, port));
        assert!(r.buf_alloc > 0);
    }
}

#[test]
fn echo_round_trip_and_clean_close() {
    let mut v = start("echo", share_all);
    v.post_rx(8, RX_BUF_SIZE);
    v.connect(5000);
    let data = pattern(3000, 1);
    v.send(Hdr::to_guest(OP_RW, 5000), &data);
    let (_, hdr, echo) = v.recv();
    let hdr = hdr.unwrap();
    assert_eq!(hdr.op, OP_RW);
    assert_eq!(echo, data);
    assert_eq!(hdr.fwd_cnt, 3000, "the echoed bytes are consumed");
    // The guest is done sending: the echo shuts down, the guest resets.
    let mut shut = Hdr::to_guest(OP_SHUTDOWN, 5000);
    shut.flags = 2;
    v.send(shut, &[]);
    let r = v.recv_hdr();
    assert_eq!((r.op, r.flags), (OP_SHUTDOWN, 3));
    v.send(Hdr::to_guest(OP_RST, 5000), &[]);
    let c = v.h.counters();
    assert_eq!(c.get("vsock", "streams"), 1);
    assert_eq!(c.get("vsock", "last_stream_bytes"), 3000);
    assert_eq!(c.get("vsock", "last_stream_checksum"), fnv1a(&data));
    assert_eq!(c.get("vsock", "bytes_read"), 3000);
    assert_eq!(c.get("vsock", "bytes_written"), 3000);
    assert_eq!(c.get("vsock", "violations"), 0);
    v.h.stop();
}

#[test]
fn other_ports_and_addresses_are_reset() {
    let mut v = start("refused", share_all);
    v.post_rx(4, RX_BUF_SIZE);
    let mut req = Hdr::to_guest(OP_REQUEST, 5000);
    req.dst_port = 99;
    v.send(req, &[]);
    assert_eq!(v.recv_hdr().op, OP_RST);
    // A packet claiming another source CID.
    let mut spoof = Hdr::to_guest(OP_REQUEST, 5001);
    spoof.src_cid = 77;
    v.send(spoof, &[]);
    let r = v.recv_hdr();
    assert_eq!((r.op, r.dst_cid), (OP_RST, GUEST_CID));
    // Data on a connection that does not exist.
    v.send(Hdr::to_guest(OP_RW, 5002), b"stray");
    assert_eq!(v.recv_hdr().op, OP_RST);
    let c = v.h.stop();
    assert_eq!(c.get("vsock", "connections"), 0);
}

#[test]
fn credit_limits_the_echo() {
    let mut v = start("credit", share_all);
    v.post_rx(8, RX_BUF_SIZE);
    let mut req = Hdr::to_guest(OP_REQUEST, 6000);
    req.buf_alloc = 1000;
    v.send(req, &[]);
    assert_eq!(v.recv_hdr().op, OP_RESPONSE);
    let data = pattern(3000, 2);
    let mut rw = Hdr::to_guest(OP_RW, 6000);
    rw.buf_alloc = 1000;
    v.send(rw, &data);
    let (_, _, first) = v.recv();
    assert_eq!(first, data[..1000], "only the guest's credit");
    // The guest consumed it: the rest follows, within the credit again.
    let mut credit = Hdr::to_guest(OP_CREDIT_UPDATE, 6000);
    credit.buf_alloc = 1000;
    credit.fwd_cnt = 1000;
    v.send(credit, &[]);
    let (_, _, second) = v.recv();
    assert_eq!(second, data[1000..2000]);
    v.h.stop();
}

#[test]
fn unshared_receive_buffer_fails_and_loses_nothing() {
    let mut v = start("rxdenied", share_all);
    v.d.queues[RXQ].post(&v.g, PRIVATE_GPA, RX_BUF_SIZE);
    v.send(Hdr::to_guest(OP_REQUEST, 7000), &[]);
    let (len, hdr, _) = v.recv();
    assert_eq!((len, hdr), (0, None), "a private buffer comes back empty");
    assert_eq!(v.g.read(PRIVATE_GPA, 44), vec![0; 44], "and untouched");
    v.post_rx(1, RX_BUF_SIZE);
    let r = v.recv_hdr();
    assert_eq!(r.op, OP_RESPONSE, "the response waited for a shared buffer");
    let c = v.h.stop();
    assert_eq!(c.get("vsock", "violations"), 1);
    assert_eq!(c.get("vsock", "requests_failed"), 1);
}

#[test]
fn unshared_transmit_data_is_a_violation_and_not_echoed() {
    let mut v = start("txdenied", share_all);
    v.post_rx(8, RX_BUF_SIZE);
    v.connect(8000);
    v.send_at(Hdr::to_guest(OP_RW, 8000), b"secret", PRIVATE_GPA);
    v.send(Hdr::to_guest(OP_RW, 8000), b"public");
    let (_, _, echo) = v.recv();
    assert_eq!(echo, b"public");
    let c = v.h.stop();
    assert_eq!(c.get("vsock", "violations"), 1);
    assert_eq!(c.get("vsock", "bytes_read"), 6);
}

#[test]
fn malformed_packets_are_counted() {
    let mut v = start("malformed", share_all);
    // A header that promises more payload than the chain has.
    let mut h = Hdr::to_guest(OP_RW, 9000);
    h.len = 4096;
    v.g.write(TX_HDR, &h.bytes());
    let q = &mut v.d.queues[TXQ];
    q.offer(&v.g, &[(TX_HDR, 44, false), (TX_DATA, 16, false)]);
    // A chain shorter than a header.
    q.offer(&v.g, &[(TX_HDR, 20, false)]);
    q.kick();
    q.wait_used(&v.g);
    q.wait_used(&v.g);
    assert!(v.h.alive());
    let c = v.h.stop();
    assert_eq!(c.get("vsock", "malformed_chains"), 2);
    assert_eq!(c.get("vsock", "violations"), 0);
}
