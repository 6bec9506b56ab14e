/* SPDX-License-Identifier: MIT */
/*
 * _shset.c - the CPython type shset.Set over the C library.
 *
 * A Set owns one handle (shset *).  Keys are converted between Python
 * objects and the bytes the library stores with the GIL held; every library
 * call that can wait on the set's lock, or take long, runs with the GIL
 * released.  While the GIL is released another thread may call close(), so
 * each call counts itself in `busy` and close() of a busy Set only marks it;
 * the last call out closes the handle (all of this under the GIL).
 *
 * Whole-set reads (iteration, snapshot, operators) collect one consistent
 * state with shset_foreach into a private buffer first, without the GIL,
 * then build Python objects from the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <shset.h>

#include "_values.h"

/* --- errors ------------------------------------------------------------------ */

/* Raises OSError (the subclass for the errno) for a library result < 0. */
static PyObject *err_lib(int r)
{
	if (py_cancelled(r))
		return NULL;
	errno = -r;
	return PyErr_SetFromErrno(PyExc_OSError);
}

static PyObject *err_lib_path(int r, PyObject *path)
{
	if (py_cancelled(r))
		return NULL;
	errno = -r;
	return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
}

/* --- keys -------------------------------------------------------------------- */

/* The set's key type as the Python type object (borrowed). */
static PyObject *keys_pytype(int type)
{
	switch (type) {
	case SHSET_KEYS_STR:
		return (PyObject *)&PyUnicode_Type;
	case SHSET_KEYS_INT:
		return (PyObject *)&PyLong_Type;
	default:
		return (PyObject *)&PyBytes_Type;
	}
}

static const char *keys_name(int type)
{
	return ((PyTypeObject *)keys_pytype(type))->tp_name;
}

/* One key as the bytes the library stores.  p/n stay valid until
 * key_release: they point into the caller's immutable object (kept alive
 * by the caller), into tmp, or into buf. */
struct key {
	const char *p;
	Py_ssize_t n;
	PyObject *tmp;
	char buf[24];
};

static void key_release(struct key *k)
{
	Py_CLEAR(k->tmp);
}

/* Canonical decimal of a Python int (bool counts as 0/1, as sets see it). */
static int key_from_int(PyObject *o, struct key *k)
{
	int overflow;
	long long v = PyLong_AsLongLongAndOverflow(o, &overflow);

	if (v == -1 && PyErr_Occurred())
		return -1;
	if (!overflow) {
		/* Formatted here: no temporary str object on the common path. */
		char *end = k->buf + sizeof(k->buf), *q = end;
		unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
		do {
			*--q = (char)('0' + u % 10);
			u /= 10;
		} while (u);
		if (v < 0)
			*--q = '-';
		k->p = q;
		k->n = end - q;
		return 1;
	}
	/* int's own repr, not str(): a subclass (bool included) may override
	 * __str__ but not the value.  Ints of more than sys.get_int_max_str_digits()
	 * digits raise ValueError here, as str(n) would. */
	k->tmp = PyLong_Type.tp_repr(o);
	if (!k->tmp)
		return -1;
	k->p = PyUnicode_AsUTF8AndSize(k->tmp, &k->n);
	return k->p ? 1 : -1;
}

static int key_from_str(PyObject *o, struct key *k)
{
	k->p = PyUnicode_AsUTF8AndSize(o, &k->n);
	if (k->p)
		return 1;
	if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
		return -1;
	/* Lone surrogates: the keys iteration yields for bytes that are not
	 * UTF-8 (surrogateescape) must map back to those bytes. */
	PyErr_Clear();
	k->tmp = PyUnicode_AsEncodedString(o, "utf-8", "surrogateescape");
	if (!k->tmp)
		return -1;
	k->p = PyBytes_AS_STRING(k->tmp);
	k->n = PyBytes_GET_SIZE(k->tmp);
	return 1;
}

/*
 * Converts @o to the stored bytes of a set of key type @type.
 * Returns 1 with *k filled, 0 if @o is not of the key type (no exception
 * set), -1 with an exception set.  ValueError for keys over SHSET_KEY_MAX.
 */
static int key_get(int type, PyObject *o, struct key *k)
{
	int r;

	k->tmp = NULL;
	switch (type) {
	case SHSET_KEYS_STR:
		if (!PyUnicode_Check(o))
			return 0;
		r = key_from_str(o, k);
		break;
	case SHSET_KEYS_INT:
		if (!PyLong_Check(o))
			return 0;
		r = key_from_int(o, k);
		break;
	default:
		if (PyBytes_Check(o)) {
			k->p = PyBytes_AS_STRING(o);
			k->n = PyBytes_GET_SIZE(o);
			r = 1;
			break;
		}
		if (!PyObject_CheckBuffer(o))
			return 0;
		/* A copy of any other bytes-like object: the library reads a
		 * key more than once (to hash, compare and store it) with the
		 * GIL released, and another thread may write into a bytearray
		 * meanwhile; a key stored under another's hash is found by no
		 * process.  Too long for a key: not copied. */
		Py_buffer view;
		if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0)
			return -1;
		k->n = view.len;
		if ((size_t)view.len <= SHSET_KEY_MAX)
			k->tmp = PyBytes_FromStringAndSize(view.buf, view.len);
		PyBuffer_Release(&view);
		if ((size_t)k->n <= SHSET_KEY_MAX && !k->tmp)
			return -1;
		k->p = k->tmp ? PyBytes_AS_STRING(k->tmp) : NULL;
		r = 1;
		break;
	}
	if (r == 1 && (size_t)k->n > SHSET_KEY_MAX) {
		PyErr_Format(PyExc_ValueError, "key of %zd bytes: at most %u bytes", k->n,
			     SHSET_KEY_MAX);
		r = -1;
	}
	if (r < 0)
		key_release(k);
	return r;
}

static void key_type_error(int type, PyObject *o)
{
	PyErr_Format(PyExc_TypeError, "shset.Set of %s keys: key must be %s, not %.100s",
		     keys_name(type),
		     type == SHSET_KEYS_BYTES ? "a bytes-like object" : keys_name(type),
		     Py_TYPE(o)->tp_name);
}

/* key_get for mutations: a key of another type is a TypeError. */
static int key_get_strict(int type, PyObject *o, struct key *k)
{
	int r = key_get(type, o, k);

	if (r == 0)
		key_type_error(type, o);
	return r == 1 ? 0 : -1;
}

/* Parses canonical decimal (-?[1-9][0-9]*|0); anything else is an error. */
static PyObject *int_from_key(const char *p, size_t n)
{
	size_t i = p[0] == '-';

	if (n == 0 || i == n || (p[i] == '0' && (n > i + 1 || i)))
		goto bad;
	for (size_t j = i; j < n; j++)
		if (p[j] < '0' || p[j] > '9')
			goto bad;
	if (n - i <= 18) {
		long long v = 0;
		for (size_t j = i; j < n; j++)
			v = v * 10 + (p[j] - '0');
		return PyLong_FromLongLong(i ? -v : v);
	}
	char *z = PyMem_Malloc(n + 1);
	if (!z)
		return PyErr_NoMemory();
	memcpy(z, p, n);
	z[n] = 0;
	PyObject *r = PyLong_FromString(z, NULL, 10);
	PyMem_Free(z);
	return r;
bad:
	PyObject *raw = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
	if (raw) {
		PyErr_Format(PyExc_ValueError,
			     "shset.Set of int keys holds %R, which is not a canonical decimal "
			     "integer (written by another program?)",
			     raw);
		Py_DECREF(raw);
	}
	return NULL;
}

/* The Python object for stored bytes. */
static PyObject *key_to_py(int type, const char *p, size_t n)
{
	switch (type) {
	case SHSET_KEYS_STR:
		/* Bytes that are not UTF-8 (written by a C program) come back
		 * as lone surrogates, as os.fsdecode does, and key_get maps
		 * them back: iteration never fails on them. */
		return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "surrogateescape");
	case SHSET_KEYS_INT:
		return int_from_key(p, n);
	default:
		return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
	}
}

/* --- collected states: records of (uint32 length, bytes) ---------------------- */

