/* SPDX-License-Identifier: MIT */
/* _values.h - the value types of the shset._shset module (_values.c). */
#ifndef SHSET_PY_VALUES_H
#define SHSET_PY_VALUES_H

#include <Python.h>

/* Readies shset.Int, UInt, Float, Bytes, String, IntArray and UIntArray
 * and adds them (and BYTES_MAX) to module @m.  0, or -1 with an exception. */
int values_register(PyObject *m);

#endif
