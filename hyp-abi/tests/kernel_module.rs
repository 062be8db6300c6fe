// SPDX-License-Identifier: GPL-2.0-only

//! Checks that `src/lib.rs` builds the way the kernel driver includes it.
//!
//! The driver crate includes the file with `#[path = ..] pub mod hyp_abi;`
//! and builds with `--cfg CONFIG_RUST` and warnings as errors for missing
//! docs and unreachable `pub`. A `crate::` path, a crate-level attribute or
//! an undocumented item in the shared source breaks the kernel build; this
//! test breaks first.

#![cfg(not(loom))]

use std::path::PathBuf;
use std::process::Command;

fn build(tool: &str, extra: &[&str]) -> std::process::Output {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("kernel-module-{tool}"));
    std::fs::create_dir_all(&dir).unwrap();
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    let root = dir.join("driver.rs");
    std::fs::write(
        &root,
        format!("//! Stand-in for the driver crate root.\n#![no_std]\n#[path = {:?}]\npub mod hyp_abi;\n", lib),
    )
    .unwrap();
    Command::new(tool)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "rlib",
            "--cfg",
            "CONFIG_RUST",
        ])
        .args([
            "-Wmissing_docs",
            "-Wunreachable_pub",
            "-Wrust_2018_idioms",
            "-Wunsafe_op_in_unsafe_fn",
        ])
        .args(["-Wnon_ascii_idents", "-Dwarnings"])
        .args(extra)
        .arg("--out-dir")
        .arg(&dir)
        .arg(&root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
}

#[test]
fn builds_as_a_kernel_module_file() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = build(&rustc, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn is_clippy_clean_as_a_kernel_module_file() {
    // Clippy is optional on a developer machine; CI has it.
    if Command::new("clippy-driver")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("clippy-driver not found, skipped");
        return;
    }
    let out = build(
        "clippy-driver",
        &[
            "-Wclippy::all",
            "-Wclippy::needless_continue",
            "-Wclippy::dbg_macro",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
