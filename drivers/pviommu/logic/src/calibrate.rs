// SPDX-License-Identifier: GPL-2.0

//! The bounce threshold, measured rather than guessed.
//!
//! Sharing a buffer in place costs its table entries and ring record
//! (a few atomic stores per page) and, at unmap, one invalidating `SYNC`
//! per virtio buffer in strict mode. Bouncing it costs copies: one for a
//! buffer the device only reads (in at map), two for one it writes (the
//! slot is filled from the caller's buffer at map, so that a short device
//! write leaks no stale pool bytes, and copied back at unmap). Below the
//! size at which the copies cost as much as the `SYNC`, bouncing is the
//! cheaper way to protect the buffer; above it, sharing.
//!
//! At boot the driver times empty `SYNC`s and a copy on this machine and
//! derives one threshold per direction from the medians
//! ([`Thresholds::from_measured`]). The per-page work of sharing is left
//! out of the model: it is tens of nanoseconds a page against
//! microseconds for a `SYNC`, and leaving it out only moves the threshold
//! down, towards sharing.

use core::num::NonZeroU64;

use super::abi::layout::PAGE_SIZE;
use super::policy::Dir;

/// Rounds timed at boot for each figure; their median is used.
pub const ROUNDS: usize = 15;

/// Bytes copied in one timed copy.
pub const COPY_BYTES: u64 = 64 * 1024;

/// What the driver measured at boot, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    /// Median time of one `SYNC` with nothing to revoke: the exit and the
    /// hypervisor's fixed work.
    pub sync_ns: u64,
    /// Median time to copy [`COPY_BYTES`] bytes between two guest buffers.
    pub copy_ns: u64,
}

/// Buffers smaller than this bounce, by direction, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// For buffers the device only reads.
    pub to_device: u64,
    /// For buffers the device writes (`DMA_FROM_DEVICE`, bidirectional).
    pub from_device: u64,
}

/// How the thresholds in force were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `pviommu.bounce_threshold=BYTES`.
    Fixed,
    /// Measured at boot (`pviommu.bounce_threshold=0`, the default).
    Measured(Measured),
    /// Measurement failed (a `SYNC` failed or the clock did not move): the
    /// fallback of one page.
    Fallback,
}

impl Thresholds {
    /// The same threshold in both directions.
    pub const fn fixed(bytes: u64) -> Self {
        Thresholds {
            to_device: bytes,
            from_device: bytes,
        }
    }

    /// The threshold for a buffer mapped in direction `dir`.
    pub fn for_dir(&self, dir: Dir) -> u64 {
        match dir {
            Dir::ToDevice => self.to_device,
            Dir::FromDevice | Dir::Bidirectional => self.from_device,
        }
    }

    /// The crossovers of `m`: per direction, the size at which bouncing's
    /// copies cost one `SYNC` (`calls_per_buffer` of them in `sync` mode,
    /// where a buffer costs a `SHARE` and an `UNSHARE`), rounded up to
    /// whole pages and kept between one page and `max` (the largest
    /// mapping). `None` when the figures are unusable (a copy that took
    /// no time).
    pub fn from_measured(m: &Measured, calls_per_buffer: u64, max: u64) -> Option<Self> {
        let copy_ns = NonZeroU64::new(m.copy_ns)?;
        let max = core::cmp::max(PAGE_SIZE, max - max % PAGE_SIZE);
        let crossover = |copies: NonZeroU64| {
            // bytes = calls * sync_ns / (copies * copy_ns / COPY_BYTES).
            // Saturating: a figure no clock gives ends at `max` (and the
            // kernel has no 128-bit division).
            let bytes = calls_per_buffer
                .saturating_mul(m.sync_ns)
                .saturating_mul(COPY_BYTES)
                / copies.saturating_mul(copy_ns);
            bytes
                .div_ceil(PAGE_SIZE)
                .saturating_mul(PAGE_SIZE)
                .clamp(PAGE_SIZE, max)
        };
        Some(Thresholds {
            to_device: crossover(NonZeroU64::MIN),
            from_device: crossover(NonZeroU64::MIN.saturating_add(1)),
        })
    }
}

/// The median of `samples` (sorted in place); 0 for none.
pub fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 512 * 1024;

    #[test]
    fn crossover_per_direction() {
        // A 20 us SYNC, 64 KiB copied in 20 us (3.2 GB/s): bouncing one
        // copy of 64 KiB costs one SYNC; two copies, 32 KiB.
        let m = Measured {
            sync_ns: 20_000,
            copy_ns: 20_000,
        };
        let t = Thresholds::from_measured(&m, 1, MAX).unwrap();
        assert_eq!(
            t,
            Thresholds {
                to_device: 65536,
                from_device: 32768
            }
        );
        assert_eq!(t.for_dir(Dir::Bidirectional), 32768);
        // Sync mode pays a SHARE and an UNSHARE per buffer.
        let t = Thresholds::from_measured(&m, 2, MAX).unwrap();
        assert_eq!(t.to_device, 131072);
    }

    #[test]
    fn rounded_up_to_pages_and_clamped() {
        let m = Measured {
            sync_ns: 1_000,
            copy_ns: 20_000,
        };
        // 3276.8 bytes: one page, never less.
        let t = Thresholds::from_measured(&m, 1, MAX).unwrap();
        assert_eq!(t, Thresholds::fixed(PAGE_SIZE));
        let m = Measured {
            sync_ns: 10_000,
            copy_ns: 20_000,
        };
        // 32768 and 16384 exactly; 5000 ns more rounds up a page.
        assert_eq!(
            Thresholds::from_measured(&m, 1, MAX).unwrap().to_device,
            32768
        );
        let m = Measured {
            sync_ns: 10_100,
            copy_ns: 20_000,
        };
        assert_eq!(
            Thresholds::from_measured(&m, 1, MAX).unwrap().to_device,
            36864
        );
        // A slow SYNC never routes past the largest mapping.
        let m = Measured {
            sync_ns: u64::MAX,
            copy_ns: 1,
        };
        assert_eq!(
            Thresholds::from_measured(&m, 2, MAX).unwrap(),
            Thresholds::fixed(MAX)
        );
    }

    #[test]
    fn unusable_figures() {
        let m = Measured {
            sync_ns: 5,
            copy_ns: 0,
        };
        assert_eq!(Thresholds::from_measured(&m, 1, MAX), None);
    }

    #[test]
    fn median_of_samples() {
        assert_eq!(median(&mut [5, 1, 9, 3, 7]), 5);
        assert_eq!(median(&mut [2, 1]), 2);
        assert_eq!(median(&mut []), 0);
    }
}
