// SPDX-License-Identifier: GPL-2.0
//! The virtio-mmio transport, version 2 (virtio 1.x, 4.2.2): register
//! state only; the device behind it acts on the returned [`Event`]s.

use crate::virtqueue::SplitQueue;
use virtio_bindings::virtio_config::{VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1};
use virtio_bindings::virtio_mmio::*;

pub const MMIO_SIZE: u64 = 0x200;
const MAGIC: u32 = 0x7472_6976; // "virt"
const VENDOR: u32 = 0x4d56_4b50; // "PKVM"
const CONFIG_SPACE: u64 = 0x100;

/// What a register write asks the device to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The driver kicked queue N.
    Notify(u32),
    /// The interrupt status changed (acknowledged): re-evaluate the line.
    InterruptChanged,
    /// The driver reset the device (status 0).
    Reset,
    /// DRIVER_OK was set.
    DriverOk,
}

#[derive(Debug, Clone)]
pub struct VirtioMmio {
    pub device_id: u32,
    pub device_features: u64,
    pub config: Vec<u8>,
    pub queue_max: u16,
    pub queues: Vec<SplitQueue>,
    pub driver_features: u64,
    pub status: u32,
    pub interrupt_status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    queue_sel: u32,
    config_generation: u32,
}

fn lo(v: u64) -> u32 {
    v as u32
}
fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}
fn set_lo(v: &mut u64, x: u32) {
    *v = (*v & !0xffff_ffff) | u64::from(x);
}
fn set_hi(v: &mut u64, x: u32) {
    *v = (*v & 0xffff_ffff) | (u64::from(x) << 32);
}

