/* SPDX-License-Identifier: MIT */
/*
 * _values.c - the CPython types shset.Int, UInt, Float, Bytes, String,
 * IntArray and UIntArray over <shset/values.h>.
 *
 * Every type has the same object layout: one handle (shset_value *) and the
 * length the library validated when the handle was made.  Integer and
 * double operations are single atomic instructions: they run with the GIL
 * held (releasing it would cost more than the operation).  They take the
 * handle only after their arguments are converted: a conversion can run
 * Python code (__index__, __float__: Fraction's), which may close the
 * value or let another thread do it, and the handle must not be freed
 * under the call.  Byte-string operations can wait on the writers' lock,
 * so they run without the GIL; as in shset.Set, such a call counts itself
 * in `busy`, and close() of a busy value only marks it for the last call
 * out.
 *
 * In-place operators on scalars are the atomic operations themselves
 * (`v += 1` is one fetch_add) and return the object, so the name stays
 * bound to the shared value.  In-place operators that have no atomic
 * counterpart raise TypeError instead of rebinding the name to a plain
 * number.  Binary operators, int(), float(), comparisons and repr read one
 * value and work on that number.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <shset/values.h>

#include "_values.h"

typedef struct {
	PyObject ob_base; /* PyObject_HEAD */
	shset_value *h;	  /* NULL once closed */
	shset_value *closing;
	int busy;      /* byte-string calls running without the GIL (py_busy) */
	unsigned gen;  /* the fork generation busy counts in */
	unsigned kind; /* SHSET_VALUE_* */
	size_t length; /* array length or byte capacity, from the handle */
	PyObject *weakrefs;
} ValueObject;

static PyTypeObject IntType, UIntType, FloatType, BytesType, StringType, IntArrayType,
    UIntArrayType;

/* Indexed by kind. */
static PyTypeObject *const kind_type[] = {
    [SHSET_VALUE_INT] = &IntType,
    [SHSET_VALUE_UINT] = &UIntType,
    [SHSET_VALUE_FLOAT] = &FloatType,
    [SHSET_VALUE_BYTES] = &BytesType,
    [SHSET_VALUE_STRING] = &StringType,
    [SHSET_VALUE_INTARRAY] = &IntArrayType,
    [SHSET_VALUE_UINTARRAY] = &UIntArrayType,
};
#define KINDS (sizeof(kind_type) / sizeof(kind_type[0]))

/* Int, UInt or Float: what arithmetic reads through. */
static int is_number(PyObject *o)
{
	return Py_IS_TYPE(o, &IntType) || Py_IS_TYPE(o, &UIntType) || Py_IS_TYPE(o, &FloatType);
}

/* A value that compares as the object it holds (not an array). */
static int is_scalar(PyObject *o)
{
	return is_number(o) || Py_IS_TYPE(o, &BytesType) || Py_IS_TYPE(o, &StringType);
}

static int is_signed(unsigned kind)
{
	return kind == SHSET_VALUE_INT || kind == SHSET_VALUE_INTARRAY;
}

/* The handle for a call that keeps the GIL, or NULL with ValueError. */
static shset_value *value_h(ValueObject *self)
{
	if (!self->h)
		PyErr_Format(PyExc_ValueError, "operation on a closed %s", Py_TYPE(self)->tp_name);
	return self->h;
}

/* Checks a METH_FASTCALL method's argument count. */
static int nargs_ok(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
	if (nargs == want)
		return 1;
	PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)", name, want,
		     nargs);
	return 0;
}

/* Takes the handle for a call that releases the GIL. */
static shset_value *value_enter(ValueObject *self)
{
	if (!value_h(self))
		return NULL;
	py_busy(&self->busy, &self->gen);
	self->busy++;
	return self->h;
}

static void value_leave(ValueObject *self)
{
	if (--self->busy == 0 && self->closing) {
		shset_value *h = self->closing;
		self->closing = NULL;
		Py_BEGIN_ALLOW_THREADS shset_value_close(h);
		Py_END_ALLOW_THREADS
	}
}

/* Raises the Python exception for a library result < 0. */
static PyObject *value_err(ValueObject *self, int r)
{
	switch (r) {
	case -EMSGSIZE:
		return PyErr_Format(PyExc_ValueError,
				    "value longer than the capacity of %s (%zu bytes)",
				    Py_TYPE(self)->tp_name, self->length);
	case -ERANGE:
		return PyErr_Format(PyExc_IndexError, "%s index out of range",
				    Py_TYPE(self)->tp_name);
	default:
		if (py_cancelled(r))
			return NULL;
		errno = -r;
		return PyErr_SetFromErrno(PyExc_OSError);
	}
}

/* Wraps a new handle (owned from now on) in an object of its kind. */
static PyObject *value_wrap(shset_value *h)
{
	int kind = shset_value_kind(h);

	if (kind <= 0 || (size_t)kind >= KINDS) {
		NOGIL(shset_value_close(h));
		return PyErr_Format(PyExc_ValueError, "a shset value of kind %d, unknown here",
				    kind);
	}
	ValueObject *self = PyObject_New(ValueObject, kind_type[kind]);
	if (!self) {
		NOGIL(shset_value_close(h));
		return NULL;
	}
	self->h = h;
	self->closing = NULL;
	self->busy = 0;
	self->gen = py_fork_gen;
	self->kind = (unsigned)kind;
	self->length = shset_value_length(h);
	self->weakrefs = NULL;
	return (PyObject *)self;
}

/* A library create's result as a new object. */
static PyObject *value_created(int r, shset_value *h)
{
	if (r < 0) {
		if (py_cancelled(r))
			return NULL;
		errno = -r;
		return PyErr_SetFromErrno(PyExc_OSError);
	}
	return value_wrap(h);
}

static void Value_dealloc(ValueObject *self)
{
	if (self->weakrefs)
		PyObject_ClearWeakRefs((PyObject *)self);
	/* busy is 0 here: a running call holds a reference. */
	if (self->h)
		NOGIL(shset_value_close(self->h));
	PyObject_Free(self);
}

/* --- shared methods: attach, fileno, close, context manager, pickle ------------ */

PyDoc_STRVAR(attach_doc,
	     "attach(fd, /)\n--\n\n"
	     "Return the value of this type whose memfd is fd (an int, or an object\n"
	     "with fileno()).  The fd is duplicated: the caller keeps (and closes) its\n"
	     "own.  TypeError if fd holds a value of another type; OSError if it is\n"
	     "not a shset value (EMEDIUMTYPE not a memfd, EPROTO not a value, ...).");

static PyObject *Value_attach(PyObject *cls, PyObject *arg)
{
	int fd = PyObject_AsFileDescriptor(arg), r;
	unsigned kind = 0;
	shset_value *h;

	for (size_t k = 1; k < KINDS; k++)
		if (cls == (PyObject *)kind_type[k])
			kind = (unsigned)k;
	if (fd < 0)
		return NULL;
	NOGIL(r = shset_value_attach_fd(&h, fd, kind));
	if (r == -EPROTOTYPE)
		return PyErr_Format(PyExc_TypeError,
				    "fd %d holds a shset value of another type than %s", fd,
				    ((PyTypeObject *)cls)->tp_name);
	if (r < 0) {
		if (py_cancelled(r))
			return NULL;
		errno = -r;
		return PyErr_SetFromErrno(PyExc_OSError);
	}
	return value_wrap(h);
}

PyDoc_STRVAR(fileno_doc, "fileno($self, /)\n--\n\n"
			 "Return the value's memfd (owned by the object: dup it to keep it).\n"
			 "Another process attaches to it with attach().");

