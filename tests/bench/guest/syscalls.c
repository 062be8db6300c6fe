// SPDX-License-Identifier: GPL-2.0
/*
 * syscalls: which of the system calls fio can use the guest kernel has.
 * Prints one line, "syscalls io_setup=yes io_uring_setup=no ...": a
 * call the kernel lacks answers ENOSYS. Quicker than starting fio (and
 * its 63 libraries, under TCG) once per engine to see it fail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *has(long nr, long a, long b)
{
	errno = 0;
	/* Arguments chosen to fail harmlessly (EINVAL, EFAULT) when the
	 * call exists. */
	return syscall(nr, a, b, 0, 0) < 0 && errno == ENOSYS ? "no" : "yes";
}

int main(void)
{
	printf("syscalls io_setup=%s io_uring_setup=%s shmget=%s timerfd_create=%s\n",
	       has(SYS_io_setup, 0, 0), has(SYS_io_uring_setup, 0, 0),
	       has(SYS_shmget, 0, 0), has(SYS_timerfd_create, -1, 0));
	return 0;
}
