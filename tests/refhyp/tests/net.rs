// SPDX-License-Identifier: GPL-2.0-only
//! The vhost-user-net backend and its userspace TCP/IP peer under the
//! host view: ARP, UDP echo and a TCP handshake when the guest shares its
//! buffers; violations that drop a transmitted frame unread, or return a
//! receive buffer empty while its frame waits for the next one, when it
//! does not.

mod support;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket,
    UdpRepr,
};
use support::virtq::*;
use support::*;

const RXQ: usize = 0;
const TXQ: usize = 1;
const HDR: usize = 12;
const GUEST_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x77, 0x01]);
const GUEST_IP: Ipv4Address = Ipv4Address::new(169, 254, 77, 2);
const PEER_IP: Ipv4Address = Ipv4Address::new(169, 254, 77, 1);
const TX_BUF: u64 = BUF_GPA;
const RX_BUF_SIZE: u32 = 2048;

/// The net device with its two queues, after `share`.
fn start(tag: &str, share: impl FnOnce(&mut Guest)) -> Dev {
    Dev::start(tag, |h| &h.net_path, 2, 64, share)
}

fn share_all(g: &mut Guest) {
    Dev::share_buffers(g, 2);
}

/// The net driver's steps.
impl Dev {
    fn post_rx_at(&mut self, addr: u64, len: u32) {
        self.d.queues[RXQ].post(&self.g, addr, len);
    }

    /// Sends `frame` after a zero virtio-net header, from `at`.
    fn send_at(&mut self, frame: &[u8], at: u64) {
        let mut b = vec![0u8; HDR];
        b.extend_from_slice(frame);
        self.g.write(at, &b);
        let chain = [
            (at, HDR as u32, false),
            (at + HDR as u64, frame.len() as u32, false),
        ];
        assert_eq!(self.request(TXQ, &chain), 0);
    }

    fn send(&mut self, frame: &[u8]) {
        self.send_at(frame, TX_BUF);
    }

    /// The next used receive buffer: (used length, frame).
    fn recv(&mut self) -> (u32, Vec<u8>) {
        let (addr, len) = self.d.queues[RXQ].wait_buffer(&self.g);
        if (len as usize) < HDR {
            return (len, Vec::new());
        }
        let b = self.g.read(addr, len as usize);
        assert_eq!(u16::from_le_bytes([b[10], b[11]]), 1, "num_buffers");
        (len, b[HDR..].to_vec())
    }

    fn recv_frame(&mut self) -> Vec<u8> {
        let (len, f) = self.recv();
        assert!(len as usize > HDR, "an empty buffer");
        f
    }

    /// ARP for the peer; the reply also puts the guest in its cache.
    fn resolve(&mut self) {
        self.send(&arp_request());
        let reply = self.recv_frame();
        let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
        assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } = arp
        else {
            panic!("not Ethernet/IPv4 ARP");
        };
        assert_eq!(operation, ArpOperation::Reply);
        assert_eq!(
            (source_hardware_addr, source_protocol_addr),
            (PEER_MAC, PEER_IP)
        );
    }
}

fn ethernet(ethertype: EthernetProtocol, payload_len: usize, dst: EthernetAddress) -> Vec<u8> {
    let mut f = vec![0u8; 14 + payload_len];
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: dst,
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    f
}

fn arp_request() -> Vec<u8> {
    let mut f = ethernet(EthernetProtocol::Arp, 28, EthernetAddress::BROADCAST);
    ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: GUEST_MAC,
        source_protocol_addr: GUEST_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: PEER_IP,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    f
}

fn ipv4(proto: IpProtocol, payload_len: usize) -> Vec<u8> {
    let mut f = ethernet(EthernetProtocol::Ipv4, 20 + payload_len, PEER_MAC);
    Ipv4Repr {
        src_addr: GUEST_IP,
        dst_addr: PEER_IP,
        next_header: proto,
        payload_len,
        hop_limit: 64,
    }
    .emit(
        &mut Ipv4Packet::new_unchecked(&mut f[14..]),
        &ChecksumCapabilities::default(),
    );
    f
}

