/* SPDX-License-Identifier: MIT */
/* crashpoint.c - see crashpoint.h.  Compiled into test builds only. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "crashpoint.h"

#define MAX_SITES 128

static unsigned long armed, count;
static const char *site_name[MAX_SITES];
static unsigned long site_hits[MAX_SITES];
static int nsites;
/* Writers of different shards in the threads of one process reach
 * crash points at once, and so do a load's two threads (set.c). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

void crashpoint_arm(unsigned long k)
{
	armed = k;
	count = 0;
	memset(site_hits, 0, sizeof(site_hits));
}

unsigned long crashpoint_count(void)
{
	return count;
}

void crashpoint_hit(const char *site)
{
	int i;

	pthread_mutex_lock(&mu);
	for (i = 0; i < nsites && site_name[i] != site; i++)
		;
	if (i == nsites && nsites < MAX_SITES)
		site_name[nsites++] = site;
	if (i < MAX_SITES)
		site_hits[i]++;
	if (++count == armed)
		kill(getpid(), SIGKILL);
	pthread_mutex_unlock(&mu);
}

int crashpoint_sites(const char **names, unsigned long *hits, int max)
{
	int n = nsites < max ? nsites : max;

	memcpy(names, site_name, (size_t)n * sizeof(*names));
	memcpy(hits, site_hits, (size_t)n * sizeof(*hits));
	return n;
}
