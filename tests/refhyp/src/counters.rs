// SPDX-License-Identifier: GPL-2.0-only
//! Counters of the device side and of the fault injector, and the JSON
//! document that joins them to the state machine's own counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::device_mmu::MmuCounters;

/// What the device backends and the adversary did.
#[derive(Default, Debug, Clone)]
pub struct DeviceCounters {
    /// Queue notifications handled (each one is an exit).
    pub kicks: u64,
    /// Descriptor chains taken from the available rings.
    pub requests: u64,
    pub requests_ok: u64,
    pub requests_ioerr: u64,
    pub requests_unsupported: u64,
    /// Requests not completed because not even the status byte was writable.
    pub requests_dropped: u64,
    /// Descriptors in the chains taken (header, data and status; the
    /// entries of an indirect table each count once, the indirect
    /// descriptor itself does not).
    pub descriptors: u64,
    /// Data descriptors of well-formed chains (all but the header and the
    /// status): the segments the guest split its requests into.
    pub data_descriptors: u64,
    /// Chains that loop, are too long, or have no status descriptor.
    pub malformed_chains: u64,
    /// Bytes the device read from guest memory (request payloads).
    pub bytes_read: u64,
    /// Bytes the device wrote to guest memory (request payloads).
    pub bytes_written: u64,
    /// Device accesses (rings, descriptors, headers, data, status) refused
    /// by the host view after a drain.
    pub violations: u64,
    /// Device accesses that did not go through `CheckedMemory` (the
    /// framework's own) and that the mappings refused: each faulted and was
    /// redirected to a scratch page.
    pub mapping_faults: u64,
    /// Accesses let through without a check (`--no-enforce`).
    pub unchecked_accesses: u64,
    pub adversarial_attempts: u64,
    pub adversarial_denied: u64,
    /// Must stay 0: an access after a completed unmap that was allowed.
    pub adversarial_allowed: u64,
    /// Doorbells served (each one is an exit).
    pub doorbells: u64,
    pub mailbox_calls: u64,
    /// Of `mailbox_calls`, those the polling thread served before their
    /// doorbell was read (`--poll-us`).
    pub polled_calls: u64,
}

/// What one vhost-user backend other than the disk did (net, vsock, rng,
/// console): the disk keeps its own counters in [`DeviceCounters`], whose
/// `violations` and `kicks` also include these, so that the state
/// machine's violations stay `device.violations + device.adversarial_denied`.
#[derive(Default, Debug, Clone)]
pub struct ClassCounters {
    /// Queue notifications handled (each one is an exit).
    pub kicks: u64,
    /// Descriptor chains taken from the available rings.
    pub requests: u64,
    pub requests_ok: u64,
    /// Completed without their data: a denied access or bad input.
    pub requests_failed: u64,
    /// Not completed at all: not even the used ring could take them.
    pub requests_dropped: u64,
    /// Chains with the wrong directions, sizes or headers.
    pub malformed_chains: u64,
    /// Payload bytes the device read from guest memory.
    pub bytes_read: u64,
    /// Payload bytes the device wrote to guest memory.
    pub bytes_written: u64,
    /// Accesses of this device refused by the host view after a drain.
    pub violations: u64,
    /// What the class's own peer saw (datagrams echoed, stream checksums).
    pub extra: BTreeMap<&'static str, u64>,
}

impl ClassCounters {
    pub fn to_json(&self) -> String {
        let mut fields = vec![
            ("kicks", self.kicks),
            ("requests", self.requests),
            ("requests_ok", self.requests_ok),
            ("requests_failed", self.requests_failed),
            ("requests_dropped", self.requests_dropped),
            ("malformed_chains", self.malformed_chains),
            ("bytes_read", self.bytes_read),
            ("bytes_written", self.bytes_written),
            ("violations", self.violations),
        ];
        fields.extend(self.extra.iter().map(|(k, v)| (*k, *v)));
        let mut s = String::new();
        push_fields(&mut s, &fields);
        s
    }
}

