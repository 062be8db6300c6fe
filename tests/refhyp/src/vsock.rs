// SPDX-License-Identifier: GPL-2.0-only
//! vhost-user-vsock (virtio socket, device id 19) with its peer inside the
//! backend: the host end (CID 2) serves a stream echo on `ECHO_PORT` and
//! refuses every other port. Nothing reaches a host socket.
//!
//! Packets are parsed from whole chains through `virtio-queue`'s `Reader`
//! and `Writer`, whose every descriptor is checked by `CheckedMemory`
//! before a byte moves (the `virtio-vsock` crate's packet type takes at
//! most one data descriptor, and Linux sends non-linear buffers as
//! several). A denied buffer fails its packet: a transmit packet is
//! dropped unread, a receive buffer is returned empty and the data it
//! would have carried stays queued for the next one.
//!
//! Flow control is the spec's credit scheme: the echo holds at most
//! `BUF_ALLOC` bytes of a connection (received, not yet echoed) and its
//! `fwd_cnt` advances only when echoed bytes reach the guest, and it never
//! sends more than the guest's advertised buffer space.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::VringMutex;
use vm_memory::endian::{Le16, Le32, Le64};
use vm_memory::ByteValued;

use crate::checked_memory::CheckedMemory;
use crate::device::{self, Chain, Completion, Device, DeviceCore, Gm, FNV_INIT};
use crate::host::Host;

const RXQ: usize = 0;
const TXQ: usize = 1;
const NUM_QUEUES: usize = 3;

/// The host's CID, the peer's address.
pub const HOST_CID: u64 = 2;
/// The port of the echo service.
pub const ECHO_PORT: u32 = 1234;
/// Receive buffer the echo advertises per connection.
const BUF_ALLOC: u32 = 256 << 10;
/// Largest payload of one packet either way.
const MAX_PAYLOAD: usize = 64 << 10;

const TYPE_STREAM: u16 = 1;
const OP_REQUEST: u16 = 1;
const OP_RESPONSE: u16 = 2;
const OP_RST: u16 = 3;
const OP_SHUTDOWN: u16 = 4;
const OP_RW: u16 = 5;
const OP_CREDIT_UPDATE: u16 = 6;
const OP_CREDIT_REQUEST: u16 = 7;
const SHUTDOWN_SEND: u32 = 2;
const SHUTDOWN_BOTH: u32 = 3;

/// `struct virtio_vsock_hdr`, little-endian on the wire.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug)]
struct Hdr {
    src_cid: Le64,
    dst_cid: Le64,
    src_port: Le32,
    dst_port: Le32,
    len: Le32,
    type_: Le16,
    op: Le16,
    flags: Le32,
    buf_alloc: Le32,
    fwd_cnt: Le32,
}

// SAFETY: only integer fields, `packed` leaves no padding, and every bit
// pattern is a valid value.
unsafe impl ByteValued for Hdr {}

const HDR_SIZE: usize = 44;
const _: () = assert!(std::mem::size_of::<Hdr>() == HDR_SIZE);

/// One connection of the echo, keyed by (guest port, host port).
struct Conn {
    /// Guest bytes received and not yet echoed back.
    pending: VecDeque<u8>,
    /// Bytes the echo consumed (echoed to the guest): its `fwd_cnt`.
    fwd_cnt: u32,
    /// Bytes the echo sent, and the guest's credit for them.
    tx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// The guest will send no more: after the echo, shut down.
    guest_done: bool,
    shutdown_sent: bool,
    checksum: u32,
    bytes_in: u64,
}

impl Conn {
    fn credit(&self) -> usize {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight) as usize
    }

    fn has_output(&self) -> bool {
        (!self.pending.is_empty() && self.credit() > 0)
            || (self.guest_done && self.pending.is_empty() && !self.shutdown_sent)
    }
}

#[derive(Default)]
struct State {
    conns: BTreeMap<(u32, u32), Conn>,
    /// Packets without payload waiting for a receive buffer.
    control: VecDeque<Hdr>,
}

impl State {
    fn has_output(&self) -> bool {
        !self.control.is_empty() || self.conns.values().any(Conn::has_output)
    }
}

pub struct VsockDevice {
    core: DeviceCore,
    guest_cid: u64,
    state: Mutex<State>,
}

fn reply(to: &Hdr, op: u16, guest_cid: u64) -> Hdr {
    Hdr {
        src_cid: HOST_CID.into(),
        dst_cid: guest_cid.into(),
        src_port: to.dst_port,
        dst_port: to.src_port,
        type_: TYPE_STREAM.into(),
        op: op.into(),
        ..Default::default()
    }
}

