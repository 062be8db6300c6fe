// SPDX-License-Identifier: GPL-2.0-only

//! The mapping ring: a bounded multi-producer, single-consumer queue.
//!
//! The guest is the producer (any CPU, any context, hard IRQ included), the
//! hypervisor the consumer. A record only says "look at the table entries
//! `gfn..gfn + nr_pages`"; applying it is idempotent, so the consumer may
//! apply published records beyond a not-yet-published one, but it advances
//! `consumer` only over the contiguous published prefix.
//!
//! Memory ordering (the spec states the same rules):
//!
//! - A producer reserves index `i` with a compare-and-swap of `producer`
//!   from `i` to `i + 1`, only if `i - consumer < size` where `consumer` was
//!   read with Acquire; that Acquire pairs with the consumer's Release store
//!   and guarantees the consumer has finished reading the slot's previous lap.
//! - It writes the table entries first, then `gfn` and `nr_pages`, then
//!   stores `seq = record_seq(i)` with Release.
//! - The consumer reads `seq` with Acquire and only then the record fields
//!   and the table entries they name; it stores `consumer` with Release.

use super::error::Error;
use super::layout::{record_seq, RING_CONSUMER_OFFSET, RING_ORDER_MAX, RING_PRODUCER_OFFSET};
use super::sync::{AtomicU32, AtomicU64, Ordering};

/// The ring header page as the guest maps it.
#[repr(C)]
pub struct RingHeader {
    /// Reservation counter: the index of the next record to reserve.
    pub producer: AtomicU64,
    reserved0: [u64; 7],
    /// Index of the first record not yet consumed; written by the hypervisor.
    pub consumer: AtomicU64,
    reserved1: [u64; 503],
}

/// One ring record as the guest maps it.
#[repr(C)]
pub struct RingSlot {
    /// First frame named by the record.
    pub gfn: AtomicU64,
    /// Number of frames named by the record.
    pub nr_pages: AtomicU32,
    /// Publication marker: `record_seq(index)` once the record is complete.
    pub seq: AtomicU32,
}

#[cfg(not(loom))]
const _: () = {
    assert!(core::mem::size_of::<RingHeader>() == 4096);
    assert!(core::mem::offset_of!(RingHeader, producer) == RING_PRODUCER_OFFSET as usize);
    assert!(core::mem::offset_of!(RingHeader, consumer) == RING_CONSUMER_OFFSET as usize);
    assert!(core::mem::size_of::<RingSlot>() == 16);
    assert!(core::mem::offset_of!(RingSlot, gfn) == 0);
    assert!(core::mem::offset_of!(RingSlot, nr_pages) == 8);
    assert!(core::mem::offset_of!(RingSlot, seq) == 12);
};

impl RingHeader {
    /// Returns a zeroed header, the state the guest must register.
    #[cfg(not(loom))]
    pub const fn new() -> RingHeader {
        RingHeader {
            producer: AtomicU64::new(0),
            reserved0: [0; 7],
            consumer: AtomicU64::new(0),
            reserved1: [0; 503],
        }
    }

    /// Returns a zeroed header, the state the guest must register.
    #[cfg(loom)]
    pub fn new() -> RingHeader {
        RingHeader {
            producer: AtomicU64::new(0),
            reserved0: [0; 7],
            consumer: AtomicU64::new(0),
            reserved1: [0; 503],
        }
    }
}

impl Default for RingHeader {
    fn default() -> Self {
        RingHeader::new()
    }
}

impl RingSlot {
    /// Returns a zeroed record.
    #[cfg(not(loom))]
    pub const fn new() -> RingSlot {
        RingSlot {
            gfn: AtomicU64::new(0),
            nr_pages: AtomicU32::new(0),
            seq: AtomicU32::new(0),
        }
    }

    /// Returns a zeroed record.
    #[cfg(loom)]
    pub fn new() -> RingSlot {
        RingSlot {
            gfn: AtomicU64::new(0),
            nr_pages: AtomicU32::new(0),
            seq: AtomicU32::new(0),
        }
    }
}

impl Default for RingSlot {
    fn default() -> Self {
        RingSlot::new()
    }
}

/// The guest's producer side of the ring.
///
/// It holds no state of its own, so any number of CPUs may use copies of it
/// at once. Callers run it with interrupts disabled between `reserve` and
/// `publish` so that a reservation is never left unpublished for long: the
/// consumer cannot advance past it.
#[derive(Clone, Copy)]
pub struct Producer<'a> {
    header: &'a RingHeader,
    slots: &'a [RingSlot],
    mask: u64,
}

/// A reserved record that must be published.
///
/// Dropping it without `publish` leaves a hole that stalls the consumer
/// index forever, so the guest always publishes (a record naming a frame
/// whose entry did not change is harmless).
#[must_use = "a reserved record must be published"]
pub struct Reservation<'a> {
    slot: &'a RingSlot,
    index: u64,
}

