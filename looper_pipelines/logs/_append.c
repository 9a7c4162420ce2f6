/* The default-durability append of LogStore in C (optional; writer.py falls back to
   Python when this module is not built).

   Appender(writer, dumps, option, slow) is called as appender(kind, use_case, record). It
   does what _Writer.append_default does, under the same lock and on the same state:

     1. checks that record is a dict with the kind's id column as a str and "timestamp"
        as an int;
     2. encodes it with dumps(record, option=option) (orjson.dumps);
     3. frames it as "<crc32 as 8 hex digits> <JSON>\n";
     4. with writer.lock held, copies the line into the active segment's mapping
        (writer.active[(kind, use_case)].map, file offsets map_start..map_end) at
        seg.size, then sets seg.size and writer.seq.

   Whenever something is not as the fast path expects (a malformed record, a value orjson
   refuses, no active segment, a full segment, a line that does not fit in the mapped
   window) it returns slow(kind, use_case, record) instead: the Python implementation,
   which opens segments, extends the window and raises the errors that name the problem.
   Nothing is written before that hand-over. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "structmember.h"

/* The state the fast path reads and writes, as C fields of base classes that writer.py's
   _Segment and _Writer extend (Python code sees them as ordinary attributes). */
typedef struct {
    PyObject_HEAD
    Py_ssize_t size;      /* bytes acknowledged */
    Py_ssize_t map_start; /* file offsets of the mapped window */
    Py_ssize_t map_end;
    PyObject *map;        /* the mmap of that window, or None */
} SegmentState;

typedef struct {
    PyObject_HEAD
    PyObject *lock;   /* the Lock below, guarding active, sizes and seq */
    PyObject *active; /* {(kind, use_case): _Segment} */
    Py_ssize_t max_bytes;
    Py_ssize_t seq;   /* records acknowledged */
} WriterState;

static PyTypeObject SegmentStateType, WriterStateType;

typedef struct {
    PyObject_HEAD
    WriterState *writer;
    PyObject *dumps;
    PyObject *option;
    PyObject *slow;
    vectorcallfunc vectorcall;
} Appender;

static PyObject *s_decisions, *s_observations, *s_decision_id, *s_observation_id,
    *s_timestamp, *s_option_kw;

static const char HEX[] = "0123456789abcdef";

