// SPDX-License-Identifier: GPL-2.0-only
//! What every enforcing vhost-user backend shares: the guest memory QEMU
//! announced, the walk of a queue through `CheckedMemory`, the feature
//! bits QEMU's `iommu_platform=on` needs, the config space and the
//! counters; and `Backend`, the one `VhostUserBackend` of them all, which
//! leaves to each `Device` only what is its own.
//!
//! `vhost-user-backend`'s `VringState` keeps a raw `GuestMemoryAtomic` and
//! uses it in its own `add_used()`, `enable_notification()` and
//! `needs_notification()`; the backends never call those. They call the
//! generic `virtio_queue::QueueT` methods with a `CheckedMemory` instead,
//! so the rings are as checked as the buffers. Event suppression
//! (EVENT_IDX) is not offered: its fields live in the rings, and
//! `VringState`'s helpers for them would reach them unchecked.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringMutex, VringT};
use virtio_bindings::virtio_config::{VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use crate::checked_memory::CheckedMemory;
use crate::counters::ClassCounters;
use crate::host::{Host, HostInner};

pub type Gm = GuestMemoryAtomic<GuestMemoryMmap<()>>;

/// A descriptor chain as the backends see it: every access checked.
pub type Chain<'a> = DescriptorChain<&'a CheckedMemory<'a>>;

/// Features every backend offers. ACCESS_PLATFORM: QEMU's
/// `iommu_platform=on` insists on it, so the guest must go through its
/// DMA API (and so through the pviommu). INDIRECT_DESC: `virtio-queue`
/// reads indirect tables through the same `CheckedMemory`. Not EVENT_IDX
/// (see above).
pub const BASE_FEATURES: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_F_ACCESS_PLATFORM)
    | (1 << VIRTIO_RING_F_INDIRECT_DESC)
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// Protocol features every backend offers. REPLY_ACK and BACKEND_REQ:
/// QEMU requires both before it accepts ACCESS_PLATFORM ("IOMMU support
/// requires reply-ack and slave-req").
pub fn base_protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::REPLY_ACK | VhostUserProtocolFeatures::BACKEND_REQ
}

/// Where a request ended.
pub enum Completion {
    /// Put the head on the used ring with this length.
    Used(u32),
    /// Leave the request uncompleted (nothing trustworthy to answer with).
    Dropped,
}

/// `size` bytes of a config space from `offset`, zero past its end.
pub fn config_slice(space: &[u8], offset: u32, size: u32) -> Vec<u8> {
    let mut out = vec![0u8; size as usize];
    let start = (offset as usize).min(space.len());
    let end = start.saturating_add(size as usize).min(space.len());
    out[..end - start].copy_from_slice(&space[start..end]);
    out
}

