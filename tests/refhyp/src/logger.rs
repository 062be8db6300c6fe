// SPDX-License-Identifier: GPL-2.0-only
//! A minimal stderr logger: the harness keeps stderr as the program's log.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= Level::Info
    }

    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            eprintln!("refhyp: {}: {}", r.level(), r.args());
        }
    }

    fn flush(&self) {}
}

pub fn init() {
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
