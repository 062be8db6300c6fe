// SPDX-License-Identifier: GPL-2.0
//! The guest's device tree.

use crate::layout::*;
use crate::uart::UART_SIZE;
use crate::virtio_mmio::MMIO_SIZE;
use vm_fdt::{Error, FdtWriter};

const PHANDLE_GIC: u32 = 1;
const PHANDLE_CLK: u32 = 2;
const PHANDLE_POOL: u32 = 3;

const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;

#[derive(Debug, Clone)]
pub struct FdtConfig {
    pub num_cpus: u32,
    pub bootargs: String,
    pub layout: Layout,
    pub virtio: bool,
}

fn reg(base: u64, size: u64) -> [u64; 2] {
    [base, size]
}

pub fn build(cfg: &FdtConfig) -> Result<Vec<u8>, Error> {
    let l = &cfg.layout;
    let mut f = FdtWriter::new()?;
    let root = f.begin_node("")?;
    f.property_string("compatible", "linux,dummy-virt")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_u32("interrupt-parent", PHANDLE_GIC)?;

    let chosen = f.begin_node("chosen")?;
    f.property_string("bootargs", &cfg.bootargs)?;
    f.property_string("stdout-path", &format!("/pl011@{UART_BASE:x}"))?;
    if let Some((base, size)) = l.initrd {
        f.property_u64("linux,initrd-start", base)?;
        f.property_u64("linux,initrd-end", base + size)?;
    }
    f.end_node(chosen)?;

    let mem = f.begin_node(&format!("memory@{:x}", l.ram_base))?;
    f.property_string("device_type", "memory")?;
    f.property_array_u64("reg", &reg(l.ram_base, l.ram_size))?;
    f.end_node(mem)?;

    if let Some((base, size)) = l.pool {
        let rm = f.begin_node("reserved-memory")?;
        f.property_u32("#address-cells", 2)?;
        f.property_u32("#size-cells", 2)?;
        f.property_null("ranges")?;
        let pool = f.begin_node(&format!("restricted-dma@{base:x}"))?;
        f.property_string("compatible", "restricted-dma-pool")?;
        f.property_array_u64("reg", &reg(base, size))?;
        f.property_phandle(PHANDLE_POOL)?;
        f.end_node(pool)?;
        f.end_node(rm)?;
    }

    let cpus = f.begin_node("cpus")?;
    f.property_u32("#address-cells", 1)?;
    f.property_u32("#size-cells", 0)?;
    for i in 0..cfg.num_cpus {
        let cpu = f.begin_node(&format!("cpu@{i:x}"))?;
        f.property_string("device_type", "cpu")?;
        f.property_string("compatible", "arm,arm-v8")?;
        if cfg.num_cpus > 1 {
            f.property_string("enable-method", "psci")?;
        }
        // KVM's MPIDR for vCPU i < 16 is Aff0 = i.
        f.property_u32("reg", i)?;
        f.end_node(cpu)?;
    }
    f.end_node(cpus)?;

    let psci = f.begin_node("psci")?;
    f.property_string_list(
        "compatible",
        vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )?;
    f.property_string("method", "hvc")?;
    f.end_node(psci)?;

    let gic = f.begin_node(&format!("intc@{GIC_DIST_BASE:x}"))?;
    f.property_string("compatible", "arm,gic-v3")?;
    f.property_u32("#interrupt-cells", 3)?;
    f.property_null("interrupt-controller")?;
    f.property_array_u64(
        "reg",
        &[
            GIC_DIST_BASE,
            GIC_DIST_SIZE,
            GIC_REDIST_BASE,
            GIC_REDIST_STRIDE * u64::from(cfg.num_cpus),
        ],
    )?;
    f.property_phandle(PHANDLE_GIC)?;
    f.end_node(gic)?;

    let timer = f.begin_node("timer")?;
    f.property_string("compatible", "arm,armv8-timer")?;
    f.property_null("always-on")?;
    let mut irqs = Vec::new();
    for ppi in [13, 14, 11, 10] {
        irqs.extend_from_slice(&[GIC_PPI, ppi, IRQ_LEVEL_HIGH]);
    }
    f.property_array_u32("interrupts", &irqs)?;
    f.end_node(timer)?;

    let clk = f.begin_node("apb-pclk")?;
    f.property_string("compatible", "fixed-clock")?;
    f.property_u32("#clock-cells", 0)?;
    f.property_u32("clock-frequency", 24_000_000)?;
    f.property_string("clock-output-names", "clk24mhz")?;
    f.property_phandle(PHANDLE_CLK)?;
    f.end_node(clk)?;

    let uart = f.begin_node(&format!("pl011@{UART_BASE:x}"))?;
    f.property_string_list(
        "compatible",
        vec!["arm,pl011".into(), "arm,primecell".into()],
    )?;
    f.property_array_u64("reg", &reg(UART_BASE, UART_SIZE))?;
    f.property_array_u32("interrupts", &[GIC_SPI, UART_SPI, IRQ_LEVEL_HIGH])?;
    f.property_array_u32("clocks", &[PHANDLE_CLK, PHANDLE_CLK])?;
    f.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
    f.end_node(uart)?;

    if cfg.virtio {
        let v = f.begin_node(&format!("virtio_mmio@{VIRTIO_BASE:x}"))?;
        f.property_string("compatible", "virtio,mmio")?;
        f.property_array_u64("reg", &reg(VIRTIO_BASE, MMIO_SIZE))?;
        f.property_array_u32("interrupts", &[GIC_SPI, VIRTIO_SPI, IRQ_LEVEL_HIGH])?;
        f.property_null("dma-coherent")?;
        if l.pool.is_some() {
            f.property_u32("memory-region", PHANDLE_POOL)?;
        }
        f.end_node(v)?;
    }

    f.end_node(root)?;
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pool: Option<u64>) -> FdtConfig {
        FdtConfig {
            num_cpus: 2,
            bootargs: "console=ttyAMA0".into(),
            layout: Layout::new(256 << 20, 16 << 20, Some(4 << 20), pool, 0x10000).unwrap(),
            virtio: true,
        }
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn builds_a_valid_blob() {
        let dtb = build(&cfg(Some(16 << 20))).unwrap();
        assert_eq!(&dtb[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
        let total = u32::from_be_bytes([dtb[4], dtb[5], dtb[6], dtb[7]]) as usize;
        assert_eq!(total, dtb.len());
        assert!(dtb.len() < 0x10000);
        for s in [
            &b"restricted-dma-pool"[..],
            b"memory-region",
            b"arm,primecell",
            b"apb_pclk",
            b"arm,gic-v3",
            b"virtio,mmio",
            b"linux,initrd-start",
            b"console=ttyAMA0",
            b"cpu@1",
        ] {
            assert!(contains(&dtb, s), "{}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn no_pool_no_memory_region() {
        let dtb = build(&cfg(None)).unwrap();
        assert!(!contains(&dtb, b"restricted-dma-pool"));
        assert!(!contains(&dtb, b"memory-region"));
    }

    /// With dtc installed, the blob decompiles cleanly.
    #[test]
    fn dtc_accepts_it_if_present() {
        let dtb = build(&cfg(Some(4 << 20))).unwrap();
        let path = std::env::temp_dir().join(format!("pkvm-vmm-{}.dtb", std::process::id()));
        std::fs::write(&path, &dtb).unwrap();
        let out = std::process::Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts"])
            .arg(&path)
            .output();
        std::fs::remove_file(&path).unwrap();
        if let Ok(out) = out {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dts = String::from_utf8_lossy(&out.stdout);
            assert!(dts.contains("memory-region = <0x03>"), "{dts}");
        }
    }
}