struct kbuf {
	char *p;
	size_t len, cap;
	size_t n; /* records */
};

static int kbuf_put(struct kbuf *b, const void *key, size_t len)
{
	uint32_t l = (uint32_t)len;

	if (b->cap - b->len < len + sizeof(l)) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap - b->len < len + sizeof(l))
			cap *= 2;
		char *p = realloc(b->p, cap); /* no GIL: plain malloc */
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, &l, sizeof(l));
	if (len)
		memcpy(b->p + b->len + sizeof(l), key, len);
	b->len += sizeof(l) + len;
	b->n++;
	return 0;
}

static int kbuf_visit(const void *key, size_t len, void *arg)
{
	return kbuf_put(arg, key, len);
}

/* Reads the record at *pos and moves past it. */
static void kbuf_next(const struct kbuf *b, size_t *pos, const char **key, size_t *len)
{
	uint32_t l;

	memcpy(&l, b->p + *pos, sizeof(l));
	*key = b->p + *pos + sizeof(l);
	*len = l;
	*pos += sizeof(l) + l;
}

/* --- keys gathered from Python iterables, for batches -------------------------- */

struct kvec {
	char *arena;
	size_t alen, acap;
	size_t *off, *lens;
	size_t n, cap;
	const void **ptrs;
};

static void kvec_free(struct kvec *v)
{
	PyMem_Free(v->arena);
	PyMem_Free(v->off);
	PyMem_Free(v->lens);
	PyMem_Free(v->ptrs);
	memset(v, 0, sizeof(*v));
}

static int kvec_put(struct kvec *v, const char *p, size_t n)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		size_t *off = PyMem_Realloc(v->off, cap * sizeof(*off));
		if (!off)
			goto nomem;
		v->off = off;
		size_t *lens = PyMem_Realloc(v->lens, cap * sizeof(*lens));
		if (!lens)
			goto nomem;
		v->lens = lens;
		v->cap = cap;
	}
	if (v->acap - v->alen < n) {
		size_t cap = v->acap ? v->acap : 1024;
		while (cap - v->alen < n)
			cap *= 2;
		char *a = PyMem_Realloc(v->arena, cap);
		if (!a)
			goto nomem;
		v->arena = a;
		v->acap = cap;
	}
	if (n) /* the arena may not exist yet for an empty key */
		memcpy(v->arena + v->alen, p, n);
	v->off[v->n] = v->alen;
	v->lens[v->n] = n;
	v->alen += n;
	v->n++;
	return 0;
nomem:
	PyErr_NoMemory();
	return -1;
}

/* Appends every key of iterable @it, converted for key type @type (a key
 * of another type is a TypeError, before anything is applied). */
static int kvec_extend(struct kvec *v, int type, PyObject *it)
{
	PyObject *iter = PyObject_GetIter(it), *o;
	struct key k;

	if (!iter)
		return -1;
	while ((o = PyIter_Next(iter))) {
		int r = key_get_strict(type, o, &k);
		if (!r) {
			r = kvec_put(v, k.p, (size_t)k.n);
			key_release(&k);
		}
		Py_DECREF(o);
		if (r) {
			Py_DECREF(iter);
			return -1;
		}
	}
	Py_DECREF(iter);
	return PyErr_Occurred() ? -1 : 0;
}

/* The pointer array the library takes; the arena no longer moves. */
static int kvec_finish(struct kvec *v)
{
	v->ptrs = PyMem_Malloc((v->n ? v->n : 1) * sizeof(*v->ptrs));
	if (!v->ptrs) {
		PyErr_NoMemory();
		return -1;
	}
	for (size_t i = 0; i < v->n; i++)
		v->ptrs[i] = v->arena ? v->arena + v->off[i] : "";
	return 0;
}

/* --- the Set type --------------------------------------------------------------- */

typedef struct {
	PyObject ob_base; /* PyObject_HEAD */
	shset *h;	  /* NULL once closed */
	shset *closing;	  /* closed while busy: closed by the last call out */
	int busy;	  /* calls running without the GIL (py_busy) */
	unsigned gen;	  /* the fork generation busy counts in */
	int type;	  /* SHSET_KEYS_* */
	PyObject *weakrefs;
} SetObject;

static PyTypeObject SetType;
static PyTypeObject IterType;
static PyObject *abc_set; /* collections.abc.Set */

#define Set_Check(o) Py_IS_TYPE(o, &SetType)

/* Takes the handle for a call that releases the GIL, or raises. */
static shset *set_enter(SetObject *self)
{
	if (!self->h) {
		PyErr_SetString(PyExc_ValueError, "operation on a closed shset.Set");
		return NULL;
	}
	py_busy(&self->busy, &self->gen);
	self->busy++;
	return self->h;
}

static void set_leave(SetObject *self)
{
	if (--self->busy == 0 && self->closing) {
		shset *h = self->closing;
		self->closing = NULL;
		Py_BEGIN_ALLOW_THREADS shset_close(h);
		Py_END_ALLOW_THREADS
	}
}

/* Wraps a new handle (owned from now on) in a Set. */
static PyObject *set_wrap(shset *h)
{
	int type = shset_key_type(h);

	if (type < 0 || type > (int)SHSET_KEYS_INT) {
		NOGIL(shset_close(h));
		return PyErr_Format(PyExc_ValueError, "the set has key type %d, unknown here",
				    type);
	}
	SetObject *self = PyObject_New(SetObject, &SetType);
	if (!self) {
		NOGIL(shset_close(h));
		return NULL;
	}
	self->h = h;
	self->closing = NULL;
	self->busy = 0;
	self->gen = py_fork_gen;
	self->type = type;
	self->weakrefs = NULL;
	return (PyObject *)self;
}

/* Collects one consistent state of the set into @b, without the GIL. */
static int set_collect(SetObject *self, struct kbuf *b)
{
	shset *h = set_enter(self);
	int r;

	memset(b, 0, sizeof(*b));
	if (!h)
		return -1;
	NOGIL(r = shset_foreach(h, kbuf_visit, b));
	set_leave(self);
	if (r < 0) {
		free(b->p);
		b->p = NULL;
		err_lib(r);
		return -1;
	}
	return 0;
}

/* One consistent state as a new set (frozen: frozenset).  The keys are
 * decoded into a list first: filling the set in a second pass is about
 * 1.5x faster than adding each key as it is decoded. */
static PyObject *set_state(SetObject *self, int frozen)
{
	struct kbuf b;
	size_t pos = 0;

	if (set_collect(self, &b))
		return NULL;
	PyObject *r = NULL, *l = PyList_New((Py_ssize_t)b.n);
	for (size_t i = 0; l && i < b.n; i++) {
		const char *p;
		size_t n;
		kbuf_next(&b, &pos, &p, &n);
		PyObject *o = key_to_py(self->type, p, n);
		if (!o) {
			Py_CLEAR(l);
			break;
		}
		PyList_SET_ITEM(l, (Py_ssize_t)i, o);
	}
	free(b.p);
	if (l)
		r = frozen ? PyFrozenSet_New(l) : PySet_New(l);
	Py_XDECREF(l);
	return r;
}

static int set_add_iterable(SetObject *self, PyObject *it);

