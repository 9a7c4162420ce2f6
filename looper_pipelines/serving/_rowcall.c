/* One-row calls into a loaded model library without ctypes (optional; compiled.py falls
   back to its ctypes closures when this module is not built).

   RowCall(address, num_feature, fallback, keepalive, column=-1, values=None,
           array_type=None):

   - values None: address is the library's ``double predict_one(const double* x)``; the
     object is called as f(x) and returns a float;
   - values a sequence of floats: address is ``void predict_varying(const double* x,
     int32_t col, const double* values, int32_t n, double* out)``; f(x) returns the list
     of the n predictions for x with column ``column`` set to each value in turn.

   x must be a list or tuple of num_feature floats (or float subclasses), ints or None
   (None is missing: NaN), or a 1-D contiguous buffer of num_feature doubles (a float64
   numpy row, read in place when array_type=numpy.ndarray is given and the row is of
   exactly that type and aligned); anything else (other number types or dtypes, a wrong
   length) is handed to fallback(x), the ctypes implementation, which converts it or
   raises the error that names the problem. Buffers live on the C stack (or in a per-call allocation for wide
   rows), so concurrent callers share nothing. keepalive is held so that the library is
   not unloaded while this object can call into it.

   RowScores(labels, calls, fallback): f(row) -> {label: [prediction per value]}, where
   calls are RowCall objects made with values that all take the same num_feature columns
   and vary the last one (the action); row holds the other num_feature - 1 values. One
   fill of the row serves every label's model. Rows that are not a list or tuple of
   numbers go to fallback(row).

   The address must be an entry point of a library loaded (and checksum-verified) by the
   caller: calling an arbitrary address is what ctypes does too. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef double (*one_fn)(const double *);
typedef void (*varying_fn)(const double *, int32_t, const double *, int32_t, double *);

#define STACK_DOUBLES 256

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    void *fn;
    Py_ssize_t num_feature;
    int32_t column;
    int32_t n; /* -1: a predict_one call */
    double *values;
    PyObject *fallback;
    PyObject *keepalive;
    PyObject *array_type; /* the exact type whose float64 rows are read in place, or NULL */
} RowCall;

/* 1 filled, 0 hand x to the fallback, -1 error. */
static int fill(PyObject *x, double *buf, Py_ssize_t nf) {
    if (!PyList_CheckExact(x) && !PyTuple_CheckExact(x)) return 0;
    if (PySequence_Fast_GET_SIZE(x) != nf) return 0;
    PyObject **items = PySequence_Fast_ITEMS(x);
    for (Py_ssize_t i = 0; i < nf; ++i) {
        PyObject *v = items[i];
        if (PyFloat_Check(v)) { /* numpy.float64 is a float subclass */
            buf[i] = PyFloat_AS_DOUBLE(v);
        } else if (PyLong_Check(v)) {
            double d = PyLong_AsDouble(v);
            if (d == -1.0 && PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
            buf[i] = d;
        } else if (v == Py_None) {
            buf[i] = NAN;
        } else {
            return 0;
        }
    }
    return 1;
}

/* x of exactly array_type (numpy.ndarray: not a subclass such as a masked array, whose
   buffer holds values the mask hides) with a 1-D C-contiguous, aligned buffer of
   num_feature native doubles: 1 with view filled (release it), 0 otherwise. */
static int double_row(PyObject *x, PyObject *array_type, Py_buffer *view, Py_ssize_t nf) {
    if (array_type == NULL || (PyObject *)Py_TYPE(x) != array_type) return 0;
    if (PyObject_GetBuffer(x, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return 0;
    }
    const char *f = view->format;
    if (f != NULL && (*f == '@' || *f == '=' || *f == '<')) ++f;
    if (view->ndim == 1 && view->shape[0] == nf && view->itemsize == 8 && f != NULL &&
        f[0] == 'd' && f[1] == 0 && (uintptr_t)view->buf % _Alignof(double) == 0)
        return 1;
    PyBuffer_Release(view);
    return 0;
}

static PyObject *RowCall_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames) {
    RowCall *self = (RowCall *)op;
    if (self->fallback == NULL) {
        PyErr_SetString(PyExc_ValueError, "this row call has been cleared");
        return NULL;
    }
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 1)
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    Py_ssize_t nf = self->num_feature;
    double stack[STACK_DOUBLES];
    Py_ssize_t need = nf + (self->n > 0 ? self->n : 0);
    double *buf = need <= STACK_DOUBLES ? stack : PyMem_Malloc(sizeof(double) * (size_t)need);
    if (buf == NULL) return PyErr_NoMemory();
    double *out = buf + nf;
    PyObject *result = NULL;
    Py_buffer view;
    int from_buffer = 0;
    const double *row = buf;
    int ok = fill(args[0], buf, nf);
    if (ok == 0 && double_row(args[0], self->array_type, &view, nf)) {
        from_buffer = 1;
        row = (const double *)view.buf; /* read in place, released after the call */
        ok = 1;
    }
    if (ok == 0) {
        result = PyObject_Vectorcall(self->fallback, args, nargsf, NULL);
    } else if (ok > 0) {
        if (self->n < 0) {
            result = PyFloat_FromDouble(((one_fn)self->fn)(row));
        } else {
            ((varying_fn)self->fn)(row, self->column, self->values, self->n, out);
            result = PyList_New(self->n);
            for (int32_t i = 0; result != NULL && i < self->n; ++i) {
                PyObject *f = PyFloat_FromDouble(out[i]);
                if (f == NULL) {
                    Py_CLEAR(result);
                    break;
                }
                PyList_SET_ITEM(result, i, f);
            }
        }
    }
    if (from_buffer) PyBuffer_Release(&view);
    if (buf != stack) PyMem_Free(buf);
    return result;
}