impl VsockDevice {
    pub fn new(host: Arc<Host>, guest_cid: u64) -> VsockDevice {
        VsockDevice {
            core: DeviceCore::new(host, "vsock", true, NUM_QUEUES).declare(&[
                "connections",
                "streams",
                "last_stream_bytes",
                "last_stream_checksum",
            ]),
            guest_cid,
            state: Mutex::new(State::default()),
        }
    }

    /// Ends a connection and records its stream for the harness.
    fn finish(&self, conn: Conn) {
        self.core.count(|c| {
            *c.extra.entry("streams").or_default() += 1;
            c.extra.insert("last_stream_bytes", conn.bytes_in);
            c.extra
                .insert("last_stream_checksum", u64::from(conn.checksum));
        });
    }

    /// One packet from the guest.
    fn transmit(&self, st: &mut State, chain: Chain<'_>, mem: &CheckedMemory) -> Completion {
        self.core.count(|c| c.requests += 1);
        let Ok(mut r) = chain.reader(mem) else {
            // A readable descriptor the host may not read: a violation,
            // counted by the host view. The packet is lost to the guest.
            return self.core.failed();
        };
        let hdr: Hdr = match r.read_obj() {
            Ok(h) => h,
            Err(_) => return self.core.malformed(),
        };
        let len = hdr.len.to_native() as usize;
        if len > MAX_PAYLOAD || len > r.available_bytes() {
            return self.core.malformed();
        }
        let mut data = vec![0u8; len];
        if r.read_exact(&mut data).is_err() {
            return self.core.malformed();
        }
        self.core.count(|c| {
            c.requests_ok += 1;
            c.bytes_read += len as u64;
        });
        self.handle_packet(st, &hdr, data);
        Completion::Used(0)
    }

    fn handle_packet(&self, st: &mut State, hdr: &Hdr, data: Vec<u8>) {
        let op = hdr.op.to_native();
        let key = (hdr.src_port.to_native(), hdr.dst_port.to_native());
        let addressed = hdr.src_cid.to_native() == self.guest_cid
            && hdr.dst_cid.to_native() == HOST_CID
            && hdr.type_.to_native() == TYPE_STREAM;
        if !addressed {
            if op != OP_RST {
                st.control.push_back(reply(hdr, OP_RST, self.guest_cid));
            }
            return;
        }
        if op == OP_REQUEST {
            if key.1 != ECHO_PORT || st.conns.contains_key(&key) {
                st.control.push_back(reply(hdr, OP_RST, self.guest_cid));
                return;
            }
            st.conns.insert(
                key,
                Conn {
                    pending: VecDeque::new(),
                    fwd_cnt: 0,
                    tx_cnt: 0,
                    peer_buf_alloc: hdr.buf_alloc.to_native(),
                    peer_fwd_cnt: hdr.fwd_cnt.to_native(),
                    guest_done: false,
                    shutdown_sent: false,
                    checksum: FNV_INIT,
                    bytes_in: 0,
                },
            );
            let mut h = reply(hdr, OP_RESPONSE, self.guest_cid);
            h.buf_alloc = BUF_ALLOC.into();
            st.control.push_back(h);
            self.core
                .count(|c| *c.extra.entry("connections").or_default() += 1);
            return;
        }
        let Some(conn) = st.conns.get_mut(&key) else {
            if op != OP_RST {
                st.control.push_back(reply(hdr, OP_RST, self.guest_cid));
            }
            return;
        };
        conn.peer_buf_alloc = hdr.buf_alloc.to_native();
        conn.peer_fwd_cnt = hdr.fwd_cnt.to_native();
        match op {
            OP_RW => {
                conn.checksum = device::fnv1a(conn.checksum, &data);
                conn.bytes_in += data.len() as u64;
                conn.pending.extend(data);
            }
            OP_CREDIT_REQUEST => {
                let mut h = reply(hdr, OP_CREDIT_UPDATE, self.guest_cid);
                h.buf_alloc = BUF_ALLOC.into();
                h.fwd_cnt = conn.fwd_cnt.into();
                st.control.push_back(h);
            }
            OP_SHUTDOWN => {
                if hdr.flags.to_native() & SHUTDOWN_SEND != 0 {
                    conn.guest_done = true;
                }
                if hdr.flags.to_native() == SHUTDOWN_BOTH && conn.pending.is_empty() {
                    // A clean close: the peer answers with RST.
                    if let Some(conn) = st.conns.remove(&key) {
                        self.finish(conn);
                    }
                    st.control.push_back(reply(hdr, OP_RST, self.guest_cid));
                }
            }
            OP_RST => {
                if let Some(conn) = st.conns.remove(&key) {
                    self.finish(conn);
                }
            }
            // CREDIT_UPDATE only updates the credit, done above;
            // anything else is ignored as the spec says.
            _ => {}
        }
    }

