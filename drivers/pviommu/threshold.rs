// SPDX-License-Identifier: GPL-2.0

//! The bounce threshold: measured at boot on this machine
//! (`logic/src/calibrate.rs` has the model), or fixed by
//! `pviommu.bounce_threshold=BYTES`; and
//! `/sys/kernel/debug/pviommu/bounce_threshold`, which says which and
//! what was measured.

use core::fmt;
use kernel::interrupt::local_interrupt_disable;
use kernel::prelude::*;
use kernel::time::{Instant, Monotonic};

use crate::ffi::mem::{phys_of_kvec, PhysCopier};
use crate::hyp_abi::call::{Func, NR_ARGS};
use crate::hyp_abi::check::check_status;
use crate::hyp_abi::layout::PAGE_SIZE;
use crate::init::driver;
use crate::logic::calibrate::{median, Measured, Source, Thresholds, COPY_BYTES, ROUNDS};
use crate::logic::engine::{Copier, Hypercalls};
use crate::logic::policy::Mode;

/// Times `ROUNDS` empty `SYNC`s and copies of `COPY_BYTES` bytes between
/// two private buffers, each with interrupts off; their medians. `None`
/// if a buffer cannot be had or a `SYNC` fails.
///
/// Runs after `INIT`, before any device maps: the ring is empty, so each
/// `SYNC` is the exit and the hypervisor's fixed work.
fn measure(h: &impl Hypercalls) -> Option<Measured> {
    let len = usize::try_from(COPY_BYTES).ok()?;
    let src = KVec::<u8>::from_elem(0x5a, len, GFP_KERNEL).ok()?;
    let dst = KVec::<u8>::from_elem(0, len, GFP_KERNEL).ok()?;
    let (src, dst) = (phys_of_kvec(&src), phys_of_kvec(&dst));
    let mut sync = [0u64; ROUNDS];
    let mut copy = [0u64; ROUNDS];
    for (s, c) in sync.iter_mut().zip(copy.iter_mut()) {
        let _irq = local_interrupt_disable();
        let t = Instant::<Monotonic>::now();
        let r = h.call(Func::Sync, [0; NR_ARGS]).ok()?;
        *s = t.elapsed().as_nanos() as u64;
        check_status(r.status).ok()?;
        let t = Instant::<Monotonic>::now();
        PhysCopier.copy(dst, src, COPY_BYTES);
        *c = t.elapsed().as_nanos() as u64;
    }
    Some(Measured {
        sync_ns: median(&mut sync),
        copy_ns: median(&mut copy),
    })
}

/// The thresholds for `mode`: `fixed` bytes if non-zero, otherwise
/// measured (never above `max`, the largest mapping). Says what it chose
/// in the kernel log.
pub(crate) fn choose(
    h: &impl Hypercalls,
    mode: Mode,
    strict: bool,
    fixed: u64,
    max: u64,
) -> (Thresholds, Source) {
    let chosen = if fixed != 0 {
        (Thresholds::fixed(fixed), Source::Fixed)
    } else if mode == Mode::Bounce || !strict {
        // Everything bounces anyway, or no SYNC is paid per buffer.
        (Thresholds::fixed(PAGE_SIZE), Source::Fallback)
    } else {
        // Sync mode pays a SHARE and an UNSHARE per buffer.
        let calls = if mode == Mode::Sync { 2 } else { 1 };
        match measure(h).and_then(|m| Some((Thresholds::from_measured(&m, calls, max)?, m))) {
            Some((t, m)) => (t, Source::Measured(m)),
            None => {
                pr_warn!("bounce threshold: measurement failed; one page in both directions\n");
                (Thresholds::fixed(PAGE_SIZE), Source::Fallback)
            }
        }
    };
    let (t, source) = chosen;
    match source {
        Source::Measured(m) => pr_info!(
            "bounce threshold: {} KiB to the device, {} KiB from it (measured: SYNC {} ns, {} KiB copied in {} ns; pviommu.bounce_threshold=BYTES fixes it)\n",
            t.to_device / 1024,
            t.from_device / 1024,
            m.sync_ns,
            COPY_BYTES / 1024,
            m.copy_ns
        ),
        Source::Fixed => pr_info!(
            "bounce threshold: {} bytes (pviommu.bounce_threshold)\n",
            t.to_device
        ),
        Source::Fallback => pr_info!(
            "bounce threshold: one page (nothing to measure in this mode)\n"
        ),
    }
    chosen
}

/// The file's (empty) data.
pub(crate) static FILE: () = ();

/// Reads `bounce_threshold`.
pub(crate) fn show(_: &&'static (), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Some(d) = driver() else {
        return writeln!(f, "# bounce_threshold: the pviommu is not active");
    };
    let t = d.engine.config().bounce_threshold;
    writeln!(f, "to_device {}", t.to_device)?;
    writeln!(f, "from_device {}", t.from_device)?;
    match d.threshold_source {
        Source::Measured(m) => {
            writeln!(f, "source measured")?;
            writeln!(f, "sync_ns {}", m.sync_ns)?;
            writeln!(f, "copy_ns {}", m.copy_ns)?;
            writeln!(f, "copy_bytes {}", COPY_BYTES)?;
            writeln!(f, "rounds {}", ROUNDS)
        }
        Source::Fixed => writeln!(f, "source fixed"),
        Source::Fallback => writeln!(f, "source default"),
    }
}