static PyObject *RowCall_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    unsigned long long address;
    Py_ssize_t nf;
    PyObject *fallback, *keepalive, *values = Py_None, *array_type = Py_None;
    int column = -1;
    static char *kwlist[] = {"address", "num_feature", "fallback", "keepalive", "column",
                             "values", "array_type", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KnOO|iOO:RowCall", kwlist, &address, &nf,
                                     &fallback, &keepalive, &column, &values, &array_type))
        return NULL;
    if (address == 0 || nf < 1 || nf > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError,
                        "address must be non-zero and num_feature in [1, 2**24]");
        return NULL;
    }
    if (array_type != Py_None && !PyType_Check(array_type)) {
        PyErr_SetString(PyExc_TypeError, "array_type must be a type or None");
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    RowCall *self = (RowCall *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->fn = (void *)(uintptr_t)address;
    self->num_feature = nf;
    self->column = column;
    self->n = -1;
    self->values = NULL;
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(keepalive);
    self->keepalive = keepalive;
    if (array_type != Py_None) {
        Py_INCREF(array_type);
        self->array_type = array_type;
    }
    self->vectorcall = RowCall_vectorcall;
    if (values != Py_None) {
        if (column < 0 || column >= nf) {
            PyErr_SetString(PyExc_ValueError, "column must be in [0, num_feature)");
            goto fail;
        }
        PyObject *seq = PySequence_Fast(values, "values must be a sequence of floats");
        if (seq == NULL) goto fail;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if (n < 1 || n > (1 << 24)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "values must hold 1 to 2**24 floats");
            goto fail;
        }
        self->values = PyMem_Malloc(sizeof(double) * (size_t)n);
        if (self->values == NULL) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t i = 0; i < n; ++i) {
            double d = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
            if (d == -1.0 && PyErr_Occurred()) {
                Py_DECREF(seq);
                goto fail;
            }
            self->values[i] = d;
        }
        Py_DECREF(seq);
        self->n = (int32_t)n;
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static int RowCall_traverse(RowCall *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    Py_VISIT(self->keepalive);
    Py_VISIT(self->array_type);
    return 0;
}

static int RowCall_clear(RowCall *self) {
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->keepalive);
    Py_CLEAR(self->array_type);
    return 0;
}

static void RowCall_dealloc(RowCall *self) {
    PyObject_GC_UnTrack(self);
    RowCall_clear(self);
    PyMem_Free(self->values);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject RowCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "looper_pipelines.serving._rowcall.RowCall",
    .tp_doc = "f(x): one row through a compiled model's entry point",
    .tp_basicsize = sizeof(RowCall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = RowCall_new,
    .tp_traverse = (traverseproc)RowCall_traverse,
    .tp_clear = (inquiry)RowCall_clear,
    .tp_dealloc = (destructor)RowCall_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(RowCall, vectorcall),
};

/* ---- RowScores: every label's model on one row ------------------------------------------ */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *labels; /* tuple of str */
    PyObject *calls;  /* tuple of RowCall (varying, same num_feature, action column last) */
    PyObject *fallback;
    Py_ssize_t num_feature;
    int32_t width; /* the longest values list */
} RowScores;