    /// Fills one receive buffer with the next control packet or echo data.
    fn receive(&self, st: &mut State, chain: Chain<'_>, mem: &CheckedMemory) -> Completion {
        self.core.count(|c| c.requests += 1);
        let Ok(mut w) = chain.writer(mem) else {
            // Not writable: a violation. The buffer comes back empty and
            // what it would have carried waits for the next one.
            return self.core.failed();
        };
        let room = w.available_bytes();
        if room < HDR_SIZE {
            return self.core.malformed();
        }
        let from_control = !st.control.is_empty();
        let (hdr, payload) = match st.control.front() {
            Some(h) => (*h, Vec::new()),
            None => match self.next_output(st, room - HDR_SIZE) {
                Some(out) => out,
                None => return Completion::Used(0),
            },
        };
        let mut bytes = hdr.as_slice().to_vec();
        bytes.extend_from_slice(&payload);
        if w.write_all(&bytes).is_err() {
            return self.core.failed();
        }
        // Written: only now does the packet leave the queues.
        if from_control {
            st.control.pop_front();
        } else {
            self.commit(st, &hdr, payload.len());
        }
        self.core.count(|c| {
            c.requests_ok += 1;
            c.bytes_written += payload.len() as u64;
        });
        Completion::Used(bytes.len() as u32)
    }

    /// The next echo packet that fits in `room` payload bytes and the
    /// guest's credit, without taking it from the connection yet.
    fn next_output(&self, st: &State, room: usize) -> Option<(Hdr, Vec<u8>)> {
        let (&(guest_port, host_port), conn) = st.conns.iter().find(|(_, c)| c.has_output())?;
        let n = conn
            .pending
            .len()
            .min(conn.credit())
            .min(room)
            .min(MAX_PAYLOAD);
        let mut h = Hdr {
            src_cid: HOST_CID.into(),
            dst_cid: self.guest_cid.into(),
            src_port: host_port.into(),
            dst_port: guest_port.into(),
            type_: TYPE_STREAM.into(),
            buf_alloc: BUF_ALLOC.into(),
            ..Default::default()
        };
        if n > 0 {
            let payload: Vec<u8> = conn.pending.iter().take(n).copied().collect();
            h.op = OP_RW.into();
            h.len = (n as u32).into();
            // The echoed bytes leave the echo's buffer with this packet.
            h.fwd_cnt = conn.fwd_cnt.wrapping_add(n as u32).into();
            Some((h, payload))
        } else {
            h.op = OP_SHUTDOWN.into();
            h.flags = SHUTDOWN_BOTH.into();
            h.fwd_cnt = conn.fwd_cnt.into();
            Some((h, Vec::new()))
        }
    }

    /// Takes a written echo packet from its connection.
    fn commit(&self, st: &mut State, hdr: &Hdr, n: usize) {
        let key = (hdr.dst_port.to_native(), hdr.src_port.to_native());
        let Some(conn) = st.conns.get_mut(&key) else {
            return;
        };
        match hdr.op.to_native() {
            OP_RW => {
                conn.pending.drain(..n);
                conn.fwd_cnt = conn.fwd_cnt.wrapping_add(n as u32);
                conn.tx_cnt = conn.tx_cnt.wrapping_add(n as u32);
            }
            OP_SHUTDOWN => conn.shutdown_sent = true,
            _ => {}
        }
    }

    /// Everything the guest sent, then everything the echo has for it.
    fn pump(&self, vrings: &[VringMutex<Gm>]) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.core.serve_queue(
            vrings,
            TXQ,
            &mut *st,
            |_| true,
            |s, c, m| self.transmit(s, c, m),
        );
        self.core
            .serve_queue(vrings, RXQ, &mut *st, State::has_output, |s, c, m| {
                self.receive(s, c, m)
            });
    }
}

impl Device for VsockDevice {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    fn extra_protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
    }

    /// `struct virtio_vsock_config`: the guest's CID.
    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        device::config_slice(&self.guest_cid.to_le_bytes(), offset, size)
    }

    fn reset_device(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::default();
    }

    /// Any queue's kick pumps both ways; the event queue's buffers are
    /// never used (no transport reset).
    fn serve(&self, _index: usize, vrings: &[VringMutex<Gm>]) {
        self.pump(vrings);
    }
}
