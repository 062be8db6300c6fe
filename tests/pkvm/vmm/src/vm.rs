// SPDX-License-Identifier: GPL-2.0
//! Creating the (protected) VM: KVM_CREATE_VM, RAM, vCPUs, the in-kernel
//! GICv3, and the boot images in RAM.
//!
//! Boot loading is the one place the VMM writes guest RAM through its own
//! mapping: it happens before any vCPU has run, while every page is still
//! the host's. Once the guest runs, devices reach RAM only through
//! `guest_access`.

use crate::layout::*;
use kvm_bindings::*;
use kvm_ioctls::{DeviceFd, Kvm, VcpuFd, VmFd};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// `KVM_VM_TYPE_ARM_PROTECTED` (include/uapi/linux/kvm.h, Linux 7.3).
pub const KVM_VM_TYPE_ARM_PROTECTED: u64 = 1 << 31;

pub struct Vm {
    pub fd: VmFd,
    pub vcpus: Vec<VcpuFd>,
    pub mem: GuestMemoryMmap,
    /// Keeps the GIC alive.
    _gic: DeviceFd,
}

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// The arm64 Image header's text_offset and image_size (effective size).
pub fn image_header(kernel: &mut File) -> Result<(u64, u64), String> {
    let mut h = [0u8; 64];
    ctx(kernel.seek(SeekFrom::Start(0)), "kernel image")?;
    ctx(
        kernel.read_exact(&mut h),
        "kernel image: reading the header",
    )?;
    if h[56..60] != *b"ARM\x64" {
        return Err("kernel image: not an arm64 Image (no ARM\\x64 magic at offset 56)".into());
    }
    let text_offset = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
    let image_size = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
    Ok((text_offset, image_size))
}

impl Vm {
    pub fn create(kvm: &Kvm, protected: bool, ram_size: u64, cpus: u32) -> Result<Vm, String> {
        // IPA size 0: KVM's default (40 bits), enough for this map.
        let ty = if protected {
            KVM_VM_TYPE_ARM_PROTECTED
        } else {
            0
        };
        let fd = kvm.create_vm_with_type(ty).map_err(|e| {
            if protected {
                format!(
                    "KVM_CREATE_VM(KVM_VM_TYPE_ARM_PROTECTED): {e} (is the host booted with kvm-arm.mode=protected?)"
                )
            } else {
                format!("KVM_CREATE_VM: {e}")
            }
        })?;

        let mem = ctx(
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(RAM_BASE), ram_size as usize)]),
            "allocating guest RAM",
        )?;
        for (slot, region) in mem.iter().enumerate() {
            let host = ctx(
                mem.get_host_address(region.start_addr()),
                "guest RAM address",
            )?;
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region stays mapped for the VM's lifetime (owned by `mem`).
            ctx(
                unsafe { fd.set_user_memory_region(r) },
                "KVM_SET_USER_MEMORY_REGION",
            )?;
        }

        let mut kvi = kvm_vcpu_init::default();
        ctx(
            fd.get_preferred_target(&mut kvi),
            "KVM_ARM_PREFERRED_TARGET",
        )?;
        let mut vcpus = Vec::new();
        for id in 0..cpus {
            let vcpu = ctx(
                fd.create_vcpu(u64::from(id)),
                &format!("KVM_CREATE_VCPU {id}"),
            )?;
            let mut init = kvi;
            init.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
            if id > 0 {
                init.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
            }
            ctx(vcpu.vcpu_init(&init), &format!("KVM_ARM_VCPU_INIT {id}"))?;
            vcpus.push(vcpu);
        }

        let gic = create_gic(&fd, cpus)?;
        Ok(Vm {
            fd,
            vcpus,
            mem,
            _gic: gic,
        })
    }

    pub fn host_address(&self) -> Result<usize, String> {
        Ok(ctx(
            self.mem.get_host_address(GuestAddress(RAM_BASE)),
            "guest RAM address",
        )? as usize)
    }

    pub fn load_kernel(&self, kernel: &mut File, base: u64) -> Result<u64, String> {
        use linux_loader::loader::{pe::PE, KernelLoader};
        let r = ctx(
            PE::load(&self.mem, Some(GuestAddress(base)), kernel, None),
            "loading the kernel Image",
        )?;
        Ok(r.kernel_load.0)
    }

    pub fn write_blob(&self, gpa: u64, data: &[u8], what: &str) -> Result<(), String> {
        ctx(
            self.mem.write_slice(data, GuestAddress(gpa)),
            &format!("writing the {what} to guest RAM"),
        )
    }

    /// The boot vCPU starts at the kernel with x0 = DTB (arm64 booting.rst).
    pub fn set_boot_regs(&self, entry: u64, dtb: u64) -> Result<(), String> {
        let vcpu = self.vcpus.first().ok_or("no vCPU")?;
        let core = |off: usize| {
            KVM_REG_ARM64 | KVM_REG_SIZE_U64 | u64::from(KVM_REG_ARM_CORE) | (off / 4) as u64
        };
        // struct kvm_regs { struct user_pt_regs { regs[31], sp, pc, pstate } ... }
        let (x0, pc, pstate) = (core(0), core(32 * 8), core(33 * 8));
        let ps = u64::from(PSR_MODE_EL1h | PSR_A_BIT | PSR_I_BIT | PSR_F_BIT | PSR_D_BIT);
        ctx(
            vcpu.set_one_reg(pstate, &ps.to_le_bytes()),
            "KVM_SET_ONE_REG pstate",
        )?;
        ctx(
            vcpu.set_one_reg(pc, &entry.to_le_bytes()),
            "KVM_SET_ONE_REG pc",
        )?;
        ctx(
            vcpu.set_one_reg(x0, &dtb.to_le_bytes()),
            "KVM_SET_ONE_REG x0",
        )?;
        Ok(())
    }
}

fn set_attr(dev: &DeviceFd, group: u32, attr: u64, addr: u64, what: &str) -> Result<(), String> {
    let a = kvm_device_attr {
        flags: 0,
        group,
        attr,
        addr,
    };
    ctx(dev.set_device_attr(&a), what)
}

fn create_gic(vm: &VmFd, cpus: u32) -> Result<DeviceFd, String> {
    let mut d = kvm_create_device {
        type_: kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
        fd: 0,
        flags: 0,
    };
    let dev = ctx(vm.create_device(&mut d), "KVM_CREATE_DEVICE(VGIC_V3)")?;
    let dist = GIC_DIST_BASE;
    let redist = GIC_REDIST_BASE;
    let _ = cpus;
    set_attr(
        &dev,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        u64::from(KVM_VGIC_V3_ADDR_TYPE_DIST),
        &dist as *const u64 as u64,
        "GIC distributor address",
    )?;
    set_attr(
        &dev,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        u64::from(KVM_VGIC_V3_ADDR_TYPE_REDIST),
        &redist as *const u64 as u64,
        "GIC redistributor address",
    )?;
    let nr: u32 = GIC_NR_IRQS + 32;
    set_attr(
        &dev,
        KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
        0,
        &nr as *const u32 as u64,
        "GIC number of IRQs",
    )?;
    set_attr(
        &dev,
        KVM_DEV_ARM_VGIC_GRP_CTRL,
        u64::from(KVM_DEV_ARM_VGIC_CTRL_INIT),
        0,
        "GIC init",
    )?;
    Ok(dev)
}

/// `KVM_IRQ_LINE` encoding of SPI `spi`.
pub fn spi_irq(spi: u32) -> u32 {
    (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | (32 + spi)
}
