// SPDX-License-Identifier: GPL-2.0
//! The guest's physical memory map (a subset of QEMU's `virt` machine)
//! and where the boot images go in RAM.

pub const GIC_DIST_BASE: u64 = 0x0800_0000;
pub const GIC_DIST_SIZE: u64 = 0x1_0000;
pub const GIC_REDIST_BASE: u64 = 0x080a_0000;
/// Per vCPU: RD_base and SGI_base frames.
pub const GIC_REDIST_STRIDE: u64 = 0x2_0000;
pub const UART_BASE: u64 = 0x0900_0000;
pub const VIRTIO_BASE: u64 = 0x0a00_0000;
pub const RAM_BASE: u64 = 0x4000_0000;

/// SPI numbers (GIC INTID - 32).
pub const UART_SPI: u32 = 1;
pub const VIRTIO_SPI: u32 = 16;
/// SPIs the in-kernel GIC is sized for (plus the 32 private ones).
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub const GIC_NR_IRQS: u32 = 128;

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

fn align_down(v: u64, a: u64) -> u64 {
    v & !(a - 1)
}
fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

/// Where the kernel, initrd, DTB and the restricted DMA pool live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub ram_base: u64,
    pub ram_size: u64,
    /// 2 MiB aligned base the Image is loaded at (plus its text_offset).
    pub kernel_base: u64,
    pub initrd: Option<(u64, u64)>,
    pub dtb: (u64, u64),
    pub pool: Option<(u64, u64)>,
}

impl Layout {
    /// Top of RAM down: DTB (its own 2 MiB), the pool (2 MiB aligned),
    /// then the initrd (page aligned). `kernel_size` is the Image's
    /// effective size (header `image_size`, BSS included).
    pub fn new(
        ram_size: u64,
        kernel_size: u64,
        initrd_size: Option<u64>,
        pool_size: Option<u64>,
        dtb_max: u64,
    ) -> Result<Layout, String> {
        if ram_size < 32 * MIB || ram_size % (2 * MIB) != 0 {
            return Err(format!(
                "RAM size {ram_size:#x} must be a multiple of 2 MiB, at least 32 MiB"
            ));
        }
        let top = RAM_BASE + ram_size;
        if dtb_max > 2 * MIB {
            return Err("device tree larger than 2 MiB".into());
        }
        let dtb = (top - 2 * MIB, dtb_max);
        let mut floor = dtb.0;
        let pool = match pool_size {
            Some(s) if s > 0 => {
                let s = align_up(s, 2 * MIB);
                let base = align_down(floor.checked_sub(s).ok_or("pool too large")?, 2 * MIB);
                floor = base;
                Some((base, s))
            }
            _ => None,
        };
        let initrd = match initrd_size {
            Some(s) => {
                let base = align_down(floor.checked_sub(s).ok_or("initrd too large")?, PAGE);
                floor = base;
                Some((base, s))
            }
            None => None,
        };
        let kernel_base = RAM_BASE;
        // Leave the kernel room for its early page tables and the like.
        let kernel_end = kernel_base + align_up(kernel_size, 2 * MIB) + 2 * MIB;
        if floor < kernel_end {
            return Err(format!(
                "{} MiB of RAM is too small for a {} KiB kernel, the initrd and the pool",
                ram_size >> 20,
                kernel_size >> 10
            ));
        }
        Ok(Layout {
            ram_base: RAM_BASE,
            ram_size,
            kernel_base,
            initrd,
            dtb,
            pool,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_everything_below_the_top() {
        let l = Layout::new(
            256 * MIB,
            20 * MIB,
            Some(3 * MIB + 5),
            Some(16 * MIB),
            0x10000,
        )
        .unwrap();
        assert_eq!(l.dtb.0, RAM_BASE + 254 * MIB);
        assert_eq!(l.pool, Some((RAM_BASE + 238 * MIB, 16 * MIB)));
        let (ib, is) = l.initrd.unwrap();
        assert_eq!(is, 3 * MIB + 5);
        assert!(ib % PAGE == 0 && ib + is <= RAM_BASE + 238 * MIB);
        assert_eq!(l.kernel_base % (2 * MIB), 0);
    }

    #[test]
    fn rejects_what_does_not_fit() {
        assert!(Layout::new(32 * MIB, 30 * MIB, None, None, 4096).is_err());
        assert!(Layout::new(33 * MIB, 1, None, None, 4096).is_err());
        assert!(Layout::new(64 * MIB, 1, None, Some(128 * MIB), 4096).is_err());
        assert!(Layout::new(64 * MIB, 1, None, None, 4 * MIB).is_err());
        let l = Layout::new(64 * MIB, MIB, None, Some(0), 4096).unwrap();
        assert_eq!(l.pool, None);
    }
}
