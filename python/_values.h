/* SPDX-License-Identifier: MIT */
/* _values.h - the value types of the shset._shset module (_values.c). */
#ifndef SHSET_PY_VALUES_H
#define SHSET_PY_VALUES_H

#include <Python.h>

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

#endif
