/* SPDX-License-Identifier: MIT */
/* _values.h - the value types of the shset._shset module (_values.c). */
#ifndef SHSET_PY_VALUES_H
#define SHSET_PY_VALUES_H

#include <Python.h>
#include <errno.h>
#include <shset.h>

/* Readies shset.Int, UInt, Float, Bytes, String, IntArray and UIntArray
 * and adds them (and BYTES_MAX) to module @m.  0, or -1 with an exception. */
int values_register(PyObject *m);

/*
 * Calls running without the GIL are counted per object (`busy`), so that
 * close() leaves the handle to the last one out.  A child forked while some
 * ran inherits their counts but not their threads: each count is tagged
 * with the fork generation it was made in (py_fork_gen, raised in every
 * child by a pthread_atfork handler), and one from before the fork counts
 * as none.  py_busy returns the count that holds now.
 */
extern unsigned py_fork_gen;
static inline int py_busy(int *busy, unsigned *gen)
{
	unsigned now = __atomic_load_n(&py_fork_gen, __ATOMIC_RELAXED);

	if (*gen != now) {
		*busy = 0;
		*gen = now;
	}
	return *busy;
}

/*
 * Lock waits answer signals.  A library call that waits for a lock a live
 * peer holds would otherwise ignore Ctrl-C until the peer lets go.  The
 * main thread (the one that runs signal handlers) has the library's wait
 * hook, set by its first call; at each check interval of a wait (10 ms) the
 * hook, if the thread is inside a call of this module (py_hook_depth),
 * takes the GIL and runs PyErr_CheckSignals.  An exception from a handler
 * gives the wait up: the call returns -ECANCELED having changed nothing,
 * and the exception, left set, is what the caller raises (py_cancelled).
 * Setting the hook once rather than around each call saves two calls into
 * the library on every operation.
 */
extern unsigned long py_main_ident;
extern int py_hook_depth; /* under the GIL */
extern int py_hook_set;	  /* under the GIL */
int py_wait_hook(void *arg);

static inline int py_hook_on(void)
{
	if (PyThread_get_thread_ident() != py_main_ident)
		return 0;
	if (__builtin_expect(!py_hook_set, 0)) {
		shset_set_wait_hook(py_wait_hook, NULL);
		py_hook_set = 1;
	}
	py_hook_depth++;
	return 1;
}

static inline void py_hook_off(int on)
{
	/* A handler that forked left the child at depth 0 (fork_child). */
	if (on && py_hook_depth > 0)
		py_hook_depth--;
}

/* 1 if the library result @r is a wait the hook gave up on, its exception
 * set: raise that rather than OSError(ECANCELED). */
static inline int py_cancelled(long long r)
{
	return r == -ECANCELED && PyErr_Occurred();
}

/* Runs @expr (a library call) without the GIL, its lock waits answering
 * signals from the main thread. */
#define NOGIL(expr)                                                                                \
	do {                                                                                       \
		int hook_ = py_hook_on();                                                          \
		Py_BEGIN_ALLOW_THREADS expr;                                                       \
		Py_END_ALLOW_THREADS py_hook_off(hook_);                                           \
	} while (0)

#endif
