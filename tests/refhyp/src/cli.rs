// SPDX-License-Identifier: GPL-2.0-only
//! Command line of the reference hypervisor.
//!
//! Hand-parsed on purpose: the option set is small and fixed, and the
//! program must build quickly next to a kernel build.

use std::path::PathBuf;
use std::time::Duration;

/// Everything the command line can set.
#[derive(Debug, Clone)]
pub struct Options {
    /// File behind QEMU's `memory-backend-file,share=on`; created here.
    pub ram_file: PathBuf,
    pub ram_size: u64,
    pub ivshmem_socket: PathBuf,
    /// Size of the ivshmem shared region (BAR2); a power of two.
    pub ivshmem_size: u64,
    /// Number of doorbell vectors QEMU's `ivshmem-doorbell` is given.
    pub ivshmem_vectors: u16,
    pub blk_socket: Option<PathBuf>,
    pub blk_image: Option<PathBuf>,
    pub blk_queues: u16,
    /// vhost-user sockets of the other backends, each optional.
    pub net_socket: Option<PathBuf>,
    pub vsock_socket: Option<PathBuf>,
    /// The guest's CID, in the vsock device's config space.
    pub vsock_cid: u64,
    pub rng_socket: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Where the console's output goes (with `--console-socket`).
    pub console_out: Option<PathBuf>,
    pub adversarial: bool,
    /// Model a host whose cached translations outlive a drain's
    /// reductions until the next invalidation.
    pub stale_tlb: bool,
    pub fail_syncs: u64,
    pub fail_unshares: u64,
    pub busy_syncs: u64,
    pub busy_unshares: u64,
    pub lie_syncs: u64,
    pub partial_unshare: Option<u64>,
    pub drain_delay: Duration,
    /// Sleep between checking a device payload access and copying it.
    pub copy_delay: Duration,
    pub counters: Option<PathBuf>,
    /// Serve the device without checking the host view (a negative control).
    pub enforce: bool,
    /// Keep the RAM file on exit (by default it is deleted).
    pub keep_ram_file: bool,
    /// Raise the guest's vector after serving the mailbox. Off by default:
    /// the guest polls `done_seq` and never enables the vector, so the
    /// interrupt only cost an eventfd write and a wake-up of QEMU per call.
    pub completion_irq: bool,
    /// After serving a doorbell, keep looking for calls this long before
    /// waiting for the next doorbell (0: never poll).
    pub poll: Duration,
}

pub const USAGE: &str = "\
usage: pviommu-refhyp --ram-file PATH --ram-size SIZE --ivshmem-socket PATH
                      [--ivshmem-size SIZE] [--ivshmem-vectors N]
                      [--blk-socket PATH --blk-image FILE] [--blk-queues N]
                      [--net-socket PATH] [--vsock-socket PATH] [--vsock-cid N]
                      [--rng-socket PATH] [--console-socket PATH --console-out FILE]
                      [--adversarial] [--stale-tlb]
                      [--fail-syncs N] [--fail-unshares N]
                      [--busy-syncs N] [--busy-unshares N] [--lie-syncs N]
                      [--partial-unshare PAGES] [--drain-delay-ms N]
                      [--copy-delay-ms N]
                      [--counters PATH] [--no-enforce] [--keep-ram-file] [--completion-irq]
                      [--poll-us N]
SIZE takes a K, M or G suffix (powers of 1024).
Prints READY on stdout once QEMU may start. SIGUSR1 writes the counters,
SIGTERM and SIGINT write them and exit.";

/// Parses `512M`, `64K`, `1G` or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("bad size '{s}'"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size '{s}' overflows"))
}

fn parse_num(opt: &str, s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("{opt}: bad number '{s}'"))
}

