// SPDX-License-Identifier: GPL-2.0
//! pkvm-vmm: a small VMM that launches a pKVM protected VM on arm64, with
//! a PL011 console and one virtio-mmio block device whose every access to
//! guest memory may fail (and is counted) instead of crashing the VMM.

// Off arm64 only the unit tests use the device models.
#![cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]

mod adversary;
mod args;
mod devices;
mod fdt;
mod guest_access;
mod layout;
mod stats;
mod uart;
#[cfg(target_arch = "aarch64")]
mod vcpu;
mod virtio_blk;
mod virtio_mmio;
mod virtqueue;
#[cfg(target_arch = "aarch64")]
mod vm;

use std::process::ExitCode;

/// Exit status for VMM errors (set-up failures, KVM_RUN errors).
const EXIT_VMM_ERROR: u8 = 3;
/// Exit status when SIGTERM/SIGINT stopped a guest that was still running.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
const EXIT_SIGNAL: u8 = 4;

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("pkvm-vmm: {e}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    run(args)
}

#[cfg(not(target_arch = "aarch64"))]
fn run(_args: args::Args) -> ExitCode {
    eprintln!(
        "pkvm-vmm: runs on arm64 KVM hosts only (build with --target aarch64-unknown-linux-musl)"
    );
    ExitCode::from(EXIT_VMM_ERROR)
}

#[cfg(target_arch = "aarch64")]
fn run(args: args::Args) -> ExitCode {
    match boot(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pkvm-vmm: error: {e}");
            ExitCode::from(EXIT_VMM_ERROR)
        }
    }
}

