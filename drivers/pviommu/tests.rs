// SPDX-License-Identifier: GPL-2.0

//! The driver's KUnit suites.

use crate::hyp_abi;
use crate::kunit::{expect_eq, kunit_suite, Test};

/// The driver speaks ABI 1.0, and the version word round-trips.
fn abi_version_is_1_0(test: &Test) {
    expect_eq!(test, hyp_abi::abi_version_parts(hyp_abi::ABI_VERSION), (1, 0));
}

kunit_suite!(pviommu_abi, [abi_version_is_1_0]);
