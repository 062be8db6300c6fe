// SPDX-License-Identifier: GPL-2.0-only
//! The network peer inside the backend: `smoltcp` as a userspace TCP/IP
//! stack on the other end of the virtio-net link, with a static address,
//! answering ARP and ping and serving a UDP echo and a TCP echo on
//! `ECHO_PORT`. Frames go between it and the queues in memory only: no
//! TAP, no host socket, no address outside this link.

use std::collections::VecDeque;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

use crate::device::{fnv1a, FNV_INIT};

/// The peer's MAC (locally administered) and address, link-local: the
/// guest configures 169.254.77.2/16.
pub const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x77, 0x01];
pub const PEER_IP: [u8; 4] = [169, 254, 77, 1];
pub const PREFIX_LEN: u8 = 16;
/// UDP and TCP echo.
pub const ECHO_PORT: u16 = 7;
/// An Ethernet frame without FCS at the guest's 1500-byte MTU.
pub const MAX_FRAME: usize = 1514;
/// Frames waiting for a receive buffer; past this the oldest is dropped
/// (TCP retransmits, the UDP test notices).
const MAX_QUEUED: usize = 1024;
const TCP_BUFFER: usize = 256 << 10;
const UDP_SLOTS: usize = 256;
const UDP_BUFFER: usize = 512 << 10;

/// The link between the peer and the queues.
#[derive(Default)]
struct Link {
    from_guest: VecDeque<Vec<u8>>,
    to_guest: VecDeque<Vec<u8>>,
    dropped: u64,
}

struct Rx(Vec<u8>);

struct Tx<'a>(&'a mut Link);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        if self.0.to_guest.len() >= MAX_QUEUED {
            self.0.to_guest.pop_front();
            self.0.dropped += 1;
        }
        self.0.to_guest.push_back(frame);
        r
    }
}

impl Device for Link {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.from_guest.pop_front()?;
        Some((Rx(frame), Tx(self)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps
    }
}

/// What the peer's services did, for the counters.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub udp_echoed: u64,
    pub udp_bytes: u64,
    pub udp_dropped: u64,
    pub tcp_connections: u64,
    pub tcp_bytes: u64,
    /// Bytes and FNV-1a of the last finished TCP connection's stream.
    pub tcp_last_bytes: u64,
    pub tcp_last_checksum: u32,
    pub frames_dropped: u64,
}

pub struct Peer {
    iface: Interface,
    link: Link,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    tcp: SocketHandle,
    /// The TCP connection being served: (bytes, checksum) so far.
    stream: Option<(u64, u32)>,
    pub stats: PeerStats,
    buf: Vec<u8>,
}

impl Peer {
    pub fn new() -> Peer {
        let mut link = Link::default();
        let mut config = Config::new(EthernetAddress(PEER_MAC).into());
        config.random_seed = 0x0070_7769_6f6d_6d75;
        let mut iface = Interface::new(config, &mut link, Instant::now());
        iface.update_ip_addrs(|a| {
            let [a0, a1, a2, a3] = PEER_IP;
            // One address in an empty list cannot overflow it.
            let _ = a.push(IpCidr::new(IpAddress::v4(a0, a1, a2, a3), PREFIX_LEN));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let mut u = udp::Socket::new(
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_SLOTS],
                vec![0; UDP_BUFFER],
            ),
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_SLOTS],
                vec![0; UDP_BUFFER],
            ),
        );
        // A fresh socket on an unused port cannot fail to bind.
        let _ = u.bind(ECHO_PORT);
        let udp = sockets.add(u);
        let tcp = sockets.add(Self::tcp_socket());
        let mut p = Peer {
            iface,
            link,
            sockets,
            udp,
            tcp,
            stream: None,
            stats: PeerStats::default(),
            buf: vec![0; 64 << 10],
        };
        p.relisten();
        p
    }

    fn tcp_socket() -> tcp::Socket<'static> {
        let mut t = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        );
        // Nobody polls between the guest's frames but the backend's
        // timer: acknowledge at once instead of after a delay.
        t.set_ack_delay(None);
        t.set_nagle_enabled(false);
        t
    }

    fn relisten(&mut self) {
        let t = self.sockets.get_mut::<tcp::Socket>(self.tcp);
        if !t.is_open() {
            // Listening on a closed socket with a non-zero port succeeds.
            let _ = t.listen(ECHO_PORT);
        }
    }

    /// A frame the guest sent (virtio-net header removed).
    pub fn push_from_guest(&mut self, frame: Vec<u8>) {
        self.link.from_guest.push_back(frame);
    }

    /// The next frame for the guest, if any.
    pub fn peek_to_guest(&self) -> Option<&[u8]> {
        self.link.to_guest.front().map(Vec::as_slice)
    }

    pub fn pop_to_guest(&mut self) {
        self.link.to_guest.pop_front();
    }

    pub fn has_frames(&self) -> bool {
        !self.link.to_guest.is_empty()
    }

    /// Runs the stack and the services until neither has more to do.
    pub fn poll(&mut self) {
        for _ in 0..256 {
            let changed = self
                .iface
                .poll(Instant::now(), &mut self.link, &mut self.sockets);
            let served = self.serve_udp() | self.serve_tcp();
            if !changed && !served && self.link.from_guest.is_empty() {
                break;
            }
        }
        self.stats.frames_dropped = self.link.dropped;
    }

    fn serve_udp(&mut self) -> bool {
        let u = self.sockets.get_mut::<udp::Socket>(self.udp);
        let mut any = false;
        while u.can_send() {
            let Ok((data, meta)) = u.recv() else {
                break;
            };
            let n = data.len();
            self.buf[..n].copy_from_slice(data);
            any = true;
            if u.send_slice(&self.buf[..n], meta).is_ok() {
                self.stats.udp_echoed += 1;
                self.stats.udp_bytes += n as u64;
            } else {
                self.stats.udp_dropped += 1;
            }
        }
        any
    }

    fn serve_tcp(&mut self) -> bool {
        let t = self.sockets.get_mut::<tcp::Socket>(self.tcp);
        let mut any = false;
        if t.is_active() && self.stream.is_none() {
            self.stream = Some((0, FNV_INIT));
            self.stats.tcp_connections += 1;
        }
        while t.can_recv() {
            let room = t.send_capacity() - t.send_queue();
            let want = room.min(self.buf.len());
            if want == 0 {
                break;
            }
            let n = match t.recv_slice(&mut self.buf[..want]) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            // `room` bytes fit, so the whole slice is queued.
            let _ = t.send_slice(&self.buf[..n]);
            if let Some((bytes, sum)) = &mut self.stream {
                *bytes += n as u64;
                *sum = fnv1a(*sum, &self.buf[..n]);
            }
            self.stats.tcp_bytes += n as u64;
            any = true;
        }
        if t.state() == tcp::State::CloseWait && t.send_queue() == 0 && !t.can_recv() {
            // The guest is done sending and has every byte back.
            t.close();
            any = true;
        }
        if !t.is_open() {
            if let Some((bytes, sum)) = self.stream.take() {
                self.stats.tcp_last_bytes = bytes;
                self.stats.tcp_last_checksum = sum;
            }
            self.relisten();
            any = true;
        }
        any
    }
}
