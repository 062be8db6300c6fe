// SPDX-License-Identifier: GPL-2.0-only
//! The ivshmem server protocol, server side, with the hypervisor as a peer.
//!
//! QEMU's `ivshmem-doorbell` connects as a client. On connection the server
//! sends, each as one little-endian `i64` with at most one descriptor:
//! the protocol version (0), the client's peer id (no descriptor), -1 with
//! the shared-memory descriptor, then for every vector the hypervisor
//! peer's eventfd (so the guest's doorbell write `(hyp_peer_id << 16) |
//! vector` lands on our eventfd) and for every vector the client's own
//! eventfd (our write to it interrupts the guest).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// The hypervisor's peer id; clients are numbered from 1.
pub const HYP_PEER_ID: u16 = 0;
pub const PROTOCOL_VERSION: i64 = 0;

struct Client {
    id: u16,
    stream: UnixStream,
    /// Writing these raises the client's MSI-X vectors.
    irq: Vec<EventFd>,
}

pub struct IvshmemServer {
    listener: UnixListener,
    shm_fd: RawFd,
    /// One eventfd per vector, signalled by the guest's doorbell writes.
    doorbells: Vec<EventFd>,
    clients: Vec<Client>,
    next_id: u16,
}

fn send_msg(stream: &UnixStream, value: i64, fd: Option<RawFd>) -> io::Result<()> {
    let bytes = value.to_le_bytes();
    let fds: Vec<RawFd> = fd.into_iter().collect();
    let sent = stream
        .send_with_fds(&[&bytes[..]], &fds)
        .map_err(io::Error::from)?;
    if sent != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short ivshmem message",
        ));
    }
    Ok(())
}

impl IvshmemServer {
    /// Binds the socket (replacing a stale one): QEMU needs it listening
    /// before it starts.
    pub fn bind(path: &Path, shm_fd: RawFd, vectors: u16) -> io::Result<IvshmemServer> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let doorbells = (0..vectors)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<io::Result<_>>()?;
        Ok(IvshmemServer {
            listener,
            shm_fd,
            doorbells,
            clients: Vec::new(),
            next_id: HYP_PEER_ID + 1,
        })
    }

    fn accept(&mut self) -> io::Result<()> {
        let (stream, _) = self.listener.accept()?;
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(HYP_PEER_ID + 1);
        let irq = (0..self.doorbells.len())
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<io::Result<Vec<_>>>()?;
        send_msg(&stream, PROTOCOL_VERSION, None)?;
        send_msg(&stream, i64::from(id), None)?;
        send_msg(&stream, -1, Some(self.shm_fd))?;
        for db in &self.doorbells {
            send_msg(&stream, i64::from(HYP_PEER_ID), Some(db.as_raw_fd()))?;
        }
        for e in &irq {
            send_msg(&stream, i64::from(id), Some(e.as_raw_fd()))?;
        }
        log::info!("ivshmem: peer {id} connected");
        self.clients.push(Client { id, stream, irq });
        Ok(())
    }

    /// Interrupts every connected guest on `vector`. Harmless when the guest
    /// has not enabled MSI-X: QEMU then drops it.
    pub fn notify(&self, vector: usize) {
        for c in &self.clients {
            if let Some(e) = c.irq.get(vector) {
                let _ = e.write(1);
            }
        }
    }

    /// Serves forever: accepts clients, notices their disconnection and
    /// calls `on_doorbell(vector)` for every doorbell ring (coalesced, like
    /// an edge-triggered interrupt: one call may stand for several writes).
    pub fn run(&mut self, mut on_doorbell: impl FnMut(&Self, usize)) -> io::Result<()> {
        loop {
            let mut fds: Vec<libc::pollfd> = Vec::new();
            let pfd = |fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            fds.push(pfd(self.listener.as_raw_fd()));
            fds.extend(self.doorbells.iter().map(|e| pfd(e.as_raw_fd())));
            fds.extend(self.clients.iter().map(|c| pfd(c.stream.as_raw_fd())));
            // SAFETY: `fds` is a valid, exclusively borrowed array of
            // `fds.len()` pollfd structures for the whole call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let nr_doorbells = self.doorbells.len();
            for (v, p) in fds[1..=nr_doorbells].iter().enumerate() {
                if p.revents != 0 && self.doorbells[v].read().is_ok() {
                    on_doorbell(self, v);
                }
            }
            // Clients never send anything: readable means hung up.
            let gone: Vec<u16> = fds[1 + nr_doorbells..]
                .iter()
                .zip(&self.clients)
                .filter(|(p, _)| p.revents != 0)
                .map(|(_, c)| c.id)
                .collect();
            if !gone.is_empty() {
                self.clients.retain(|c| !gone.contains(&c.id));
                log::info!("ivshmem: peers {gone:?} disconnected");
            }
            if fds[0].revents != 0 {
                if let Err(e) = self.accept() {
                    log::warn!("ivshmem: handshake failed: {e}");
                }
            }
        }
    }
}
