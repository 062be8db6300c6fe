// SPDX-License-Identifier: GPL-2.0

//! KUnit suites written in Rust, for Linux 6.12.
//!
//! Linux 6.12 has no `#[kunit_tests]` (it arrived in 6.15). This module
//! is the small equivalent that 6.15's `kunit_unsafe_test_suite!` is: a
//! `struct kunit_suite` and its `struct kunit_case` array as statics, and
//! a pointer to the suite in the `.kunit_test_suites` section, where
//! KUnit finds the built-in suites and runs them at boot.
//!
//! All `unsafe` of the tests lives here; test bodies get a [`Test`] and
//! report through [`Test::expect`] and the `expect_true!`/`expect_eq!` macros.

use core::ffi::CStr;
use core::fmt::{self, Write};
use kernel::bindings;
use kernel::ffi::c_char;

/// A running KUnit test case.
///
/// # Invariants
///
/// `self.0` points to the `struct kunit` of the test case that is
/// running on this thread, valid for the lifetime of the `Test`.
pub(crate) struct Test(*mut bindings::kunit);

impl Test {
    /// Wraps the `struct kunit` that KUnit passes to a test case.
    ///
    /// # Safety
    ///
    /// `raw` must be the pointer KUnit passed to the running test case,
    /// and the returned value must not outlive that call.
    pub(crate) unsafe fn from_raw(raw: *mut bindings::kunit) -> Self {
        // INVARIANT: the caller guarantees `raw` is the running test.
        Self(raw)
    }

    /// Records a failed expectation unless `ok`; the test case goes on.
    ///
    /// `file` and `line` name the caller's source location and `what`
    /// explains the failure; both appear in the KTAP output.
    pub(crate) fn expect(
        &self,
        ok: bool,
        file: &'static CStr,
        line: u32,
        what: fmt::Arguments<'_>,
    ) {
        if ok {
            return;
        }
        let mut message = MessageBuf::new();
        // A message longer than the buffer is truncated, never an error.
        let _ = message.write_fmt(what);
        let loc = bindings::kunit_loc {
            file: file.as_ptr().cast(),
            line: line as i32,
        };
        let assert = bindings::kunit_unary_assert {
            assert: bindings::kunit_assert {},
            condition: c"expectation".as_ptr().cast(),
            expected_true: true,
        };
        // SAFETY:
        // - `self.0` is the running test (type invariant);
        // - `loc`, `assert` and the `%s` argument are valid for the call,
        //   and KUnit does not keep them after it returns;
        // - the format string takes exactly one C string, which
        //   `MessageBuf::as_c_str` NUL-terminates.
        unsafe {
            bindings::__kunit_do_failed_assertion(
                self.0,
                &loc,
                bindings::kunit_assert_type_KUNIT_EXPECTATION,
                &assert.assert,
                Some(bindings::kunit_unary_assert_format),
                c"%s".as_ptr().cast(),
                message.as_c_str(),
            );
        }
    }
}

/// A fixed buffer for one failure message: tests must not depend on
/// allocation succeeding to report that something else failed.
struct MessageBuf {
    bytes: [u8; 256],
    len: usize,
}

impl MessageBuf {
    fn new() -> Self {
        Self {
            bytes: [0; 256],
            len: 0,
        }
    }

    /// The message as a NUL-terminated C string.
    fn as_c_str(&mut self) -> *const c_char {
        let end = self.len.min(self.bytes.len() - 1);
        self.bytes[end] = 0;
        self.bytes.as_ptr().cast()
    }
}

impl Write for MessageBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the terminating NUL.
        let room = self.bytes.len() - 1 - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Builds one `struct kunit_case` for a suite's case array.
pub(crate) const fn case(
    name: &'static CStr,
    run: unsafe extern "C" fn(*mut bindings::kunit),
) -> bindings::kunit_case {
    bindings::kunit_case {
        run_case: Some(run),
        name: name.as_ptr().cast(),
        generate_params: None,
        attr: bindings::kunit_attributes {
            speed: bindings::kunit_speed_KUNIT_SPEED_NORMAL,
        },
        status: bindings::kunit_status_KUNIT_SUCCESS,
        module_name: core::ptr::null_mut(),
        log: core::ptr::null_mut(),
    }
}

/// The all-zero case that terminates a case array.
pub(crate) const fn case_end() -> bindings::kunit_case {
    bindings::kunit_case {
        run_case: None,
        name: core::ptr::null(),
        generate_params: None,
        attr: bindings::kunit_attributes {
            speed: bindings::kunit_speed_KUNIT_SPEED_UNSET,
        },
        status: bindings::kunit_status_KUNIT_SUCCESS,
        module_name: core::ptr::null_mut(),
        log: core::ptr::null_mut(),
    }
}

