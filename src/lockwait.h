/* SPDX-License-Identifier: MIT */
/* lockwait.h - the calling thread's wait hook (private). */
#ifndef SHSET_LOCKWAIT_H
#define SHSET_LOCKWAIT_H

#include "shset/lock.h"

struct lock_wait_hook {
	shset_wait_fn fn;
	void *arg;
};

/* shset_set_wait_hook's; a wait after an operation's change is made saves
 * it, clears it and puts it back, so that -ECANCELED means nothing changed. */
extern __thread struct lock_wait_hook lock_wait_hook;

#endif
