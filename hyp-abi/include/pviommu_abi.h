/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * pviommu guest/hypervisor ABI v2.1, for hypervisor implementers.
 *
 * Normative text: Documentation/virt/pviommu/abi.rst. This header mirrors
 * the Rust crate hyp-abi/ (the source of truth); hyp-abi/tests/header.rs
 * compiles it against the Rust layouts, so the two cannot drift apart.
 * All multi-byte fields are little-endian.
 */
#ifndef PVIOMMU_ABI_H
#define PVIOMMU_ABI_H

#include <stddef.h>
#include <stdint.h>

/* The layout checks below also work when the header is used from C++. */
#ifdef __cplusplus
#define PVIOMMU_STATIC_ASSERT(expr, msg) static_assert(expr, msg)
#else
#define PVIOMMU_STATIC_ASSERT(expr, msg) _Static_assert(expr, msg)
#endif

/* Versioning. */
#define PVIOMMU_ABI_MAJOR		2
#define PVIOMMU_ABI_MINOR		2
#define PVIOMMU_ABI_VERSION		((PVIOMMU_ABI_MAJOR << 16) | PVIOMMU_ABI_MINOR)

/* Feature bits (VERSION r1, mailbox header); undefined bits are reserved. */
#define PVIOMMU_FEATURE_APPLY		(1ULL << 0)	/* APPLY (1.1) */
#define PVIOMMU_FEATURE_STATS		(1ULL << 1)	/* STATS (2.1) */
#define PVIOMMU_FEATURE_WRITE_ONLY	(1ULL << 2)	/* PERM_WRITE enforced (2.2) */
#define PVIOMMU_FEATURES_KNOWN		(PVIOMMU_FEATURE_APPLY | PVIOMMU_FEATURE_STATS | \
					 PVIOMMU_FEATURE_WRITE_ONLY)

/* Granule. */
#define PVIOMMU_PAGE_SHIFT		12
#define PVIOMMU_PAGE_SIZE		(1ULL << PVIOMMU_PAGE_SHIFT)

/* Table entries: one byte per guest frame. */
#define PVIOMMU_PERM_NONE		0
#define PVIOMMU_PERM_READ		1
#define PVIOMMU_PERM_WRITE		2	/* if PVIOMMU_FEATURE_WRITE_ONLY */
#define PVIOMMU_PERM_READ_WRITE		3
#define PVIOMMU_TABLE_PERM_MASK		0x03
#define PVIOMMU_TABLE_RESERVED_MASK	0xfc

/*
 * Function numbers and SMCCC IDs (provisional: vendor hyp, fast, SMC64,
 * function numbers 0x8000 + n, outside KVM's 0..127). A guest issues them
 * only after ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID reported KVM's UID.
 */
#define PVIOMMU_FUNC_VERSION		0
#define PVIOMMU_FUNC_INIT		1
#define PVIOMMU_FUNC_SYNC		2
#define PVIOMMU_FUNC_SHARE		3
#define PVIOMMU_FUNC_UNSHARE		4
#define PVIOMMU_FUNC_RESET		5
#define PVIOMMU_FUNC_APPLY		6	/* if PVIOMMU_FEATURE_APPLY */
#define PVIOMMU_FUNC_STATS		7	/* if PVIOMMU_FEATURE_STATS */
#define PVIOMMU_SMCCC_FUNC_BASE		0xC6008000U
#define PVIOMMU_SMCCC_ID(func)		(PVIOMMU_SMCCC_FUNC_BASE + (func))

/*
 * Status codes. The first three are SMCCC's; -2 (SMCCC NOT_REQUIRED) is
 * never returned; the pviommu-specific ones start at -0x100.
 */
#define PVIOMMU_SUCCESS			0
#define PVIOMMU_NOT_SUPPORTED		(-1)
#define PVIOMMU_INVALID_PARAMETER	(-3)
#define PVIOMMU_DENIED			(-0x100)
#define PVIOMMU_BUSY			(-0x101)
#define PVIOMMU_NO_MEMORY		(-0x102)
#define PVIOMMU_BAD_STATE		(-0x103)