static PyObject *Value_fileno(ValueObject *self, PyObject *unused)
{
	(void)unused;
	if (!value_h(self))
		return NULL;
	return PyLong_FromLong(shset_value_fd(self->h));
}

PyDoc_STRVAR(close_doc, "close($self, /)\n--\n\n"
			"Detach (the value lives on while any process holds its fd).  Later\n"
			"operations raise ValueError; closing twice is harmless.");

static PyObject *Value_close(ValueObject *self, PyObject *unused)
{
	shset_value *h = self->h;

	(void)unused;
	self->h = NULL;
	if (h && py_busy(&self->busy, &self->gen))
		self->closing = h; /* the last running call closes it */
	else if (h)
		NOGIL(shset_value_close(h));
	Py_RETURN_NONE;
}

PyDoc_STRVAR(recover_doc, "recover($self, /)\n--\n\n"
			  "Take and release a byte string's writer lock, so that a lock word a\n"
			  "peer forged to name this process is freed (other writers wait for it\n"
			  "until then).  A process that wrote through this object and may sit\n"
			  "idle calls it now and then.  Returns at once for numbers and arrays.");

static PyObject *Value_recover(ValueObject *self, PyObject *unused)
{
	shset_value *h = value_enter(self);
	int r;

	(void)unused;
	if (!h)
		return NULL;
	NOGIL(r = shset_value_recover(h));
	value_leave(self);
	return r < 0 ? value_err(self, r) : Py_NewRef(Py_None);
}

static PyObject *Value_enter(ValueObject *self, PyObject *unused)
{
	(void)unused;
	if (!value_h(self))
		return NULL;
	return Py_NewRef(self);
}

static PyObject *Value_exit(ValueObject *self, PyObject *args)
{
	(void)args;
	return Value_close(self, NULL);
}

static PyObject *Value_reduce(ValueObject *self, PyObject *args)
{
	(void)args;
	return PyErr_Format(PyExc_TypeError,
			    "cannot pickle %s: its value lives in shared memory, not in the "
			    "object.  multiprocessing passes it (its file descriptor) to workers; "
			    "elsewhere send fileno() and use attach()",
			    Py_TYPE(self)->tp_name);
}

static PyObject *Value_get_closed(ValueObject *self, void *unused)
{
	(void)unused;
	return PyBool_FromLong(self->h == NULL);
}

#define COMMON_METHODS                                                                             \
	{"attach", (PyCFunction)Value_attach, METH_O | METH_CLASS, attach_doc},                    \
	    {"fileno", (PyCFunction)Value_fileno, METH_NOARGS, fileno_doc},                        \
	    {"close", (PyCFunction)Value_close, METH_NOARGS, close_doc},                           \
	    {"recover", (PyCFunction)Value_recover, METH_NOARGS, recover_doc},                     \
	    {"__enter__", (PyCFunction)Value_enter, METH_NOARGS,                                   \
	     "__enter__($self, /)\n--\n\nReturn self (a context manager closing it on exit)."},    \
	    {"__exit__", (PyCFunction)Value_exit, METH_VARARGS,                                    \
	     "__exit__($self, /, *exc_info)\n--\n\nClose the value."},                             \
	    {"__reduce__", (PyCFunction)Value_reduce, METH_NOARGS,                                 \
	     "__reduce__($self, /)\n--\n\nRaise TypeError: not picklable."},                       \
	{                                                                                          \
		"__reduce_ex__", (PyCFunction)Value_reduce, METH_O,                                \
		    "__reduce_ex__($self, protocol, /)\n--\n\nRaise TypeError: not picklable."     \
	}

/* --- 64-bit integers: scalars and arrays ------------------------------------------- */

/* A Python int as the 64-bit pattern of @kind; OverflowError out of range. */
static int int_arg(unsigned kind, PyObject *o, uint64_t *out)
{
	if (is_signed(kind)) {
		long long v = PyLong_AsLongLong(o); /* takes __index__, refuses float */
		if (v == -1 && PyErr_Occurred())
			return -1;
		*out = (uint64_t)v;
		return 0;
	}
	PyObject *i = PyNumber_Index(o);
	if (!i)
		return -1;
	unsigned long long v = PyLong_AsUnsignedLongLong(i);
	Py_DECREF(i);
	if (v == (unsigned long long)-1 && PyErr_Occurred()) {
		if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
			PyErr_Clear();
			PyErr_SetString(PyExc_OverflowError,
					"int out of range for a 64-bit unsigned value");
		}
		return -1;
	}
	*out = v;
	return 0;
}

static PyObject *int_py(unsigned kind, uint64_t v)
{
	return is_signed(kind) ? PyLong_FromLongLong((long long)v) : PyLong_FromUnsignedLongLong(v);
}

enum rmw {
	RMW_EXCHANGE,
	RMW_FETCH_ADD,
	RMW_FETCH_SUB,
	RMW_FETCH_AND,
	RMW_FETCH_OR,
	RMW_FETCH_XOR,
	RMW_ADD_FETCH,
	RMW_SUB_FETCH
};

/* The library's read-modify-write functions, per kind. */
static const struct {
	int (*i)(shset_value *, int64_t, int64_t *);
	int (*u)(shset_value *, uint64_t, uint64_t *);
	int (*ai)(shset_value *, size_t, int64_t, int64_t *);
	int (*au)(shset_value *, size_t, uint64_t, uint64_t *);
} rmw_fn[] = {
#define RMW_FNS(op)                                                                                \
	{                                                                                          \
		shset_int_##op, shset_uint_##op, shset_intarray_##op, shset_uintarray_##op         \
	}
    [RMW_EXCHANGE] = RMW_FNS(exchange),	  [RMW_FETCH_ADD] = RMW_FNS(fetch_add),
    [RMW_FETCH_SUB] = RMW_FNS(fetch_sub), [RMW_FETCH_AND] = RMW_FNS(fetch_and),
    [RMW_FETCH_OR] = RMW_FNS(fetch_or),	  [RMW_FETCH_XOR] = RMW_FNS(fetch_xor),
    [RMW_ADD_FETCH] = RMW_FNS(add_fetch), [RMW_SUB_FETCH] = RMW_FNS(sub_fetch),
#undef RMW_FNS
};

/* Applies @op with operand @arg to slot @i (scalars: 0); *res gets the
 * result as a 64-bit pattern.  Returns 0, or -1 with an exception set. */
static int int_apply(ValueObject *self, size_t i, enum rmw op, PyObject *arg, uint64_t *res)
{
	shset_value *h;
	uint64_t n;
	int r;

	if (int_arg(self->kind, arg, &n) < 0 || !(h = value_h(self)))
		return -1;
	switch (self->kind) {
	case SHSET_VALUE_INT:
		r = rmw_fn[op].i(h, (int64_t)n, (int64_t *)res);
		break;
	case SHSET_VALUE_UINT:
		r = rmw_fn[op].u(h, n, res);
		break;
	case SHSET_VALUE_INTARRAY:
		r = rmw_fn[op].ai(h, i, (int64_t)n, (int64_t *)res);
		break;
	default:
		r = rmw_fn[op].au(h, i, n, res);
		break;
	}
	if (r < 0) {
		value_err(self, r);
		return -1;
	}
	return 0;
}

