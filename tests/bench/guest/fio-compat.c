// SPDX-License-Identifier: GPL-2.0
/*
 * fio-compat: what Debian's fio needs from the kernel and the guest
 * kernel does not build, emulated in user space, preloaded into fio
 * (LD_PRELOAD). kernel/pviommu-guest.config builds on tinyconfig, which
 * leaves these off:
 *
 * - System V shared memory (CONFIG_SYSVIPC): fio keeps its job table in
 *   a segment (shmget(IPC_PRIVATE), shmat, then forks its jobs). Here a
 *   shared anonymous mapping, which forked jobs inherit as they would an
 *   attached segment. Only private segments, all fio asks for unless
 *   told iomem=shm (the bench does not).
 * - timerfd (CONFIG_TIMERFD): fio's helper thread arms a one-shot
 *   timerfd and select()s on it. Here one end of a socket pair that a
 *   timer thread writes an 8-byte expiration count to.
 *
 * Each call tries the kernel first and is emulated only on ENOSYS, so
 * on a kernel that has the feature nothing changes. Neither emulation
 * is on fio's I/O path: the job table is set up once, the helper
 * thread wakes a few times a second.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

/* ------------------------------------------------------------ SysV shm */

#define SEGS 64
#define SHM_BASE 0x7e000000 /* ids of emulated segments */

static struct {
	void *addr;
	size_t size;
} segs[SEGS];

static int emulated_id(int id)
{
	return id >= SHM_BASE && id < SHM_BASE + SEGS && segs[id - SHM_BASE].addr;
}

int shmget(key_t key, size_t size, int flags)
{
	int i, r = REAL(shmget)(key, size, flags);

	if (r >= 0 || errno != ENOSYS)
		return r;
	if (key != IPC_PRIVATE) {
		errno = ENOSYS;
		return -1;
	}
	for (i = 0; i < SEGS; i++) {
		if (segs[i].addr)
			continue;
		segs[i].addr = mmap(NULL, size, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (segs[i].addr == MAP_FAILED) {
			segs[i].addr = NULL;
			errno = ENOMEM;
			return -1;
		}
		segs[i].size = size;
		return SHM_BASE + i;
	}
	errno = ENOSPC;
	return -1;
}

void *shmat(int id, const void *addr, int flags)
{
	if (!emulated_id(id))
		return REAL(shmat)(id, addr, flags);
	if (addr) {
		errno = EINVAL;
		return (void *)-1;
	}
	return segs[id - SHM_BASE].addr;
}

int shmdt(const void *addr)
{
	int i;

	for (i = 0; i < SEGS; i++)
		if (segs[i].addr == addr)
			return 0; /* stays mapped until exit, like an attached segment */
	return REAL(shmdt)(addr);
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
	if (!emulated_id(id))
		return REAL(shmctl)(id, cmd, buf);
	switch (cmd) {
	case IPC_RMID:
		return 0;
	case IPC_STAT:
		if (buf) {
			memset(buf, 0, sizeof(*buf));
			buf->shm_segsz = segs[id - SHM_BASE].size;
			buf->shm_nattch = 1;
		}
		return 0;
	default:
		errno = EINVAL;
		return -1;
	}
}

/* ------------------------------------------------------------- timerfd */

#define TIMERS 8

static struct timer {
	int rfd, wfd;		/* the caller's end, the timer thread's end */
	int armed;
	struct timespec deadline, interval;
	pthread_mutex_t lock;
	pthread_cond_t cond;
} timers[TIMERS];
static pthread_mutex_t timers_lock = PTHREAD_MUTEX_INITIALIZER;

static struct timer *find(int fd)
{
	int i;

	for (i = 0; i < TIMERS; i++)
		if (timers[i].rfd == fd && timers[i].wfd)
			return &timers[i];
	return NULL;
}

static int before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void add(struct timespec *t, const struct timespec *d)
{
	t->tv_sec += d->tv_sec;
	t->tv_nsec += d->tv_nsec;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

static void *timer_thread(void *arg)
{
	struct timer *t = arg;
	struct timespec now;

	pthread_mutex_lock(&t->lock);
	for (;;) {
		if (!t->armed) {
			pthread_cond_wait(&t->cond, &t->lock);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (before(&now, &t->deadline)) {
			pthread_cond_timedwait(&t->cond, &t->lock, &t->deadline);
			continue;
		}
		{
			uint64_t one = 1;

			/* No SIGPIPE if the caller closed its end. */
			if (send(t->wfd, &one, sizeof(one), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
			    errno == EPIPE)
				break;
		}
		if (t->interval.tv_sec || t->interval.tv_nsec)
			add(&t->deadline, &t->interval);
		else
			t->armed = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int timerfd_create(int clockid, int flags)
{
	int r = REAL(timerfd_create)(clockid, flags), sv[2], i;
	pthread_condattr_t ca;
	pthread_t th;

	if (r >= 0 || errno != ENOSYS)
		return r;
	if (clockid != CLOCK_MONOTONIC) {
		errno = EINVAL;
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC |
		       ((flags & TFD_NONBLOCK) ? SOCK_NONBLOCK : 0), 0, sv))
		return -1;
	pthread_mutex_lock(&timers_lock);
	for (i = 0; i < TIMERS && timers[i].wfd; i++)
		;
	if (i == TIMERS) {
		pthread_mutex_unlock(&timers_lock);
		close(sv[0]);
		close(sv[1]);
		errno = EMFILE;
		return -1;
	}
	memset(&timers[i], 0, sizeof(timers[i]));
	timers[i].rfd = sv[0];
	timers[i].wfd = sv[1];
	pthread_mutex_init(&timers[i].lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&timers[i].cond, &ca);
	pthread_mutex_unlock(&timers_lock);
	if (pthread_create(&th, NULL, timer_thread, &timers[i])) {
		errno = EAGAIN;
		return -1;
	}
	pthread_detach(th);
	return sv[0];
}

int timerfd_settime(int fd, int flags, const struct itimerspec *new, struct itimerspec *old)
{
	struct timer *t = find(fd);
	uint64_t drain;

	if (!t)
		return REAL(timerfd_settime)(fd, flags, new, old);
	pthread_mutex_lock(&t->lock);
	if (old)
		memset(old, 0, sizeof(*old));
	/* Arming resets the expiration count, as timerfd does. */
	while (recv(t->rfd, &drain, sizeof(drain), MSG_DONTWAIT) > 0)
		;
	t->armed = new->it_value.tv_sec || new->it_value.tv_nsec;
	t->interval = new->it_interval;
	if (flags & TFD_TIMER_ABSTIME) {
		t->deadline = new->it_value;
	} else {
		clock_gettime(CLOCK_MONOTONIC, &t->deadline);
		add(&t->deadline, &new->it_value);
	}
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int timerfd_gettime(int fd, struct itimerspec *cur)
{
	if (!find(fd))
		return REAL(timerfd_gettime)(fd, cur);
	memset(cur, 0, sizeof(*cur));
	return 0;
}