impl Options {
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
        let mut ram_file = None;
        let mut ram_size = None;
        let mut ivshmem_socket = None;
        let mut o = Options {
            ram_file: PathBuf::new(),
            ram_size: 0,
            ivshmem_socket: PathBuf::new(),
            ivshmem_size: 64 << 10,
            ivshmem_vectors: 1,
            blk_socket: None,
            blk_image: None,
            blk_queues: 1,
            net_socket: None,
            vsock_socket: None,
            vsock_cid: 3,
            rng_socket: None,
            console_socket: None,
            console_out: None,
            adversarial: false,
            stale_tlb: false,
            fail_syncs: 0,
            fail_unshares: 0,
            busy_syncs: 0,
            busy_unshares: 0,
            lie_syncs: 0,
            partial_unshare: None,
            drain_delay: Duration::ZERO,
            copy_delay: Duration::ZERO,
            counters: None,
            enforce: true,
            keep_ram_file: false,
            completion_irq: false,
            poll: Duration::ZERO,
        };
        let mut it = args.into_iter();
        while let Some(opt) = it.next() {
            // Flags first; everything else takes one value.
            match opt.as_str() {
                "--adversarial" => o.adversarial = true,
                "--stale-tlb" => o.stale_tlb = true,
                "--no-enforce" => o.enforce = false,
                "--keep-ram-file" => o.keep_ram_file = true,
                "--completion-irq" => o.completion_irq = true,
                "-h" | "--help" => return Err(USAGE.to_string()),
                _ => {
                    let val = it
                        .next()
                        .ok_or_else(|| format!("{opt} needs a value\n{USAGE}"))?;
                    match opt.as_str() {
                        "--ram-file" => ram_file = Some(PathBuf::from(val)),
                        "--ram-size" => ram_size = Some(parse_size(&val)?),
                        "--ivshmem-socket" => ivshmem_socket = Some(PathBuf::from(val)),
                        "--ivshmem-size" => o.ivshmem_size = parse_size(&val)?,
                        "--ivshmem-vectors" => {
                            o.ivshmem_vectors = parse_num(&opt, &val)?
                                .try_into()
                                .map_err(|_| format!("{opt}: too many vectors"))?
                        }
                        "--blk-socket" => o.blk_socket = Some(PathBuf::from(val)),
                        "--blk-image" => o.blk_image = Some(PathBuf::from(val)),
                        "--blk-queues" => {
                            o.blk_queues = parse_num(&opt, &val)?
                                .try_into()
                                .map_err(|_| format!("{opt}: too many queues"))?
                        }
                        "--net-socket" => o.net_socket = Some(PathBuf::from(val)),
                        "--vsock-socket" => o.vsock_socket = Some(PathBuf::from(val)),
                        "--vsock-cid" => o.vsock_cid = parse_num(&opt, &val)?,
                        "--rng-socket" => o.rng_socket = Some(PathBuf::from(val)),
                        "--console-socket" => o.console_socket = Some(PathBuf::from(val)),
                        "--console-out" => o.console_out = Some(PathBuf::from(val)),
                        "--fail-syncs" => o.fail_syncs = parse_num(&opt, &val)?,
                        "--fail-unshares" => o.fail_unshares = parse_num(&opt, &val)?,
                        "--busy-syncs" => o.busy_syncs = parse_num(&opt, &val)?,
                        "--busy-unshares" => o.busy_unshares = parse_num(&opt, &val)?,
                        "--lie-syncs" => o.lie_syncs = parse_num(&opt, &val)?,
                        "--partial-unshare" => o.partial_unshare = Some(parse_num(&opt, &val)?),
                        "--drain-delay-ms" => {
                            o.drain_delay = Duration::from_millis(parse_num(&opt, &val)?)
                        }
                        "--copy-delay-ms" => {
                            o.copy_delay = Duration::from_millis(parse_num(&opt, &val)?)
                        }
                        "--counters" => o.counters = Some(PathBuf::from(val)),
                        "--poll-us" => o.poll = Duration::from_micros(parse_num(&opt, &val)?),
                        _ => return Err(format!("unknown option {opt}\n{USAGE}")),
                    }
                }
            }
        }
        o.ram_file = ram_file.ok_or_else(|| format!("--ram-file is required\n{USAGE}"))?;
        o.ram_size = ram_size.ok_or_else(|| format!("--ram-size is required\n{USAGE}"))?;
        o.ivshmem_socket =
            ivshmem_socket.ok_or_else(|| format!("--ivshmem-socket is required\n{USAGE}"))?;
        if o.ram_size == 0 || o.ram_size % 4096 != 0 {
            return Err("--ram-size must be a non-zero multiple of 4 KiB".into());
        }
        if !o.ivshmem_size.is_power_of_two() || o.ivshmem_size < 8192 {
            return Err("--ivshmem-size must be a power of two, at least 8K".into());
        }
        if o.ivshmem_vectors == 0 || o.blk_queues == 0 {
            return Err("--ivshmem-vectors and --blk-queues must be at least 1".into());
        }
        if o.blk_socket.is_some() != o.blk_image.is_some() {
            return Err("--blk-socket and --blk-image go together".into());
        }
        if o.console_socket.is_some() != o.console_out.is_some() {
            return Err("--console-socket and --console-out go together".into());
        }
        // 0, 1 and 2 are the hypervisor, local and host addresses;
        // u32::MAX is VMADDR_CID_ANY, and CIDs above it are reserved.
        if !(3..u64::from(u32::MAX)).contains(&o.vsock_cid) {
            return Err("--vsock-cid must be at least 3 and below 2^32 - 1".into());
        }
        if o.partial_unshare == Some(0) {
            return Err("--partial-unshare must be at least 1 page".into());
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn full_command_line() {
        let o = Options::parse(args(
            "--ram-file /dev/shm/r --ram-size 512M --ivshmem-socket /tmp/i \
             --blk-socket /tmp/b --blk-image /tmp/img --adversarial --stale-tlb --fail-syncs 2 \
             --partial-unshare 3 --drain-delay-ms 5 --copy-delay-ms 7 --counters /tmp/c \
             --no-enforce",
        ))
        .unwrap();
        assert_eq!(o.ram_size, 512 << 20);
        assert!(o.adversarial && o.stale_tlb && !o.enforce);
        assert_eq!((o.fail_syncs, o.partial_unshare), (2, Some(3)));
        assert_eq!(o.drain_delay, Duration::from_millis(5));
        assert_eq!(o.vsock_cid, 3);
        assert_eq!(o.copy_delay, Duration::from_millis(7));
    }

    #[test]
    fn device_sockets() {
        let o = Options::parse(args(
            "--ram-file f --ram-size 1M --ivshmem-socket s --net-socket n \
             --vsock-socket v --vsock-cid 7 --rng-socket r --console-socket c \
             --console-out o",
        ))
        .unwrap();
        assert_eq!(o.net_socket, Some(PathBuf::from("n")));
        assert_eq!(o.vsock_cid, 7);
        assert_eq!(o.console_out, Some(PathBuf::from("o")));
        let base = "--ram-file f --ram-size 1M --ivshmem-socket s";
        assert!(Options::parse(args(&format!("{base} --console-socket c"))).is_err());
        assert!(Options::parse(args(&format!("{base} --vsock-cid 2"))).is_err());
        assert!(Options::parse(args(&format!("{base} --vsock-cid 4294967295"))).is_err());
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(Options::parse(args("--ram-size 1M --ivshmem-socket s")).is_err());
        assert!(Options::parse(args(
            "--ram-file f --ram-size 1M --ivshmem-socket s --ivshmem-size 48K"
        ))
        .is_err());
        assert!(Options::parse(args(
            "--ram-file f --ram-size 1M --ivshmem-socket s --blk-socket b"
        ))
        .is_err());
        assert!(Options::parse(args(
            "--ram-file f --ram-size 1M --ivshmem-socket s --bogus 1"
        ))
        .is_err());
        assert!(Options::parse(args("--ram-file f --ram-size 1M --ivshmem-socket")).is_err());
    }
}