impl VirtioMmio {
    /// `features`: the device's own bits; VERSION_1 and ACCESS_PLATFORM
    /// are always offered.
    pub fn new(
        device_id: u32,
        features: u64,
        config: Vec<u8>,
        num_queues: usize,
        queue_max: u16,
    ) -> Self {
        VirtioMmio {
            device_id,
            device_features: features | (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM),
            config,
            queue_max,
            queues: vec![SplitQueue::default(); num_queues],
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            config_generation: 0,
        }
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            *q = SplitQueue::default();
        }
        self.driver_features = 0;
        self.status = 0;
        self.interrupt_status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
    }

    fn queue(&mut self) -> Option<&mut SplitQueue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Guest read of `data.len()` bytes at `offset`.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= CONFIG_SPACE {
            let off = (offset - CONFIG_SPACE) as usize;
            for (i, b) in data.iter_mut().enumerate() {
                *b = self.config.get(off + i).copied().unwrap_or(0);
            }
            return;
        }
        if data.len() != 4 {
            return;
        }
        let q = self.queues.get(self.queue_sel as usize);
        let v = match offset as u32 {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => 2,
            VIRTIO_MMIO_DEVICE_ID => self.device_id,
            VIRTIO_MMIO_VENDOR_ID => VENDOR,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_sel {
                0 => lo(self.device_features),
                1 => hi(self.device_features),
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => q.map_or(0, |_| u32::from(self.queue_max)),
            VIRTIO_MMIO_QUEUE_READY => q.map_or(0, |q| u32::from(q.ready)),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt_status,
            VIRTIO_MMIO_STATUS => self.status,
            VIRTIO_MMIO_QUEUE_DESC_LOW => q.map_or(0, |q| lo(q.desc)),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => q.map_or(0, |q| hi(q.desc)),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => q.map_or(0, |q| lo(q.avail)),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => q.map_or(0, |q| hi(q.avail)),
            VIRTIO_MMIO_QUEUE_USED_LOW => q.map_or(0, |q| lo(q.used)),
            VIRTIO_MMIO_QUEUE_USED_HIGH => q.map_or(0, |q| hi(q.used)),
            VIRTIO_MMIO_CONFIG_GENERATION => self.config_generation,
            // No shared memory regions: length ~0 means "none".
            VIRTIO_MMIO_SHM_LEN_LOW | VIRTIO_MMIO_SHM_LEN_HIGH => u32::MAX,
            VIRTIO_MMIO_SHM_BASE_LOW | VIRTIO_MMIO_SHM_BASE_HIGH => u32::MAX,
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    /// Guest write at `offset`; returns what the device must do.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Option<Event> {
        if offset >= CONFIG_SPACE || data.len() != 4 {
            return None; // config space is read-only here
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        // Queue registers may only change before the queue is live.
        let live = self
            .queues
            .get(self.queue_sel as usize)
            .is_some_and(|q| q.ready);
        match offset as u32 {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = v,
            VIRTIO_MMIO_DRIVER_FEATURES => {
                let mut f = self.driver_features;
                match self.driver_features_sel {
                    0 => set_lo(&mut f, v),
                    1 => set_hi(&mut f, v),
                    _ => {}
                }
                self.driver_features = f & self.device_features;
            }
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = v,
            VIRTIO_MMIO_QUEUE_NUM if !live => {
                let max = self.queue_max;
                if let Some(q) = self.queue() {
                    // A power of two up to the maximum, else the queue stays unusable.
                    q.size = if v != 0 && v <= u32::from(max) && v.is_power_of_two() {
                        v as u16
                    } else {
                        0
                    };
                }
            }
            VIRTIO_MMIO_QUEUE_READY => {
                if let Some(q) = self.queue() {
                    q.ready = v == 1 && q.size != 0;
                    if !q.ready {
                        q.next_avail = 0;
                        q.next_used = 0;
                    }
                }
            }
            VIRTIO_MMIO_QUEUE_NOTIFY => return Some(Event::Notify(v)),
            VIRTIO_MMIO_INTERRUPT_ACK => {
                self.interrupt_status &= !v;
                return Some(Event::InterruptChanged);
            }
            VIRTIO_MMIO_STATUS => {
                if v == 0 {
                    self.reset();
                    return Some(Event::Reset);
                }
                let was_ok = self.status & 4 != 0;
                self.status = v;
                if v & 4 != 0 && !was_ok {
                    return Some(Event::DriverOk);
                }
            }
            VIRTIO_MMIO_QUEUE_DESC_LOW if !live => {
                self.queue().map_or((), |q| set_lo(&mut q.desc, v))
            }
            VIRTIO_MMIO_QUEUE_DESC_HIGH if !live => {
                self.queue().map_or((), |q| set_hi(&mut q.desc, v))
            }
            VIRTIO_MMIO_QUEUE_AVAIL_LOW if !live => {
                self.queue().map_or((), |q| set_lo(&mut q.avail, v))
            }
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH if !live => {
                self.queue().map_or((), |q| set_hi(&mut q.avail, v))
            }
            VIRTIO_MMIO_QUEUE_USED_LOW if !live => {
                self.queue().map_or((), |q| set_lo(&mut q.used, v))
            }
            VIRTIO_MMIO_QUEUE_USED_HIGH if !live => {
                self.queue().map_or((), |q| set_hi(&mut q.used, v))
            }
            _ => {}
        }
        None
    }

    /// Marks used buffers for the driver; returns whether the line must
    /// be raised.
    pub fn signal_used(&mut self) -> bool {
        self.interrupt_status |= VIRTIO_MMIO_INT_VRING;
        true
    }

    pub fn irq_level(&self) -> bool {
        self.interrupt_status != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(d: &VirtioMmio, off: u32) -> u32 {
        let mut b = [0u8; 4];
        d.read(u64::from(off), &mut b);
        u32::from_le_bytes(b)
    }
    fn wr(d: &mut VirtioMmio, off: u32, v: u32) -> Option<Event> {
        d.write(u64::from(off), &v.to_le_bytes())
    }

    #[test]
    fn probe_and_queue_setup() {
        let mut d = VirtioMmio::new(2, 1 << 9, vec![1, 2, 3, 4], 1, 256);
        assert_eq!(rd(&d, VIRTIO_MMIO_MAGIC_VALUE), MAGIC);
        assert_eq!(rd(&d, VIRTIO_MMIO_VERSION), 2);
        assert_eq!(rd(&d, VIRTIO_MMIO_DEVICE_ID), 2);
        wr(&mut d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_eq!(rd(&d, VIRTIO_MMIO_DEVICE_FEATURES), 0b11); // VERSION_1 | ACCESS_PLATFORM
        wr(&mut d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        assert_eq!(rd(&d, VIRTIO_MMIO_DEVICE_FEATURES), 1 << 9);
        wr(&mut d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        wr(&mut d, VIRTIO_MMIO_DRIVER_FEATURES, 0xffff_ffff);
        assert_eq!(d.driver_features, 0b11 << 32);

        wr(&mut d, VIRTIO_MMIO_QUEUE_SEL, 0);
        assert_eq!(rd(&d, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
        wr(&mut d, VIRTIO_MMIO_QUEUE_NUM, 128);
        wr(&mut d, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
        wr(&mut d, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0x1);
        wr(&mut d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x2000);
        wr(&mut d, VIRTIO_MMIO_QUEUE_USED_LOW, 0x3000);
        wr(&mut d, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_eq!(rd(&d, VIRTIO_MMIO_QUEUE_READY), 1);
        assert_eq!(d.queues[0].desc, 0x1_0000_1000);
        // Live queue registers are frozen.
        wr(&mut d, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x9000);
        assert_eq!(d.queues[0].desc, 0x1_0000_1000);
        // A queue that does not exist reads as absent.
        wr(&mut d, VIRTIO_MMIO_QUEUE_SEL, 5);
        assert_eq!(rd(&d, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);

        assert_eq!(wr(&mut d, VIRTIO_MMIO_STATUS, 7), Some(Event::DriverOk));
        assert_eq!(
            wr(&mut d, VIRTIO_MMIO_QUEUE_NOTIFY, 0),
            Some(Event::Notify(0))
        );
        assert!(d.signal_used() && d.irq_level());
        assert_eq!(rd(&d, VIRTIO_MMIO_INTERRUPT_STATUS), 1);
        assert_eq!(
            wr(&mut d, VIRTIO_MMIO_INTERRUPT_ACK, 1),
            Some(Event::InterruptChanged)
        );
        assert!(!d.irq_level());

        let mut c = [0u8; 2];
        d.read(0x101, &mut c);
        assert_eq!(c, [2, 3]);
        assert_eq!(wr(&mut d, VIRTIO_MMIO_STATUS, 0), Some(Event::Reset));
        assert!(!d.queues[0].ready && d.driver_features == 0);
    }

    #[test]
    fn bad_queue_sizes_leave_the_queue_unusable() {
        let mut d = VirtioMmio::new(2, 0, vec![], 1, 256);
        wr(&mut d, VIRTIO_MMIO_QUEUE_NUM, 100);
        wr(&mut d, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_eq!(rd(&d, VIRTIO_MMIO_QUEUE_READY), 0);
        wr(&mut d, VIRTIO_MMIO_QUEUE_NUM, 512);
        wr(&mut d, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_eq!(rd(&d, VIRTIO_MMIO_QUEUE_READY), 0);
    }
}
