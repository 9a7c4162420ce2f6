/* The common case of FeatureEncoder.normalise_encode in C (optional; features.py runs
   its Python version when this module is not built).

   Encoder(plan, fallback) is called as encoder(features) and returns (normalised, row)
   exactly as FeatureEncoder.normalise_encode does, for a features dict in which every
   value is already of its feature's own type and range: a float within bounds for a
   float feature, an int within bounds (at most 2**53 in magnitude) for an int feature, a
   declared category for a category feature, a bool for a bool feature, or missing/None
   where a default is declared. Anything else (a value to convert, a value to reject,
   an unknown or a missing required name, a mapping that is not a dict) is handed to
   fallback(features), the Python implementation, which converts it or raises the error
   that names the feature.

   plan is a sequence of one tuple per feature, in blueprint order:
   (name, kind, lo, hi, codes, required, default, default_x) with kind 0 float, 1 int,
   2 category, 3 bool; codes a dict from category to its float code; default the logged
   value of a missing feature and default_x (a float) its encoding. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

enum { KIND_FLOAT = 0, KIND_INT = 1, KIND_CATEGORY = 2, KIND_BOOL = 3 };

#define SAFE_INT 9007199254740992LL /* 2**53 */

typedef struct {
    PyObject *name;
    int kind;
    double lo, hi;
    PyObject *codes; /* dict or None */
    int required;
    PyObject *default_value;
    PyObject *default_x; /* float */
} Entry;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Py_ssize_t n;
    Entry *entries;
    PyObject *fallback;
    PyObject *zero, *one; /* 0.0 and 1.0 */
} Encoder;

/* (normalised, row); NULL with no exception set: hand over to the fallback. */
static PyObject *encode(Encoder *self, PyObject *features) {
    if (!PyDict_CheckExact(features)) return NULL;
    PyObject *out = PyDict_New();
    PyObject *row = PyList_New(self->n);
    if (out == NULL || row == NULL) goto fail;
    Py_ssize_t present = 0;
    for (Py_ssize_t i = 0; i < self->n; ++i) {
        Entry *e = &self->entries[i];
        PyObject *v = PyDict_GetItemWithError(features, e->name); /* borrowed */
        if (v == NULL && PyErr_Occurred()) goto fail;
        PyObject *x = NULL; /* new reference */
        if (v == NULL || v == Py_None) {
            if (v == Py_None) ++present;
            if (e->required) goto handover;
            if (PyDict_SetItem(out, e->name, e->default_value) < 0) goto fail;
            Py_INCREF(e->default_x);
            PyList_SET_ITEM(row, i, e->default_x);
            continue;
        }
        ++present;
        switch (e->kind) {
        case KIND_FLOAT:
            if (PyFloat_CheckExact(v)) {
                double d = PyFloat_AS_DOUBLE(v);
                if (e->lo <= d && d <= e->hi) { /* NaN fails both */
                    Py_INCREF(v);
                    x = v;
                }
            }
            break;
        case KIND_INT:
            if (PyLong_CheckExact(v)) {
                int overflow = 0;
                long long ll = PyLong_AsLongLongAndOverflow(v, &overflow);
                if (ll == -1 && PyErr_Occurred()) goto fail;
                if (!overflow && ll >= -SAFE_INT && ll <= SAFE_INT) {
                    double d = (double)ll; /* exact within 2**53 */
                    if (e->lo <= d && d <= e->hi) x = PyFloat_FromDouble(d);
                    if (x == NULL && PyErr_Occurred()) goto fail;
                }
            }
            break;
        case KIND_CATEGORY:
            if (PyUnicode_CheckExact(v) && e->codes != Py_None) {
                x = PyDict_GetItemWithError(e->codes, v);
                if (x == NULL && PyErr_Occurred()) goto fail;
                Py_XINCREF(x);
            }
            break;
        case KIND_BOOL:
            if (v == Py_True || v == Py_False) {
                x = v == Py_True ? self->one : self->zero;
                Py_INCREF(x);
            }
            break;
        }
        if (x == NULL) goto handover;
        PyList_SET_ITEM(row, i, x);
        if (PyDict_SetItem(out, e->name, v) < 0) goto fail;
    }
    if (present != PyDict_GET_SIZE(features)) goto handover; /* unknown names */
    PyObject *result = PyTuple_Pack(2, out, row);
    Py_DECREF(out);
    Py_DECREF(row);
    return result;
handover:
    Py_XDECREF(out);
    Py_XDECREF(row); /* unset items are NULL, which list deallocation skips */
    return NULL;
fail:
    Py_XDECREF(out);
    Py_XDECREF(row);
    if (!PyErr_Occurred()) PyErr_NoMemory();
    return NULL;
}

