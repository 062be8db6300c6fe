// SPDX-License-Identifier: GPL-2.0-only
//! vhost-user-net (virtio-net, device id 1, one queue pair) whose other
//! end is `peer`, a userspace TCP/IP stack in this process.
//!
//! Transmit chains are read whole through `virtio-queue`'s `Reader` and
//! receive chains written through its `Writer`; both ask `CheckedMemory`
//! for every descriptor before a byte moves. A transmit buffer the host
//! may not read is a violation and its frame is dropped unread; a receive
//! buffer it may not write is a violation, comes back empty (shorter than
//! a header, which Linux counts as a length error) and the frame waits
//! for the next buffer.
//!
//! No offloads and no mergeable buffers: every frame is one
//! `virtio_net_hdr_v1` (12 bytes, all zero but `num_buffers`) and one
//! Ethernet frame. QEMU keeps the config space (MAC, status) itself.
//! The peer also runs on a timer (`TIMER_EVENT`), for TCP's retransmits
//! and for frames that wait for receive buffers; a tick is not an exit.

mod peer;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vhost_user_backend::VringMutex;
use vmm_sys_util::timerfd::TimerFd;

use crate::checked_memory::CheckedMemory;
use crate::device::{Chain, Completion, Device, DeviceCore, Gm};
use crate::host::Host;

use peer::{Peer, MAX_FRAME};

const RXQ: usize = 0;
const TXQ: usize = 1;
const NUM_QUEUES: usize = 2;
/// The epoll event of the peer's timer (0..=NUM_QUEUES are taken).
const TIMER_EVENT: u16 = NUM_QUEUES as u16 + 1;
const TICK: Duration = Duration::from_millis(10);
/// `struct virtio_net_hdr_v1`: what VERSION_1 puts before every frame.
const NET_HDR_SIZE: usize = 12;

pub struct NetDevice {
    core: DeviceCore,
    peer: Mutex<Peer>,
    timer: Mutex<TimerFd>,
    timer_fd: RawFd,
}

impl NetDevice {
    pub fn new(host: Arc<Host>) -> io::Result<NetDevice> {
        let mut timer = TimerFd::new()?;
        timer.reset(TICK, Some(TICK))?;
        let timer_fd = timer.as_raw_fd();
        Ok(NetDevice {
            core: DeviceCore::new(host, "net", true, NUM_QUEUES).declare(&[
                "udp_echoed",
                "tcp_connections",
                "tcp_last_bytes",
                "tcp_last_checksum",
            ]),
            peer: Mutex::new(Peer::new()),
            timer: Mutex::new(timer),
            timer_fd,
        })
    }

    /// One frame from the guest, to the peer.
    fn transmit(&self, peer: &mut Peer, chain: Chain<'_>, mem: &CheckedMemory) -> Completion {
        self.core.count(|c| c.requests += 1);
        if chain.clone().writable().next().is_some() {
            return self.core.malformed();
        }
        let Ok(mut r) = chain.reader(mem) else {
            return self.core.failed();
        };
        let len = r.available_bytes();
        if !(NET_HDR_SIZE + 14..=NET_HDR_SIZE + MAX_FRAME).contains(&len) {
            return self.core.malformed();
        }
        let mut buf = vec![0u8; len];
        if r.read_exact(&mut buf).is_err() {
            return self.core.failed();
        }
        let frame = buf.split_off(NET_HDR_SIZE);
        self.core.count(|c| {
            c.requests_ok += 1;
            c.bytes_read += frame.len() as u64;
        });
        peer.push_from_guest(frame);
        Completion::Used(0)
    }

    /// One receive buffer, filled with the peer's next frame.
    fn receive(&self, peer: &mut Peer, chain: Chain<'_>, mem: &CheckedMemory) -> Completion {
        self.core.count(|c| c.requests += 1);
        let Ok(mut w) = chain.writer(mem) else {
            return self.core.failed();
        };
        let Some(frame) = peer.peek_to_guest() else {
            return Completion::Used(0);
        };
        if w.available_bytes() < NET_HDR_SIZE + frame.len() {
            // Without mergeable buffers every buffer must hold a frame.
            return self.core.malformed();
        }
        let mut hdr = [0u8; NET_HDR_SIZE];
        hdr[10] = 1; // num_buffers
        let n = frame.len();
        if w.write_all(&hdr).is_err() || w.write_all(frame).is_err() {
            return self.core.failed();
        }
        peer.pop_to_guest();
        self.core.count(|c| {
            c.requests_ok += 1;
            c.bytes_written += n as u64;
        });
        Completion::Used((NET_HDR_SIZE + n) as u32)
    }

    /// The guest's frames to the peer, the peer's run, its frames back.
    fn pump(&self, vrings: &[VringMutex<Gm>]) {
        let mut peer = self.peer.lock().unwrap_or_else(|e| e.into_inner());
        self.core.serve_queue(
            vrings,
            TXQ,
            &mut *peer,
            |_| true,
            |p, c, m| self.transmit(p, c, m),
        );
        peer.poll();
        self.core
            .serve_queue(vrings, RXQ, &mut *peer, Peer::has_frames, |p, c, m| {
                self.receive(p, c, m)
            });
        let s = peer.stats.clone();
        drop(peer);
        self.core.count(|c| {
            for (k, v) in [
                ("udp_echoed", s.udp_echoed),
                ("udp_bytes", s.udp_bytes),
                ("udp_dropped", s.udp_dropped),
                ("tcp_connections", s.tcp_connections),
                ("tcp_bytes", s.tcp_bytes),
                ("tcp_last_bytes", s.tcp_last_bytes),
                ("tcp_last_checksum", u64::from(s.tcp_last_checksum)),
                ("frames_dropped", s.frames_dropped),
            ] {
                c.extra.insert(k, v);
            }
        });
    }
}

impl Device for NetDevice {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    /// Either queue's kick pumps both ways.
    fn serve(&self, _index: usize, vrings: &[VringMutex<Gm>]) {
        self.pump(vrings);
    }

    /// The peer's timer: on the queues' thread, so the peer never runs
    /// concurrently with itself.
    fn events(&self) -> Vec<(RawFd, u16)> {
        vec![(self.timer_fd, TIMER_EVENT)]
    }

    fn event(&self, event: u16, vrings: &[VringMutex<Gm>]) {
        if event == TIMER_EVENT {
            // Clear the expirations; a tick is no exit, so no drain (an
            // access the ring has not caught up with drains on the miss).
            let _ = self.timer.lock().unwrap_or_else(|e| e.into_inner()).wait();
            self.pump(vrings);
        }
    }
}