PyDoc_STRVAR(Set_doc, "Set(iterable=(), /, *, keys=str, capacity=0, max_bytes=None, shards=0)\n"
		      "--\n\n"
		      "A set shared by processes: its keys live in a memfd that every process\n"
		      "holding the file descriptor maps and works on directly.\n\n"
		      "Every operation is atomic across all threads of all processes attached\n"
		      "to the set, including copy() and the batch updates, and a process killed\n"
		      "in the middle of one leaves a set that the next operation repairs.\n\n"
		      "keys\n"
		      "  str (stored as UTF-8), bytes (any bytes-like object is accepted;\n"
		      "  bytes come back) or int (stored as canonical decimal text, so C\n"
		      "  programs and the shset command read them as text).  The key type is\n"
		      "  recorded in the set: every process that attaches gets it.  A key of\n"
		      "  another type raises TypeError when added or removed; `in` answers False.\n"
		      "capacity\n"
		      "  how many keys to size the first table for (it grows as needed).\n"
		      "max_bytes\n"
		      "  the most memory the set may grow to (default 8 GiB of address space\n"
		      "  reserved per process, not allocated); beyond it adding raises\n"
		      "  OSError(ENOSPC).\n"
		      "shards\n"
		      "  how many parts, each with its own lock, the keys are split over by\n"
		      "  hash, so that writers in several processes add in parallel: a power\n"
		      "  of two up to 16; 0 (the default) gives one per 512 MiB of max_bytes,\n"
		      "  up to 16.  Each part can hold max_bytes / shards; a set is full when\n"
		      "  its fullest part is.\n\n"
		      "A Set implements collections.abc.MutableSet.  It is passed to\n"
		      "multiprocessing workers (Process and Pool arguments, Queue, Pipe; under\n"
		      "fork, spawn and forkserver): its file descriptor travels, not its keys.\n"
		      "pickle.dumps refuses it.  Other programs get it with Set.attach(fd),\n"
		      "Set.connect(socket) or Set.load(snapshot).  Keys are at most KEY_MAX\n"
		      "(65535) bytes once encoded; adding or removing a longer key raises\n"
		      "ValueError (`in` answers False).  Library errors raise OSError with\n"
		      "the errno.");

static PyObject *Set_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"", "keys", "capacity", "max_bytes", "shards", NULL};
	PyObject *it = NULL, *keys = (PyObject *)&PyUnicode_Type, *maxb = Py_None, *cap = NULL;
	Py_ssize_t shards = 0;
	struct shset_opts o = {.size = sizeof(o)};
	shset *h;
	int r;

	(void)type;
	/* n: an int that does not fit is an OverflowError, not a wrap. */
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O$OOOn:Set", kwlist, &it, &keys, &cap, &maxb,
					 &shards))
		return NULL;
	if (shards < 0 || shards > 16 || (shards & (shards - 1)))
		return PyErr_Format(PyExc_ValueError,
				    "shards must be 0 or a power of two up to 16, not %zd", shards);
	o.shards = (uint32_t)shards;
	if (keys == (PyObject *)&PyUnicode_Type)
		o.key_type = SHSET_KEYS_STR;
	else if (keys == (PyObject *)&PyBytes_Type)
		o.key_type = SHSET_KEYS_BYTES;
	else if (keys == (PyObject *)&PyLong_Type)
		o.key_type = SHSET_KEYS_INT;
	else
		return PyErr_Format(PyExc_ValueError, "keys must be str, bytes or int, not %R",
				    keys);
	if (cap) {
		o.capacity = PyLong_AsUnsignedLongLong(cap);
		if (o.capacity == (uint64_t)-1 && PyErr_Occurred())
			return NULL;
	}
	if (maxb != Py_None) {
		o.max_bytes = PyLong_AsUnsignedLongLong(maxb);
		if (o.max_bytes == (uint64_t)-1 && PyErr_Occurred())
			return NULL;
		if (!o.max_bytes)
			return PyErr_Format(PyExc_ValueError, "max_bytes must be positive");
	}
	NOGIL(r = shset_create(&h, &o));
	if (r < 0)
		return err_lib(r);
	PyObject *self = set_wrap(h);
	if (self && it && set_add_iterable((SetObject *)self, it))
		Py_CLEAR(self);
	return self;
}

static void Set_dealloc(SetObject *self)
{
	if (self->weakrefs)
		PyObject_ClearWeakRefs((PyObject *)self);
	shset *h = self->h ? self->h : self->closing;
	if (h)
		NOGIL(shset_close(h));
	PyObject_Free(self);
}

static PyObject *Set_repr(SetObject *self)
{
	shset *h = self->h ? set_enter(self) : NULL;
	long long n;

	if (!h)
		return PyUnicode_FromFormat("<shset.Set of %s keys, closed>",
					    keys_name(self->type));
	NOGIL(n = shset_size(h));
	int fd = shset_fd(h);
	set_leave(self);
	if (n < 0)
		return err_lib((int)n);
	return PyUnicode_FromFormat("<shset.Set of %s keys, %lld keys, fd %d>",
				    keys_name(self->type), n, fd);
}

/* --- single-key operations ------------------------------------------------------ */

/* The body of add/discard/remove: 1 changed, 0 not, -1 raised. */
static int set_mutate(SetObject *self, PyObject *key, int add)
{
	struct key k;
	int r;

	if (key_get_strict(self->type, key, &k))
		return -1;
	shset *h = set_enter(self);
	if (!h) {
		key_release(&k);
		return -1;
	}
	/* The lock may be held by another process for a while: never sleep
	 * on it holding the GIL. */
	if (add)
		NOGIL(r = shset_add(h, k.p, (size_t)k.n));
	else
		NOGIL(r = shset_remove(h, k.p, (size_t)k.n));
	set_leave(self);
	key_release(&k);
	if (r < 0) {
		err_lib(r);
		return -1;
	}
	return r;
}

PyDoc_STRVAR(add_doc, "add($self, key, /)\n--\n\n"
		      "Add key to the set (nothing happens if it is there already).");