/// A suite name as the fixed `char[256]` that `struct kunit_suite` holds.
pub(crate) const fn suite_name(name: &CStr) -> [c_char; 256] {
    let bytes = name.to_bytes();
    let mut out = [0 as c_char; 256];
    let mut i = 0;
    // Keep the terminating NUL: at most 255 name bytes.
    while i < bytes.len() && i < 255 {
        out[i] = bytes[i] as c_char;
        i += 1;
    }
    out
}

/// Builds a `struct kunit_suite` around a case array.
pub(crate) const fn suite(
    name: [c_char; 256],
    cases: *mut bindings::kunit_case,
) -> bindings::kunit_suite {
    bindings::kunit_suite {
        name,
        suite_init: None,
        suite_exit: None,
        init: None,
        exit: None,
        test_cases: cases,
        attr: bindings::kunit_attributes {
            speed: bindings::kunit_speed_KUNIT_SPEED_NORMAL,
        },
        status_comment: [0; 256],
        debugfs: core::ptr::null_mut(),
        log: core::ptr::null_mut(),
        suite_init_err: 0,
        is_init: false,
    }
}

/// Declares a KUnit suite of Rust test functions `fn(&Test)`.
///
/// ```ignore
/// kunit_suite!(pviommu_table, [refcount_union, ring_full]);
/// ```
///
/// The suite is named after the first argument; each case after its
/// function.
macro_rules! kunit_suite {
    ($suite:ident, [$($case:ident),+ $(,)?]) => {
        #[allow(non_snake_case)]
        mod $suite {
            use kernel::bindings;

            $(
                /// KUnit entry point of one test case.
                ///
                /// # Safety
                ///
                /// Called only by KUnit, with the running test.
                unsafe extern "C" fn $case(raw: *mut bindings::kunit) {
                    // SAFETY: KUnit passes the running test, and the
                    // `Test` does not outlive this call.
                    let test = unsafe { $crate::kunit::Test::from_raw(raw) };
                    super::$case(&test);
                }
            )+

            const NR_CASES: usize = [$(stringify!($case)),+].len() + 1;

            // KUnit writes each case's status and log into the array and
            // the suite: both must be mutable statics.
            static mut CASES: [bindings::kunit_case; NR_CASES] = [
                $($crate::kunit::case(
                    // SAFETY: the bytes are NUL-terminated and hold no
                    // other NUL (a Rust identifier).
                    unsafe {
                        core::ffi::CStr::from_bytes_with_nul_unchecked(
                            concat!(stringify!($case), "\0").as_bytes(),
                        )
                    },
                    $case,
                ),)+
                $crate::kunit::case_end(),
            ];

            static mut SUITE: bindings::kunit_suite = $crate::kunit::suite(
                $crate::kunit::suite_name(
                    // SAFETY: as above, a NUL-terminated identifier.
                    unsafe {
                        core::ffi::CStr::from_bytes_with_nul_unchecked(
                            concat!(stringify!($suite), "\0").as_bytes(),
                        )
                    },
                ),
                // Only the address is taken; `CASES` is static.
                core::ptr::addr_of_mut!(CASES).cast(),
            );

            // KUnit runs every suite listed in this section at boot.
            #[used]
            #[link_section = ".kunit_test_suites"]
            static mut SUITE_ENTRY: *const bindings::kunit_suite =
                // Only the address is taken; `SUITE` is static.
                core::ptr::addr_of!(SUITE);
        }
    };
}
pub(crate) use kunit_suite;

/// Expects a condition to hold; on failure, reports it with the source
/// location and the condition's text (and an optional message).
macro_rules! expect_true {
    ($test:expr, $cond:expr $(,)?) => {
        $test.expect(
            $cond,
            // SAFETY: `file!()` holds no NUL and we append one.
            unsafe {
                core::ffi::CStr::from_bytes_with_nul_unchecked(concat!(file!(), "\0").as_bytes())
            },
            line!(),
            format_args!("expected {}", stringify!($cond)),
        )
    };
}
pub(crate) use expect_true;

/// Expects two values to be equal; on failure, reports both.
macro_rules! expect_eq {
    ($test:expr, $left:expr, $right:expr $(,)?) => {{
        let (left, right) = (&$left, &$right);
        $test.expect(
            *left == *right,
            // SAFETY: `file!()` holds no NUL and we append one.
            unsafe {
                core::ffi::CStr::from_bytes_with_nul_unchecked(concat!(file!(), "\0").as_bytes())
            },
            line!(),
            format_args!(
                "expected {} == {}, got {:?} and {:?}",
                stringify!($left),
                stringify!($right),
                left,
                right
            ),
        )
    }};
}
pub(crate) use expect_eq;