/// FNV-1a, 32 bits: the stream checksum the guest tools print too.
pub fn fnv1a(mut h: u32, data: &[u8]) -> u32 {
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// FNV-1a's offset basis, the checksum of no bytes.
pub const FNV_INIT: u32 = 0x811c_9dc5;

/// The state every backend keeps beside its own.
pub struct DeviceCore {
    pub host: Arc<Host>,
    /// Log prefix, and the class counters' name (`None` for the disk,
    /// which keeps its own counters).
    name: &'static str,
    class: Option<&'static str>,
    queues: usize,
    mem: Mutex<Option<Gm>>,
    /// Ring addresses last logged per queue, to log each layout once.
    layouts: Mutex<Vec<Option<[u64; 4]>>>,
}

impl DeviceCore {
    pub fn new(host: Arc<Host>, name: &'static str, class: bool, queues: usize) -> DeviceCore {
        if class {
            // Listed in the counters from the start, used or not.
            host.lock().class(name);
        }
        DeviceCore {
            host,
            name,
            class: class.then_some(name),
            queues,
            mem: Mutex::new(None),
            layouts: Mutex::new(vec![None; queues]),
        }
    }

    /// How many queues the device has.
    pub fn num_queues(&self) -> usize {
        self.queues
    }

    /// Lists the class's own counters from the start, at zero.
    pub fn declare(self, keys: &[&'static str]) -> DeviceCore {
        self.count(|c| {
            for k in keys {
                c.extra.entry(k).or_default();
            }
        });
        self
    }

    /// A new memory table: registered with the devices' MMU before the
    /// framework's own first access (it reads the used index when the
    /// rings' addresses are set), so the mappings follow the host view.
    pub fn update_memory(&self, mem: Gm) {
        self.host.adopt(&mem.memory());
        *self.mem.lock().unwrap_or_else(|e| e.into_inner()) = Some(mem);
    }

    /// Counts into this class's counters.
    pub fn count(&self, f: impl FnOnce(&mut ClassCounters)) {
        if let Some(c) = self.class {
            f(self.host.lock().class(c));
        }
    }

    /// Counts into the host's state (the disk's counters live there).
    pub fn count_host(&self, f: impl FnOnce(&mut HostInner)) {
        f(&mut self.host.lock());
    }

    /// Completes a request whose input was malformed, with no bytes.
    pub fn malformed(&self) -> Completion {
        self.count(|c| {
            c.malformed_chains += 1;
            c.requests_failed += 1;
        });
        Completion::Used(0)
    }

    /// Completes a request that failed (a denied access, counted by the
    /// host view as a violation), with no bytes.
    pub fn failed(&self) -> Completion {
        self.count(|c| c.requests_failed += 1);
        Completion::Used(0)
    }

    /// A queue notification: an exit, so the ring is drained first.
    pub fn kick(&self) {
        self.host.on_queue_kick(self.class);
    }

    /// Logs where a queue's rings are, once per layout: with the RAM file
    /// this is enough to inspect a stuck queue from outside.
    fn log_layout(&self, index: usize, q: &Queue) {
        let layout = [
            q.desc_table(),
            q.avail_ring(),
            q.used_ring(),
            u64::from(q.size()),
        ];
        let mut layouts = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = layouts.get_mut(index) {
            if *slot != Some(layout) {
                *slot = Some(layout);
                log::info!(
                    "{}: queue {index}: desc {:#x} avail {:#x} used {:#x} size {}",
                    self.name,
                    layout[0],
                    layout[1],
                    layout[2],
                    layout[3]
                );
            }
        }
    }

    /// Serves queue `index` of `vrings`: while `want(state)`, pops a
    /// chain, hands it to `process` and puts it on the used ring as
    /// `process` says; then signals the guest once. Returns the number of
    /// chains completed.
    ///
    /// A queue that is not ready (not yet set up, or stopped by
    /// `GET_VRING_BASE` before the guest frees its rings) is not touched.
    pub fn serve_queue<S>(
        &self,
        vrings: &[VringMutex<Gm>],
        index: usize,
        state: &mut S,
        mut want: impl FnMut(&S) -> bool,
        mut process: impl FnMut(&mut S, Chain<'_>, &CheckedMemory) -> Completion,
    ) -> usize {
        let Some(vring) = vrings.get(index) else {
            return 0;
        };
        let Some(gm) = self.mem.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return 0;
        };
        let guard = gm.memory();
        let mut vstate = vring.get_mut();
        if !vstate.get_queue().ready() {
            return 0;
        }
        self.log_layout(index, vstate.get_queue());
        let mut completed = 0;
        while want(state) {
            // One request at a time holds off revocation: a SYNC waits for
            // the request under way, not for the queue to run dry.
            let mem = CheckedMemory::new(&guard, &self.host, self.class);
            let Some(chain) = vstate.get_queue_mut().pop_descriptor_chain(&mem) else {
                break;
            };
            let head = chain.head_index();
            match process(state, chain, &mem) {
                Completion::Used(len) => {
                    // The used ring is device-written memory: checked too.
                    if let Err(e) = vstate.get_queue_mut().add_used(&mem, head, len) {
                        log::warn!("{}: used ring not writable: {e}", self.name);
                        self.count(|c| c.requests_dropped += 1);
                        break;
                    }
                    completed += 1;
                }
                Completion::Dropped => {}
            }
        }
        if completed > 0 {
            if let Err(e) = vstate.signal_used_queue() {
                log::warn!("{}: cannot signal the guest: {e}", self.name);
            }
        }
        completed
    }

    /// `serve_queue` for a queue whose requests stand alone: every chain
    /// is served, with no state between them.
    pub fn serve_requests(
        &self,
        vrings: &[VringMutex<Gm>],
        index: usize,
        mut process: impl FnMut(Chain<'_>, &CheckedMemory) -> Completion,
    ) -> usize {
        self.serve_queue(vrings, index, &mut (), |_| true, |_, c, m| process(c, m))
    }
}

/// What a vhost-user device is beyond what `Backend` does for all of
/// them: its queues' service, its own features and config space, and any
/// event sources of its own.
pub trait Device: Send + Sync {
    /// Largest queue the device takes.
    const MAX_QUEUE_SIZE: usize = 256;

    /// What the device shares with the others: its queue count, guest
    /// memory and counters.
    fn core(&self) -> &DeviceCore;

    /// Device feature bits offered beside `BASE_FEATURES`.
    fn extra_features(&self) -> u64 {
        0
    }

    /// Protocol features offered beside `base_protocol_features()`.
    fn extra_protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::empty()
    }

    /// `GET_CONFIG`: `size` bytes of the config space from `offset`.
    fn get_config(&self, _offset: u32, _size: u32) -> Vec<u8> {
        Vec::new()
    }

    /// The frontend reset the device.
    fn reset_device(&self) {}

    /// Queue `index` was kicked; the exit (the drain) is done. Serves
    /// what the kick concerns, with `DeviceCore::serve_queue`.
    fn serve(&self, index: usize, vrings: &[VringMutex<Gm>]);

    /// The device's own event sources beside its queues, as `(fd, event)`,
    /// served on its queues' thread. Each `event` must be above
    /// `num_queues()`, which the framework takes for its exit event.
    fn events(&self) -> Vec<(RawFd, u16)> {
        Vec::new()
    }

    /// One of `events()` fired. It is no exit: nothing was drained.
    fn event(&self, _event: u16, _vrings: &[VringMutex<Gm>]) {}
}

/// A `Device` as a vhost-user backend, enforcing the host view: the
/// memory tables are registered with the devices' MMU, a queue kick is
/// an exit, and every queue is served through `CheckedMemory`.
pub struct Backend<D>(D);

impl<D: Device> Backend<D> {
    pub fn new(device: D) -> Backend<D> {
        Backend(device)
    }
}

impl<D: Device> VhostUserBackend for Backend<D> {
    type Bitmap = ();
    type Vring = VringMutex<Gm>;

    fn num_queues(&self) -> usize {
        self.0.core().num_queues()
    }

    fn max_queue_size(&self) -> usize {
        D::MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        BASE_FEATURES | self.0.extra_features()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        base_protocol_features() | self.0.extra_protocol_features()
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        self.0.get_config(offset, size)
    }

    /// EVENT_IDX is never offered (see above).
    fn set_event_idx(&self, _enabled: bool) {}

    fn update_memory(&self, mem: Gm) -> io::Result<()> {
        self.0.core().update_memory(mem);
        Ok(())
    }

    fn reset_device(&self) {
        self.0.reset_device();
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringMutex<Gm>],
        _thread_id: usize,
    ) -> io::Result<()> {
        let index = usize::from(device_event);
        if index >= vrings.len() {
            // Not a queue: one of the device's own `events()`.
            self.0.event(device_event, vrings);
        } else if evset == EventSet::IN {
            // A kick is an exit: drain the ring before looking at the queue.
            self.0.core().kick();
            self.0.serve(index, vrings);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_slice_pads_and_clamps() {
        assert_eq!(config_slice(&[1, 2, 3], 1, 4), vec![2, 3, 0, 0]);
        assert_eq!(config_slice(&[1, 2, 3], 9, 2), vec![0, 0]);
        assert_eq!(config_slice(&[1, 2, 3], u32::MAX, 1), vec![0]);
    }

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(FNV_INIT, b""), 0x811c_9dc5);
        assert_eq!(fnv1a(FNV_INIT, b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(fnv1a(FNV_INIT, b"fo"), b"obar"), 0xbf9c_f968);
    }
}
