// SPDX-License-Identifier: GPL-2.0
/*
 * dio: times sequential O_DIRECT I/O on a block device and prints one
 * machine-readable line. Built static (gcc -static -O2) into the bench
 * initramfs; busybox dd cannot report per-I/O time precisely enough.
 *
 *   dio read|write DEVICE BLOCK_BYTES MAX_IOS MAX_SECONDS REGION_BYTES
 *
 * Issues one I/O of BLOCK_BYTES at a time from offset 0, wrapping at
 * REGION_BYTES, until MAX_IOS I/Os are done or MAX_SECONDS have passed
 * (the clock is read after every I/O), then prints
 *
 *   dio op=read bs=4096 ios=N bytes=B ns=T mbps=X us_per_io=Y
 *
 * MB/s is 10^6 bytes per second. The buffer is page-aligned and owns its
 * pages, as O_DIRECT needs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long long bs, max_ios, region, start, end, ios = 0, off = 0;
	double max_ns;
	void *buf;
	int wr, fd;

	if (argc != 7) {
		fprintf(stderr, "usage: dio read|write DEVICE BLOCK_BYTES MAX_IOS MAX_SECONDS REGION_BYTES\n");
		return 2;
	}
	wr = !strcmp(argv[1], "write");
	if (!wr && strcmp(argv[1], "read")) {
		fprintf(stderr, "dio: unknown operation %s\n", argv[1]);
		return 2;
	}
	bs = atoll(argv[3]);
	max_ios = atoll(argv[4]);
	max_ns = atof(argv[5]) * 1e9;
	region = atoll(argv[6]);
	if (bs <= 0 || bs % 4096 || region < bs || max_ios <= 0) {
		fprintf(stderr, "dio: bad sizes\n");
		return 2;
	}
	if (posix_memalign(&buf, 4096, bs)) {
		fprintf(stderr, "dio: no memory\n");
		return 1;
	}
	memset(buf, 0x5a, bs);
	fd = open(argv[2], (wr ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "dio: open %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	start = now_ns();
	end = start;
	while (ios < max_ios && end - start < max_ns) {
		ssize_t n = wr ? pwrite(fd, buf, bs, off) : pread(fd, buf, bs, off);

		if (n != bs) {
			fprintf(stderr, "dio: %s at %lld: %s\n", argv[1], off,
				n < 0 ? strerror(errno) : "short");
			return 1;
		}
		ios++;
		off += bs;
		if (off + bs > region)
			off = 0;
		end = now_ns();
	}
	close(fd);
	printf("dio op=%s bs=%lld ios=%lld bytes=%lld ns=%lld mbps=%.3f us_per_io=%.3f\n",
	       argv[1], bs, ios, ios * bs, end - start,
	       ios * bs * 1e3 / (double)(end - start),
	       (end - start) / 1e3 / (double)ios);
	return 0;
}