/* ---- CRC-32 (zlib's): carry-less multiplication where the CPU has it ------------------ */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_CLMUL_CRC 1
/* Folding with PCLMULQDQ as in Intel's "Fast CRC Computation for Generic Polynomials
   Using PCLMULQDQ Instruction" (the bit-reflected constants of its appendix, as zlib
   forks such as Chromium's use them). len >= 64 and a multiple of 16; crc is the
   register value (not inverted). */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc32_clmul(const unsigned char *buf,
                                                                     size_t len,
                                                                     uint32_t crc) {
    static const uint64_t __attribute__((aligned(16))) k1k2[] = {0x0154442bd4, 0x01c6e41596};
    static const uint64_t __attribute__((aligned(16))) k3k4[] = {0x01751997d0, 0x00ccaa009e};
    static const uint64_t __attribute__((aligned(16))) k5k0[] = {0x0163cd6124, 0x0000000000};
    static const uint64_t __attribute__((aligned(16))) poly[] = {0x01db710641, 0x01f7011641};
    __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8, y5, y6, y7, y8;

    x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    x0 = _mm_load_si128((const __m128i *)k1k2);
    buf += 64;
    len -= 64;
    while (len >= 64) { /* fold four 128-bit lanes at a time */
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
        x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
        x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
        x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
        y5 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
        y6 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
        y7 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
        y8 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), y5);
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), y6);
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), y7);
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), y8);
        buf += 64;
        len -= 64;
    }
    /* fold the four lanes into one */
    x0 = _mm_load_si128((const __m128i *)k3k4);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    while (len >= 16) { /* single 128-bit folds */
        x2 = _mm_loadu_si128((const __m128i *)buf);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        buf += 16;
        len -= 16;
    }
    /* 128 -> 64 bits */
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
    x3 = _mm_setr_epi32(~0, 0, ~0, 0);
    x1 = _mm_srli_si128(x1, 8);
    x1 = _mm_xor_si128(x1, x2);
    x0 = _mm_loadl_epi64((const __m128i *)k5k0);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, x3);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    /* Barrett reduction to 32 bits */
    x0 = _mm_load_si128((const __m128i *)poly);
    x2 = _mm_and_si128(x1, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
    x2 = _mm_and_si128(x2, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
static int use_clmul = 0;
#endif

/* Bytewise CRC-32 with a table (the reflected polynomial 0xEDB88320, as zlib): the bytes
   before and after the folded part, and everything on CPUs without PCLMULQDQ. */
static uint32_t crc_table[256];

static void init_crc_table(void) {
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* zlib.crc32(data) */
static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu; /* the register (inverted crc) */
#ifdef HAVE_CLMUL_CRC
    if (use_clmul && n >= 64) {
        size_t bulk = n & ~(size_t)15;
        c = crc32_clmul(p, bulk, c);
        p += bulk;
        n -= bulk;
    }
#endif
    while (n-- > 0) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

static PyObject *py_crc32(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t crc = crc32_of((const unsigned char *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}


/* ---- Lock: a mutex that the C append takes without a method call ---------------------- */
typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    int locked;
} Lock;

static PyTypeObject LockType;

/* Acquire, waiting without the GIL if another thread holds it; the wait is cut into
   slices between which signal handlers run (Ctrl-C interrupts it, as it does a
   threading.Lock). timeout_us < 0: no limit. Returns 1 acquired, 0 timed out, -1 a
   signal handler raised. */
static int lock_acquire_timed(Lock *self, long long timeout_us) {
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        const long long slice = 20000; /* µs */
        for (;;) {
            long long wait = timeout_us < 0 || timeout_us > slice ? slice : timeout_us;
            PyLockStatus r;
            Py_BEGIN_ALLOW_THREADS
            r = PyThread_acquire_lock_timed(self->lock, (PY_TIMEOUT_T)wait, 0);
            Py_END_ALLOW_THREADS
            if (r == PY_LOCK_ACQUIRED) break;
            if (timeout_us >= 0 && (timeout_us -= wait) <= 0) return 0;
            if (PyErr_CheckSignals() < 0) return -1;
        }
    }
    self->locked = 1;
    return 1;
}

static void lock_release(Lock *self) {
    self->locked = 0;
    PyThread_release_lock(self->lock);
}

static PyObject *Lock_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (!_PyArg_NoPositional("Lock", args) || !_PyArg_NoKeywords("Lock", kwds)) return NULL;
    Lock *self = (Lock *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate a lock");
        return NULL;
    }
    return (PyObject *)self;
}

static void Lock_dealloc(Lock *self) {
    if (self->lock != NULL) {
        if (self->locked) PyThread_release_lock(self->lock);
        PyThread_free_lock(self->lock);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Lock_acquire(Lock *self, PyObject *args, PyObject *kwds) {
    int blocking = 1;
    double timeout = -1;
    static char *kwlist[] = {"blocking", "timeout", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pd:acquire", kwlist, &blocking, &timeout))
        return NULL;
    if (!blocking && timeout != -1) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return NULL;
    }
    if (timeout < 0 && timeout != -1) {
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
        return NULL;
    }
    long long us = !blocking ? 0 : timeout < 0 ? -1 : (long long)(timeout * 1e6);
    int r = us == 0 ? PyThread_acquire_lock(self->lock, NOWAIT_LOCK) : lock_acquire_timed(self, us);
    if (r < 0) return NULL;
    if (r && us == 0) self->locked = 1;
    return PyBool_FromLong(r);
}

static PyObject *Lock_enter(Lock *self, PyObject *unused) {
    if (lock_acquire_timed(self, -1) < 0) return NULL;
    Py_RETURN_TRUE;
}

static PyObject *Lock_release(Lock *self, PyObject *unused) {
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    lock_release(self);
    Py_RETURN_NONE;
}

static PyObject *Lock_exit(Lock *self, PyObject *args) { return Lock_release(self, NULL); }

static PyObject *Lock_locked(Lock *self, PyObject *unused) { return PyBool_FromLong(self->locked); }

static PyMethodDef Lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Lock_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool"},
    {"release", (PyCFunction)Lock_release, METH_NOARGS, "release()"},
    {"locked", (PyCFunction)Lock_locked, METH_NOARGS, "locked() -> bool"},
    {"__enter__", (PyCFunction)Lock_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Lock_exit, METH_VARARGS, NULL},
    {NULL},
};

static PyTypeObject LockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "looper_pipelines.logs._append.Lock",
    .tp_doc = "a mutex (acquire, release, with) that the C append takes directly",
    .tp_basicsize = sizeof(Lock),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Lock_new,
    .tp_dealloc = (destructor)Lock_dealloc,
    .tp_methods = Lock_methods,
};

static PyObject *call_slow(Appender *self, PyObject *const *args, size_t nargsf) {
    return PyObject_Vectorcall(self->slow, args, nargsf, NULL);
}

/* 1 written, 0 hand over to the slow path, -1 error (lock held by the caller). */
static int copy_locked(Appender *self, PyObject *key, const char *line, Py_ssize_t n) {
    WriterState *w = self->writer;
    if (w->active == NULL || !PyDict_CheckExact(w->active)) return 0;
    PyObject *obj = PyDict_GetItemWithError(w->active, key); /* borrowed */
    if (obj == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyObject_TypeCheck(obj, &SegmentStateType)) return 0;
    SegmentState *seg = (SegmentState *)obj;
    Py_ssize_t size = seg->size;
    if (size >= w->max_bytes || size + n > seg->map_end || size < seg->map_start ||
        seg->map == NULL || seg->map == Py_None)
        return 0;
    Py_buffer view;
    if (PyObject_GetBuffer(seg->map, &view, PyBUF_WRITABLE | PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* a closed mapping: the Python path decides */
        return 0;
    }
    Py_ssize_t at = size - seg->map_start;
    if (at + n > view.len) {
        PyBuffer_Release(&view);
        return 0;
    }
    memcpy((char *)view.buf + at, line, (size_t)n);
    PyBuffer_Release(&view);
    seg->size = size + n;
    w->seq += 1;
    return 1;
}

static PyObject *Appender_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames) {
    Appender *self = (Appender *)op;
    if (self->writer == NULL || self->slow == NULL || self->dumps == NULL) {
        PyErr_SetString(PyExc_ValueError, "this appender has been cleared");
        return NULL;
    }
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs != 3) return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
    PyObject *kind = args[0], *use_case = args[1], *record = args[2];
    if (!PyDict_CheckExact(record) || !PyUnicode_CheckExact(kind) || !PyUnicode_CheckExact(use_case))
        return call_slow(self, args, nargsf);
    PyObject *idcol;
    if (kind == s_decisions || PyUnicode_Compare(kind, s_decisions) == 0) {
        idcol = s_decision_id;
    } else if (kind == s_observations || PyUnicode_Compare(kind, s_observations) == 0) {
        idcol = s_observation_id;
    } else {
        return call_slow(self, args, nargsf);
    }
    /* each value is checked right after its lookup: a lookup may run a key's __eq__ */
    PyObject *v = PyDict_GetItemWithError(record, idcol);
    if (v == NULL || !PyUnicode_CheckExact(v)) {
        if (PyErr_Occurred()) return NULL;
        return call_slow(self, args, nargsf);
    }
    v = PyDict_GetItemWithError(record, s_timestamp);
    if (v == NULL || !PyLong_CheckExact(v)) {
        if (PyErr_Occurred()) return NULL;
        return call_slow(self, args, nargsf);
    }

    PyObject *dargs[2] = {record, self->option};
    PyObject *data = PyObject_Vectorcall(self->dumps, dargs, 1, s_option_kw);
    if (data == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) { /* orjson.JSONEncodeError */
            PyErr_Clear();
            return call_slow(self, args, nargsf);
        }
        return NULL;
    }
    if (!PyBytes_CheckExact(data)) {
        Py_DECREF(data);
        return call_slow(self, args, nargsf);
    }
    Py_ssize_t dlen = PyBytes_GET_SIZE(data);
    Py_ssize_t n = dlen + 10;
    char stackbuf[2048];
    char *line = n <= (Py_ssize_t)sizeof(stackbuf) ? stackbuf : PyMem_Malloc((size_t)n);
    if (line == NULL) {
        Py_DECREF(data);
        return PyErr_NoMemory();
    }
    const unsigned char *src = (const unsigned char *)PyBytes_AS_STRING(data);
    uint32_t crc = crc32_of(src, (size_t)dlen);
    for (int i = 7; i >= 0; --i) {
        line[i] = HEX[crc & 0xF];
        crc >>= 4;
    }
    line[8] = ' ';
    memcpy(line + 9, src, (size_t)dlen);
    line[n - 1] = '\n';
    Py_DECREF(data);

    PyObject *key = PyTuple_Pack(2, kind, use_case);
    PyObject *lock = self->writer->lock;
    int copied = key == NULL ? -1 : 0;
    /* the writer's lock is an _append.Lock; were it anything else, the Python path (which
       takes it with `with`) would serve */
    if (key != NULL && lock != NULL && Py_TYPE(lock) == &LockType) {
        Py_INCREF(lock);
        copied = -1; /* unless acquired: a signal handler raised while waiting */
        if (lock_acquire_timed((Lock *)lock, -1) > 0) {
            copied = copy_locked(self, key, line, n);
            lock_release((Lock *)lock);
        }
        Py_DECREF(lock);
    }
    Py_XDECREF(key);
    if (line != stackbuf) PyMem_Free(line);
    if (copied < 0) return NULL;
    if (copied == 0) return call_slow(self, args, nargsf);
    Py_RETURN_NONE;
}