static int int_load(ValueObject *self, size_t i, uint64_t *out)
{
	shset_value *h = value_h(self);
	int r;

	if (!h)
		return -1;
	switch (self->kind) {
	case SHSET_VALUE_INT:
		r = shset_int_load(h, (int64_t *)out);
		break;
	case SHSET_VALUE_UINT:
		r = shset_uint_load(h, out);
		break;
	case SHSET_VALUE_INTARRAY:
		r = shset_intarray_load(h, i, (int64_t *)out);
		break;
	default:
		r = shset_uintarray_load(h, i, out);
		break;
	}
	if (r < 0) {
		value_err(self, r);
		return -1;
	}
	return 0;
}

static int int_store(ValueObject *self, size_t i, PyObject *arg)
{
	shset_value *h;
	uint64_t n;
	int r;

	if (int_arg(self->kind, arg, &n) < 0 || !(h = value_h(self)))
		return -1;
	switch (self->kind) {
	case SHSET_VALUE_INT:
		r = shset_int_store(h, (int64_t)n);
		break;
	case SHSET_VALUE_UINT:
		r = shset_uint_store(h, n);
		break;
	case SHSET_VALUE_INTARRAY:
		r = shset_intarray_store(h, i, (int64_t)n);
		break;
	default:
		r = shset_uintarray_store(h, i, n);
		break;
	}
	if (r < 0) {
		value_err(self, r);
		return -1;
	}
	return 0;
}

/* Returns True if stored. */
static PyObject *int_cas(ValueObject *self, size_t i, PyObject *expected, PyObject *desired)
{
	shset_value *h;
	uint64_t e, d;
	int r;

	if (int_arg(self->kind, expected, &e) < 0 || int_arg(self->kind, desired, &d) < 0 ||
	    !(h = value_h(self)))
		return NULL;
	switch (self->kind) {
	case SHSET_VALUE_INT:
		r = shset_int_compare_exchange(h, (int64_t *)&e, (int64_t)d);
		break;
	case SHSET_VALUE_UINT:
		r = shset_uint_compare_exchange(h, &e, d);
		break;
	case SHSET_VALUE_INTARRAY:
		r = shset_intarray_compare_exchange(h, i, (int64_t *)&e, (int64_t)d);
		break;
	default:
		r = shset_uintarray_compare_exchange(h, i, &e, d);
		break;
	}
	if (r < 0)
		return value_err(self, r);
	return PyBool_FromLong(r);
}

/* Scalars. */

static PyObject *Int_load(ValueObject *self, PyObject *unused)
{
	uint64_t v;

	(void)unused;
	return int_load(self, 0, &v) < 0 ? NULL : int_py(self->kind, v);
}

static PyObject *Int_store(ValueObject *self, PyObject *arg)
{
	return int_store(self, 0, arg) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *int_rmw(ValueObject *self, PyObject *arg, enum rmw op)
{
	uint64_t v;

	return int_apply(self, 0, op, arg, &v) < 0 ? NULL : int_py(self->kind, v);
}

static PyObject *Int_compare_exchange(ValueObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("compare_exchange", nargs, 2))
		return NULL;
	return int_cas(self, 0, args[0], args[1]);
}

#define INT_RMW(name, op)                                                                          \
	static PyObject *Int_##name(ValueObject *self, PyObject *arg)                              \
	{                                                                                          \
		return int_rmw(self, arg, op);                                                     \
	}
INT_RMW(exchange, RMW_EXCHANGE)
INT_RMW(fetch_add, RMW_FETCH_ADD)
INT_RMW(fetch_sub, RMW_FETCH_SUB)
INT_RMW(fetch_and, RMW_FETCH_AND)
INT_RMW(fetch_or, RMW_FETCH_OR)
INT_RMW(fetch_xor, RMW_FETCH_XOR)
INT_RMW(add_fetch, RMW_ADD_FETCH)
INT_RMW(sub_fetch, RMW_SUB_FETCH)
#undef INT_RMW

/* In-place operators: one atomic operation, then the object itself. */
static PyObject *int_inplace(PyObject *self, PyObject *arg, enum rmw op)
{
	uint64_t v;

	return int_apply((ValueObject *)self, 0, op, arg, &v) < 0 ? NULL : Py_NewRef(self);
}

static PyObject *Int_iadd(PyObject *a, PyObject *b)
{
	return int_inplace(a, b, RMW_FETCH_ADD);
}
static PyObject *Int_isub(PyObject *a, PyObject *b)
{
	return int_inplace(a, b, RMW_FETCH_SUB);
}
static PyObject *Int_iand(PyObject *a, PyObject *b)
{
	return int_inplace(a, b, RMW_FETCH_AND);
}
static PyObject *Int_ior(PyObject *a, PyObject *b)
{
	return int_inplace(a, b, RMW_FETCH_OR);
}
static PyObject *Int_ixor(PyObject *a, PyObject *b)
{
	return int_inplace(a, b, RMW_FETCH_XOR);
}

static PyObject *Int_get_value(ValueObject *self, void *unused)
{
	return Int_load(self, unused);
}

static int Int_set_value(ValueObject *self, PyObject *v, void *unused)
{
	(void)unused;
	if (!v) {
		PyErr_SetString(PyExc_AttributeError, "cannot delete the value");
		return -1;
	}
	return int_store(self, 0, v);
}

/* --- doubles ------------------------------------------------------------------------ */

