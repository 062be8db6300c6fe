// SPDX-License-Identifier: GPL-2.0-only

//! Checks `include/pviommu_abi.h` against the Rust layouts and constants.
//!
//! The test writes a C file of `_Static_assert`s whose expected values come
//! from the Rust side, includes the header and compiles it with
//! `cc -fsyntax-only`: any drift in an offset, size or constant fails.

#![cfg(not(loom))]

use core::mem::{offset_of, size_of};
use pviommu_hyp_abi::call::{
    Func, Stat, Status, ABI_MAJOR, ABI_MINOR, ABI_VERSION, FEATURES_KNOWN, FEATURE_APPLY,
    FEATURE_STATS, FEATURE_WRITE_ONLY, NR_FUNCS, NR_STATS, NR_STATUSES, SMCCC_FUNC_BASE,
};
use pviommu_hyp_abi::layout::*;
use pviommu_hyp_abi::mailbox::*;
use pviommu_hyp_abi::ring::{RingHeader, RingSlot};
use std::fmt::Write;
use std::path::PathBuf;
use std::process::Command;

fn asserts() -> String {
    let mut c = String::from("#include \"pviommu_abi.h\"\n");
    let mut eq = |lhs: &str, rhs: i128| {
        writeln!(c, "_Static_assert(({lhs}) == ({rhs}LL), \"{lhs}\");").unwrap();
    };
    eq("PVIOMMU_ABI_MAJOR", ABI_MAJOR.into());
    eq("PVIOMMU_ABI_MINOR", ABI_MINOR.into());
    eq("PVIOMMU_ABI_VERSION", ABI_VERSION.into());
    eq("PVIOMMU_FEATURE_APPLY", FEATURE_APPLY.into());
    eq("PVIOMMU_FEATURE_STATS", FEATURE_STATS.into());
    eq("PVIOMMU_FEATURE_WRITE_ONLY", FEATURE_WRITE_ONLY.into());
    eq("PVIOMMU_FEATURES_KNOWN", FEATURES_KNOWN.into());
    eq("PVIOMMU_PAGE_SHIFT", PAGE_SHIFT.into());
    eq("PVIOMMU_PAGE_SIZE", PAGE_SIZE.into());
    eq("PVIOMMU_PERM_NONE", Perm::None.bits().into());
    eq("PVIOMMU_PERM_READ", Perm::Read.bits().into());
    eq("PVIOMMU_PERM_WRITE", Perm::Write.bits().into());
    eq("PVIOMMU_PERM_READ_WRITE", Perm::ReadWrite.bits().into());
    eq("PVIOMMU_TABLE_PERM_MASK", TABLE_PERM_MASK.into());
    eq("PVIOMMU_TABLE_RESERVED_MASK", TABLE_RESERVED_MASK.into());
    // Sized by `NR_FUNCS`: a new function cannot be left out of the check.
    let funcs: [(&str, Func); NR_FUNCS] = [
        ("VERSION", Func::Version),
        ("INIT", Func::Init),
        ("SYNC", Func::Sync),
        ("SHARE", Func::Share),
        ("UNSHARE", Func::Unshare),
        ("RESET", Func::Reset),
        ("APPLY", Func::Apply),
        ("STATS", Func::Stats),
    ];
    for (name, f) in funcs {
        eq(&format!("PVIOMMU_FUNC_{name}"), (f as u32).into());
        eq(
            &format!("PVIOMMU_SMCCC_ID(PVIOMMU_FUNC_{name})"),
            f.smccc_id().into(),
        );
    }
    eq("PVIOMMU_SMCCC_FUNC_BASE", SMCCC_FUNC_BASE.into());
    let stats: [(&str, Stat); NR_STATS] = [
        ("DRAINS", Stat::Drains),
        ("RECORDS", Stat::Records),
        ("BAD_RECORDS", Stat::BadRecords),
        ("PAGES_SHARED", Stat::PagesShared),
        ("PAGES_UNSHARED", Stat::PagesUnshared),
        ("INVALIDATIONS", Stat::Invalidations),
        ("REFUSED", Stat::Refused),
        ("ABSENT", Stat::Absent),
        ("BUSY", Stat::Busy),
    ];
    for (name, st) in stats {
        eq(&format!("PVIOMMU_STAT_{name}"), (st as u64).into());
    }
    eq("PVIOMMU_NR_STATS", NR_STATS as i128);
    let statuses: [(&str, Status); NR_STATUSES] = [
        ("SUCCESS", Status::Success),
        ("NOT_SUPPORTED", Status::NotSupported),
        ("INVALID_PARAMETER", Status::InvalidParameter),
        ("DENIED", Status::Denied),
        ("BUSY", Status::Busy),
        ("NO_MEMORY", Status::NoMemory),
        ("BAD_STATE", Status::BadState),
    ];
    for (name, s) in statuses {
        eq(&format!("PVIOMMU_{name}"), s.raw().into());
    }
    eq("PVIOMMU_RING_HEADER_SIZE", RING_HEADER_SIZE.into());
    eq("PVIOMMU_RING_PRODUCER_OFFSET", RING_PRODUCER_OFFSET.into());
    eq("PVIOMMU_RING_CONSUMER_OFFSET", RING_CONSUMER_OFFSET.into());
    eq("PVIOMMU_RING_RECORD_SIZE", RING_RECORD_SIZE.into());
    eq("PVIOMMU_RING_ORDER_MIN", RING_ORDER_MIN.into());
    eq("PVIOMMU_RING_ORDER_MAX", RING_ORDER_MAX.into());
    eq("PVIOMMU_RING_BYTES(5)", ring_bytes(5).into());
    eq(
        "PVIOMMU_RECORD_SEQ(0xffffffffULL)",
        record_seq(0xffff_ffff).into(),
    );
    eq(
        "sizeof(struct pviommu_ring_header)",
        size_of::<RingHeader>() as i128,
    );
    eq(
        "offsetof(struct pviommu_ring_header, producer)",
        offset_of!(RingHeader, producer) as i128,
    );
    eq(
        "offsetof(struct pviommu_ring_header, consumer)",
        offset_of!(RingHeader, consumer) as i128,
    );
    eq(
        "sizeof(struct pviommu_ring_record)",
        size_of::<RingSlot>() as i128,
    );
    eq(
        "offsetof(struct pviommu_ring_record, gfn)",
        offset_of!(RingRecord, gfn) as i128,
    );
    eq(
        "offsetof(struct pviommu_ring_record, nr_pages)",
        offset_of!(RingRecord, nr_pages) as i128,
    );
    eq(
        "offsetof(struct pviommu_ring_record, seq)",
        offset_of!(RingRecord, seq) as i128,
    );
    eq("PVIOMMU_MAILBOX_MAGIC", MAILBOX_MAGIC.into());
    eq("PVIOMMU_MAILBOX_HEADER_SIZE", MAILBOX_HEADER_SIZE.into());
    eq("PVIOMMU_MAILBOX_SLOTS_OFFSET", MAILBOX_SLOTS_OFFSET.into());
    eq("PVIOMMU_MAILBOX_SLOT_SIZE", MAILBOX_SLOT_SIZE.into());
    eq("PVIOMMU_MAILBOX_MAX_SLOTS", MAILBOX_MAX_SLOTS.into());
    eq("PVIOMMU_MAILBOX_MIN_REGION", MAILBOX_MIN_REGION.into());
    eq("PVIOMMU_DOORBELL_OFFSET", DOORBELL_OFFSET.into());
    eq("PVIOMMU_DOORBELL_VALUE(3, 1)", doorbell_value(3, 1).into());
    eq(
        "sizeof(struct pviommu_mailbox_header)",
        size_of::<MailboxHeader>() as i128,
    );
    macro_rules! fields {
        ($c:literal, $t:ty, $($f:ident),*) => {
            $(eq(&format!("offsetof(struct {}, {})", $c, stringify!($f)), offset_of!($t, $f) as i128);)*
        };
    }
    fields!(
        "pviommu_mailbox_header",
        MailboxHeader,
        magic,
        abi_version,
        region_size,
        nr_slots,
        hyp_peer_id,
        doorbell_vector,
        features,
        reserved
    );
    eq(
        "sizeof(struct pviommu_mailbox_slot)",
        size_of::<MailboxSlot>() as i128,
    );
    fields!(
        "pviommu_mailbox_slot",
        MailboxSlot,
        func,
        flags,
        args,
        req_seq,
        reserved0,
        status,
        ret,
        done_seq,
        reserved1
    );
    c
}