static PyObject *Appender_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *writer, *dumps, *option, *slow;
    static char *kwlist[] = {"writer", "dumps", "option", "slow", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO:Appender", kwlist, &writer, &dumps,
                                     &option, &slow))
        return NULL;
    if (!PyObject_TypeCheck(writer, &WriterStateType)) {
        PyErr_SetString(PyExc_TypeError, "writer must be a WriterState");
        return NULL;
    }
    if (!PyCallable_Check(dumps) || !PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "dumps and slow must be callable");
        return NULL;
    }
    Appender *self = (Appender *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    Py_INCREF(writer);
    self->writer = (WriterState *)writer;
    Py_INCREF(dumps);
    self->dumps = dumps;
    Py_INCREF(option);
    self->option = option;
    Py_INCREF(slow);
    self->slow = slow;
    self->vectorcall = Appender_vectorcall;
    return (PyObject *)self;
}

static int Appender_traverse(Appender *self, visitproc visit, void *arg) {
    Py_VISIT((PyObject *)self->writer);
    Py_VISIT(self->dumps);
    Py_VISIT(self->option);
    Py_VISIT(self->slow);
    return 0;
}

static int Appender_clear(Appender *self) {
    Py_CLEAR(self->writer);
    Py_CLEAR(self->dumps);
    Py_CLEAR(self->option);
    Py_CLEAR(self->slow);
    return 0;
}