static int float_arg(PyObject *o, double *out)
{
	*out = PyFloat_AsDouble(o);
	return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *Float_load(ValueObject *self, PyObject *unused)
{
	shset_value *h = value_h(self);
	double v;
	int r;

	(void)unused;
	if (!h)
		return NULL;
	r = shset_float_load(h, &v);
	return r < 0 ? value_err(self, r) : PyFloat_FromDouble(v);
}

static int float_store(ValueObject *self, PyObject *arg)
{
	shset_value *h;
	double v;
	int r;

	if (float_arg(arg, &v) < 0 || !(h = value_h(self)))
		return -1;
	r = shset_float_store(h, v);
	if (r < 0) {
		value_err(self, r);
		return -1;
	}
	return 0;
}

static PyObject *Float_store(ValueObject *self, PyObject *arg)
{
	return float_store(self, arg) < 0 ? NULL : Py_NewRef(Py_None);
}

static int float_apply(ValueObject *self, PyObject *arg, int (*fn)(shset_value *, double, double *),
		       double *old)
{
	shset_value *h;
	double n;
	int r;

	if (float_arg(arg, &n) < 0 || !(h = value_h(self)))
		return -1;
	r = fn(h, n, old);
	if (r < 0) {
		value_err(self, r);
		return -1;
	}
	return 0;
}

static PyObject *Float_exchange(ValueObject *self, PyObject *arg)
{
	double old;

	return float_apply(self, arg, shset_float_exchange, &old) < 0 ? NULL
								      : PyFloat_FromDouble(old);
}

static PyObject *Float_fetch_add(ValueObject *self, PyObject *arg)
{
	double old;

	return float_apply(self, arg, shset_float_fetch_add, &old) < 0 ? NULL
								       : PyFloat_FromDouble(old);
}

static PyObject *Float_fetch_sub(ValueObject *self, PyObject *arg)
{
	double old;

	return float_apply(self, arg, shset_float_fetch_sub, &old) < 0 ? NULL
								       : PyFloat_FromDouble(old);
}

static PyObject *Float_compare_exchange(ValueObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	shset_value *h;
	double e, d;
	int r;

	if (!nargs_ok("compare_exchange", nargs, 2) || float_arg(args[0], &e) < 0 ||
	    float_arg(args[1], &d) < 0 || !(h = value_h(self)))
		return NULL;
	r = shset_float_compare_exchange(h, &e, d);
	return r < 0 ? value_err(self, r) : PyBool_FromLong(r);
}

static PyObject *Float_iadd(PyObject *a, PyObject *b)
{
	double old;

	return float_apply((ValueObject *)a, b, shset_float_fetch_add, &old) < 0 ? NULL
										 : Py_NewRef(a);
}

static PyObject *Float_isub(PyObject *a, PyObject *b)
{
	double old;

	return float_apply((ValueObject *)a, b, shset_float_fetch_sub, &old) < 0 ? NULL
										 : Py_NewRef(a);
}

static PyObject *Float_get_value(ValueObject *self, void *unused)
{
	return Float_load(self, unused);
}

static int Float_set_value(ValueObject *self, PyObject *v, void *unused)
{
	(void)unused;
	if (!v) {
		PyErr_SetString(PyExc_AttributeError, "cannot delete the value");
		return -1;
	}
	return float_store(self, v);
}

/* --- numbers: reading one value --------------------------------------------------- */

/* The number a scalar holds now, or a new reference to @o itself. */
static PyObject *number_of(PyObject *o)
{
	if (!is_number(o))
		return Py_NewRef(o);
	ValueObject *v = (ValueObject *)o;
	if (v->kind == SHSET_VALUE_FLOAT)
		return Float_load(v, NULL);
	return Int_load(v, NULL);
}

static PyObject *number_binop(PyObject *a, PyObject *b, PyObject *(*fn)(PyObject *, PyObject *))
{
	PyObject *x = number_of(a), *y = x ? number_of(b) : NULL, *r = NULL;

	if (y)
		r = fn(x, y);
	Py_XDECREF(x);
	Py_XDECREF(y);
	return r;
}

static PyObject *number_unop(PyObject *a, PyObject *(*fn)(PyObject *))
{
	PyObject *x = number_of(a), *r = x ? fn(x) : NULL;

	Py_XDECREF(x);
	return r;
}

#define BINOP(name, fn)                                                                            \
	static PyObject *Num_##name(PyObject *a, PyObject *b)                                      \
	{                                                                                          \
		return number_binop(a, b, fn);                                                     \
	}
BINOP(add, PyNumber_Add)
BINOP(sub, PyNumber_Subtract)
BINOP(mul, PyNumber_Multiply)
BINOP(truediv, PyNumber_TrueDivide)
BINOP(floordiv, PyNumber_FloorDivide)
BINOP(mod, PyNumber_Remainder)
BINOP(divmod, PyNumber_Divmod)
BINOP(and, PyNumber_And)
BINOP(or, PyNumber_Or)
BINOP(xor, PyNumber_Xor)
BINOP(lshift, PyNumber_Lshift)
BINOP(rshift, PyNumber_Rshift)
#undef BINOP

static PyObject *Num_pow(PyObject *a, PyObject *b, PyObject *c)
{
	PyObject *x = number_of(a), *y = x ? number_of(b) : NULL, *r = NULL;

	if (y)
		r = PyNumber_Power(x, y, c);
	Py_XDECREF(x);
	Py_XDECREF(y);
	return r;
}

static PyObject *Num_neg(PyObject *a)
{
	return number_unop(a, PyNumber_Negative);
}
static PyObject *Num_pos(PyObject *a)
{
	return number_unop(a, PyNumber_Positive);
}
static PyObject *Num_abs(PyObject *a)
{
	return number_unop(a, PyNumber_Absolute);
}
static PyObject *Num_invert(PyObject *a)
{
	return number_unop(a, PyNumber_Invert);
}
static PyObject *Num_int(PyObject *a)
{
	return number_unop(a, PyNumber_Long);
}
static PyObject *Num_float(PyObject *a)
{
	return number_unop(a, PyNumber_Float);
}
static PyObject *Num_index(PyObject *a)
{
	return number_of(a);
}

static int Num_bool(PyObject *a)
{
	PyObject *x = number_of(a);
	int r = x ? PyObject_IsTrue(x) : -1;

	Py_XDECREF(x);
	return r;
}

/* An in-place operator without an atomic counterpart: refused rather than
 * silently rebinding the name to a plain number. */
static PyObject *Num_inplace_refused(PyObject *a, PyObject *b)
{
	(void)b;
	return PyErr_Format(PyExc_TypeError,
			    "this in-place operator on %s is not atomic: use compare_exchange "
			    "in a loop, or store()",
			    Py_TYPE(a)->tp_name);
}

static PyObject *Num_inplace_pow_refused(PyObject *a, PyObject *b, PyObject *c)
{
	(void)c;
	return Num_inplace_refused(a, b);
}

/* Comparisons and repr of every scalar, bytes and string: one read. */
static PyObject *scalar_now(ValueObject *self);

static PyObject *Value_richcompare(PyObject *a, PyObject *b, int op)
{
	PyObject *x = scalar_now((ValueObject *)a), *y = NULL, *r = NULL;

	if (!x)
		return NULL;
	y = is_scalar(b) ? scalar_now((ValueObject *)b) : Py_NewRef(b);
	if (y)
		r = PyObject_RichCompare(x, y, op);
	Py_DECREF(x);
	Py_XDECREF(y);
	return r;
}

static PyObject *Value_repr(ValueObject *self)
{
	if (!self->h)
		return PyUnicode_FromFormat("<%s, closed>", Py_TYPE(self)->tp_name);
	if (self->kind == SHSET_VALUE_INTARRAY || self->kind == SHSET_VALUE_UINTARRAY)
		return PyUnicode_FromFormat("%s(%zu)", Py_TYPE(self)->tp_name, self->length);
	PyObject *v = scalar_now(self), *r;
	if (!v)
		return NULL;
	if (self->kind == SHSET_VALUE_BYTES || self->kind == SHSET_VALUE_STRING)
		r = PyUnicode_FromFormat("%s(%R, capacity=%zu)", Py_TYPE(self)->tp_name, v,
					 self->length);
	else
		r = PyUnicode_FromFormat("%s(%R)", Py_TYPE(self)->tp_name, v);
	Py_DECREF(v);
	return r;
}

/* str() of a scalar or string: the str of its value. */
static PyObject *Value_str(ValueObject *self)
{
	if (!self->h)
		return Value_repr(self);
	PyObject *v = scalar_now(self), *r;
	if (!v)
		return NULL;
	r = PyObject_Str(v);
	Py_DECREF(v);
	return r;
}

/* --- byte strings and strings ---------------------------------------------------------- */

/* The bytes to store: a bytes-like object for Bytes, str (UTF-8; lone
 * surrogates as the bytes they escape) for String.  Release with
 * PyBuffer_Release. */
static int bytes_arg(unsigned kind, PyObject *o, Py_buffer *view)
{
	if (kind == SHSET_VALUE_STRING) {
		if (!PyUnicode_Check(o)) {
			PyErr_Format(PyExc_TypeError, "shset.String holds str, not %.100s",
				     Py_TYPE(o)->tp_name);
			return -1;
		}
		PyObject *b = PyUnicode_AsEncodedString(o, "utf-8", "surrogateescape");
		if (!b)
			return -1;
		int r = PyObject_GetBuffer(b, view, PyBUF_SIMPLE);
		Py_DECREF(b); /* the view holds it */
		return r;
	}
	if (PyUnicode_Check(o) || !PyObject_CheckBuffer(o)) {
		PyErr_Format(PyExc_TypeError, "shset.Bytes holds a bytes-like object, not %.100s",
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	if (PyBytes_Check(o))
		return PyObject_GetBuffer(o, view, PyBUF_SIMPLE);
	/* A copy of any other bytes-like object: the library reads the bytes
	 * twice (to copy them, then to checksum what it stored) with the GIL
	 * released, and another thread may write into a bytearray meanwhile;
	 * every reader would then find the value scribbled. */
	PyObject *b = PyBytes_FromObject(o);
	if (!b)
		return -1;
	int r = PyObject_GetBuffer(b, view, PyBUF_SIMPLE);
	Py_DECREF(b); /* the view holds it */
	return r;
}

/* The Python object for @n stored bytes at @p. */
static PyObject *bytes_py(ValueObject *self, const char *p, size_t n)
{
	if (self->kind == SHSET_VALUE_STRING)
		return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "surrogateescape");
	return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
}

/*
 * Reads the value (with @store: exchanges it for @store) into a Python
 * object.  A value that does not fit the first buffer is read again into
 * one of the size the library reported; after a few values that keep
 * growing, a buffer of the capacity, which always fits.  With -ENOBUFS an
 * exchange stored nothing, so trying again is safe.
 */
static PyObject *bytes_read(ValueObject *self, const Py_buffer *store)
{
	char small[256], *buf = small;
	size_t cap = sizeof(small), len = 0;
	PyObject *big = NULL, *res = NULL;
	shset_value *h = value_enter(self);
	int r;

	if (!h)
		return NULL;
	for (int attempt = 0;; attempt++) {
		if (store)
			NOGIL(r = shset_bytes_exchange(h, store->buf, (size_t)store->len, buf, cap,
						       &len));
		else
			NOGIL(r = shset_bytes_load(h, buf, cap, &len));
		if (r != -ENOBUFS)
			break;
		cap = attempt < 3 && len < self->length ? len : self->length;
		Py_CLEAR(big);
		big = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(cap ? cap : 1));
		if (!big)
			goto out;
		buf = PyBytes_AS_STRING(big);
	}
	if (r < 0)
		value_err(self, r);
	else
		res = bytes_py(self, buf, len);
out:
	Py_XDECREF(big);
	value_leave(self);
	return res;
}

static PyObject *Bytes_load(ValueObject *self, PyObject *unused)
{
	(void)unused;
	return bytes_read(self, NULL);
}

static int bytes_store(ValueObject *self, PyObject *arg)
{
	Py_buffer view;
	shset_value *h;
	int r;

	if (bytes_arg(self->kind, arg, &view) < 0)
		return -1;
	h = value_enter(self);
	if (!h) {
		PyBuffer_Release(&view);
		return -1;
	}
	NOGIL(r = shset_bytes_store(h, view.buf, (size_t)view.len));
	value_leave(self);
	PyBuffer_Release(&view);
	if (r < 0) {
		value_err(self, r);
		return -1;
	}
	return 0;
}

static PyObject *Bytes_store(ValueObject *self, PyObject *arg)
{
	return bytes_store(self, arg) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *Bytes_exchange(ValueObject *self, PyObject *arg)
{
	Py_buffer view;
	PyObject *r;

	if (bytes_arg(self->kind, arg, &view) < 0)
		return NULL;
	if ((size_t)view.len > self->length) {
		PyBuffer_Release(&view);
		return value_err(self, -EMSGSIZE);
	}
	r = bytes_read(self, &view);
	PyBuffer_Release(&view);
	return r;
}

static PyObject *Bytes_compare_exchange(ValueObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	Py_buffer e, d;
	shset_value *h;
	int r;

	if (!nargs_ok("compare_exchange", nargs, 2) || bytes_arg(self->kind, args[0], &e) < 0)
		return NULL;
	if (bytes_arg(self->kind, args[1], &d) < 0) {
		PyBuffer_Release(&e);
		return NULL;
	}
	h = value_enter(self);
	if (h) {
		NOGIL(r = shset_bytes_compare_exchange(h, e.buf, (size_t)e.len, d.buf,
						       (size_t)d.len));
		value_leave(self);
	}
	PyBuffer_Release(&e);
	PyBuffer_Release(&d);
	if (!h)
		return NULL;
	return r < 0 ? value_err(self, r) : PyBool_FromLong(r);
}

static PyObject *Bytes_get_value(ValueObject *self, void *unused)
{
	return Bytes_load(self, unused);
}

static int Bytes_set_value(ValueObject *self, PyObject *v, void *unused)
{
	(void)unused;
	if (!v) {
		PyErr_SetString(PyExc_AttributeError, "cannot delete the value");
		return -1;
	}
	return bytes_store(self, v);
}

static PyObject *Value_get_length(ValueObject *self, void *unused)
{
	(void)unused;
	return PyLong_FromSize_t(self->length);
}

static PyObject *Bytes_bytes(ValueObject *self, PyObject *unused)
{
	return Bytes_load(self, unused);
}

static PyObject *scalar_now(ValueObject *self)
{
	switch (self->kind) {
	case SHSET_VALUE_FLOAT:
		return Float_load(self, NULL);
	case SHSET_VALUE_BYTES:
	case SHSET_VALUE_STRING:
		return Bytes_load(self, NULL);
	default:
		return Int_load(self, NULL);
	}
}

/* --- arrays ------------------------------------------------------------------------------ */

/* A Python index (negative counts from the end, as for lists). */
static int array_index(ValueObject *self, PyObject *o, size_t *out)
{
	Py_ssize_t i = PyNumber_AsSsize_t(o, PyExc_IndexError);

	if (i == -1 && PyErr_Occurred())
		return -1;
	if (i < 0)
		i += (Py_ssize_t)self->length;
	if (i < 0 || (size_t)i >= self->length) {
		PyErr_Format(PyExc_IndexError, "%s index out of range", Py_TYPE(self)->tp_name);
		return -1;
	}
	*out = (size_t)i;
	return 0;
}

static Py_ssize_t Array_len(ValueObject *self)
{
	if (!value_h(self))
		return -1;
	return (Py_ssize_t)self->length;
}

static PyObject *Array_item(ValueObject *self, Py_ssize_t i)
{
	uint64_t v;

	if (i < 0 || (size_t)i >= self->length) {
		PyErr_Format(PyExc_IndexError, "%s index out of range", Py_TYPE(self)->tp_name);
		return NULL;
	}
	return int_load(self, (size_t)i, &v) < 0 ? NULL : int_py(self->kind, v);
}

static PyObject *Array_subscript(ValueObject *self, PyObject *key)
{
	size_t i;
	uint64_t v;

	if (PySlice_Check(key))
		return PyErr_Format(PyExc_TypeError,
				    "%s does not take slices: read a[i] one by one",
				    Py_TYPE(self)->tp_name);
	if (array_index(self, key, &i) < 0 || int_load(self, i, &v) < 0)
		return NULL;
	return int_py(self->kind, v);
}

static int Array_ass_subscript(ValueObject *self, PyObject *key, PyObject *val)
{
	size_t i;

	if (!val) {
		PyErr_Format(PyExc_TypeError, "%s has a fixed length: cannot delete items",
			     Py_TYPE(self)->tp_name);
		return -1;
	}
	if (PySlice_Check(key)) {
		PyErr_Format(PyExc_TypeError, "%s does not take slices", Py_TYPE(self)->tp_name);
		return -1;
	}
	if (array_index(self, key, &i) < 0)
		return -1;
	return int_store(self, i, val);
}

static PyObject *Array_load(ValueObject *self, PyObject *arg)
{
	return Array_subscript(self, arg);
}

static PyObject *Array_store(ValueObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	size_t i;

	if (!nargs_ok("store", nargs, 2) || array_index(self, args[0], &i) < 0 ||
	    int_store(self, i, args[1]) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *array_rmw(ValueObject *self, PyObject *const *args, Py_ssize_t nargs,
			   const char *name, enum rmw op)
{
	size_t i;
	uint64_t v;

	if (!nargs_ok(name, nargs, 2) || array_index(self, args[0], &i) < 0 ||
	    int_apply(self, i, op, args[1], &v) < 0)
		return NULL;
	return int_py(self->kind, v);
}

#define ARRAY_RMW(name, op)                                                                        \
	static PyObject *Array_##name(ValueObject *self, PyObject *const *args, Py_ssize_t nargs)  \
	{                                                                                          \
		return array_rmw(self, args, nargs, #name, op);                                    \
	}
ARRAY_RMW(exchange, RMW_EXCHANGE)
ARRAY_RMW(fetch_add, RMW_FETCH_ADD)
ARRAY_RMW(fetch_sub, RMW_FETCH_SUB)
ARRAY_RMW(fetch_and, RMW_FETCH_AND)
ARRAY_RMW(fetch_or, RMW_FETCH_OR)
ARRAY_RMW(fetch_xor, RMW_FETCH_XOR)
ARRAY_RMW(add_fetch, RMW_ADD_FETCH)
ARRAY_RMW(sub_fetch, RMW_SUB_FETCH)
#undef ARRAY_RMW

static PyObject *Array_compare_exchange(ValueObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	size_t i;

	if (!nargs_ok("compare_exchange", nargs, 3) || array_index(self, args[0], &i) < 0)
		return NULL;
	return int_cas(self, i, args[1], args[2]);
}

static PyObject *Array_tolist(ValueObject *self, PyObject *unused)
{
	PyObject *l;

	(void)unused;
	if (!value_h(self))
		return NULL;
	l = PyList_New((Py_ssize_t)self->length);
	for (size_t i = 0; l && i < self->length; i++) {
		uint64_t v;
		PyObject *o = int_load(self, i, &v) < 0 ? NULL : int_py(self->kind, v);
		if (!o)
			Py_CLEAR(l);
		else
			PyList_SET_ITEM(l, (Py_ssize_t)i, o);
	}
	return l;
}

/* --- constructors --------------------------------------------------------------------------- */

static PyObject *Int_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = {"value", NULL};
	PyObject *init = NULL;
	shset_value *h = NULL;
	unsigned kind = type == &IntType ? SHSET_VALUE_INT : SHSET_VALUE_UINT;
	uint64_t v = 0;
	int r;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", names, &init))
		return NULL;
	if (init && int_arg(kind, init, &v) < 0)
		return NULL;
	if (kind == SHSET_VALUE_INT)
		NOGIL(r = shset_int_create(&h, (int64_t)v));
	else
		NOGIL(r = shset_uint_create(&h, v));
	return value_created(r, h);
}

static PyObject *Float_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = {"value", NULL};
	PyObject *init = NULL;
	shset_value *h = NULL;
	double v = 0.0;
	int r;

	(void)type;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", names, &init))
		return NULL;
	if (init && float_arg(init, &v) < 0)
		return NULL;
	NOGIL(r = shset_float_create(&h, v));
	return value_created(r, h);
}

static PyObject *Bytes_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = {"value", "capacity", NULL};
	PyObject *init = NULL;
	Py_ssize_t cap = 64;
	unsigned kind = type == &StringType ? SHSET_VALUE_STRING : SHSET_VALUE_BYTES;
	Py_buffer view = {.buf = NULL, .len = 0};
	shset_value *h = NULL;
	int r;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|On", names, &init, &cap))
		return NULL;
	if (cap < 0 || (unsigned long long)cap > SHSET_BYTES_MAX)
		return PyErr_Format(PyExc_ValueError, "capacity must be 0 to %llu bytes",
				    (unsigned long long)SHSET_BYTES_MAX);
	if (init && bytes_arg(kind, init, &view) < 0)
		return NULL;
	if (kind == SHSET_VALUE_STRING)
		NOGIL(r = shset_string_create(&h, (size_t)cap, view.buf, (size_t)view.len));
	else
		NOGIL(r = shset_bytes_create(&h, (size_t)cap, view.buf, (size_t)view.len));
	if (init)
		PyBuffer_Release(&view);
	if (r == -EMSGSIZE)
		return PyErr_Format(
		    PyExc_ValueError,
		    "initial value of %zd bytes longer than the capacity (%zd bytes)", view.len,
		    cap);
	return value_created(r, h);
}

static PyObject *Array_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = {"length", NULL};
	Py_ssize_t n;
	shset_value *h = NULL;
	int r;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "n", names, &n))
		return NULL;
	if (n < 0 || (unsigned long long)n > SHSET_ARRAY_MAX)
		return PyErr_Format(PyExc_ValueError, "length must be 0 to %llu",
				    (unsigned long long)SHSET_ARRAY_MAX);
	if (type == &IntArrayType)
		NOGIL(r = shset_intarray_create(&h, (size_t)n));
	else
		NOGIL(r = shset_uintarray_create(&h, (size_t)n));
	return value_created(r, h);
}