fn compile(name: &str, c_source: &str) -> std::process::Output {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join(format!("pviommu_abi_{name}.c"));
    std::fs::write(&file, c_source).unwrap();
    let include = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include");
    Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-pedantic",
            "-Werror",
            "-fsyntax-only",
            "-I",
        ])
        .arg(&include)
        .arg(&file)
        .output()
        .expect("a C compiler (cc) is needed to check the header")
}

#[test]
fn c_header_matches_rust_layouts() {
    let out = compile("check", &asserts());
    assert!(
        out.status.success(),
        "header drifted:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_check_can_fail() {
    let mut c = asserts();
    c.push_str("_Static_assert(offsetof(struct pviommu_mailbox_slot, done_seq) == 97, \"x\");\n");
    assert!(!compile("broken", &c).status.success());
}

#[test]
fn c_header_is_also_valid_cpp() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join("pviommu_abi_cpp.cc");
    std::fs::write(&file, "#include \"pviommu_abi.h\"\n").unwrap();
    let include = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include");
    let out = Command::new(std::env::var("CXX").unwrap_or_else(|_| "c++".into()))
        .args(["-std=c++17", "-Wall", "-Werror", "-fsyntax-only", "-I"])
        .arg(&include)
        .arg(&file)
        .output();
    match out {
        // A C++ compiler is optional; the C check above is not.
        Err(e) => eprintln!("no C++ compiler ({e}), skipped"),
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