static PyObject *RowScores_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                                      PyObject *kwnames) {
    RowScores *self = (RowScores *)op;
    if (self->fallback == NULL || self->calls == NULL || self->labels == NULL) {
        PyErr_SetString(PyExc_ValueError, "this scorer has been cleared");
        return NULL;
    }
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 1)
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    Py_ssize_t nf = self->num_feature;
    double stack[STACK_DOUBLES];
    Py_ssize_t need = nf + self->width;
    double *buf = need <= STACK_DOUBLES ? stack : PyMem_Malloc(sizeof(double) * (size_t)need);
    if (buf == NULL) return PyErr_NoMemory();
    double *out = buf + nf;
    PyObject *result = NULL;
    if (!fill(args[0], buf, nf - 1)) { /* the row without the action column */
        result = PyObject_Vectorcall(self->fallback, args, nargsf, NULL);
        goto done;
    }
    buf[nf - 1] = 0.0; /* set to each action's value by the call */
    result = PyDict_New();
    Py_ssize_t k = PyTuple_GET_SIZE(self->calls);
    for (Py_ssize_t j = 0; result != NULL && j < k; ++j) {
        RowCall *c = (RowCall *)PyTuple_GET_ITEM(self->calls, j);
        ((varying_fn)c->fn)(buf, c->column, c->values, c->n, out);
        PyObject *list = PyList_New(c->n);
        for (int32_t i = 0; list != NULL && i < c->n; ++i) {
            PyObject *f = PyFloat_FromDouble(out[i]);
            if (f == NULL) {
                Py_CLEAR(list);
                break;
            }
            PyList_SET_ITEM(list, i, f);
        }
        if (list == NULL || PyDict_SetItem(result, PyTuple_GET_ITEM(self->labels, j), list) < 0)
            Py_CLEAR(result);
        Py_XDECREF(list);
    }
done:
    if (buf != stack) PyMem_Free(buf);
    return result;
}

static PyObject *RowScores_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *labels, *calls, *fallback;
    static char *kwlist[] = {"labels", "calls", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:RowScores", kwlist, &labels, &calls,
                                     &fallback))
        return NULL;
    labels = PySequence_Tuple(labels);
    if (labels == NULL) return NULL;
    calls = PySequence_Tuple(calls);
    if (calls == NULL) {
        Py_DECREF(labels);
        return NULL;
    }
    Py_ssize_t k = PyTuple_GET_SIZE(calls), nf = -1;
    int32_t width = 0;
    const char *problem = NULL;
    if (k < 1 || PyTuple_GET_SIZE(labels) != k) problem = "one label per call, at least one";
    if (!PyCallable_Check(fallback)) problem = "fallback must be callable";
    for (Py_ssize_t j = 0; problem == NULL && j < k; ++j) {
        PyObject *c = PyTuple_GET_ITEM(calls, j);
        if (!PyUnicode_Check(PyTuple_GET_ITEM(labels, j))) {
            problem = "labels must be strings";
        } else if (Py_TYPE(c) != &RowCallType || ((RowCall *)c)->n < 0) {
            problem = "calls must be RowCall objects made with values";
        } else {
            RowCall *rc = (RowCall *)c;
            if (nf < 0) nf = rc->num_feature;
            if (rc->num_feature != nf || rc->column != nf - 1)
                problem = "every call must take the same row, varying its last column";
            if (rc->n > width) width = rc->n;
        }
    }
    if (problem == NULL && nf < 2) problem = "the rows need a feature besides the varied column";
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        Py_DECREF(labels);
        Py_DECREF(calls);
        return NULL;
    }
    RowScores *self = (RowScores *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(labels);
        Py_DECREF(calls);
        return NULL;
    }
    self->labels = labels;
    self->calls = calls;
    Py_INCREF(fallback);
    self->fallback = fallback;
    self->num_feature = nf;
    self->width = width;
    self->vectorcall = RowScores_vectorcall;
    return (PyObject *)self;
}

static int RowScores_traverse(RowScores *self, visitproc visit, void *arg) {
    Py_VISIT(self->labels);
    Py_VISIT(self->calls);
    Py_VISIT(self->fallback);
    return 0;
}

static int RowScores_clear(RowScores *self) {
    Py_CLEAR(self->labels);
    Py_CLEAR(self->calls);
    Py_CLEAR(self->fallback);
    return 0;
}

static void RowScores_dealloc(RowScores *self) {
    PyObject_GC_UnTrack(self);
    RowScores_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject RowScoresType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "looper_pipelines.serving._rowcall.RowScores",
    .tp_doc = "f(row) -> {label: [prediction per action]}: each label's model on one row",
    .tp_basicsize = sizeof(RowScores),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = RowScores_new,
    .tp_traverse = (traverseproc)RowScores_traverse,
    .tp_clear = (inquiry)RowScores_clear,
    .tp_dealloc = (destructor)RowScores_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(RowScores, vectorcall),
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rowcall", "One-row calls into a compiled model library.", -1,
    NULL,
};

PyMODINIT_FUNC PyInit__rowcall(void) {
    if (PyType_Ready(&RowCallType) < 0 || PyType_Ready(&RowScoresType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddType(m, &RowCallType) < 0 || PyModule_AddType(m, &RowScoresType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