/* --- type objects ------------------------------------------------------------------------ */

#define GETSET_CLOSED                                                                              \
	{                                                                                          \
		"closed", (getter)Value_get_closed, NULL, "True after close().", NULL              \
	}

static PyGetSetDef Int_getset[] = {
    {"value", (getter)Int_get_value, (setter)Int_set_value,
     "The value: reading it is load(), assigning it is store(v).", NULL},
    GETSET_CLOSED,
    {NULL, NULL, NULL, NULL, NULL},
};

static PyGetSetDef Float_getset[] = {
    {"value", (getter)Float_get_value, (setter)Float_set_value,
     "The value: reading it is load(), assigning it is store(v).", NULL},
    GETSET_CLOSED,
    {NULL, NULL, NULL, NULL, NULL},
};

static PyGetSetDef Bytes_getset[] = {
    {"value", (getter)Bytes_get_value, (setter)Bytes_set_value,
     "The value: reading it is load(), assigning it is store(v).", NULL},
    {"capacity", (getter)Value_get_length, NULL, "The largest value, in bytes.", NULL},
    GETSET_CLOSED,
    {NULL, NULL, NULL, NULL, NULL},
};

static PyGetSetDef Array_getset[] = {
    GETSET_CLOSED,
    {NULL, NULL, NULL, NULL, NULL},
};