static PyObject *Set_add(SetObject *self, PyObject *key)
{
	return set_mutate(self, key, 1) < 0 ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(add_new_doc,
	     "add_new($self, key, /)\n--\n\n"
	     "Add key and return True if it was absent, False if it was already there.\n\n"
	     "This is one atomic test-and-add across all processes: of any number of\n"
	     "processes calling s.add_new(k) for the same k, exactly one gets True.\n"
	     "`if k not in s: s.add(k)` cannot promise that (another process may add k\n"
	     "between the test and the add): use add_new to deduplicate work.");

static PyObject *Set_add_new(SetObject *self, PyObject *key)
{
	int r = set_mutate(self, key, 1);
	return r < 0 ? NULL : PyBool_FromLong(r);
}

PyDoc_STRVAR(discard_doc, "discard($self, key, /)\n--\n\n"
			  "Remove key from the set if it is there.");

static PyObject *Set_discard(SetObject *self, PyObject *key)
{
	return set_mutate(self, key, 0) < 0 ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(remove_doc, "remove($self, key, /)\n--\n\n"
			 "Remove key from the set; raise KeyError if it is not there.");

static PyObject *Set_remove(SetObject *self, PyObject *key)
{
	int r = set_mutate(self, key, 0);
	if (r < 0)
		return NULL;
	if (r == 0) {
		PyErr_SetObject(PyExc_KeyError, key);
		return NULL;
	}
	Py_RETURN_NONE;
}

/* key_get for lookups: a key that cannot be stored (over SHSET_KEY_MAX,
 * text that is not encodable) is not an element, as a key of another
 * type is not: 0, not an error. */
static int key_get_lookup(int type, PyObject *o, struct key *k)
{
	int r = key_get(type, o, k);

	if (r < 0 && PyErr_ExceptionMatches(PyExc_ValueError)) {
		PyErr_Clear();
		r = 0;
	}
	return r;
}

static int Set_contains(SetObject *self, PyObject *key)
{
	struct key k;
	int r = key_get_lookup(self->type, key, &k);

	if (r <= 0)
		return r; /* not a key this set can hold: not an element */
	shset *h = set_enter(self);
	if (!h) {
		key_release(&k);
		return -1;
	}
	/* Lock-free as a rule, but it falls back to the lock when writers keep
	 * interfering or one died: that wait must not hold the GIL. */
	NOGIL(r = shset_contains(h, k.p, (size_t)k.n));
	set_leave(self);
	key_release(&k);
	if (r < 0) {
		err_lib(r);
		return -1;
	}
	return r;
}

static Py_ssize_t Set_len(SetObject *self)
{
	shset *h = set_enter(self);
	long long n;

	if (!h)
		return -1;
	NOGIL(n = shset_size(h));
	set_leave(self);
	if (n < 0) {
		err_lib((int)n);
		return -1;
	}
	return (Py_ssize_t)n;
}

PyDoc_STRVAR(pop_doc, "pop($self, /)\n--\n\n"
		      "Remove and return an arbitrary key; raise KeyError if the set is empty.");

static PyObject *Set_pop(SetObject *self, PyObject *unused)
{
	char small[256], *buf = small;
	size_t cap = sizeof(small), len = 0;
	shset *h = set_enter(self);
	int r;

	(void)unused;
	if (!h)
		return NULL;
	for (;;) {
		NOGIL(r = shset_pop(h, buf, cap, &len));
		if (r != -ENOBUFS || len <= cap)
			break;
		/* A longer key: retry with room for it (another may be popped). */
		if (buf != small)
			PyMem_Free(buf);
		cap = len;
		buf = PyMem_Malloc(cap);
		if (!buf) {
			set_leave(self);
			return PyErr_NoMemory();
		}
	}
	set_leave(self);
	PyObject *res = NULL;
	if (r < 0)
		err_lib(r);
	else if (r == 0)
		PyErr_SetString(PyExc_KeyError, "pop from an empty shset.Set");
	else
		res = key_to_py(self->type, buf, len);
	if (buf != small)
		PyMem_Free(buf);
	return res;
}

PyDoc_STRVAR(clear_doc, "clear($self, /)\n--\n\n"
			"Remove every key, atomically.");

static PyObject *Set_clear(SetObject *self, PyObject *unused)
{
	shset *h = set_enter(self);
	int r;

	(void)unused;
	if (!h)
		return NULL;
	NOGIL(r = shset_clear(h));
	set_leave(self);
	return r < 0 ? err_lib(r) : Py_NewRef(Py_None);
}

PyDoc_STRVAR(recover_doc, "recover($self, /)\n--\n\n"
			  "Take and release every shard's lock: a writer that died is repaired,\n"
			  "and a lock word a peer forged to name this process is freed (other\n"
			  "processes wait for it until then).  A process that holds a set and may\n"
			  "sit idle calls it now and then, as shset serve does every second.");

static PyObject *Set_recover(SetObject *self, PyObject *unused)
{
	shset *h = set_enter(self);
	int r;

	(void)unused;
	if (!h)
		return NULL;
	NOGIL(r = shset_recover(h));
	set_leave(self);
	return r < 0 ? err_lib(r) : Py_NewRef(Py_None);
}

PyDoc_STRVAR(contains_many_doc,
	     "contains_many($self, keys, /)\n--\n\n"
	     "Return a list of bools: for each key of the iterable keys, whether it\n"
	     "is in the set (False for a key of another type or over KEY_MAX).\n\n"
	     "One call for many lookups: faster than a loop of `in`.  Each lookup is\n"
	     "atomic on its own; the whole call is not one snapshot (use snapshot()\n"
	     "for that).");

static PyObject *Set_contains_many(SetObject *self, PyObject *keys)
{
	PyObject *seq = PySequence_Fast(keys, "contains_many() needs an iterable");
	struct kvec v = {0};
	PyObject *res = NULL;
	char *typed = NULL, *found = NULL;
	long long r = 0;

	if (!seq)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	typed = PyMem_Malloc((size_t)n + 1);
	found = PyMem_Calloc((size_t)n + 1, 1);
	if (!typed || !found) {
		PyErr_NoMemory();
		goto out;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		struct key k;
		int t = key_get_lookup(self->type, PySequence_Fast_GET_ITEM(seq, i), &k);
		if (t < 0)
			goto out;
		typed[i] = (char)t;
		if (t) {
			t = kvec_put(&v, k.p, (size_t)k.n);
			key_release(&k);
			if (t)
				goto out;
		}
	}
	if (kvec_finish(&v))
		goto out;
	shset *h = set_enter(self);
	if (!h)
		goto out;
	int hook = py_hook_on();
	Py_BEGIN_ALLOW_THREADS;
	for (size_t i = 0; i < v.n && r >= 0; i++) {
		r = shset_contains(h, v.ptrs[i], v.lens[i]);
		found[i] = (char)(r == 1);
	}
	Py_END_ALLOW_THREADS;
	py_hook_off(hook);
	set_leave(self);
	if (r < 0) {
		err_lib((int)r);
		goto out;
	}
	res = PyList_New(n);
	for (Py_ssize_t i = 0, j = 0; res && i < n; i++) {
		int yes = typed[i] && found[j];
		j += typed[i];
		PyList_SET_ITEM(res, i, PyBool_FromLong(yes));
	}
out:
	Py_DECREF(seq);
	PyMem_Free(typed);
	PyMem_Free(found);
	kvec_free(&v);
	return res;
}

/* --- batches ---------------------------------------------------------------------- */

enum batch_op { B_ADD, B_REMOVE };

/* Applies the gathered keys as one atomic batch. */
static int set_batch(SetObject *self, struct kvec *v, enum batch_op op)
{
	long long r;

	if (kvec_finish(v))
		return -1;
	shset *h = set_enter(self);
	if (!h)
		return -1;
	if (op == B_ADD)
		NOGIL(r = shset_add_batch(h, v->ptrs, v->lens, v->n));
	else
		NOGIL(r = shset_remove_batch(h, v->ptrs, v->lens, v->n));
	set_leave(self);
	if (r < 0) {
		err_lib((int)r);
		return -1;
	}
	return 0;
}

static int set_add_iterable(SetObject *self, PyObject *it)
{
	struct kvec v = {0};
	int r = kvec_extend(&v, self->type, it);

	if (!r)
		r = set_batch(self, &v, B_ADD);
	kvec_free(&v);
	return r;
}

/* Set algebra with another Set of the same key type, in the library: both
 * sets locked in a global order, one atomic step on self. */
typedef long long (*algebra_fn)(shset *, shset *);

static int set_algebra(SetObject *self, SetObject *other, algebra_fn fn)
{
	long long r;
	shset *a = set_enter(self);

	if (!a)
		return -1;
	shset *b = set_enter(other);
	if (!b) {
		set_leave(self);
		return -1;
	}
	NOGIL(r = fn(a, b));
	set_leave(other);
	set_leave(self);
	if (r < 0) {
		err_lib((int)r);
		return -1;
	}
	return 0;
}

static int same_type_set(SetObject *self, PyObject *o)
{
	return Set_Check(o) && ((SetObject *)o)->type == self->type;
}

/* A new private set of the same key type, for &= and ^= with iterables:
 * the library's algebra then applies it to self in one step. */
static SetObject *set_temp(SetObject *self)
{
	struct shset_opts o = {0};
	shset *h;
	int r;

	o.key_type = (uint32_t)self->type;
	o.name = "shset-python-temp";
	NOGIL(r = shset_create(&h, &o));
	if (r < 0)
		return (SetObject *)err_lib(r);
	return (SetObject *)set_wrap(h);
}

/* A private set with the keys of @it; keys of another type are a TypeError
 * if @strict, else left out (they are in no set of this type), as are keys
 * too long to be in any set. */
static SetObject *set_temp_from(SetObject *self, PyObject *it, int strict)
{
	PyObject *iter = PyObject_GetIter(it), *o;
	struct kvec v = {0};
	struct key k;
	int r = 0;

	if (!iter)
		return NULL;
	while (!r && (o = PyIter_Next(iter))) {
		r = strict ? key_get_strict(self->type, o, &k)
			   : key_get_lookup(self->type, o, &k) - 1;
		if (r == 0) {
			r = kvec_put(&v, k.p, (size_t)k.n);
			key_release(&k);
		} else if (r == -1 && !strict)
			r = 0; /* another type: skipped */
		Py_DECREF(o);
	}
	Py_DECREF(iter);
	SetObject *t = NULL;
	if (!r && !PyErr_Occurred())
		t = set_temp(self);
	if (t && set_batch(t, &v, B_ADD))
		Py_CLEAR(t);
	kvec_free(&v);
	return t;
}

/* update and difference_update: all keys of all arguments, one batch. */
static PyObject *set_update_many(SetObject *self, PyObject *args, enum batch_op op)
{
	Py_ssize_t n = PyTuple_GET_SIZE(args);
	struct kvec v = {0};
	int r = 0;

	if (n == 1 && same_type_set(self, PyTuple_GET_ITEM(args, 0)))
		r = set_algebra(self, (SetObject *)PyTuple_GET_ITEM(args, 0),
				op == B_ADD ? shset_update : shset_difference_update);
	else {
		for (Py_ssize_t i = 0; i < n && !r; i++)
			r = kvec_extend(&v, self->type, PyTuple_GET_ITEM(args, i));
		if (!r)
			r = set_batch(self, &v, op);
		kvec_free(&v);
	}
	return r ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(update_doc, "update($self, /, *iterables)\n--\n\n"
			 "Add every key of every iterable, as one atomic batch: no process sees\n"
			 "part of it, and a process killed during it leaves all or none of it.\n"
			 "Every key is converted first, so a key of the wrong type raises\n"
			 "TypeError before anything changes.  With one shset.Set of the same key\n"
			 "type, both sets are read and written in one atomic step.");

static PyObject *Set_update(SetObject *self, PyObject *args)
{
	return set_update_many(self, args, B_ADD);
}

PyDoc_STRVAR(difference_update_doc,
	     "difference_update($self, /, *iterables)\n--\n\n"
	     "Remove every key of every iterable, as one atomic batch (see update).");

static PyObject *Set_difference_update(SetObject *self, PyObject *args)
{
	return set_update_many(self, args, B_REMOVE);
}

PyDoc_STRVAR(intersection_update_doc,
	     "intersection_update($self, /, *iterables)\n--\n\n"
	     "Keep only the keys found in every iterable, in one atomic step.");

static PyObject *Set_intersection_update(SetObject *self, PyObject *args)
{
	Py_ssize_t n = PyTuple_GET_SIZE(args);
	SetObject *t = NULL;
	int r = 0;

	if (n == 1 && same_type_set(self, PyTuple_GET_ITEM(args, 0)))
		r = set_algebra(self, (SetObject *)PyTuple_GET_ITEM(args, 0),
				shset_intersection_update);
	else if (n) {
		/* Intersect the arguments in a private set, then apply it to
		 * self in one step. */
		for (Py_ssize_t i = 0; i < n && !r; i++) {
			SetObject *u = set_temp_from(self, PyTuple_GET_ITEM(args, i), 0);
			if (!u)
				r = -1;
			else if (t) {
				r = set_algebra(t, u, shset_intersection_update);
				Py_DECREF(u);
			} else
				t = u;
		}
		if (!r)
			r = set_algebra(self, t, shset_intersection_update);
		Py_XDECREF(t);
	}
	return r ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(symmetric_difference_update_doc,
	     "symmetric_difference_update($self, iterable, /)\n--\n\n"
	     "Add the keys of iterable that are absent and remove those present, in\n"
	     "one atomic step.");

static PyObject *Set_symmetric_difference_update(SetObject *self, PyObject *it)
{
	int r;

	if (same_type_set(self, it))
		r = set_algebra(self, (SetObject *)it, shset_symmetric_difference_update);
	else {
		SetObject *t = set_temp_from(self, it, 1);
		if (!t)
			return NULL;
		r = set_algebra(self, t, shset_symmetric_difference_update);
		Py_DECREF(t);
	}
	return r ? NULL : Py_NewRef(Py_None);
}

/* --- whole-set reads -------------------------------------------------------------- */

PyDoc_STRVAR(copy_doc, "copy($self, /)\n--\n\n"
		       "Return an atomic copy: a new shared Set (in a new memfd, same key type)\n"
		       "holding one state of this set.  No process ever sees the copy hold a\n"
		       "state the set never had.");

static PyObject *Set_copy(SetObject *self, PyObject *unused)
{
	shset *h = set_enter(self), *c;
	int r;

	(void)unused;
	if (!h)
		return NULL;
	NOGIL(r = shset_copy(h, &c));
	set_leave(self);
	return r < 0 ? err_lib(r) : set_wrap(c);
}

static PyObject *Set_deepcopy(SetObject *self, PyObject *memo)
{
	(void)memo;
	return Set_copy(self, NULL);
}

PyDoc_STRVAR(snapshot_doc, "snapshot($self, /)\n--\n\n"
			   "Return a frozenset of one state of the set, taken atomically.");

static PyObject *Set_snapshot(SetObject *self, PyObject *unused)
{
	(void)unused;
	return set_state(self, 1);
}

/* The iterator: keys of one state collected when iteration starts. */
typedef struct {
	PyObject ob_base; /* PyObject_HEAD */
	struct kbuf b;
	size_t pos, i;
	int type;
} IterObject;

static PyObject *Set_iter(SetObject *self)
{
	IterObject *it = PyObject_New(IterObject, &IterType);

	if (!it)
		return NULL;
	it->pos = it->i = 0;
	it->type = self->type;
	if (set_collect(self, &it->b)) {
		it->b.p = NULL;
		it->b.n = 0;
		Py_DECREF(it);
		return NULL;
	}
	return (PyObject *)it;
}

static void Iter_dealloc(IterObject *it)
{
	free(it->b.p);
	PyObject_Free(it);
}

static PyObject *Iter_next(IterObject *it)
{
	const char *p;
	size_t n;

	if (it->i >= it->b.n)
		return NULL;
	kbuf_next(&it->b, &it->pos, &p, &n);
	it->i++;
	return key_to_py(it->type, p, n);
}

static PyObject *Iter_length_hint(IterObject *it, PyObject *unused)
{
	(void)unused;
	return PyLong_FromSize_t(it->b.n - it->i);
}

static PyMethodDef Iter_methods[] = {
    {"__length_hint__", (PyCFunction)Iter_length_hint, METH_NOARGS, "Keys not yet returned."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject IterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shset.SetIterator",
    .tp_basicsize = sizeof(IterObject),
    .tp_dealloc = (destructor)Iter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Iterator over one consistent state of a shset.Set, taken when it started.",
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Iter_next,
    .tp_methods = Iter_methods,
};

/* --- comparisons and operators ------------------------------------------------------ */

/* 1 if @o is a set for the operators (as builtin set wants a set, these
 * want a collections.abc.Set), 0 if not, -1 raised. */
static int is_setlike(PyObject *o)
{
	if (Set_Check(o) || PyAnySet_Check(o))
		return 1;
	return PyObject_IsInstance(o, abc_set);
}

/* A builtin set or frozenset with @o's keys (a new reference). */
static PyObject *as_pyset(PyObject *o, int frozen)
{
	if (Set_Check(o))
		return set_state((SetObject *)o, frozen);
	if (frozen && PyAnySet_Check(o))
		return Py_NewRef(o);
	return frozen ? PyFrozenSet_New(o) : PySet_New(o);
}

static PyObject *Set_richcompare(PyObject *a, PyObject *b, int op)
{
	int r = is_setlike(b);

	if (r <= 0)
		return r < 0 ? NULL : Py_NewRef(Py_NotImplemented);
	SetObject *self = (SetObject *)a;
	if (same_type_set(self, b) && (op == Py_EQ || op == Py_NE || op == Py_LE || op == Py_GE)) {
		/* One step in the library, both sets locked. */
		SetObject *other = (SetObject *)b;
		shset *x = set_enter(self), *y;
		if (!x)
			return NULL;
		if (!(y = set_enter(other))) {
			set_leave(self);
			return NULL;
		}
		if (op == Py_EQ || op == Py_NE)
			NOGIL(r = shset_equal(x, y));
		else if (op == Py_LE)
			NOGIL(r = shset_issubset(x, y));
		else
			NOGIL(r = shset_issubset(y, x));
		set_leave(other);
		set_leave(self);
		if (r < 0)
			return err_lib(r);
		return PyBool_FromLong(op == Py_NE ? !r : r);
	}
	/* Otherwise compare one state of this set with the other. */
	PyObject *x = as_pyset(a, 1), *y = x ? as_pyset(b, 1) : NULL, *res = NULL;
	if (y)
		res = PyObject_RichCompare(x, y, op);
	Py_XDECREF(x);
	Py_XDECREF(y);
	return res;
}

/* a OP b for | & - ^, either operand a Set: a builtin set. */
static PyObject *set_binop(PyObject *a, PyObject *b, PyObject *(*inplace)(PyObject *, PyObject *))
{
	int ra = is_setlike(a), rb = ra > 0 ? is_setlike(b) : 0;

	if (ra < 0 || rb < 0)
		return NULL;
	if (!ra || !rb)
		Py_RETURN_NOTIMPLEMENTED;
	PyObject *x = as_pyset(a, 0), *y = x ? as_pyset(b, 1) : NULL, *res = NULL;
	if (y)
		res = inplace(x, y);
	Py_XDECREF(x);
	Py_XDECREF(y);
	return res;
}

static PyObject *Set_or(PyObject *a, PyObject *b)
{
	return set_binop(a, b, PyNumber_InPlaceOr);
}

static PyObject *Set_and(PyObject *a, PyObject *b)
{
	return set_binop(a, b, PyNumber_InPlaceAnd);
}

static PyObject *Set_sub(PyObject *a, PyObject *b)
{
	return set_binop(a, b, PyNumber_InPlaceSubtract);
}

static PyObject *Set_xor(PyObject *a, PyObject *b)
{
	return set_binop(a, b, PyNumber_InPlaceXor);
}

/* s OP= other: atomic, like the methods; other must be a set, as for set. */
static PyObject *set_inplace(SetObject *self, PyObject *other,
			     PyObject *(*fn)(SetObject *, PyObject *))
{
	int r = is_setlike(other);

	if (r <= 0)
		return r < 0 ? NULL : Py_NewRef(Py_NotImplemented);
	PyObject *res = fn(self, other);
	if (!res)
		return NULL;
	Py_DECREF(res);
	return Py_NewRef(self);
}

static PyObject *one_update(SetObject *self, PyObject *o)
{
	PyObject *args = PyTuple_Pack(1, o), *r;
	if (!args)
		return NULL;
	r = Set_update(self, args);
	Py_DECREF(args);
	return r;
}

static PyObject *one_intersection_update(SetObject *self, PyObject *o)
{
	PyObject *args = PyTuple_Pack(1, o), *r;
	if (!args)
		return NULL;
	r = Set_intersection_update(self, args);
	Py_DECREF(args);
	return r;
}

static PyObject *one_difference_update(SetObject *self, PyObject *o)
{
	PyObject *args = PyTuple_Pack(1, o), *r;
	if (!args)
		return NULL;
	r = Set_difference_update(self, args);
	Py_DECREF(args);
	return r;
}

static PyObject *Set_ior(PyObject *a, PyObject *b)
{
	return set_inplace((SetObject *)a, b, one_update);
}

static PyObject *Set_iand(PyObject *a, PyObject *b)
{
	return set_inplace((SetObject *)a, b, one_intersection_update);
}

static PyObject *Set_isub(PyObject *a, PyObject *b)
{
	return set_inplace((SetObject *)a, b, one_difference_update);
}

static PyObject *Set_ixor(PyObject *a, PyObject *b)
{
	return set_inplace((SetObject *)a, b, Set_symmetric_difference_update);
}

/* issubset / issuperset / isdisjoint: the library for two Sets of one key
 * type, else one state of this set against the other (any iterable). */
enum rel { R_SUB, R_SUPER, R_DISJOINT };

static PyObject *set_relation(SetObject *self, PyObject *other, enum rel rel)
{
	if (same_type_set(self, other)) {
		SetObject *o = (SetObject *)other;
		shset *x = set_enter(self), *y;
		int r;
		if (!x)
			return NULL;
		if (!(y = set_enter(o))) {
			set_leave(self);
			return NULL;
		}
		if (rel == R_SUB)
			NOGIL(r = shset_issubset(x, y));
		else if (rel == R_SUPER)
			NOGIL(r = shset_issubset(y, x));
		else
			NOGIL(r = shset_isdisjoint(x, y));
		set_leave(o);
		set_leave(self);
		return r < 0 ? err_lib(r) : PyBool_FromLong(r);
	}
	static const char *const names[] = {"issubset", "issuperset", "isdisjoint"};
	PyObject *x = set_state(self, 1), *y = NULL, *res = NULL;
	if (x)
		y = Set_Check(other) ? set_state((SetObject *)other, 1) : Py_NewRef(other);
	if (y)
		res = PyObject_CallMethod(x, names[rel], "(O)", y);
	Py_XDECREF(x);
	Py_XDECREF(y);
	return res;
}

PyDoc_STRVAR(issubset_doc, "issubset($self, other, /)\n--\n\n"
			   "Return True if every key of the set is in other (any iterable).");

static PyObject *Set_issubset(SetObject *self, PyObject *other)
{
	return set_relation(self, other, R_SUB);
}

PyDoc_STRVAR(issuperset_doc, "issuperset($self, other, /)\n--\n\n"
			     "Return True if every key of other (any iterable) is in the set.");

static PyObject *Set_issuperset(SetObject *self, PyObject *other)
{
	return set_relation(self, other, R_SUPER);
}

PyDoc_STRVAR(isdisjoint_doc,
	     "isdisjoint($self, other, /)\n--\n\n"
	     "Return True if the set and other (any iterable) have no key in common.");

static PyObject *Set_isdisjoint(SetObject *self, PyObject *other)
{
	return set_relation(self, other, R_DISJOINT);
}

/* --- handles: attach, connect, load, save, close ----------------------------------- */

PyDoc_STRVAR(attach_doc, "attach(fd, /)\n--\n\n"
			 "Return the Set whose memfd is fd (an int, or an object with fileno()).\n"
			 "The fd is duplicated: the caller keeps (and closes) its own.  The fd is\n"
			 "checked before anything is mapped (OSError: EMEDIUMTYPE not a memfd,\n"
			 "EPROTO not a set, ...).");

static PyObject *Set_attach(PyObject *cls, PyObject *arg)
{
	int fd = PyObject_AsFileDescriptor(arg), r;
	shset *h;

	(void)cls;
	if (fd < 0)
		return NULL;
	NOGIL(r = shset_attach_fd(&h, fd));
	return r < 0 ? err_lib(r) : set_wrap(h);
}

/* Connects to the server on @path (a Unix socket; '@name' abstract), within
 * @timeout_ms if not 0, and checks that it runs as us or root.  Returns 0
 * with *@fdp, -errno, or 1 with *@server_uid set when the uid is refused. */
static int connect_served(const char *path, int timeout_ms, int *fdp, uid_t *server_uid)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t n = strlen(path);
	socklen_t len;
	int fd, r;

	if (n == 0 || n >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, path, n);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	if (path[0] == '@')
		a.sun_path[0] = 0; /* abstract: the name is the bytes after '@' */
	else
		len++;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (timeout_ms) {
		/* Bounds a connect to a server whose backlog is full. */
		struct timeval tv = {timeout_ms / 1000, (suseconds_t)(timeout_ms % 1000) * 1000};
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (connect(fd, (struct sockaddr *)&a, len) < 0) {
		r = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		goto out;
	}
	struct shset_peer peer;
	r = shset_peer_cred(fd, &peer);
	if (r < 0)
		goto out;
	if (peer.uid != geteuid() && peer.uid != 0) {
		*server_uid = peer.uid;
		r = 1;
		goto out;
	}
	*fdp = fd;
	return 0;
out:
	close(fd);
	return r;
}

static uint64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* How long connect() waits for the set at a time before it looks at
 * signals (Ctrl-C) with the GIL taken. */
#define RECV_SLICE_MS 100

/* Receives the set from @fd (closed), until @timeout_ms if not 0: 0 with
 * *@out, -errno, or -EINTR with the exception a signal handler raised. */
static int recv_served(int fd, int timeout_ms, shset **out)
{
	uint64_t deadline = timeout_ms ? mono_ms() + (uint64_t)timeout_ms : 0;
	int r;

	for (;;) {
		int slice = RECV_SLICE_MS;
		if (deadline) {
			uint64_t now = mono_ms();
			if (now >= deadline) {
				r = -ETIMEDOUT;
				break;
			}
			if (deadline - now < (uint64_t)slice)
				slice = (int)(deadline - now);
		}
		NOGIL(r = shset_recv_timeout(fd, out, slice));
		if (r != -ETIMEDOUT)
			break;
		if (PyErr_CheckSignals() < 0) {
			r = -EINTR;
			break;
		}
	}
	close(fd);
	return r;
}

PyDoc_STRVAR(connect_doc,
	     "connect(path, /, timeout=None)\n--\n\n"
	     "Return the Set served on the Unix socket path (by `shset serve --socket\n"
	     "PATH` or any program calling shset_send); '@name' is an abstract socket.\n"
	     "The server must run as this user or as root (checked with SO_PEERCRED),\n"
	     "else PermissionError.  timeout (seconds, positive; rounded up to a\n"
	     "millisecond, at most 2**31 ms) bounds the wait for the server:\n"
	     "TimeoutError.  The wait answers signals (KeyboardInterrupt) either way.");

static PyObject *Set_connect(PyObject *cls, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"", "timeout", NULL};
	PyObject *path = NULL, *tmo = Py_None;
	int timeout_ms = 0, fd = -1;
	uid_t uid = 0;
	shset *h = NULL;
	int r;

	(void)cls;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|O:connect", kwlist, PyUnicode_FSConverter,
					 &path, &tmo))
		return NULL;
	if (tmo != Py_None) {
		double t = PyFloat_AsDouble(tmo);
		if (t == -1 && PyErr_Occurred())
			goto fail;
		if (!(t > 0) || isinf(t)) { /* NaN fails t > 0 */
			PyErr_SetString(PyExc_ValueError,
					"timeout must be a positive finite number of seconds");
			goto fail;
		}
		double ms = t * 1000;
		timeout_ms = ms >= (double)INT_MAX ? INT_MAX : (int)ms + ((double)(int)ms < ms);
	}
	const char *p = PyBytes_AS_STRING(path);
	NOGIL(r = connect_served(p, timeout_ms, &fd, &uid));
	if (r == 1) {
		PyErr_Format(PyExc_PermissionError,
			     "the server on %s runs as uid %u, neither this user (uid %u) nor root",
			     p, (unsigned)uid, (unsigned)geteuid());
		goto fail;
	}
	if (r == 0)
		r = recv_served(fd, timeout_ms, &h);
	if (r == -EINTR && PyErr_Occurred())
		goto fail;
	if (r < 0) {
		err_lib_path(r, path);
		goto fail;
	}
	Py_DECREF(path);
	return set_wrap(h);
fail:
	Py_DECREF(path);
	return NULL;
}

PyDoc_STRVAR(load_doc, "load(path, /)\n--\n\n"
		       "Return a new Set built from the snapshot file path (written by save() or\n"
		       "shset_save).  The file is checked whole first: OSError(EBADMSG) if it is\n"
		       "corrupt.  The key type is the one recorded in the file.");

static PyObject *Set_load(PyObject *cls, PyObject *arg)
{
	PyObject *path;
	shset *h;
	int r;

	(void)cls;
	if (!PyUnicode_FSConverter(arg, &path))
		return NULL;
	NOGIL(r = shset_load(&h, PyBytes_AS_STRING(path), NULL));
	PyObject *res = r < 0 ? err_lib_path(r, arg) : set_wrap(h);
	Py_DECREF(path);
	return res;
}

PyDoc_STRVAR(save_doc, "save($self, path, /, *, sorted=False)\n--\n\n"
		       "Write one state of the set to the snapshot file path, crash-safely: a\n"
		       "crash leaves the old file or the new one, never a torn one.  sorted=True\n"
		       "writes the keys in byte order (diffable files).  Set.load reads it back.");

static PyObject *Set_save(SetObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"", "sorted", NULL};
	PyObject *path;
	int sorted = 0, r;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|$p:save", kwlist, PyUnicode_FSConverter,
					 &path, &sorted))
		return NULL;
	shset *h = set_enter(self);
	if (!h) {
		Py_DECREF(path);
		return NULL;
	}
	NOGIL(r = shset_save_ex(h, PyBytes_AS_STRING(path), sorted ? SHSET_SAVE_SORTED : 0));
	set_leave(self);
	PyObject *res = r < 0 ? err_lib_path(r, PyTuple_GET_ITEM(args, 0)) : Py_NewRef(Py_None);
	Py_DECREF(path);
	return res;
}