static void Appender_dealloc(Appender *self) {
    PyObject_GC_UnTrack(self);
    Appender_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject AppenderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "looper_pipelines.logs._append.Appender",
    .tp_doc = "appender(kind, use_case, record): LogStore's default-durability append",
    .tp_basicsize = sizeof(Appender),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Appender_new,
    .tp_traverse = (traverseproc)Appender_traverse,
    .tp_clear = (inquiry)Appender_clear,
    .tp_dealloc = (destructor)Appender_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Appender, vectorcall),
};


/* ---- the state base classes ------------------------------------------------------------ */
static PyMemberDef SegmentState_members[] = {
    {"size", T_PYSSIZET, offsetof(SegmentState, size), 0, "bytes acknowledged"},
    {"map_start", T_PYSSIZET, offsetof(SegmentState, map_start), 0, "file offset of the window"},
    {"map_end", T_PYSSIZET, offsetof(SegmentState, map_end), 0, "file offset past the window"},
    {"map", T_OBJECT, offsetof(SegmentState, map), 0, "the mapped window, or None"},
    {NULL},
};

static int SegmentState_traverse(SegmentState *self, visitproc visit, void *arg) {
    Py_VISIT(self->map);
    return 0;
}

static int SegmentState_clear(SegmentState *self) {
    Py_CLEAR(self->map);
    return 0;
}

