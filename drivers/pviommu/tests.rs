// SPDX-License-Identifier: GPL-2.0

//! The driver's KUnit suites.

use crate::hyp_abi::call::{ABI_MAJOR, ABI_MINOR, ABI_VERSION};
use crate::kunit::{expect_eq, kunit_suite, Test};

/// The driver speaks ABI 1.0, encoded as `VERSION` returns it.
fn abi_version_is_1_0(test: &Test) {
    expect_eq!(test, (ABI_MAJOR, ABI_MINOR), (1, 0));
    expect_eq!(test, ABI_VERSION, 0x0001_0000);
}

kunit_suite!(pviommu_abi, [abi_version_is_1_0]);
