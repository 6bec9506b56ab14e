/* SPDX-License-Identifier: MIT */
/*
 * lease.c - which process holds which slot, and whether it still lives.
 *
 * A process claims slot i by taking an F_OFD_SETLK write lock on byte i of
 * its own open file description of the shared file (a reopen through
 * /proc/self/fd, so no other handle shares it).  The kernel drops the lock
 * when the last descriptor of that description closes, that is when the
 * process dies.  F_OFD_GETLK from another description then tells a waiter
 * whether the owner lives.  Each claim bumps the slot's generation, which the
 * lock word records, so a slot reused by a new process is not mistaken for
 * the dead owner.
 *
 * The generation in the slot table is a word any peer can write: bumping a
 * live holder's would make it look dead, and waiters would take its lock
 * while it is inside.  So the claimer also locks a byte of its own for the
 * pair (slot, generation), past any slot byte (gen_byte), and a waiter asks
 * the kernel about that byte alone.  The shared word only suggests which
 * generation to try next; a byte already locked by someone is skipped.
 *
 * fork: the child would share the parent's description and keep the slot
 * alive after the parent died, and would look like the parent to the locks.
 * A pthread_atfork child handler closes every inherited description; the
 * child claims a fresh slot on its next lock operation (lease_me()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "prim.h"
#include "lease.h"

unsigned lease_forkgen;

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shset_lease *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
__thread uint32_t lease_tid_cache __attribute__((tls_model("initial-exec")));

static void fork_prepare(void)
{
	pthread_mutex_lock(&registry_mu);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&registry_mu);
}

static void fork_child(void)
{
	for (struct shset_lease *l = registry; l; l = l->next) {
		if (l->ofd >= 0)
			close(l->ofd);
		l->ofd = -1;
	}
	__atomic_add_fetch(&lease_forkgen, 1, __ATOMIC_RELAXED);
	lease_tid_cache = 0;
	pthread_mutex_unlock(&registry_mu);
}

static void install_atfork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

uint32_t lease_tid_slow(void)
{
	lease_tid_cache = (uint32_t)gettid();
	return lease_tid_cache;
}

/* The byte whose OFD lock says that the claim (slot, gen) lives: past every
 * slot byte, one per generation of each slot (2^29 bytes in all). */
#define GEN_BYTES_OFF (1ll << 40)
static off_t gen_byte(uint32_t slot, uint32_t gen)
{
	return GEN_BYTES_OFF + ((off_t)slot << LEASE_GEN_BITS) + (off_t)(gen & LEASE_GEN_MASK);
}

/* Generations a claim tries on one slot before it moves to the next slot:
 * only a peer holding those bytes makes them fail. */
#define GEN_TRIES 64

static int ofd_probe(int fd, off_t at)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

/* Claims a slot with a fresh description of l->src_fd.  Registry locked. */
static int claim(struct shset_lease *l)
{
	char path[64];
	int ofd, err;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", l->src_fd);
	ofd = open(path, O_RDWR | O_CLOEXEC);
	if (ofd < 0)
		return -errno;
	/* Start at a pid-dependent slot so concurrent attachers rarely collide. */
	uint32_t start = (uint32_t)getpid() % l->nslots;
	for (uint32_t i = 0; i < l->nslots; i++) {
		uint32_t s = (start + i) % l->nslots;
		struct flock fl = {
		    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = s, .l_len = 1};

		if (fcntl(ofd, F_OFD_SETLK, &fl) == 0) {
			struct shset_lease_slot *sl = &l->slots[s];

			for (int n = 0; n < GEN_TRIES; n++) {
				uint32_t gen = __atomic_add_fetch(&sl->gen, 1, __ATOMIC_ACQ_REL) &
					       LEASE_GEN_MASK;
				struct flock gl = {.l_type = F_WRLCK,
						   .l_whence = SEEK_SET,
						   .l_start = gen_byte(s, gen),
						   .l_len = 1};

				if (fcntl(ofd, F_OFD_SETLK, &gl) < 0) {
					if (errno == EAGAIN || errno == EACCES)
						continue;
					err = -errno;
					close(ofd);
					return err;
				}
				__atomic_store_n(&sl->pid, (uint32_t)getpid(), __ATOMIC_RELAXED);
				__atomic_store_n(&sl->since_ns, prim_real_ns(), __ATOMIC_RELAXED);
				l->ofd = ofd;
				l->slot = s;
				l->gen = gen;
				l->me = (s + 1) | (gen << LEASE_GEN_SHIFT);
				l->forkgen = __atomic_load_n(&lease_forkgen, __ATOMIC_RELAXED);
				return 0;
			}
			/* Someone holds every generation byte we tried. */
			fl.l_type = F_UNLCK;
			fcntl(ofd, F_OFD_SETLK, &fl);
			continue;
		}
		if (errno != EAGAIN && errno != EACCES) {
			err = -errno;
			close(ofd);
			return err;
		}
	}
	close(ofd);
	return -EUSERS;
}