/// What the fault injector did.
#[derive(Default, Debug, Clone)]
pub struct FaultCounters {
    pub syncs_failed: u64,
    pub unshares_failed: u64,
    pub syncs_busy: u64,
    pub unshares_busy: u64,
    pub unshares_truncated: u64,
    pub syncs_lied: u64,
    pub drains_delayed: u64,
    pub copies_delayed: u64,
}

fn push_fields(out: &mut String, fields: &[(&str, u64)]) {
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{k}\":{v}");
    }
    out.push('}');
}

impl DeviceCounters {
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        push_fields(
            &mut s,
            &[
                ("kicks", self.kicks),
                ("requests", self.requests),
                ("requests_ok", self.requests_ok),
                ("requests_ioerr", self.requests_ioerr),
                ("requests_unsupported", self.requests_unsupported),
                ("requests_dropped", self.requests_dropped),
                ("descriptors", self.descriptors),
                ("data_descriptors", self.data_descriptors),
                ("malformed_chains", self.malformed_chains),
                ("bytes_read", self.bytes_read),
                ("bytes_written", self.bytes_written),
                ("violations", self.violations),
                ("mapping_faults", self.mapping_faults),
                ("unchecked_accesses", self.unchecked_accesses),
                ("adversarial_attempts", self.adversarial_attempts),
                ("adversarial_denied", self.adversarial_denied),
                ("adversarial_allowed", self.adversarial_allowed),
                ("doorbells", self.doorbells),
                ("mailbox_calls", self.mailbox_calls),
                ("polled_calls", self.polled_calls),
            ],
        );
        s
    }
}

impl FaultCounters {
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        push_fields(
            &mut s,
            &[
                ("syncs_failed", self.syncs_failed),
                ("unshares_failed", self.unshares_failed),
                ("syncs_busy", self.syncs_busy),
                ("unshares_busy", self.unshares_busy),
                ("unshares_truncated", self.unshares_truncated),
                ("syncs_lied", self.syncs_lied),
                ("drains_delayed", self.drains_delayed),
                ("copies_delayed", self.copies_delayed),
            ],
        );
        s
    }
}

impl MmuCounters {
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        push_fields(
            &mut s,
            &[
                ("mappings", self.mappings),
                ("protects", self.protects),
                ("restores", self.restores),
                ("deferred", self.deferred),
                ("errors", self.errors),
            ],
        );
        s
    }
}

/// The per-class counters as one JSON object: `{"net": {...}, ...}`.
pub fn classes_json(classes: &BTreeMap<&'static str, ClassCounters>) -> String {
    let mut c = String::from("{");
    for (i, (name, counters)) in classes.iter().enumerate() {
        if i > 0 {
            c.push(',');
        }
        let _ = write!(c, "\"{name}\":{}", counters.to_json());
    }
    c.push('}');
    c
}

/// Joins counter sets, each already JSON, into one document: `{"hyp":
/// {...}, "device": {...}, "classes": {"net": {...}, ...}, "faults": {...},
/// "mmu": {...}, ...}`.
pub fn document(sections: &[(&str, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, json)) in sections.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":{json}");
    }
    out.push_str("}\n");
    out
}

/// Writes the document atomically (temporary file + rename), so a reader
/// polling the file never sees half of it.
pub fn write_file(path: &Path, doc: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, doc)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_shape() {
        let dev = DeviceCounters {
            kicks: 3,
            ..Default::default()
        };
        let mut net = ClassCounters {
            requests: 2,
            ..Default::default()
        };
        net.extra.insert("udp_echoed", 5);
        let classes = BTreeMap::from([("net", net)]);
        let doc = document(&[
            ("hyp", "{\"drains\":1}".into()),
            ("device", dev.to_json()),
            ("classes", classes_json(&classes)),
            ("faults", FaultCounters::default().to_json()),
            ("mmu", MmuCounters::default().to_json()),
        ]);
        assert!(doc.starts_with("{\"hyp\":{\"drains\":1},\"device\":{\"kicks\":3,"));
        assert!(doc.contains("\"classes\":{\"net\":{\"kicks\":0,\"requests\":2,"));
        assert!(doc.contains("\"violations\":0,\"udp_echoed\":5}}"));
        assert!(doc.contains("\"faults\":{\"syncs_failed\":0,"));
    }
}
