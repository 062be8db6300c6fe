// SPDX-License-Identifier: GPL-2.0-only
//! A vhost-user shim in front of the net backend: QEMU's order meets the
//! `vhost` crate's checks.
//!
//! QEMU's virtio-net sends `SET_VRING_ENABLE` as soon as the guest
//! negotiates its queue pairs, and again in `vhost_net_start()` *before*
//! `vhost_dev_start()` sends `SET_FEATURES`. The `vhost` crate (0.18)
//! refuses `SET_VRING_ENABLE` until `VHOST_USER_F_PROTOCOL_FEATURES` is
//! acknowledged (the spec says it "should be sent only when" it is) and
//! drops the connection. The shim relays every message unchanged, file
//! descriptors included, except that it holds a `SET_VRING_ENABLE` that
//! comes before that acknowledgement (answering a requested reply itself)
//! and passes it on right after the `SET_FEATURES` that acknowledges it.
//! With the acknowledgement the rings start disabled, so nothing is
//! served before the held enable arrives.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use vmm_sys_util::sock_ctrl_msg::ScmSocket;

const HDR_SIZE: usize = 12;
const SET_FEATURES: u32 = 2;
const SET_VRING_ENABLE: u32 = 18;
const VERSION_1: u32 = 1;
const FLAG_REPLY: u32 = 1 << 2;
const FLAG_NEED_REPLY: u32 = 1 << 3;
const PROTOCOL_FEATURES: u64 = 1 << 30;
/// Most descriptors one message carries (the `vhost` crate's limit).
const MAX_FDS: usize = 32;
/// Largest payload accepted (the `vhost` crate's `MAX_MSG_SIZE`).
const MAX_PAYLOAD: usize = 0x1000;

/// One frontend message: header, payload and the descriptors it carried.
struct Message {
    hdr: [u8; HDR_SIZE],
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Message {
    fn request(&self) -> u32 {
        u32::from_le_bytes([self.hdr[0], self.hdr[1], self.hdr[2], self.hdr[3]])
    }

    fn flags(&self) -> u32 {
        u32::from_le_bytes([self.hdr[4], self.hdr[5], self.hdr[6], self.hdr[7]])
    }

    fn set_flags(&mut self, flags: u32) {
        self.hdr[4..8].copy_from_slice(&flags.to_le_bytes());
    }

    fn u64_payload(&self) -> Option<u64> {
        Some(u64::from_le_bytes(self.payload.get(..8)?.try_into().ok()?))
    }
}

/// Receives into `buf`, with any descriptors that come along; returns
/// the byte count (0 at end of stream).
fn recv_some(s: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut raw: [RawFd; MAX_FDS] = [-1; MAX_FDS];
    let mut iov = [libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    }];
    // SAFETY: the iovec covers `buf`, exclusively borrowed for the call,
    // where any bytes may be written.
    let (n, nfds) = unsafe { s.recv_with_fds(&mut iov, &mut raw) }.map_err(io::Error::from)?;
    for &fd in &raw[..nfds] {
        // SAFETY: recvmsg() just created these descriptors for us; nothing
        // else owns them.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(n)
}

fn recv_exact(s: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        let n = recv_some(s, &mut buf[done..], fds)?;
        if n == 0 {
            return if done == 0 {
                Ok(false)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        done += n;
    }
    Ok(true)
}

fn read_message(s: &UnixStream) -> io::Result<Option<Message>> {
    let mut hdr = [0u8; HDR_SIZE];
    let mut fds = Vec::new();
    if !recv_exact(s, &mut hdr, &mut fds)? {
        return Ok(None);
    }
    let size = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
    if size > MAX_PAYLOAD {
        return Err(io::Error::other(format!(
            "vhost-user message of {size} bytes"
        )));
    }
    let mut payload = vec![0u8; size];
    if !recv_exact(s, &mut payload, &mut fds)? && size > 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(Message { hdr, payload, fds }))
}

fn send(s: &UnixStream, bytes: &[&[u8]], fds: &[OwnedFd]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let total: usize = bytes.iter().map(|b| b.len()).sum();
    let sent = s.send_with_fds(bytes, &raw).map_err(io::Error::from)?;
    // The descriptors went with the first byte; finish the rest plainly.
    let all: Vec<u8> = bytes.concat();
    (&*s).write_all(&all[sent..total])
}

/// Frontend to backend, holding early `SET_VRING_ENABLE`s.
fn forward(front: &UnixStream, back: &UnixStream, front_out: &Mutex<UnixStream>) -> io::Result<()> {
    let mut acked = false;
    let mut held: Vec<Message> = Vec::new();
    while let Some(mut m) = read_message(front)? {
        if m.request() == SET_VRING_ENABLE && !acked {
            if m.flags() & FLAG_NEED_REPLY != 0 {
                let mut reply = [0u8; HDR_SIZE + 8];
                reply[0..4].copy_from_slice(&SET_VRING_ENABLE.to_le_bytes());
                reply[4..8].copy_from_slice(&(VERSION_1 | FLAG_REPLY).to_le_bytes());
                reply[8..12].copy_from_slice(&8u32.to_le_bytes());
                let out = front_out.lock().unwrap_or_else(|e| e.into_inner());
                (&*out).write_all(&reply)?;
                m.set_flags(m.flags() & !FLAG_NEED_REPLY);
            }
            held.push(m);
            continue;
        }
        send(back, &[&m.hdr, &m.payload], &m.fds)?;
        if m.request() == SET_FEATURES && m.u64_payload().unwrap_or(0) & PROTOCOL_FEATURES != 0 {
            acked = true;
            for h in held.drain(..) {
                send(back, &[&h.hdr, &h.payload], &h.fds)?;
            }
        }
    }
    Ok(())
}

/// Backend to frontend: replies, relayed as they come.
fn backward(back: &UnixStream, front_out: &Mutex<UnixStream>) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut fds = Vec::new();
        let n = recv_some(back, &mut buf, &mut fds)?;
        if n == 0 {
            return Ok(());
        }
        let out = front_out.lock().unwrap_or_else(|e| e.into_inner());
        send(&out, &[&buf[..n]], &fds)?;
    }
}