PyDoc_STRVAR(fileno_doc, "fileno($self, /)\n--\n\n"
			 "Return the set's memfd (owned by the Set: dup it to keep it).  Pass it\n"
			 "to another process (e.g. socket.send_fds) and attach there with\n"
			 "Set.attach.");

static PyObject *Set_fileno(SetObject *self, PyObject *unused)
{
	(void)unused;
	if (!self->h) {
		PyErr_SetString(PyExc_ValueError, "operation on a closed shset.Set");
		return NULL;
	}
	return PyLong_FromLong(shset_fd(self->h));
}

PyDoc_STRVAR(close_doc, "close($self, /)\n--\n\n"
			"Detach from the set (the keys live on while any process holds its fd).\n"
			"Later operations raise ValueError; closing twice is harmless.");

static PyObject *Set_close(SetObject *self, PyObject *unused)
{
	shset *h = self->h;

	(void)unused;
	self->h = NULL;
	if (h && py_busy(&self->busy, &self->gen))
		self->closing = h; /* the last running call closes it */
	else if (h)
		NOGIL(shset_close(h));
	Py_RETURN_NONE;
}

static PyObject *Set_enter(SetObject *self, PyObject *unused)
{
	(void)unused;
	if (!self->h) {
		PyErr_SetString(PyExc_ValueError, "operation on a closed shset.Set");
		return NULL;
	}
	return Py_NewRef(self);
}