impl<'a> Producer<'a> {
    /// Builds a producer over a header and `1 << order` slots.
    ///
    /// Fails if the number of slots is not a power of two within the ABI's
    /// `ring_order` range.
    pub fn new(header: &'a RingHeader, slots: &'a [RingSlot]) -> Result<Self, Error> {
        let n = slots.len() as u64;
        if !n.is_power_of_two() || !(2..=(1u64 << RING_ORDER_MAX)).contains(&n) {
            return Err(Error::InvalidArgument);
        }
        Ok(Producer {
            header,
            slots,
            mask: n - 1,
        })
    }

    /// Returns the number of records of the ring.
    pub fn size(&self) -> u64 {
        self.mask + 1
    }

    /// Reserves the next record.
    ///
    /// Returns `Error::RingFull` when `size` records are outstanding: the
    /// caller issues `SYNC` and retries. Returns `Error::Hostile` when the
    /// hypervisor-written consumer index is ahead of the producer.
    pub fn reserve(&self) -> Result<Reservation<'a>, Error> {
        let mut index = self.header.producer.load(Ordering::Relaxed);
        loop {
            // Acquire: the consumer's reads of the slot's previous lap are
            // complete before this producer overwrites it.
            let consumer = self.header.consumer.load(Ordering::Acquire);
            let used = index.wrapping_sub(consumer);
            if used > self.mask + 1 {
                // Either `index` is stale or the consumer is hostile.
                let now = self.header.producer.load(Ordering::Relaxed);
                if now.wrapping_sub(consumer) > self.mask + 1 {
                    return Err(Error::Hostile);
                }
                index = now;
                continue;
            }
            if used == self.mask + 1 {
                return Err(Error::RingFull);
            }
            match self.header.producer.compare_exchange_weak(
                index,
                index.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => index = now,
            }
        }
        match self.slots.get((index & self.mask) as usize) {
            Some(slot) => Ok(Reservation { slot, index }),
            // Unreachable: the mask keeps the index in bounds.
            None => Err(Error::InvalidArgument),
        }
    }

    /// Appends a record naming `nr_pages` frames from `gfn`.
    ///
    /// The table entries must already hold their new values.
    pub fn push(&self, gfn: u64, nr_pages: u32) -> Result<(), Error> {
        if nr_pages == 0 {
            return Err(Error::InvalidArgument);
        }
        self.reserve()?.publish(gfn, nr_pages);
        Ok(())
    }

    /// Returns the current consumer index, checked against the producer.
    pub fn consumer(&self) -> Result<u64, Error> {
        let consumer = self.header.consumer.load(Ordering::Acquire);
        let producer = self.header.producer.load(Ordering::Relaxed);
        if producer.wrapping_sub(consumer) > self.mask + 1 {
            return Err(Error::Hostile);
        }
        Ok(consumer)
    }
}

impl Reservation<'_> {
    /// Returns the ring index of the reserved record.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Fills in the record and publishes it with a Release store of `seq`.
    pub fn publish(self, gfn: u64, nr_pages: u32) {
        self.slot.gfn.store(gfn, Ordering::Relaxed);
        self.slot.nr_pages.store(nr_pages, Ordering::Relaxed);
        self.slot
            .seq
            .store(record_seq(self.index), Ordering::Release);
    }
}

/// Reference consumer over the atomic views, as a hypervisor written in Rust
/// with direct access to the ring would run it.
///
/// Starting from the hypervisor's private `consumer`, it calls `apply` for
/// every published record up to the producer (bounded by the ring size),
/// skipping unpublished ones, stores the new consumer index (the end of the
/// contiguous published prefix) with Release and returns it.
pub fn consume(
    header: &RingHeader,
    slots: &[RingSlot],
    consumer: u64,
    mut apply: impl FnMut(u64, u32),
) -> u64 {
    let n = slots.len() as u64;
    if !n.is_power_of_two() {
        return consumer;
    }
    let producer = header.producer.load(Ordering::Relaxed);
    let avail = core::cmp::min(producer.wrapping_sub(consumer), n);
    let mut next = consumer;
    let mut contiguous = true;
    for k in 0..avail {
        let index = consumer.wrapping_add(k);
        let Some(slot) = slots.get((index & (n - 1)) as usize) else {
            break;
        };
        if slot.seq.load(Ordering::Acquire) == record_seq(index) {
            apply(
                slot.gfn.load(Ordering::Relaxed),
                slot.nr_pages.load(Ordering::Relaxed),
            );
            if contiguous {
                next = index.wrapping_add(1);
            }
        } else {
            contiguous = false;
        }
    }
    if next != consumer {
        header.consumer.store(next, Ordering::Release);
    }
    next
}
