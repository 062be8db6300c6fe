// SPDX-License-Identifier: GPL-2.0
/*
 * C glue of the pviommu's SMCCC transport (arm64): arm_smccc_1_1_invoke()
 * is a macro, so the call is made here; KVM's vendor-hyp service
 * discovery is read through its own API. Everything else is Rust
 * (ffi/smccc.rs and logic/src/smccc.rs).
 */

#include <linux/arm-smccc.h>
#include <linux/types.h>

#include <asm/hypervisor.h>

#include "pviommu_glue.h"

/*
 * True when the vendor-hyp UID call identified KVM (only then does
 * kvm_init_hyp_services() fill the service bitmap, FEATURES included):
 * the pviommu's function IDs are issued only to KVM.
 */
bool pviommu_kvm_guest(void)
{
	return kvm_arm_hyp_service_available(ARM_SMCCC_KVM_FUNC_FEATURES);
}

/* True when KVM offers pKVM's protected-guest services. */
bool pviommu_pkvm_guest(void)
{
	return kvm_arm_hyp_service_available(ARM_SMCCC_KVM_FUNC_HYP_MEMINFO) &&
	       kvm_arm_hyp_service_available(ARM_SMCCC_KVM_FUNC_MEM_SHARE) &&
	       kvm_arm_hyp_service_available(ARM_SMCCC_KVM_FUNC_MEM_UNSHARE);
}

/*
 * The hypervisor's sharing granule in bytes (HYP_MEMINFO), or a negative
 * SMCCC status. Only valid when pviommu_pkvm_guest() is true.
 */
long pviommu_pkvm_granule(void)
{
	struct arm_smccc_res res;

	arm_smccc_1_1_invoke(ARM_SMCCC_VENDOR_HYP_KVM_HYP_MEMINFO_FUNC_ID,
			     0, 0, 0, &res);
	return (long)res.a0;
}

/*
 * One fast call: x1..x6 = args[0..5]; ret[0..3] = x0..x3. Safe in any
 * context: the vCPU traps and resumes when the hypervisor answered.
 */
void pviommu_smccc_call(u32 function_id, const u64 *args, u64 *ret)
{
	struct arm_smccc_res res;

	arm_smccc_1_1_invoke(function_id, args[0], args[1], args[2], args[3],
			     args[4], args[5], &res);
	ret[0] = res.a0;
	ret[1] = res.a1;
	ret[2] = res.a2;
	ret[3] = res.a3;
}
