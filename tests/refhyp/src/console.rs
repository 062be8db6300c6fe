// SPDX-License-Identifier: GPL-2.0-only
//! vhost-user console (virtio console, device id 3, one port, no
//! features): what the guest writes to `/dev/hvc0` arrives on the
//! transmit queue and is appended to a file and checksummed, so the host
//! can compare it with what the guest meant to write.
//!
//! The receive queue's buffers are never filled (the host sends no
//! input); its kicks are exits all the same.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{VhostUserBackend, VringMutex};
use vmm_sys_util::epoll::EventSet;

use crate::checked_memory::CheckedMemory;
use crate::device::{self, Chain, Completion, DeviceCore, Gm, FNV_INIT};
use crate::host::Host;

const QUEUE_SIZE_MAX: usize = 256;
const TRANSMITQ: usize = 1;
/// Most bytes one transmit buffer may carry.
const MAX_REQUEST: usize = 64 << 10;

struct Output {
    file: File,
    checksum: u32,
}

pub struct ConsoleBackend {
    core: DeviceCore,
    out: Mutex<Output>,
}

impl ConsoleBackend {
    pub fn new(host: Arc<Host>, out: File) -> ConsoleBackend {
        ConsoleBackend {
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

impl VhostUserBackend for ConsoleBackend {
    type Bitmap = ();
    type Vring = VringMutex<Gm>;

    fn num_queues(&self) -> usize {
        2
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE_MAX
    }

    fn features(&self) -> u64 {
        device::BASE_FEATURES
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        // CONFIG: QEMU's generic vhost-user device reads the config space
        // from the backend (all zero: no size, no ports, no emergency write).
        device::base_protocol_features() | VhostUserProtocolFeatures::CONFIG
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        device::config_slice(&[0u8; 12], offset, size)
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
        let index = usize::from(device_event);
        let Some(vring) = vrings.get(index) else {
            return Ok(());
        };
        self.core.kick();
        if index == TRANSMITQ {
            self.core.serve_queue(
                index,
                vring,
                &mut (),
                |_| true,
                |_, c, m| self.transmit(c, m),
            );
        }
        Ok(())
    }
}