/* STATS counter indices (a0); r0 is the value, r1 how many exist. */
#define PVIOMMU_STAT_DRAINS		0
#define PVIOMMU_STAT_RECORDS		1
#define PVIOMMU_STAT_BAD_RECORDS	2
#define PVIOMMU_STAT_PAGES_SHARED	3
#define PVIOMMU_STAT_PAGES_UNSHARED	4
#define PVIOMMU_STAT_INVALIDATIONS	5
#define PVIOMMU_STAT_REFUSED		6
#define PVIOMMU_STAT_ABSENT		7
#define PVIOMMU_STAT_BUSY		8
#define PVIOMMU_NR_STATS		9

/* Ring. */
#define PVIOMMU_RING_HEADER_SIZE	4096
#define PVIOMMU_RING_PRODUCER_OFFSET	0
#define PVIOMMU_RING_CONSUMER_OFFSET	64
#define PVIOMMU_RING_RECORD_SIZE	16
#define PVIOMMU_RING_ORDER_MIN		1
#define PVIOMMU_RING_ORDER_MAX		20
#define PVIOMMU_RING_BYTES(order)	(PVIOMMU_RING_HEADER_SIZE + (PVIOMMU_RING_RECORD_SIZE << (order)))
/* The seq a published record at index carries. */
#define PVIOMMU_RECORD_SEQ(index)	((uint32_t)((index) + 1))

struct pviommu_ring_header {
	uint64_t producer;	/* guest: reservation counter */
	uint64_t reserved0[7];
	uint64_t consumer;	/* hypervisor: first record not consumed */
	uint64_t reserved1[503];
};

struct pviommu_ring_record {
	uint64_t gfn;
	uint32_t nr_pages;
	uint32_t seq;		/* written last, with release */
};

/* MMIO mailbox over ivshmem-doorbell. */
#define PVIOMMU_MAILBOX_MAGIC		0x4d4f4950U	/* "PIOM" */
#define PVIOMMU_MAILBOX_HEADER_SIZE	64
#define PVIOMMU_MAILBOX_SLOTS_OFFSET	4096
#define PVIOMMU_MAILBOX_SLOT_SIZE	128
#define PVIOMMU_MAILBOX_MAX_SLOTS	1024
#define PVIOMMU_MAILBOX_MIN_REGION	8192
#define PVIOMMU_DOORBELL_OFFSET		12
#define PVIOMMU_DOORBELL_VALUE(peer, vector) \
	(((uint32_t)(peer) << 16) | (uint32_t)(vector))

struct pviommu_mailbox_header {
	uint32_t magic;
	uint32_t abi_version;
	uint32_t region_size;
	uint32_t nr_slots;
	uint32_t hyp_peer_id;
	uint32_t doorbell_vector;
	uint64_t features;
	uint64_t reserved[4];
};

struct pviommu_mailbox_slot {
	uint32_t func;
	uint32_t flags;		/* must be 0 */
	uint64_t args[6];
	uint32_t req_seq;	/* guest writes last, with release */
	uint32_t reserved0;
	int64_t status;
	uint64_t ret[3];
	uint32_t done_seq;	/* hypervisor writes last, with release */
	uint32_t reserved1[7];
};

PVIOMMU_STATIC_ASSERT(sizeof(struct pviommu_ring_header) == PVIOMMU_RING_HEADER_SIZE, "ring header size");
PVIOMMU_STATIC_ASSERT(offsetof(struct pviommu_ring_header, consumer) == PVIOMMU_RING_CONSUMER_OFFSET, "consumer offset");
PVIOMMU_STATIC_ASSERT(sizeof(struct pviommu_ring_record) == PVIOMMU_RING_RECORD_SIZE, "record size");
PVIOMMU_STATIC_ASSERT(sizeof(struct pviommu_mailbox_header) == PVIOMMU_MAILBOX_HEADER_SIZE, "mailbox header size");
PVIOMMU_STATIC_ASSERT(sizeof(struct pviommu_mailbox_slot) == PVIOMMU_MAILBOX_SLOT_SIZE, "mailbox slot size");

#endif /* PVIOMMU_ABI_H */
