// SPDX-License-Identifier: GPL-2.0

//! Finding the hypervisor's pviommu service: the ivshmem mailbox device on
//! x86 (the test harness), SMCCC `HVC`s to pKVM on arm64. Each path checks
//! `VERSION` and hands over to `init::bring_up()`.

use kernel::prelude::*;

use crate::init::bring_up;
#[cfg(CONFIG_X86_64)]
use crate::init::{driver, Pviommu};

/// Finds the service and brings the pviommu up, or says why not.
#[cfg(CONFIG_X86_64)]
pub(crate) fn find_hypervisor() {
    use crate::ffi::pci;
    if let Err(e) = pci::register::<Pviommu>() {
        pr_err!("cannot register the PCI driver: {:?}\n", e);
    }
    if driver().is_none() {
        if crate::init::required() {
            pr_err!(
                "no working pviommu device: virtio devices will be refused (pviommu.required=1)\n"
            );
        } else {
            pr_warn!(
                "no working pviommu device: virtio DMA is NOT protected (pviommu.required=0)\n"
            );
        }
    }
}

#[cfg(CONFIG_X86_64)]
impl crate::ffi::pci::MailboxDriver for Pviommu {
    fn probe(dev: crate::ffi::pci::MailboxDevice) -> Result {
        use crate::hyp_abi::call::{Func, ABI_MAJOR};
        use crate::hyp_abi::check::check_version;
        use crate::logic::mailbox::Mailbox;
        use kernel::error::code::{EIO, ENODEV};
        use kernel::interrupt::local_interrupt_disable;

        let name = dev.name;
        let p = crate::ffi::params::read();
        let mailbox =
            Mailbox::new(dev.region, p.timeout_ms * 1_000_000, dev.platform).map_err(|e| {
                pr_err!(
                    "{:?}: declined: not a pviommu ABI {} mailbox ({:?})\n",
                    name,
                    ABI_MAJOR,
                    e
                );
                ENODEV
            })?;
        let version = {
            let _irq = local_interrupt_disable();
            mailbox.call(Func::Version, [0; 6])
        };
        let version = version
            .map_err(|e| {
                pr_err!("{:?}: VERSION: no answer ({:?})\n", name, e);
                EIO
            })
            .and_then(|r| {
                check_version(r.status, &r.ret).map_err(|e| {
                    pr_err!(
                        "{:?}: VERSION: refused or malformed answer ({:?})\n",
                        name,
                        e
                    );
                    ENODEV
                })
            })?;
        bring_up(name, mailbox, version)
    }
}

/// Finds the service and brings the pviommu up, or says why not.
///
/// Without the service the pviommu stays inactive and virtio devices keep
/// the platform's DMA path, unless `pviommu.required=1`: under pKVM guest
/// memory is private by default, so that path (pKVM's `MEM_SHARE` of a
/// restricted DMA pool, bounced through) is safe, only slower.
#[cfg(CONFIG_ARM64)]
pub(crate) fn find_hypervisor() {
    use crate::ffi::smccc::{kvm_guest, pkvm_granule, pkvm_guest, KernelConduit};
    use crate::hyp_abi::call::ABI_MAJOR;
    use crate::hyp_abi::layout::PAGE_SIZE;
    use crate::logic::smccc::{discover, Discovery, Smccc};

    let name = c"smccc";
    let fallback = if pkvm_guest() {
        "pKVM's shared bounce pool"
    } else {
        "the platform's DMA path"
    };
    let absent = |why: &str| {
        if crate::init::required() {
            pr_err!(
                "{}: virtio devices will be refused (pviommu.required=1)\n",
                why
            );
        } else {
            pr_info!("{}: virtio devices use {}\n", why, fallback);
        }
    };
    if !kvm_guest() {
        absent("not a KVM guest (no KVM vendor-hyp UID)");
        return;
    }
    if pkvm_guest() {
        // The table has one entry per 4 KiB frame: a hypervisor that
        // shares in larger granules could not honour it page by page.
        match pkvm_granule() {
            Some(g) if g == PAGE_SIZE => {}
            g => {
                pr_err!(
                    "pKVM's sharing granule is {:?}, not {} bytes: the pviommu is not used\n",
                    g,
                    PAGE_SIZE
                );
                absent("unsupported granule");
                return;
            }
        }
    }
    let smccc = Smccc::new(KernelConduit);
    match discover(&smccc) {
        Discovery::Present(version) => {
            if let Err(e) = bring_up(name, smccc, version) {
                pr_err!("cannot bring the pviommu up ({:?})\n", e);
                absent("the pviommu failed to initialise");
            }
        }
        Discovery::Absent => absent("the hypervisor has no pviommu service"),
        Discovery::Refused(status) => {
            pr_err!(
                "the hypervisor's VERSION answer (status {}) is not pviommu ABI {}: declined\n",
                status,
                ABI_MAJOR
            );
            absent("no usable pviommu service");
        }
    }
}
