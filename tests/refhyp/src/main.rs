// SPDX-License-Identifier: GPL-2.0-only
//! pviommu reference hypervisor for QEMU.
//!
//! Serves the pviommu mailbox over `ivshmem-doorbell`, keeps the host view
//! with the reference state machine, and serves vhost-user devices (blk,
//! net, vsock, rng, console) whose every guest memory access is checked
//! against that view.

mod adversary;
mod blk;
mod checked_memory;
mod cli;
mod console;
mod counters;
mod device;
mod device_mmu;
mod faults;
mod guest_ram;
mod host;
mod ivshmem_server;
mod logger;
mod mailbox;
mod net;
mod rng;
mod shared_region;
mod signals;
mod vsock;
mod vu_shim;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use crate::cli::Options;
use crate::device::{Backend, Device};
use crate::faults::FaultPlan;
use crate::guest_ram::RamFile;
use crate::host::Host;
use crate::ivshmem_server::{IvshmemServer, HYP_PEER_ID};
use crate::shared_region::ShmRegion;

/// The vector the hypervisor raises after serving the mailbox, with
/// `--completion-irq`.
const COMPLETION_VECTOR: usize = 0;

fn start_ivshmem(host: Arc<Host>, o: &Options) -> io::Result<()> {
    mailbox::init_region_header(host.shm(), HYP_PEER_ID, COMPLETION_VECTOR as u16)?;
    let mut server = IvshmemServer::bind(&o.ivshmem_socket, host.shm().fd(), o.ivshmem_vectors)?;
    let completion_irq = o.completion_irq;
    let poll = o.poll;
    thread::Builder::new()
        .name("ivshmem".into())
        .spawn(move || {
            let result = server.run(|server, _vector| {
                let mut served = host.on_doorbell();
                if !poll.is_zero() {
                    served += poll_calls(&host, poll);
                }
                if served > 0 && completion_irq {
                    server.notify(COMPLETION_VECTOR);
                }
            });
            if let Err(e) = result {
                log::error!("ivshmem server stopped: {e}");
            }
        })?;
    Ok(())
}

/// Bounded polling (`--poll-us`): serves the calls that come within
/// `window` of the last one from this already running thread, instead of
/// waiting to be woken by their doorbells; returns how many it served.
/// Each call's doorbell still comes (the guest rings it all the same)
/// and is read, finding nothing left to serve, once the window closes.
fn poll_calls(host: &Host, window: Duration) -> usize {
    let mut served = 0;
    let mut deadline = Instant::now() + window;
    while Instant::now() < deadline {
        let n = host.on_poll();
        if n > 0 {
            served += n;
            deadline = Instant::now() + window;
        } else {
            std::hint::spin_loop();
        }
    }
    served
}

/// Serves `device` on `socket` from a thread of its own, one frontend
/// at a time (a new one may come after a disconnect).
fn start_backend(
    name: &'static str,
    device: impl Device + 'static,
    socket: &Path,
) -> io::Result<()> {
    let events = device.events();
    let mut daemon = VhostUserDaemon::new(
        name.into(),
        Arc::new(Backend::new(device)),
        GuestMemoryAtomic::new(GuestMemoryMmap::new()),
    )
    .map_err(|e| io::Error::other(format!("{name} daemon: {e}")))?;
    // The device's own event sources, on the thread of its queues.
    for h in daemon.get_epoll_handlers() {
        for &(fd, event) in &events {
            h.register_listener(fd, EventSet::IN, u64::from(event))?;
        }
    }
    let mut listener = Listener::new(socket, true).map_err(io::Error::other)?;
    thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            if let Err(e) = daemon.start(&mut listener) {
                log::error!("{name}: accept failed: {e}");
                return;
            }
            match daemon.wait() {
                Ok(()) => log::info!("{name}: frontend disconnected"),
                Err(e) => log::warn!("{name}: connection ended: {e}"),
            }
        })?;
    Ok(())
}

