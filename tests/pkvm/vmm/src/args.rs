// SPDX-License-Identifier: GPL-2.0
//! Command line.

pub const USAGE: &str = "\
usage: pkvm-vmm --kernel IMAGE [options]

  --kernel PATH           arm64 Image to boot (required)
  --initrd PATH           initramfs for the guest
  --disk PATH             file backing the virtio-blk disk (none: no disk)
  --disk-ro               refuse guest writes to the disk
  --cmdline STR           guest kernel command line
  --cpus N                vCPUs (default 2, at most 8)
  --mem MIB               guest RAM in MiB (default 256)
  --protected             create a pKVM protected VM (KVM_VM_TYPE_ARM_PROTECTED)
  --restricted-pool MIB   restricted-dma-pool for the virtio device
                          (default 16 with --protected, else 0 = none)
  --adversarial           on every queue notification, try to read guest
                          pages the guest has not shared; count denials
  --probe-pages N         pages probed per notification (default 8)
  --verbose               log every request, fault and probe to stderr
  --help                  this text

Prints the guest's console on stdout and, at the end, one line
`PKVM-VMM-STATS {json}`. Exit status: 0 when the guest powered off,
1 when it reset (reboot or panic), 2 on a crash event, 3 on a VMM error,
4 when SIGTERM/SIGINT ended a guest still running (statistics still printed).";

#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub kernel: String,
    pub initrd: Option<String>,
    pub disk: Option<String>,
    pub disk_ro: bool,
    pub cmdline: String,
    pub cpus: u32,
    pub mem_mib: u64,
    pub protected: bool,
    pub pool_mib: u64,
    pub adversarial: bool,
    pub probe_pages: u32,
    pub verbose: bool,
}

pub const DEFAULT_CMDLINE: &str = "console=ttyAMA0 earlycon=pl011,mmio32,0x9000000 panic=-1";
const DEFAULT_PROTECTED_POOL_MIB: u64 = 16;

fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse()
        .map_err(|_| format!("{flag}: '{v}' is not a number"))
}

/// `Ok(None)` for `--help`.
pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut kernel = None;
    let mut initrd = None;
    let mut disk = None;
    let mut disk_ro = false;
    let mut cmdline = None;
    let mut cpus = 2u32;
    let mut mem_mib = 256u64;
    let mut protected = false;
    let mut pool = None;
    let mut adversarial = false;
    let mut probe_pages = 8u32;
    let mut verbose = false;
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--kernel" => kernel = Some(it.next().ok_or("--kernel needs a path")?),
            "--initrd" => initrd = Some(it.next().ok_or("--initrd needs a path")?),
            "--disk" => disk = Some(it.next().ok_or("--disk needs a path")?),
            "--disk-ro" => disk_ro = true,
            "--cmdline" => cmdline = Some(it.next().ok_or("--cmdline needs a value")?),
            "--cpus" => cpus = num("--cpus", it.next())?,
            "--mem" => mem_mib = num("--mem", it.next())?,
            "--protected" => protected = true,
            "--restricted-pool" => pool = Some(num("--restricted-pool", it.next())?),
            "--adversarial" => adversarial = true,
            "--probe-pages" => probe_pages = num("--probe-pages", it.next())?,
            "--verbose" => verbose = true,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }
    let kernel = kernel.ok_or("--kernel is required (see --help)")?;
    if !(1..=8).contains(&cpus) {
        return Err(format!("--cpus {cpus}: between 1 and 8"));
    }
    let pool_mib = pool.unwrap_or(if protected {
        DEFAULT_PROTECTED_POOL_MIB
    } else {
        0
    });
    Ok(Some(Args {
        kernel,
        initrd,
        disk,
        disk_ro,
        cmdline: cmdline.unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
        cpus,
        mem_mib,
        protected,
        pool_mib,
        adversarial,
        probe_pages,
        verbose,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<Args>, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_pool_default_for_protected() {
        let a = p("--kernel K").unwrap().unwrap();
        assert_eq!(
            (a.cpus, a.mem_mib, a.pool_mib, a.protected),
            (2, 256, 0, false)
        );
        let a = p("--kernel K --protected").unwrap().unwrap();
        assert_eq!(a.pool_mib, 16);
        let a = p("--kernel K --protected --restricted-pool 0 --cpus 1 --adversarial")
            .unwrap()
            .unwrap();
        assert_eq!((a.pool_mib, a.cpus, a.adversarial), (0, 1, true));
    }

    #[test]
    fn errors_are_clear() {
        assert!(p("").unwrap_err().contains("--kernel is required"));
        assert!(p("--kernel K --cpus x")
            .unwrap_err()
            .contains("not a number"));
        assert!(p("--kernel K --cpus 9")
            .unwrap_err()
            .contains("between 1 and 8"));
        assert!(p("--kernel K --bogus")
            .unwrap_err()
            .contains("unknown argument"));
        assert!(p("--kernel").unwrap_err().contains("needs a path"));
        assert_eq!(p("--help").unwrap(), None);
    }
}
