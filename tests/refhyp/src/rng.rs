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

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{VhostUserBackend, VringMutex};
use vmm_sys_util::epoll::EventSet;

use crate::checked_memory::CheckedMemory;
use crate::device::{self, Chain, Completion, DeviceCore, Gm};
use crate::host::Host;

const QUEUE_SIZE_MAX: usize = 256;
/// Most bytes one request gets (Linux asks for at most a page or so).
const MAX_REQUEST: usize = 64 << 10;

pub struct RngBackend {
    core: DeviceCore,
    source: Mutex<File>,
}

impl RngBackend {
    pub fn new(host: Arc<Host>) -> io::Result<RngBackend> {
        Ok(RngBackend {
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

impl VhostUserBackend for RngBackend {
    type Bitmap = ();
    type Vring = VringMutex<Gm>;

    fn num_queues(&self) -> usize {
        1
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE_MAX
    }

    fn features(&self) -> u64 {
        device::BASE_FEATURES
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        device::base_protocol_features()
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn update_memory(&self, mem: Gm) -> io::Result<()> {
        self.core.update_memory(mem);
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[VringMutex<Gm>],
        _thread_id: usize,
    ) -> io::Result<()> {
        let Some(vring) = vrings.get(usize::from(device_event)) else {
            return Ok(());
        };
        self.core.kick();
        self.core
            .serve_queue(0, vring, &mut (), |_| true, |_, c, m| self.process(c, m));
        Ok(())
    }
}
