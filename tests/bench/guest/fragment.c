// SPDX-License-Identifier: GPL-2.0
/*
 * fragment: makes every page the guest allocates next physically
 * isolated, so that every I/O buffer is split into exactly one segment
 * per 4 KiB page, in every configuration and every boot.
 *
 *   fragment MIB
 *
 * Allocates MIB MiB of anonymous memory, touches it, reads the frame of
 * every page from /proc/self/pagemap, and gives back (munmap) each page
 * whose frame is odd and whose two neighbouring frames it also holds.
 * The freed frames can merge with nothing (their buddies stay allocated),
 * so they sit on the allocator's order-0 lists, which order-0 allocations
 * (user buffers, fio's among them) take from first; no two of them are
 * adjacent, so no two pages of a buffer built from them are physically
 * contiguous and the block layer cannot merge them into one segment.
 * Without this, how many segments a request has depends on how
 * fragmented the guest's memory happened to be at that boot (a fresh
 * buffer per process), which differs between configurations.
 *
 * Prints one line, then holds the even frames until the guest powers
 * off (run it in the background; it frees nothing else either: memory
 * it allocated before the isolation and freed after it would be
 * contiguous pages that later allocations take first):
 *
 *   fragment mib=M pages=P freed=F kept=K skipped=S
 *
 * S counts odd frames not freed because a neighbour was not ours. The
 * guest has no transparent huge pages (CONFIG_TRANSPARENT_HUGEPAGE is
 * off in kernel/pviommu-guest.config), so nothing re-merges the pages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define PFN_MASK ((1ULL << 55) - 1)
#define PRESENT (1ULL << 63)

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Is pfn in the sorted array? */
static int held(const uint64_t *sorted, size_t n, uint64_t pfn)
{
	return bsearch(&pfn, sorted, n, sizeof(*sorted), cmp_u64) != NULL;
}

int main(int argc, char **argv)
{
	size_t mib, n, i, freed = 0, skipped = 0;
	uint64_t *pfn, *sorted;
	char *mem;
	int fd;

	if (argc != 2 || (mib = strtoul(argv[1], NULL, 10)) == 0) {
		fprintf(stderr, "usage: fragment MIB\n");
		return 2;
	}
	n = mib * (1UL << 20) / PAGE;
	mem = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		fprintf(stderr, "fragment: mmap %zu MiB: %s\n", mib, strerror(errno));
		return 1;
	}
	for (i = 0; i < n; i++)
		mem[i * PAGE] = 1;
	pfn = calloc(n, sizeof(*pfn));
	sorted = calloc(n, sizeof(*sorted));
	fd = open("/proc/self/pagemap", O_RDONLY);
	if (!pfn || !sorted || fd < 0) {
		fprintf(stderr, "fragment: pagemap: %s\n", strerror(errno));
		return 1;
	}
	if (pread(fd, pfn, n * sizeof(*pfn), (uintptr_t)mem / PAGE * sizeof(*pfn)) !=
	    (ssize_t)(n * sizeof(*pfn))) {
		fprintf(stderr, "fragment: short pagemap read\n");
		return 1;
	}
	close(fd);
	for (i = 0; i < n; i++) {
		if (!(pfn[i] & PRESENT) || !(pfn[i] & PFN_MASK)) {
			fprintf(stderr, "fragment: no frame numbers in pagemap (not root?)\n");
			return 1;
		}
		pfn[i] &= PFN_MASK;
		sorted[i] = pfn[i];
	}
	qsort(sorted, n, sizeof(*sorted), cmp_u64);
	for (i = 0; i < n; i++) {
		if (!(pfn[i] & 1))
			continue;
		if (!held(sorted, n, pfn[i] - 1) || !held(sorted, n, pfn[i] + 1)) {
			skipped++;
			continue;
		}
		if (munmap(mem + i * PAGE, PAGE)) {
			fprintf(stderr, "fragment: munmap: %s\n", strerror(errno));
			return 1;
		}
		freed++;
	}
	/* The frame lists stay allocated, see above. */
	printf("fragment mib=%zu pages=%zu freed=%zu kept=%zu skipped=%zu\n", mib, n, freed,
	       n - freed, skipped);
	fflush(stdout);
	for (;;)
		pause();
}