static PyObject *Set_exit(SetObject *self, PyObject *args)
{
	(void)args;
	return Set_close(self, NULL);
}

static PyObject *Set_reduce(SetObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	PyErr_SetString(PyExc_TypeError,
			"cannot pickle shset.Set: its keys live in shared memory, not in the "
			"object.  multiprocessing passes a Set (its file descriptor) to "
			"workers; elsewhere use Set.connect, or save() and Set.load");
	return NULL;
}

PyDoc_STRVAR(stats_doc, "stats($self, /)\n--\n\n"
			"Return a dict of counters: keys, table capacity and load, memory,\n"
			"transactions, repairs after dead processes, attached processes, and\n"
			"under 'lock' a racy view of the set's lock (held, owner slot, counters).\n"
			"Reading them takes no lock.");

static PyObject *Set_stats(SetObject *self, PyObject *unused)
{
	struct shset_stats st;
	shset *h = set_enter(self);
	int r;

	(void)unused;
	if (!h)
		return NULL;
	NOGIL(r = shset_stats(h, &st));
	set_leave(self);
	if (r < 0)
		return err_lib(r);
	PyObject *lock = Py_BuildValue(
	    "{sOsisOsOsKsKsKsK}", "locked", st.lock.locked ? Py_True : Py_False, "owner_slot",
	    st.lock.owner_slot, "waiters", st.lock.waiters ? Py_True : Py_False, "inconsistent",
	    st.lock.inconsistent ? Py_True : Py_False, "acquisitions",
	    (unsigned long long)st.lock.acquisitions, "contended",
	    (unsigned long long)st.lock.contended, "futex_waits",
	    (unsigned long long)st.lock.futex_waits, "owner_died",
	    (unsigned long long)st.lock.owner_died);
	if (!lock)
		return NULL;
	return Py_BuildValue(
	    "{sKsKsKsdsKsKsKsKsdsKsKsKsIsIsN}", "count", (unsigned long long)st.count, "capacity",
	    (unsigned long long)st.capacity, "tombstones", (unsigned long long)st.tombstones,
	    "load", st.load, "key_bytes", (unsigned long long)st.key_bytes, "heap_bytes",
	    (unsigned long long)st.heap_bytes, "file_bytes", (unsigned long long)st.file_bytes,
	    "mem_bytes", (unsigned long long)st.mem_bytes, "bytes_per_key", st.bytes_per_key,
	    "repairs", (unsigned long long)st.repairs, "resizes", (unsigned long long)st.resizes,
	    "txns", (unsigned long long)st.txns, "max_procs", st.max_procs, "attached", st.attached,
	    "lock", lock);
}