#define FAST METH_FASTCALL

static PyMethodDef Int_methods[] = {
    {"load", (PyCFunction)Int_load, METH_NOARGS, "load($self, /)\n--\n\nReturn the value."},
    {"store", (PyCFunction)Int_store, METH_O,
     "store($self, value, /)\n--\n\nStore value (OverflowError out of the 64-bit range)."},
    {"exchange", (PyCFunction)Int_exchange, METH_O,
     "exchange($self, value, /)\n--\n\nStore value; return the old value, atomically."},
    {"compare_exchange", (PyCFunction)(void (*)(void))Int_compare_exchange, FAST,
     "compare_exchange($self, expected, desired, /)\n--\n\n"
     "Store desired if the value is expected, atomically; return True if it stored."},
    {"fetch_add", (PyCFunction)Int_fetch_add, METH_O,
     "fetch_add($self, n, /)\n--\n\nAdd n (wrapping modulo 2**64); return the old value."},
    {"fetch_sub", (PyCFunction)Int_fetch_sub, METH_O,
     "fetch_sub($self, n, /)\n--\n\nSubtract n (wrapping); return the old value."},
    {"fetch_and", (PyCFunction)Int_fetch_and, METH_O,
     "fetch_and($self, n, /)\n--\n\nBitwise-and n in; return the old value."},
    {"fetch_or", (PyCFunction)Int_fetch_or, METH_O,
     "fetch_or($self, n, /)\n--\n\nBitwise-or n in; return the old value."},
    {"fetch_xor", (PyCFunction)Int_fetch_xor, METH_O,
     "fetch_xor($self, n, /)\n--\n\nBitwise-xor n in; return the old value."},
    {"add_fetch", (PyCFunction)Int_add_fetch, METH_O,
     "add_fetch($self, n, /)\n--\n\nAdd n (wrapping); return the new value."},
    {"sub_fetch", (PyCFunction)Int_sub_fetch, METH_O,
     "sub_fetch($self, n, /)\n--\n\nSubtract n (wrapping); return the new value."},
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef Float_methods[] = {
    {"load", (PyCFunction)Float_load, METH_NOARGS, "load($self, /)\n--\n\nReturn the value."},
    {"store", (PyCFunction)Float_store, METH_O, "store($self, value, /)\n--\n\nStore value."},
    {"exchange", (PyCFunction)Float_exchange, METH_O,
     "exchange($self, value, /)\n--\n\nStore value; return the old value, atomically."},
    {"compare_exchange", (PyCFunction)(void (*)(void))Float_compare_exchange, FAST,
     "compare_exchange($self, expected, desired, /)\n--\n\n"
     "Store desired if the value has the bit pattern of expected (so -0.0 is not\n"
     "0.0, and a NaN matches the same NaN); return True if it stored."},
    {"fetch_add", (PyCFunction)Float_fetch_add, METH_O,
     "fetch_add($self, n, /)\n--\n\nAdd n atomically; return the old value."},
    {"fetch_sub", (PyCFunction)Float_fetch_sub, METH_O,
     "fetch_sub($self, n, /)\n--\n\nSubtract n atomically; return the old value."},
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

#define BYTES_METHODS                                                                              \
	{"load", (PyCFunction)Bytes_load, METH_NOARGS,                                             \
	 "load($self, /)\n--\n\nReturn the value: one that a writer stored, never a mix."},        \
	    {"store", (PyCFunction)Bytes_store, METH_O,                                            \
	     "store($self, value, /)\n--\n\n"                                                      \
	     "Store value (ValueError if longer than the capacity).  A writer killed\n"            \
	     "in the middle leaves the old value or the new one."},                                \
	    {"exchange", (PyCFunction)Bytes_exchange, METH_O,                                      \
	     "exchange($self, value, /)\n--\n\nStore value; return the old value, atomically."},   \
	{                                                                                          \
		"compare_exchange", (PyCFunction)(void (*)(void))Bytes_compare_exchange, FAST,     \
		    "compare_exchange($self, expected, desired, /)\n--\n\n"                        \
		    "Store desired if the value equals expected, atomically; return True if it\n"  \
		    "stored."                                                                      \
	}

static PyMethodDef Bytes_methods[] = {
    BYTES_METHODS,
    {"__bytes__", (PyCFunction)Bytes_bytes, METH_NOARGS,
     "__bytes__($self, /)\n--\n\nbytes(b): the value, read once."},
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef String_methods[] = {
    BYTES_METHODS,
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef Array_methods[] = {
    {"load", (PyCFunction)Array_load, METH_O,
     "load($self, i, /)\n--\n\nReturn slot i (the same as a[i])."},
    {"store", (PyCFunction)(void (*)(void))Array_store, FAST,
     "store($self, i, value, /)\n--\n\nStore value in slot i (the same as a[i] = value)."},
    {"exchange", (PyCFunction)(void (*)(void))Array_exchange, FAST,
     "exchange($self, i, value, /)\n--\n\nStore value in slot i; return the old value."},
    {"compare_exchange", (PyCFunction)(void (*)(void))Array_compare_exchange, FAST,
     "compare_exchange($self, i, expected, desired, /)\n--\n\n"
     "Store desired in slot i if it holds expected; return True if it stored."},
    {"fetch_add", (PyCFunction)(void (*)(void))Array_fetch_add, FAST,
     "fetch_add($self, i, n, /)\n--\n\nAdd n to slot i (wrapping); return the old value."},
    {"fetch_sub", (PyCFunction)(void (*)(void))Array_fetch_sub, FAST,
     "fetch_sub($self, i, n, /)\n--\n\nSubtract n from slot i; return the old value."},
    {"fetch_and", (PyCFunction)(void (*)(void))Array_fetch_and, FAST,
     "fetch_and($self, i, n, /)\n--\n\nBitwise-and n into slot i; return the old value."},
    {"fetch_or", (PyCFunction)(void (*)(void))Array_fetch_or, FAST,
     "fetch_or($self, i, n, /)\n--\n\nBitwise-or n into slot i; return the old value."},
    {"fetch_xor", (PyCFunction)(void (*)(void))Array_fetch_xor, FAST,
     "fetch_xor($self, i, n, /)\n--\n\nBitwise-xor n into slot i; return the old value."},
    {"add_fetch", (PyCFunction)(void (*)(void))Array_add_fetch, FAST,
     "add_fetch($self, i, n, /)\n--\n\nAdd n to slot i; return the new value."},
    {"sub_fetch", (PyCFunction)(void (*)(void))Array_sub_fetch, FAST,
     "sub_fetch($self, i, n, /)\n--\n\nSubtract n from slot i; return the new value."},
    {"tolist", (PyCFunction)Array_tolist, METH_NOARGS,
     "tolist($self, /)\n--\n\nReturn the slots as a list (each read once, one after\n"
     "the other: not a snapshot of the whole array)."},
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

#define NUM_READS                                                                                  \
	.nb_add = Num_add, .nb_subtract = Num_sub, .nb_multiply = Num_mul,                         \
	.nb_true_divide = Num_truediv, .nb_floor_divide = Num_floordiv, .nb_remainder = Num_mod,   \
	.nb_divmod = Num_divmod, .nb_power = Num_pow, .nb_negative = Num_neg,                      \
	.nb_positive = Num_pos, .nb_absolute = Num_abs, .nb_bool = Num_bool, .nb_int = Num_int,    \
	.nb_float = Num_float, .nb_inplace_multiply = Num_inplace_refused,                         \
	.nb_inplace_true_divide = Num_inplace_refused,                                             \
	.nb_inplace_floor_divide = Num_inplace_refused,                                            \
	.nb_inplace_remainder = Num_inplace_refused, .nb_inplace_power = Num_inplace_pow_refused,  \
	.nb_inplace_lshift = Num_inplace_refused, .nb_inplace_rshift = Num_inplace_refused

static PyNumberMethods Int_as_number = {
    NUM_READS,
    .nb_and = Num_and,
    .nb_or = Num_or,
    .nb_xor = Num_xor,
    .nb_lshift = Num_lshift,
    .nb_rshift = Num_rshift,
    .nb_invert = Num_invert,
    .nb_index = Num_index,
    .nb_inplace_add = Int_iadd,
    .nb_inplace_subtract = Int_isub,
    .nb_inplace_and = Int_iand,
    .nb_inplace_or = Int_ior,
    .nb_inplace_xor = Int_ixor,
};

static PyNumberMethods Float_as_number = {
    NUM_READS,
    .nb_inplace_add = Float_iadd,
    .nb_inplace_subtract = Float_isub,
    .nb_inplace_and = Num_inplace_refused,
    .nb_inplace_or = Num_inplace_refused,
    .nb_inplace_xor = Num_inplace_refused,
};

static PySequenceMethods Array_as_sequence = {
    .sq_length = (lenfunc)Array_len,
    .sq_item = (ssizeargfunc)Array_item,
};

static PyMappingMethods Array_as_mapping = {
    .mp_length = (lenfunc)Array_len,
    .mp_subscript = (binaryfunc)Array_subscript,
    .mp_ass_subscript = (objobjargproc)Array_ass_subscript,
};

PyDoc_STRVAR(Int_doc, "Int(value=0)\n--\n\n"
		      "A signed 64-bit integer in shared memory (a memfd), shared by processes.\n\n"
		      "Every operation is one atomic instruction; arithmetic wraps modulo 2**64\n"
		      "as in C, and an int outside -2**63 .. 2**63-1 raises OverflowError.\n"
		      "v += n, v -= n, v &= m, v |= m and v ^= m are single atomic operations\n"
		      "(fetch_add, ...) and keep v bound to the shared value.  int(v), float(v),\n"
		      "comparisons, arithmetic and repr read the value once.\n\n"
		      "multiprocessing passes it to workers (fork, spawn, forkserver, Queue,\n"
		      "Pipe); other programs use attach(fd).  Plain pickle raises TypeError.");

PyDoc_STRVAR(UInt_doc, "UInt(value=0)\n--\n\n"
		       "An unsigned 64-bit integer in shared memory: as shset.Int, for\n"
		       "0 .. 2**64-1 (OverflowError outside; arithmetic wraps modulo 2**64).");

PyDoc_STRVAR(Float_doc,
	     "Float(value=0.0)\n--\n\n"
	     "A double in shared memory, shared by processes.  load, store, exchange and\n"
	     "compare_exchange are single atomic instructions; fetch_add and fetch_sub\n"
	     "(and v += x, v -= x) are a compare-and-swap loop, atomic as a whole.");

PyDoc_STRVAR(Bytes_doc,
	     "Bytes(value=b'', capacity=64)\n--\n\n"
	     "A byte string of 0 to capacity bytes in shared memory, shared by processes.\n"
	     "Readers take no lock and never see a torn value, whatever the writers\n"
	     "store; writers take a robust lock, and one killed in the middle of a store\n"
	     "leaves the old value or the new one.  A value longer than the capacity\n"
	     "raises ValueError.");

PyDoc_STRVAR(String_doc, "String(value='', capacity=64)\n--\n\n"
			 "A str in shared memory, stored as UTF-8 in at most capacity bytes\n"
			 "(ValueError beyond); otherwise as shset.Bytes.");

PyDoc_STRVAR(IntArray_doc,
	     "IntArray(length)\n--\n\n"
	     "length signed 64-bit integers (all 0 at first) in one memfd, shared by\n"
	     "processes.  a[i], a[i] = v and len(a); negative indexes count from the end\n"
	     "as for lists, IndexError out of range.  The atomic methods of shset.Int\n"
	     "take the index first: a.fetch_add(i, n), a.compare_exchange(i, e, d).\n"
	     "a[i] += n reads then stores (two operations): use a.fetch_add(i, n).");

PyDoc_STRVAR(UIntArray_doc, "UIntArray(length)\n--\n\n"
			    "length unsigned 64-bit integers in one memfd: as shset.IntArray.");

#define VALUE_TYPE(cname, pyname, doc_, new_)                                                      \
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = pyname, .tp_basicsize = sizeof(ValueObject),      \
				    .tp_dealloc = (destructor)Value_dealloc,                       \
				    .tp_flags = Py_TPFLAGS_DEFAULT, .tp_doc = doc_,                \
				    .tp_weaklistoffset = offsetof(ValueObject, weakrefs),          \
				    .tp_new = new_, .tp_repr = (reprfunc)Value_repr

static PyTypeObject IntType = {
    VALUE_TYPE(Int, "shset.Int", Int_doc, Int_new),
    .tp_str = (reprfunc)Value_str,
    .tp_as_number = &Int_as_number,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_richcompare = Value_richcompare,
    .tp_methods = Int_methods,
    .tp_getset = Int_getset,
};

static PyTypeObject UIntType = {
    VALUE_TYPE(UInt, "shset.UInt", UInt_doc, Int_new),
    .tp_str = (reprfunc)Value_str,
    .tp_as_number = &Int_as_number,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_richcompare = Value_richcompare,
    .tp_methods = Int_methods,
    .tp_getset = Int_getset,
};

static PyTypeObject FloatType = {
    VALUE_TYPE(Float, "shset.Float", Float_doc, Float_new),
    .tp_str = (reprfunc)Value_str,
    .tp_as_number = &Float_as_number,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_richcompare = Value_richcompare,
    .tp_methods = Float_methods,
    .tp_getset = Float_getset,
};

static PyTypeObject BytesType = {
    VALUE_TYPE(Bytes, "shset.Bytes", Bytes_doc, Bytes_new),
    .tp_hash = PyObject_HashNotImplemented,
    .tp_richcompare = Value_richcompare,
    .tp_methods = Bytes_methods,
    .tp_getset = Bytes_getset,
};

static PyTypeObject StringType = {
    VALUE_TYPE(String, "shset.String", String_doc, Bytes_new),
    .tp_str = (reprfunc)Value_str,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_richcompare = Value_richcompare,
    .tp_methods = String_methods,
    .tp_getset = Bytes_getset,
};

/* Iteration by index, as the sequence protocol would, but through
 * __iter__: collections.abc.Iterable (and typing) looks for that. */
static PyObject *Array_iter(PyObject *self)
{
	return PySeqIter_New(self);
}

static PyTypeObject IntArrayType = {
    VALUE_TYPE(IntArray, "shset.IntArray", IntArray_doc, Array_new),
    .tp_as_sequence = &Array_as_sequence,
    .tp_as_mapping = &Array_as_mapping,
    .tp_iter = Array_iter,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_methods = Array_methods,
    .tp_getset = Array_getset,
};

static PyTypeObject UIntArrayType = {
    VALUE_TYPE(UIntArray, "shset.UIntArray", UIntArray_doc, Array_new),
    .tp_as_sequence = &Array_as_sequence,
    .tp_as_mapping = &Array_as_mapping,
    .tp_iter = Array_iter,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_methods = Array_methods,
    .tp_getset = Array_getset,
};

int values_register(PyObject *m)
{
	static const char *const names[] = {
	    [SHSET_VALUE_INT] = "Int",
	    [SHSET_VALUE_UINT] = "UInt",
	    [SHSET_VALUE_FLOAT] = "Float",
	    [SHSET_VALUE_BYTES] = "Bytes",
	    [SHSET_VALUE_STRING] = "String",
	    [SHSET_VALUE_INTARRAY] = "IntArray",
	    [SHSET_VALUE_UINTARRAY] = "UIntArray",
	};

	for (size_t k = 1; k < KINDS; k++)
		if (PyType_Ready(kind_type[k]) < 0 ||
		    PyModule_AddObjectRef(m, names[k], (PyObject *)kind_type[k]) < 0)
			return -1;
	PyObject *max = PyLong_FromUnsignedLongLong(SHSET_BYTES_MAX);
	int r = max ? PyModule_AddObjectRef(m, "BYTES_MAX", max) : -1;
	Py_XDECREF(max);
	return r;
}
