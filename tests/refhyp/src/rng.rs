// SPDX-License-Identifier: GPL-2.0-only
//! vhost-user-rng (virtio entropy, device id 4): one request queue whose
//! device-writable buffers the device fills with random bytes.
//!
//! Each buffer is written through `virtio-queue`'s `Writer`, which asks
//! `CheckedMemory` for every writable descriptor before a byte is
//! written: a buffer the guest did not share read-write is a violation,
//! and the request completes with no bytes.

use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use vhost_user_backend::VringMutex;

use crate::checked_memory::CheckedMemory;
use crate::device::{Chain, Completion, Device, DeviceCore, Gm};
use crate::host::Host;

/// Most bytes one request gets (Linux asks for at most a page or so).
const MAX_REQUEST: usize = 64 << 10;

pub struct RngDevice {
    core: DeviceCore,
    source: Mutex<File>,
}

impl RngDevice {
    pub fn new(host: Arc<Host>) -> io::Result<RngDevice> {
        Ok(RngDevice {
            core: DeviceCore::new(host, "rng", true, 1),
            source: Mutex::new(File::open("/dev/urandom")?),
        })
    }

    fn process(&self, chain: Chain<'_>, mem: &CheckedMemory) -> Completion {
        self.core.count(|c| c.requests += 1);
        if chain.clone().readable().next().is_some() {
            // The spec's buffers are device-writable only.
            return self.core.malformed();
        }
        let Ok(mut w) = chain.writer(mem) else {
            // A writable descriptor the host may not write (a violation,
            // counted by the host view) or a chain too long to add up.
            return self.core.failed();
        };
        let mut buf = vec![0u8; w.available_bytes().min(MAX_REQUEST)];
        let filled = self
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_exact(&mut buf)
            .is_ok();
        if !filled || io::Write::write_all(&mut w, &buf).is_err() {
            return self.core.failed();
        }
        self.core.count(|c| {
            c.requests_ok += 1;
            c.bytes_written += buf.len() as u64;
        });
        Completion::Used(buf.len() as u32)
    }
}

impl Device for RngDevice {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    fn serve(&self, index: usize, vrings: &[VringMutex<Gm>]) {
        self.core
            .serve_requests(vrings, index, |c, m| self.process(c, m));
    }
}
