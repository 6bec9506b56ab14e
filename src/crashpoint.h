/* SPDX-License-Identifier: MIT */
/*
 * crashpoint.h - numbered points where a test build can kill itself.
 *
 * With SHSET_CRASHPOINTS defined (cmake -DSHSET_CRASHPOINTS=ON, tests only),
 * every step of every mutation passes a CRASH_POINT.  crashpoint_arm(k)
 * makes the k-th point reached from then on raise SIGKILL, so a harness can
 * kill an operation at each of its steps in turn.  Without the option the
 * points compile to nothing.
 */
#ifndef SHSET_CRASHPOINT_H
#define SHSET_CRASHPOINT_H

#ifdef SHSET_CRASHPOINTS
void crashpoint_hit(const char *site);
#define CRASH_POINT(site) crashpoint_hit(site)
#else
#define CRASH_POINT(site) ((void)0)
#endif

/* Counting starts at 0 after arming; @k == 0 only counts. */
void crashpoint_arm(unsigned long k);
unsigned long crashpoint_count(void);
/* The distinct sites reached since the process started, for coverage. */
int crashpoint_sites(const char **names, unsigned long *hits, int max);

#endif