static PyObject *Set_get_keys_type(SetObject *self, void *unused)
{
	(void)unused;
	return Py_NewRef(keys_pytype(self->type));
}

static PyObject *Set_get_closed(SetObject *self, void *unused)
{
	(void)unused;
	return PyBool_FromLong(self->h == NULL);
}

static PyGetSetDef Set_getset[] = {
    {"keys_type", (getter)Set_get_keys_type, NULL,
     "The key type recorded in the set: str, bytes or int.", NULL},
    {"closed", (getter)Set_get_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Set_methods[] = {
    {"add", (PyCFunction)Set_add, METH_O, add_doc},
    {"add_new", (PyCFunction)Set_add_new, METH_O, add_new_doc},
    {"discard", (PyCFunction)Set_discard, METH_O, discard_doc},
    {"remove", (PyCFunction)Set_remove, METH_O, remove_doc},
    {"pop", (PyCFunction)Set_pop, METH_NOARGS, pop_doc},
    {"clear", (PyCFunction)Set_clear, METH_NOARGS, clear_doc},
    {"recover", (PyCFunction)Set_recover, METH_NOARGS, recover_doc},
    {"contains_many", (PyCFunction)Set_contains_many, METH_O, contains_many_doc},
    {"update", (PyCFunction)Set_update, METH_VARARGS, update_doc},
    {"difference_update", (PyCFunction)Set_difference_update, METH_VARARGS, difference_update_doc},
    {"intersection_update", (PyCFunction)Set_intersection_update, METH_VARARGS,
     intersection_update_doc},
    {"symmetric_difference_update", (PyCFunction)Set_symmetric_difference_update, METH_O,
     symmetric_difference_update_doc},
    {"issubset", (PyCFunction)Set_issubset, METH_O, issubset_doc},
    {"issuperset", (PyCFunction)Set_issuperset, METH_O, issuperset_doc},
    {"isdisjoint", (PyCFunction)Set_isdisjoint, METH_O, isdisjoint_doc},
    {"copy", (PyCFunction)Set_copy, METH_NOARGS, copy_doc},
    {"snapshot", (PyCFunction)Set_snapshot, METH_NOARGS, snapshot_doc},
    {"stats", (PyCFunction)Set_stats, METH_NOARGS, stats_doc},
    {"attach", (PyCFunction)Set_attach, METH_O | METH_CLASS, attach_doc},
    {"connect", (PyCFunction)(void (*)(void))Set_connect, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     connect_doc},
    {"load", (PyCFunction)Set_load, METH_O | METH_CLASS, load_doc},
    {"save", (PyCFunction)(void (*)(void))Set_save, METH_VARARGS | METH_KEYWORDS, save_doc},
    {"fileno", (PyCFunction)Set_fileno, METH_NOARGS, fileno_doc},
    {"close", (PyCFunction)Set_close, METH_NOARGS, close_doc},
    {"__enter__", (PyCFunction)Set_enter, METH_NOARGS,
     "__enter__($self, /)\n--\n\nReturn the set (a context manager closing it on exit)."},
    {"__exit__", (PyCFunction)Set_exit, METH_VARARGS,
     "__exit__($self, /, *exc_info)\n--\n\nClose the set."},
    {"__copy__", (PyCFunction)Set_copy, METH_NOARGS,
     "__copy__($self, /)\n--\n\ncopy.copy(s): the same as s.copy()."},
    {"__deepcopy__", (PyCFunction)Set_deepcopy, METH_O,
     "__deepcopy__($self, memo, /)\n--\n\ncopy.deepcopy(s): the same as s.copy()."},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS,
     "__class_getitem__($cls, item, /)\n--\n\nshset.Set[str] in annotations."},
    {"__reduce__", (PyCFunction)Set_reduce, METH_NOARGS,
     "__reduce__($self, /)\n--\n\nRaise TypeError: a Set is not picklable."},
    {"__reduce_ex__", (PyCFunction)Set_reduce, METH_O,
     "__reduce_ex__($self, protocol, /)\n--\n\nRaise TypeError: a Set is not picklable."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Set_as_sequence = {
    .sq_length = (lenfunc)Set_len,
    .sq_contains = (objobjproc)Set_contains,
};

static PyNumberMethods Set_as_number = {
    .nb_or = Set_or,
    .nb_and = Set_and,
    .nb_subtract = Set_sub,
    .nb_xor = Set_xor,
    .nb_inplace_or = Set_ior,
    .nb_inplace_and = Set_iand,
    .nb_inplace_subtract = Set_isub,
    .nb_inplace_xor = Set_ixor,
};

static PyTypeObject SetType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shset.Set",
    .tp_basicsize = sizeof(SetObject),
    .tp_dealloc = (destructor)Set_dealloc,
    .tp_repr = (reprfunc)Set_repr,
    .tp_as_number = &Set_as_number,
    .tp_as_sequence = &Set_as_sequence,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Set_doc,
    .tp_richcompare = Set_richcompare,
    .tp_weaklistoffset = offsetof(SetObject, weakrefs),
    .tp_iter = (getiterfunc)Set_iter,
    .tp_methods = Set_methods,
    .tp_getset = Set_getset,
    .tp_new = Set_new,
};

/* --- the module ------------------------------------------------------------------------ */

PyDoc_STRVAR(module_doc, "The C part of the shset package: use `import shset`, shset.Set and\n"
			 "the shared values (shset.Int, shset.Bytes, shset.IntArray, ...).");

static struct PyModuleDef shset_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shset._shset",
    .m_doc = module_doc,
    .m_size = -1,
};

unsigned py_fork_gen;
unsigned long py_main_ident;
int py_hook_depth;
int py_hook_set;

int py_wait_hook(void *arg)
{
	(void)arg;
	/* The hook stays with the thread: after Py_Finalize (an embedding
	 * program) there is no GIL to take. */
	/* Outside this module's calls (ctypes, another binding) the caller
	 * would not expect an exception, and the GIL may be held by a thread
	 * that waits for a lock this one holds.  Only this thread (the main
	 * one) writes the depth. */
	if (!py_hook_depth || !Py_IsInitialized())
		return 0;
	PyGILState_STATE g = PyGILState_Ensure();
	int r = PyErr_CheckSignals();
	PyGILState_Release(g);
	return r < 0;
}

/* The child's only thread is the one that forked, Python's main thread
 * there from now on; no call of it is inside the library. */
static void fork_child(void)
{
	__atomic_add_fetch(&py_fork_gen, 1, __ATOMIC_RELAXED);
	py_main_ident = PyThread_get_thread_ident();
	py_hook_depth = 0;
	py_hook_set = 0; /* the hook is per thread: set it on this one */
}

/* threading's main thread, the one that runs signal handlers (usually the
 * one importing this module). */
static unsigned long main_ident(void)
{
	unsigned long id = PyThread_get_thread_ident();
	PyObject *th = PyImport_ImportModule("threading");
	PyObject *mt = th ? PyObject_CallMethod(th, "main_thread", NULL) : NULL;
	PyObject *ident = mt ? PyObject_GetAttrString(mt, "ident") : NULL;

	if (ident && PyLong_Check(ident))
		id = PyLong_AsUnsignedLong(ident);
	Py_XDECREF(ident);
	Py_XDECREF(mt);
	Py_XDECREF(th);
	PyErr_Clear();
	return id;
}

PyMODINIT_FUNC PyInit__shset(void)
{
	PyObject *m = NULL, *abc;
	static int atfork;

	py_main_ident = main_ident();
	if (!atfork && pthread_atfork(NULL, NULL, fork_child) == 0)
		atfork = 1;
	if (PyType_Ready(&SetType) < 0 || PyType_Ready(&IterType) < 0)
		return NULL;
	abc = PyImport_ImportModule("collections.abc");
	if (!abc)
		return NULL;
	Py_XSETREF(abc_set, PyObject_GetAttrString(abc, "Set"));
	Py_DECREF(abc);
	if (!abc_set)
		return NULL;
	m = PyModule_Create(&shset_module);
	if (!m)
		return NULL;
	if (PyModule_AddObjectRef(m, "Set", (PyObject *)&SetType) < 0 ||
	    PyModule_AddIntConstant(m, "KEY_MAX", SHSET_KEY_MAX) < 0 || values_register(m) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