fn relay(front: UnixStream, back: UnixStream, name: &'static str) -> io::Result<()> {
    let front_out = Arc::new(Mutex::new(front.try_clone()?));
    let back_in = back.try_clone()?;
    let out = front_out.clone();
    let replies = thread::Builder::new()
        .name(format!("{name}-replies"))
        .spawn(move || {
            let r = backward(&back_in, &out);
            // The backend hung up: so does the frontend's side.
            let _ = out
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .shutdown(std::net::Shutdown::Both);
            r
        })?;
    let r = forward(&front, &back, &front_out);
    let _ = back.shutdown(std::net::Shutdown::Both);
    let _ = replies.join();
    r
}

/// The socket the backend's daemon listens on behind the shim.
pub fn backend_path(public: &Path) -> PathBuf {
    let mut p = public.as_os_str().to_owned();
    p.push(".backend");
    PathBuf::from(p)
}

/// Listens on `public` and relays each frontend to the daemon listening
/// on `backend_path(public)`, one connection at a time.
pub fn start(public: &Path, name: &'static str) -> io::Result<()> {
    let _ = std::fs::remove_file(public);
    let listener = UnixListener::bind(public)?;
    let backend = backend_path(public);
    thread::Builder::new()
        .name(format!("{name}-shim"))
        .spawn(move || {
            for front in listener.incoming() {
                let r = front.and_then(|f| Ok((f, UnixStream::connect(&backend)?)));
                match r {
                    Ok((f, b)) => {
                        if let Err(e) = relay(f, b, name) {
                            log::warn!("{name}: shim: {e}");
                        }
                    }
                    Err(e) => log::warn!("{name}: shim: {e}"),
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn msg(req: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&req.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn early_enable_is_held_until_features() {
        let (qemu, shim_front) = UnixStream::pair().unwrap();
        let (shim_back, daemon) = UnixStream::pair().unwrap();
        let t = thread::spawn(move || relay(shim_front, shim_back, "test"));
        let enable = msg(
            SET_VRING_ENABLE,
            VERSION_1 | FLAG_NEED_REPLY,
            &[0, 0, 0, 0, 1, 0, 0, 0],
        );
        let features = msg(
            SET_FEATURES,
            VERSION_1,
            &(PROTOCOL_FEATURES | 1).to_le_bytes(),
        );
        let other = msg(24, VERSION_1, &[]);
        (&qemu).write_all(&enable).unwrap();
        // The shim answers the requested reply itself...
        let mut reply = [0u8; 20];
        (&qemu).read_exact(&mut reply).unwrap();
        assert_eq!(&reply[0..4], &SET_VRING_ENABLE.to_le_bytes());
        assert_eq!(&reply[12..20], &[0; 8]);
        (&qemu).write_all(&features).unwrap();
        (&qemu).write_all(&other).unwrap();
        drop(qemu);
        // ...and the backend sees the features first, then the enable
        // (with no reply requested), then the rest in order.
        let mut seen = Vec::new();
        (&daemon).read_to_end(&mut seen).unwrap();
        let mut want = features.clone();
        want.extend_from_slice(&msg(SET_VRING_ENABLE, VERSION_1, &[0, 0, 0, 0, 1, 0, 0, 0]));
        want.extend_from_slice(&other);
        assert_eq!(seen, want);
        drop(daemon);
        t.join().unwrap().unwrap();
    }

    #[test]
    fn messages_pass_unchanged_once_acknowledged() {
        let (qemu, shim_front) = UnixStream::pair().unwrap();
        let (shim_back, daemon) = UnixStream::pair().unwrap();
        let t = thread::spawn(move || relay(shim_front, shim_back, "test"));
        let mut all = msg(SET_FEATURES, VERSION_1, &PROTOCOL_FEATURES.to_le_bytes());
        all.extend_from_slice(&msg(SET_VRING_ENABLE, VERSION_1, &[0; 8]));
        (&qemu).write_all(&all).unwrap();
        // A reply from the backend reaches the frontend.
        (&daemon)
            .write_all(&msg(1, VERSION_1 | FLAG_REPLY, &[7; 8]))
            .unwrap();
        let mut reply = [0u8; 20];
        (&qemu).read_exact(&mut reply).unwrap();
        assert_eq!(reply[12..], [7; 8]);
        drop(qemu);
        let mut seen = Vec::new();
        (&daemon).read_to_end(&mut seen).unwrap();
        assert_eq!(seen, all);
        drop(daemon);
        t.join().unwrap().unwrap();
    }
}