fn udp(src_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = ipv4(IpProtocol::Udp, 8 + payload.len());
    UdpRepr {
        src_port,
        dst_port: 7,
    }
    .emit(
        &mut UdpPacket::new_unchecked(&mut f[34..]),
        &IpAddress::Ipv4(GUEST_IP),
        &IpAddress::Ipv4(PEER_IP),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    f
}

/// The UDP payload and destination port of a frame from the peer.
fn parse_udp(frame: &[u8]) -> (u16, Vec<u8>) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.dst_addr(), GUEST_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (PEER_IP, GUEST_IP));
    assert!(ip.verify_checksum());
    let u = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(u.src_port(), 7);
    (u.dst_port(), u.payload().to_vec())
}

#[test]
fn arp_and_udp_echo() {
    let mut n = start("udp", share_all);
    n.post_rx(8, RX_BUF_SIZE);
    n.resolve();
    for (i, len) in [64usize, 700, 1472].into_iter().enumerate() {
        let data = pattern(len, i as u8);
        n.send(&udp(40000 + i as u16, &data));
        let (port, echo) = parse_udp(&n.recv_frame());
        assert_eq!(port, 40000 + i as u16);
        assert_eq!(echo, data, "{len} bytes");
    }
    let c = n.h.stop();
    assert_eq!(c.get("net", "udp_echoed"), 3);
    assert_eq!(c.get("net", "violations"), 0);
    assert_eq!(c.get("net", "requests_failed"), 0);
}

#[test]
fn tcp_echo_port_answers_a_syn() {
    let mut n = start("tcp", share_all);
    n.post_rx(8, RX_BUF_SIZE);
    n.resolve();
    let mut f = ipv4(IpProtocol::Tcp, 20);
    {
        let mut t = TcpPacket::new_unchecked(&mut f[34..]);
        t.set_src_port(41000);
        t.set_dst_port(7);
        t.set_seq_number(smoltcp::wire::TcpSeqNumber(1000));
        t.set_header_len(20);
        t.clear_flags();
        t.set_syn(true);
        t.set_window_len(65535);
        t.fill_checksum(&IpAddress::Ipv4(GUEST_IP), &IpAddress::Ipv4(PEER_IP));
    }
    n.send(&f);
    let reply = n.recv_frame();
    let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(t.syn() && t.ack(), "SYN-ACK");
    assert_eq!(t.ack_number(), smoltcp::wire::TcpSeqNumber(1001));
    n.h.stop();
}

#[test]
fn unshared_frame_is_dropped_unread() {
    let mut n = start("txdenied", share_all);
    n.post_rx(4, RX_BUF_SIZE);
    n.send_at(&arp_request(), PRIVATE_GPA);
    n.resolve();
    let c = n.h.stop();
    assert_eq!(c.get("net", "violations"), 1);
    assert_eq!(c.get("net", "requests_failed"), 1);
    // One frame reached the peer, one reply came back.
    assert_eq!(c.get("net", "bytes_written"), 42);
}

#[test]
fn unshared_receive_buffer_fails_and_the_frame_waits() {
    let mut n = start("rxdenied", share_all);
    n.post_rx_at(PRIVATE_GPA, RX_BUF_SIZE);
    n.send(&arp_request());
    let (len, _) = n.recv();
    assert_eq!(len, 0, "a private buffer comes back empty");
    assert_eq!(n.g.read(PRIVATE_GPA, 64), vec![0; 64], "and untouched");
    // A buffer too small for the frame: malformed, the frame still waits.
    n.post_rx_at(RX_BUFS_GPA, 30);
    assert_eq!(n.recv().0, 0);
    n.post_rx(1, RX_BUF_SIZE);
    let f = n.recv_frame();
    assert_eq!(
        EthernetFrame::new_checked(&f[..]).unwrap().ethertype(),
        EthernetProtocol::Arp
    );
    let c = n.h.stop();
    assert_eq!(c.get("net", "violations"), 1);
    assert_eq!(c.get("net", "malformed_chains"), 1);
    assert_eq!(c.get("net", "frames_dropped"), 0);
}

#[test]
fn oversized_and_device_writable_frames_are_malformed() {
    let mut n = start("malformed", |g| {
        share_all(g);
        g.share_range(BUF_GPA + 0x2000, 4 * PAGE, PERM_RW);
    });
    let big = vec![0u8; 2000];
    n.send_at(&big, BUF_GPA + 0x2000);
    n.request(TXQ, &[(TX_BUF, 60, false), (BUF_GPA + 0x2000, 60, true)]);
    assert!(n.h.alive());
    let c = n.h.stop();
    assert_eq!(c.get("net", "malformed_chains"), 2);
    assert_eq!(c.get("net", "violations"), 0);
}