static PyObject *Encoder_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames) {
    Encoder *self = (Encoder *)op;
    if (self->fallback == NULL) {
        PyErr_SetString(PyExc_ValueError, "this encoder has been cleared");
        return NULL;
    }
    if (kwnames == NULL && PyVectorcall_NARGS(nargsf) == 1) {
        PyObject *r = encode(self, args[0]);
        if (r != NULL || PyErr_Occurred()) return r;
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static void free_entries(Encoder *self) {
    Entry *entries = self->entries;
    Py_ssize_t n = self->n;
    self->entries = NULL; /* detached first: nothing reached from the decrefs sees them */
    self->n = 0;
    if (entries == NULL) return;
    for (Py_ssize_t i = 0; i < n; ++i) {
        Entry *e = &entries[i];
        Py_XDECREF(e->name);
        Py_XDECREF(e->codes);
        Py_XDECREF(e->default_value);
        Py_XDECREF(e->default_x);
    }
    PyMem_Free(entries);
}

static PyObject *Encoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *plan, *fallback;
    static char *kwlist[] = {"plan", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Encoder", kwlist, &plan, &fallback))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(plan, "plan must be a sequence of tuples");
    if (seq == NULL) return NULL;
    Encoder *self = (Encoder *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    self->vectorcall = Encoder_vectorcall;
    Py_INCREF(fallback);
    self->fallback = fallback;
    self->zero = PyFloat_FromDouble(0.0);
    self->one = PyFloat_FromDouble(1.0);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->entries = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(Entry));
    if (self->zero == NULL || self->one == NULL || self->entries == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; ++i) {
        Entry *e = &self->entries[i];
        PyObject *name, *codes, *default_value, *default_x;
        int required;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "UiddOpOO:plan entry", &name,
                              &e->kind, &e->lo, &e->hi, &codes, &required, &default_value,
                              &default_x))
            goto fail;
        if (e->kind < KIND_FLOAT || e->kind > KIND_BOOL || !PyFloat_CheckExact(default_x) ||
            (codes != Py_None && !PyDict_CheckExact(codes))) {
            PyErr_SetString(PyExc_ValueError, "plan entry: bad kind, codes or default_x");
            goto fail;
        }
        Py_INCREF(name);
        e->name = name;
        Py_INCREF(codes);
        e->codes = codes;
        e->required = required;
        Py_INCREF(default_value);
        e->default_value = default_value;
        Py_INCREF(default_x);
        e->default_x = default_x;
        self->n = i + 1;
    }
    Py_DECREF(seq);
    return (PyObject *)self;
fail:
    Py_DECREF(seq);
    Py_DECREF(self);
    return NULL;
}

static int Encoder_traverse(Encoder *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    for (Py_ssize_t i = 0; self->entries != NULL && i < self->n; ++i) {
        Py_VISIT(self->entries[i].codes);
        Py_VISIT(self->entries[i].default_value);
    }
    return 0;
}

static int Encoder_clear(Encoder *self) {
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->zero);
    Py_CLEAR(self->one);
    free_entries(self);
    return 0;
}

static void Encoder_dealloc(Encoder *self) {
    PyObject_GC_UnTrack(self);
    Encoder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "looper_pipelines.client._features.Encoder",
    .tp_doc = "encoder(features) -> (normalised, row): FeatureEncoder.normalise_encode",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Encoder_new,
    .tp_traverse = (traverseproc)Encoder_traverse,
    .tp_clear = (inquiry)Encoder_clear,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Encoder, vectorcall),
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_features", "FeatureEncoder's common case in C.", -1, NULL,
};

PyMODINIT_FUNC PyInit__features(void) {
    if (PyType_Ready(&EncoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddType(m, &EncoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