#[cfg(target_arch = "aarch64")]
fn boot(args: &args::Args) -> Result<u8, String> {
    use guest_access::PipeAccess;
    use std::io::Write;
    use std::sync::{mpsc, Arc};
    use std::time::Instant;
    use vcpu::Stop;

    let start = Instant::now();
    stats::set_verbose(args.verbose);
    let open = |p: &str, what: &str| std::fs::File::open(p).map_err(|e| format!("{what} {p}: {e}"));
    let mut kernel = open(&args.kernel, "kernel")?;
    let (_text_offset, image_size) = vm::image_header(&mut kernel)?;
    let kernel_len = kernel
        .metadata()
        .map_err(|e| format!("kernel {}: {e}", args.kernel))?
        .len();
    let initrd = match &args.initrd {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("initrd {p}: {e}"))?),
        None => None,
    };
    let disk = match &args.disk {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(!args.disk_ro)
                .open(p)
                .map_err(|e| format!("disk {p}: {e}"))?;
            let d = virtio_blk::BlockDevice::new(f, args.disk_ro)
                .map_err(|e| format!("disk {p}: {e}"))?;
            if d.capacity_sectors == 0 {
                return Err(format!("disk {p}: smaller than one sector"));
            }
            Some(d)
        }
        None => None,
    };

    const DTB_MAX: u64 = 0x1_0000;
    let ram_size = args.mem_mib << 20;
    let layout = layout::Layout::new(
        ram_size,
        image_size.max(kernel_len),
        initrd.as_ref().map(|i| i.len() as u64),
        Some(args.pool_mib << 20),
        DTB_MAX,
    )?;
    let dtb = fdt::build(&fdt::FdtConfig {
        num_cpus: args.cpus,
        bootargs: args.cmdline.clone(),
        layout: layout.clone(),
        virtio: disk.is_some(),
    })
    .map_err(|e| format!("building the device tree: {e:?}"))?;
    if dtb.len() as u64 > DTB_MAX {
        return Err(format!(
            "device tree of {} bytes exceeds {DTB_MAX}",
            dtb.len()
        ));
    }

    let kvm = kvm_ioctls::Kvm::new().map_err(|e| format!("/dev/kvm: {e}"))?;
    let vm = vm::Vm::create(&kvm, args.protected, ram_size, args.cpus)?;
    let entry = vm.load_kernel(&mut kernel, layout.kernel_base)?;
    if let (Some((base, _)), Some(data)) = (layout.initrd, &initrd) {
        vm.write_blob(base, data, "initrd")?;
    }
    vm.write_blob(layout.dtb.0, &dtb, "device tree")?;
    vm.set_boot_regs(entry, layout.dtb.0)?;

    let mem = Arc::new(
        PipeAccess::new(layout.ram_base, vm.host_address()?, ram_size)
            .map_err(|e| format!("guest-memory pipe: {e}"))?,
    );
    let adversary = if args.adversarial {
        let mut private = vec![(layout.dtb.0, dtb.len() as u64)];
        if let Some(r) = layout.initrd {
            private.push(r);
        }
        let shared: Vec<(u64, u64)> = layout.pool.into_iter().collect();
        let adv = adversary::Adversary::new(&private, &shared, args.probe_pages);
        eprintln!(
            "pkvm-vmm: adversarial: {} private pages to probe, {} per notification",
            adv.targets(),
            args.probe_pages
        );
        Some(adv)
    } else {
        None
    };

    let vm_fd = Arc::new(vm.fd);
    let irq_fd = vm_fd.clone();
    let irq_errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let irq_err2 = irq_errors.clone();
    let irq: devices::IrqLine = Box::new(move |spi, level| {
        if irq_fd.set_irq_line(vm::spi_irq(spi), level).is_err() {
            irq_err2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let devs = Arc::new(devices::Devices::new(
        mem.clone(),
        disk,
        adversary,
        irq,
        Box::new(std::io::stdout()),
    ));
    eprintln!(
        "pkvm-vmm: {} VM, {} vCPUs, {} MiB RAM, restricted pool {} MiB, disk {}; set-up {:.3} s",
        if args.protected {
            "protected"
        } else {
            "normal"
        },
        args.cpus,
        args.mem_mib,
        layout.pool.map_or(0, |p| p.1 >> 20),
        args.disk.as_deref().unwrap_or("none"),
        start.elapsed().as_secs_f64()
    );

    let (tx, rx) = mpsc::channel();
    // SIGTERM/SIGINT (the host's `timeout`, a ^C) end the run like a
    // guest stop, so that the statistics still come out: block them in
    // every thread and take them in one that only waits for them.
    // SAFETY: plain signal-mask calls on a local set.
    let sigs = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut sig = 0;
                // SAFETY: waits on the set blocked above.
                if unsafe { libc::sigwait(&sigs, &mut sig) } == 0 {
                    let _ = tx.send(Stop::Signal(sig));
                }
            })
            .map_err(|e| format!("starting the signal thread: {e}"))?;
    }
    for (id, vcpu) in vm.vcpus.into_iter().enumerate() {
        let tx = tx.clone();
        let devs = devs.clone();
        std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                let stop = vcpu::run(id as u32, vcpu, devs);
                let _ = tx.send(stop);
            })
            .map_err(|e| format!("starting vCPU thread {id}: {e}"))?;
    }
    drop(tx);
    let stop = rx
        .recv()
        .unwrap_or(Stop::Error("every vCPU thread ended".into()));

    let (guest_exit, code) = match &stop {
        Stop::PowerOff => ("poweroff".to_string(), 0u8),
        Stop::Reset => ("reset".to_string(), 1),
        Stop::Crash => ("crash".to_string(), 2),
        Stop::Error(e) => (format!("vmm-error: {e}"), EXIT_VMM_ERROR),
        Stop::Signal(n) => (format!("signal {n}"), EXIT_SIGNAL),
    };
    let acc = &mem.stats;
    let ld = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let mut first_error = devs.first_error();
    if ld(&irq_errors) > 0 {
        first_error.get_or_insert(format!("{} KVM_IRQ_LINE calls failed", ld(&irq_errors)));
    }
    let first_violation = devs.finish_adversary();
    let info = stats::RunInfo {
        protected: args.protected,
        vcpus: args.cpus,
        ram_mib: args.mem_mib,
        pool_mib: layout.pool.map_or(0, |p| p.1 >> 20),
        adversarial: args.adversarial,
        guest_exit,
        exit_code: i32::from(code),
        seconds: start.elapsed().as_secs_f64(),
        first_output_seconds: devs.first_output(),
        first_notify_seconds: devs.first_notify(),
        access_faults: ld(&acc.faults),
        access_bytes_read: ld(&acc.bytes_read),
        access_bytes_written: ld(&acc.bytes_written),
        first_error,
        first_violation,
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\nPKVM-VMM-STATS {}", devs.stats.json(&info));
    let _ = out.flush();
    if let Stop::Error(e) = &stop {
        eprintln!("pkvm-vmm: error: {e}");
    }
    let _ = vm_fd;
    // The other vCPU threads are still in KVM_RUN: leave without joining.
    std::process::exit(i32::from(code));
}
