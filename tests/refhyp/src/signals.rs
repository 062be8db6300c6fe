// SPDX-License-Identifier: GPL-2.0-only
//! Signals, taken synchronously by the main thread with `sigwait`.
//!
//! No async signal handler: the counters are behind a lock, which a handler
//! could not take safely.

use std::io;

pub enum Signal {
    /// SIGUSR1: write the counters and go on.
    Dump,
    /// SIGTERM or SIGINT: write the counters and exit.
    Stop,
}

pub struct Signals {
    set: libc::sigset_t,
}

/// Blocks SIGTERM, SIGINT and SIGUSR1 in the calling thread (and in every
/// thread it creates afterwards).
pub fn block() -> io::Result<Signals> {
    // SAFETY: an all-zero `sigset_t` is a valid value to hand to sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t for each call,
    // and the signal numbers are valid.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(Signals { set })
}

impl Signals {
    pub fn wait(&self) -> io::Result<Signal> {
        let mut sig = 0;
        // SAFETY: `self.set` is an initialised sigset_t and `sig` is a valid
        // place for the result.
        let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(if sig == libc::SIGUSR1 {
            Signal::Dump
        } else {
            Signal::Stop
        })
    }
}