static void SegmentState_dealloc(SegmentState *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    SegmentState_clear(self);
    tp->tp_free((PyObject *)self);
}

static PyTypeObject SegmentStateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "looper_pipelines.logs._append.SegmentState",
    .tp_doc = "the fields of an active segment that the C append reads and writes",
    .tp_basicsize = sizeof(SegmentState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)SegmentState_traverse,
    .tp_clear = (inquiry)SegmentState_clear,
    .tp_dealloc = (destructor)SegmentState_dealloc,
    .tp_members = SegmentState_members,
};

static PyMemberDef WriterState_members[] = {
    {"lock", T_OBJECT, offsetof(WriterState, lock), 0, "guards active, sizes and seq"},
    {"active", T_OBJECT, offsetof(WriterState, active), 0, "{(kind, use_case): segment}"},
    {"max_bytes", T_PYSSIZET, offsetof(WriterState, max_bytes), 0, "segment size limit"},
    {"seq", T_PYSSIZET, offsetof(WriterState, seq), 0, "records acknowledged"},
    {NULL},
};

static int WriterState_traverse(WriterState *self, visitproc visit, void *arg) {
    Py_VISIT(self->lock);
    Py_VISIT(self->active);
    return 0;
}

static int WriterState_clear(WriterState *self) {
    Py_CLEAR(self->lock);
    Py_CLEAR(self->active);
    return 0;
}

static void WriterState_dealloc(WriterState *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    WriterState_clear(self);
    tp->tp_free((PyObject *)self);
}

static PyTypeObject WriterStateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "looper_pipelines.logs._append.WriterState",
    .tp_doc = "the fields of a log writer that the C append reads and writes",
    .tp_basicsize = sizeof(WriterState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)WriterState_traverse,
    .tp_clear = (inquiry)WriterState_clear,
    .tp_dealloc = (destructor)WriterState_dealloc,
    .tp_members = WriterState_members,
};

static PyMethodDef module_methods[] = {
    {"crc32", py_crc32, METH_O, "crc32(data) -> int: the same value as zlib.crc32(data)"},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_append", "LogStore's append path in C.", -1, module_methods,
};

#define INTERN(var, text)                                   \
    do {                                                    \
        if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL; \
    } while (0)

PyMODINIT_FUNC PyInit__append(void) {
    INTERN(s_decisions, "decisions");
    INTERN(s_observations, "observations");
    INTERN(s_decision_id, "decision_id");
    INTERN(s_observation_id, "observation_id");
    INTERN(s_timestamp, "timestamp");
    PyObject *option;
    INTERN(option, "option");
    s_option_kw = PyTuple_Pack(1, option);
    Py_DECREF(option);
    if (s_option_kw == NULL) return NULL;
    init_crc_table();
#ifdef HAVE_CLMUL_CRC
    __builtin_cpu_init();
    use_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
    if (PyType_Ready(&AppenderType) < 0 || PyType_Ready(&SegmentStateType) < 0 ||
        PyType_Ready(&WriterStateType) < 0 || PyType_Ready(&LockType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddType(m, &AppenderType) < 0 || PyModule_AddType(m, &SegmentStateType) < 0 ||
        PyModule_AddType(m, &WriterStateType) < 0 || PyModule_AddType(m, &LockType) < 0 ||
        PyModule_AddIntConstant(m, "CLMUL_CRC32",
#ifdef HAVE_CLMUL_CRC
                                use_clmul
#else
                                0
#endif
                                ) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
