// SPDX-License-Identifier: GPL-2.0-only
//! vhost-user console (virtio console, device id 3, one port, no
//! features): what the guest writes to `/dev/hvc0` arrives on the
//! transmit queue and is appended to a file and checksummed, so the host
//! can compare it with what the guest meant to write.
//!
//! The receive queue's buffers are never filled (the host sends no
//! input); its kicks are exits all the same.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::VringMutex;

use crate::checked_memory::CheckedMemory;
use crate::device::{self, Chain, Completion, Device, DeviceCore, Gm, FNV_INIT};
use crate::host::Host;

const TRANSMITQ: usize = 1;
/// Most bytes one transmit buffer may carry.
const MAX_REQUEST: usize = 64 << 10;

struct Output {
    file: File,
    checksum: u32,
}

pub struct ConsoleDevice {
    core: DeviceCore,
    out: Mutex<Output>,
}

impl ConsoleDevice {
    pub fn new(host: Arc<Host>, out: File) -> ConsoleDevice {
        ConsoleDevice {
            core: DeviceCore::new(host, "console", true, 2).declare(&["checksum"]),
            out: Mutex::new(Output {
                file: out,
                checksum: FNV_INIT,
            }),
        }
    }

    /// One transmit buffer: read whole (every readable descriptor checked
    /// first), then written out; a denied buffer writes nothing.
    fn transmit(&self, chain: Chain<'_>, mem: &CheckedMemory) -> Completion {
        self.core.count(|c| c.requests += 1);
        if chain.clone().writable().next().is_some() {
            return self.core.malformed();
        }
        let Ok(mut r) = chain.reader(mem) else {
            return self.core.failed();
        };
        if r.available_bytes() > MAX_REQUEST {
            return self.core.malformed();
        }
        let mut buf = Vec::with_capacity(r.available_bytes());
        if r.read_to_end(&mut buf).is_err() {
            return self.core.failed();
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.file.write_all(&buf) {
            log::warn!("console: cannot write the output file: {e}");
        }
        out.checksum = device::fnv1a(out.checksum, &buf);
        let checksum = out.checksum;
        drop(out);
        self.core.count(|c| {
            c.requests_ok += 1;
            c.bytes_read += buf.len() as u64;
            c.extra.insert("checksum", u64::from(checksum));
        });
        Completion::Used(0)
    }
}

impl Device for ConsoleDevice {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    fn extra_protocol_features(&self) -> VhostUserProtocolFeatures {
        // CONFIG: QEMU's generic vhost-user device reads the config space
        // from the backend (all zero: no size, no ports, no emergency write).
        VhostUserProtocolFeatures::CONFIG
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        device::config_slice(&[0u8; 12], offset, size)
    }

    /// The receive queue's buffers are never filled: its kick is an exit
    /// and nothing more.
    fn serve(&self, index: usize, vrings: &[VringMutex<Gm>]) {
        if index == TRANSMITQ {
            self.core
                .serve_requests(vrings, index, |c, m| self.transmit(c, m));
        }
    }
}