fn start_devices(host: &Arc<Host>, o: &Options) -> io::Result<()> {
    if let (Some(sock), Some(img)) = (&o.blk_socket, &o.blk_image) {
        let disk = OpenOptions::new().read(true).write(true).open(img)?;
        let device = blk::BlkDevice::new(host.clone(), disk, o.blk_queues)?;
        start_backend("vhost-user-blk", device, sock)?;
    }
    if let Some(sock) = &o.net_socket {
        let device = net::NetDevice::new(host.clone())?;
        // QEMU's virtio-net talks to the daemon through the shim.
        start_backend("vhost-user-net", device, &vu_shim::backend_path(sock))?;
        vu_shim::start(sock, "vhost-user-net")?;
    }
    if let Some(sock) = &o.vsock_socket {
        let device = vsock::VsockDevice::new(host.clone(), o.vsock_cid);
        start_backend("vhost-user-vsock", device, sock)?;
    }
    if let Some(sock) = &o.rng_socket {
        let device = rng::RngDevice::new(host.clone())?;
        start_backend("vhost-user-rng", device, sock)?;
    }
    if let (Some(sock), Some(out)) = (&o.console_socket, &o.console_out) {
        let device = console::ConsoleDevice::new(host.clone(), File::create(out)?);
        start_backend("vhost-user-console", device, sock)?;
    }
    Ok(())
}

fn write_counters(host: &Host, path: Option<&PathBuf>) {
    if let Some(p) = path {
        if let Err(e) = counters::write_file(p, &host.counters_json()) {
            log::error!("cannot write counters to {}: {e}", p.display());
        }
    }
}

fn run(o: Options) -> io::Result<()> {
    // The devices' MMU protects guest RAM page by page, in 4 KiB granules.
    // SAFETY: sysconf() has no memory-safety preconditions.
    if unsafe { libc::sysconf(libc::_SC_PAGESIZE) } != 4096 {
        return Err(io::Error::other("the host page size is not 4 KiB"));
    }
    // Before any thread exists, so that every thread inherits the mask and
    // only the signal loop below sees these signals.
    let signals = signals::block()?;
    let ram = RamFile::create(&o.ram_file, o.ram_size)?;
    let shm = ShmRegion::create(o.ivshmem_size)?;
    let faults = FaultPlan {
        fail_syncs: o.fail_syncs,
        fail_unshares: o.fail_unshares,
        busy_syncs: o.busy_syncs,
        busy_unshares: o.busy_unshares,
        lie_syncs: o.lie_syncs,
        partial_unshare: o.partial_unshare,
        drain_delay: o.drain_delay,
        copy_delay: o.copy_delay,
        ..Default::default()
    };
    let host = Arc::new(Host::new(ram, shm, faults, &o));
    Host::serve_faults(&host)?;
    start_ivshmem(host.clone(), &o)?;
    start_devices(&host, &o)?;
    if !o.enforce {
        log::warn!("--no-enforce: device accesses are not checked");
    }
    let mut out = io::stdout().lock();
    writeln!(out, "READY")?;
    out.flush()?;
    drop(out);

    while let signals::Signal::Dump = signals.wait()? {
        write_counters(&host, o.counters.as_ref());
    }
    write_counters(&host, o.counters.as_ref());
    for p in [
        Some(&o.ivshmem_socket),
        o.blk_socket.as_ref(),
        o.net_socket.as_ref(),
        o.vsock_socket.as_ref(),
        o.rng_socket.as_ref(),
        o.console_socket.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        let _ = std::fs::remove_file(p);
    }
    if let Some(p) = &o.net_socket {
        let _ = std::fs::remove_file(vu_shim::backend_path(p));
    }
    if !o.keep_ram_file {
        let _ = std::fs::remove_file(&o.ram_file);
    }
    Ok(())
}

fn main() -> ExitCode {
    logger::init();
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pviommu-refhyp: {e}");
            ExitCode::FAILURE
        }
    }
}
