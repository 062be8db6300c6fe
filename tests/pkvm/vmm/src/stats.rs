// SPDX-License-Identifier: GPL-2.0
//! Counters of one VMM run, printed as one JSON line at the end.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct Stats {
    pub exit_mmio_read: AtomicU64,
    pub exit_mmio_write: AtomicU64,
    pub exit_hypercall: AtomicU64,
    pub exit_system_event: AtomicU64,
    pub exit_intr: AtomicU64,
    pub exit_other: AtomicU64,
    pub mmio_uart: AtomicU64,
    pub mmio_virtio: AtomicU64,
    pub mmio_unknown: AtomicU64,
    pub uart_bytes: AtomicU64,
    pub notifications: AtomicU64,
    pub interrupts: AtomicU64,
    pub requests: AtomicU64,
    pub req_in: AtomicU64,
    pub req_out: AtomicU64,
    pub req_flush: AtomicU64,
    pub req_get_id: AtomicU64,
    pub req_other: AtomicU64,
    pub req_ok: AtomicU64,
    pub req_ioerr: AtomicU64,
    pub req_unsupp: AtomicU64,
    pub bad_chains: AtomicU64,
    pub disk_bytes_read: AtomicU64,
    pub disk_bytes_written: AtomicU64,
    pub request_faults: AtomicU64,
    pub ring_faults: AtomicU64,
    pub adv_attempts: AtomicU64,
    pub adv_denied: AtomicU64,
    pub adv_violations: AtomicU64,
    pub adv_errors: AtomicU64,
    pub adv_skipped_shared: AtomicU64,
    pub adv_readable_shared: AtomicU64,
    pub adv_readable_suspect: AtomicU64,
    pub adv_violation_pages_total: AtomicU64,
}

static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub fn set_verbose(v: bool) {
    VERBOSE.store(v, Ordering::Relaxed);
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// `--verbose` logging to stderr.
#[macro_export]
macro_rules! vlog {
    ($($t:tt)*) => {
        if $crate::stats::verbose() {
            eprintln!("pkvm-vmm: {}", format_args!($($t)*));
        }
    };
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Facts about the run that are not counters.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub protected: bool,
    pub vcpus: u32,
    pub ram_mib: u64,
    pub pool_mib: u64,
    pub adversarial: bool,
    pub guest_exit: String,
    pub exit_code: i32,
    pub seconds: f64,
    pub first_output_seconds: Option<f64>,
    pub first_notify_seconds: Option<f64>,
    pub access_faults: u64,
    pub access_bytes_read: u64,
    pub access_bytes_written: u64,
    pub first_error: Option<String>,
    pub first_violation: Option<u64>,
}

fn esc(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

fn opt(v: Option<f64>) -> String {
    v.map_or("null".into(), |v| format!("{v:.3}"))
}

impl Stats {
    pub fn json(&self, info: &RunInfo) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"protected\":{},\"vcpus\":{},\"ram_mib\":{},\"restricted_pool_mib\":{},\"adversarial\":{},",
            info.protected, info.vcpus, info.ram_mib, info.pool_mib, info.adversarial
        );
        let _ = write!(
            s,
            "\"guest_exit\":\"{}\",\"exit_code\":{},\"seconds\":{:.3},\"first_output_seconds\":{},\"first_notify_seconds\":{},",
            esc(&info.guest_exit),
            info.exit_code,
            info.seconds,
            opt(info.first_output_seconds),
            opt(info.first_notify_seconds)
        );
        let total = get(&self.exit_mmio_read)
            + get(&self.exit_mmio_write)
            + get(&self.exit_hypercall)
            + get(&self.exit_system_event)
            + get(&self.exit_intr)
            + get(&self.exit_other);
        let _ = write!(
            s,
            "\"exits\":{{\"total\":{},\"mmio\":{},\"mmio_read\":{},\"mmio_write\":{},\"hypercall\":{},\"system_event\":{},\"intr\":{},\"other\":{}}},",
            total,
            get(&self.exit_mmio_read) + get(&self.exit_mmio_write),
            get(&self.exit_mmio_read),
            get(&self.exit_mmio_write),
            get(&self.exit_hypercall),
            get(&self.exit_system_event),
            get(&self.exit_intr),
            get(&self.exit_other)
        );
        let _ = write!(
            s,
            "\"mmio\":{{\"uart\":{},\"virtio\":{},\"unknown\":{}}},\"uart_bytes\":{},",
            get(&self.mmio_uart),
            get(&self.mmio_virtio),
            get(&self.mmio_unknown),
            get(&self.uart_bytes)
        );
        let _ = write!(
            s,
            "\"blk\":{{\"notifications\":{},\"interrupts\":{},\"requests\":{},\"in\":{},\"out\":{},\"flush\":{},\"get_id\":{},\"other\":{},\"ok\":{},\"ioerr\":{},\"unsupp\":{},\"bad_chains\":{},\"bytes_read\":{},\"bytes_written\":{},\"request_faults\":{},\"ring_faults\":{}}},",
            get(&self.notifications),
            get(&self.interrupts),
            get(&self.requests),
            get(&self.req_in),
            get(&self.req_out),
            get(&self.req_flush),
            get(&self.req_get_id),
            get(&self.req_other),
            get(&self.req_ok),
            get(&self.req_ioerr),
            get(&self.req_unsupp),
            get(&self.bad_chains),
            get(&self.disk_bytes_read),
            get(&self.disk_bytes_written),
            get(&self.request_faults),
            get(&self.ring_faults)
        );
        let _ = write!(
            s,
            "\"guest_access\":{{\"faults\":{},\"bytes_read\":{},\"bytes_written\":{}}},",
            info.access_faults, info.access_bytes_read, info.access_bytes_written
        );
        let _ = write!(
            s,
            "\"adversary\":{{\"attempts\":{},\"denied\":{},\"readable\":{},\"readable_shared\":{},\"violations\":{},\"errors\":{},\"skipped_shared\":{},\"first_violation\":{}}},",
            get(&self.adv_attempts),
            get(&self.adv_denied),
            get(&self.adv_readable_suspect) + get(&self.adv_readable_shared),
            get(&self.adv_readable_shared),
            get(&self.adv_violations),
            get(&self.adv_errors),
            get(&self.adv_skipped_shared),
            info.first_violation.map_or("null".into(), |p| format!("\"{p:#x}\""))
        );
        match &info.first_error {
            Some(e) => {
                let _ = write!(s, "\"first_error\":\"{}\"}}", esc(e));
            }
            None => s.push_str("\"first_error\":null}"),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_one_line_and_escaped() {
        let st = Stats::default();
        inc(&st.exit_mmio_read);
        add(&st.exit_mmio_write, 2);
        let info = RunInfo {
            guest_exit: "poweroff".into(),
            first_error: Some("a \"b\"\n".into()),
            ..Default::default()
        };
        let j = st.json(&info);
        assert!(!j.contains('\n'));
        assert!(j.contains("\"mmio\":3,"));
        assert!(j.contains("\"total\":3,"));
        assert!(j.contains("\"first_error\":\"a \\\"b\\\"\\u000a\""));
        assert!(j.starts_with('{') && j.ends_with('}'));
        // Balanced braces.
        assert_eq!(j.matches('{').count(), j.matches('}').count());
    }
}