int lease_reclaim(struct shset_lease *l)
{
	int err = 0;

	pthread_mutex_lock(&registry_mu);
	if (l->forkgen != __atomic_load_n(&lease_forkgen, __ATOMIC_RELAXED)) {
		if (l->ofd >= 0)
			close(l->ofd);
		l->ofd = -1;
		l->me = 0;
		err = claim(l);
	}
	pthread_mutex_unlock(&registry_mu);
	return err;
}

int shset_lease_open(shset_lease **out, int fd, struct shset_lease_slot *slots, uint32_t nslots)
{
	struct shset_lease *l;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (fd < 0 || !slots || nslots == 0 || nslots > SHSET_LEASE_SLOTS_MAX)
		return -EINVAL;
	pthread_once(&atfork_once, install_atfork);
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->src_fd = fd;
	l->ofd = -1;
	l->slots = slots;
	l->nslots = nslots;
	l->check_ns = 10 * 1000 * 1000;
	pthread_mutex_lock(&registry_mu);
	err = claim(l);
	if (err == 0) {
		l->next = registry;
		registry = l;
	}
	pthread_mutex_unlock(&registry_mu);
	if (err) {
		free(l);
		return err;
	}
	*out = l;
	return 0;
}

void shset_lease_close(shset_lease *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&registry_mu);
	for (struct shset_lease **p = &registry; *p; p = &(*p)->next) {
		if (*p == l) {
			*p = l->next;
			break;
		}
	}
	if (l->ofd >= 0) {
		/* Only our own claim: a stale one after fork is the parent's. */
		__atomic_store_n(&l->slots[l->slot].pid, 0, __ATOMIC_RELAXED);
		close(l->ofd);
	}
	pthread_mutex_unlock(&registry_mu);
	free(l->watch);
	free(l);
}

int lease_watch(struct shset_lease *l, shset_lock *const *locks, uint32_t n)
{
	shset_lock **w = calloc(n ? n : 1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		w[i] = locks[i];
	pthread_mutex_lock(&registry_mu);
	shset_lock **old = l->watch;
	l->watch = w;
	l->nwatch = n;
	pthread_mutex_unlock(&registry_mu);
	free(old);
	return 0;
}

int lease_each_watched(void (*fn)(shset_lock *lk, uint32_t me, void *arg), void *arg)
{
	if (pthread_mutex_trylock(&registry_mu))
		return -EBUSY;
	unsigned fg = __atomic_load_n(&lease_forkgen, __ATOMIC_RELAXED);
	for (struct shset_lease *l = registry; l; l = l->next) {
		/* A child's lease not yet reclaimed still holds the parent's
		 * value: those words are the parent's, not ours. */
		if (l->forkgen != fg || !l->me || l->ofd < 0)
			continue;
		for (uint32_t i = 0; i < l->nwatch; i++)
			fn(l->watch[i], l->me, arg);
	}
	pthread_mutex_unlock(&registry_mu);
	return 0;
}

int shset_lease_slot(shset_lease *l)
{
	if (!l)
		return -EINVAL;
	if (!lease_me(l))
		return -EUSERS;
	return (int)l->slot;
}

int shset_lease_set_check_interval(shset_lease *l, uint64_t ns)
{
	if (!l || ns < 1000 || ns > 60ull * 1000000000u)
		return -EINVAL;
	l->check_ns = ns;
	return 0;
}

int shset_lease_probe(int fd, uint32_t slot)
{
	if (fd < 0 || slot >= SHSET_LEASE_SLOTS_MAX)
		return -EINVAL;
	return ofd_probe(fd, (off_t)slot);
}

int shset_lease_slot_alive(shset_lease *l, uint32_t slot)
{
	if (!l || slot >= l->nslots)
		return -EINVAL;
	if (!lease_me(l))
		return -EUSERS;
	if (slot == l->slot)
		return 1;
	return ofd_probe(l->ofd, (off_t)slot);
}

int lease_owner_alive(struct shset_lease *l, uint32_t owner)
{
	uint32_t slot = owner & LEASE_SLOT_MASK;
	uint32_t gen = (owner >> LEASE_GEN_SHIFT) & LEASE_GEN_MASK;
	int r;

	/* A slot outside the table can only come from a scribbled word. */
	if (slot == 0 || slot > l->nslots)
		return 0;
	if (owner == l->me)
		return LEASE_OWNER_SELF;
	/* The kernel's word on the claim (slot, gen), not the slot table's
	 * generation, which a peer can bump. */
	r = ofd_probe(l->ofd, gen_byte(slot - 1, gen));
	/* If we cannot tell, assume alive: taking a live owner's lock is worse. */
	return r != 0;
}

int lease_holder_alive(struct shset_lease *l, const shset_lock *lk)
{
	uint32_t owner = __atomic_load_n(&lk->word, __ATOMIC_RELAXED) & LEASE_OWNER_MASK;

	return owner && lease_owner_alive(l, owner) == 1;
}
