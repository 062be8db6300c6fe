// SPDX-License-Identifier: GPL-2.0
/*
 * layout: the guest's own count of how an I/O process's buffers lie in
 * physical memory, the guest-side check that a request has one segment
 * per page (see fragment.c) in configurations whose disk does not count
 * descriptors (QEMU's own virtio-blk).
 *
 *   layout PID
 *
 * Walks PID's private anonymous writable mappings (where fio's I/O
 * buffers live) and, from /proc/PID/pagemap, counts the resident pages
 * and the pairs of virtually consecutive resident pages that are also
 * physically consecutive (which the block layer would merge into one
 * segment). Prints
 *
 *   layout pid=N mappings=M pages=P adjacent=A
 *
 * A = 0 means every page of every buffer is a segment of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGE 4096UL
#define PFN_MASK ((1ULL << 55) - 1)
#define PRESENT (1ULL << 63)

int main(int argc, char **argv)
{
	unsigned long long pages = 0, adjacent = 0, mappings = 0;
	char path[64], line[512];
	FILE *maps;
	int pm;

	if (argc != 2) {
		fprintf(stderr, "usage: layout PID\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/proc/%s/maps", argv[1]);
	maps = fopen(path, "r");
	snprintf(path, sizeof(path), "/proc/%s/pagemap", argv[1]);
	pm = open(path, O_RDONLY);
	if (!maps || pm < 0) {
		fprintf(stderr, "layout: %s: %s\n", path, strerror(errno));
		return 1;
	}
	while (fgets(line, sizeof(line), maps)) {
		unsigned long start, end, off, ino;
		char perms[8], dev[16], name[256] = "";
		uint64_t prev = 0, e;
		unsigned long va;

		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %255s", &start, &end, perms, &off, dev,
			   &ino, name) < 6)
			continue;
		/* Private, writable, anonymous (or the heap). */
		if (perms[1] != 'w' || perms[3] != 'p' || ino != 0 ||
		    (name[0] && strcmp(name, "[heap]")))
			continue;
		mappings++;
		for (va = start; va < end; va += PAGE) {
			if (pread(pm, &e, sizeof(e), va / PAGE * sizeof(e)) != sizeof(e))
				break;
			if (!(e & PRESENT)) {
				prev = 0;
				continue;
			}
			e &= PFN_MASK;
			pages++;
			if (prev && e == prev + 1)
				adjacent++;
			prev = e;
		}
	}
	fclose(maps);
	close(pm);
	printf("layout pid=%s mappings=%llu pages=%llu adjacent=%llu\n", argv[1], mappings, pages,
	       adjacent);
	return 0;
}
