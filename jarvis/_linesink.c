/* The event log's hot path in C: timestamped lines appended to one byte buffer.
 *
 * Why C: token by token (--flush-ms 0) every token is a flush, and the log
 * vocabulary has two lines per flush (flush_start before the write, so a hung
 * write is visible, and flush_done after). In Python a line costs about 2.4 us
 * of CPU (the stamp, the %-format, the join, the encode, the write), which was
 * 40% of the server's CPU per token (benchmarks/server_cpu.py). Here a line is
 * one call: clock_gettime, a cached second, digits, memcpy.
 *
 * `LineSink` in jarvis/_sink.py is the same sink in Python: the fallback where this
 * module is not built, and the reference the tests hold this one to, byte for
 * byte.
 *
 * Every function here runs with the GIL held and never releases it, which is
 * what makes the writer thread's take() and the loop thread's appends safe
 * without a lock of our own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

/* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" */
#define STAMP_LEN 27
#define SECOND_LEN 19
/* Past this much capacity an emptied buffer is released (after a burst). */
#define KEEP_CAPACITY (4 << 20)

typedef struct {
    PyObject_HEAD
    char *buf;
    Py_ssize_t len;
    Py_ssize_t cap;
    long long second; /* the second that `prefix` spells, or -1 */
    char prefix[64];  /* "YYYY-MM-DDTHH:MM:SS" */
} Sink;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Sink *sink;         /* strong reference */
    PyObject *segments; /* tuple of bytes: text before value 0, ..., text after the last */
} Bound;

static PyTypeObject SinkType;
static PyTypeObject BoundType;

static int
reserve(Sink *s, Py_ssize_t extra)
{
    if (s->len + extra <= s->cap) {
        return 0;
    }
    Py_ssize_t cap = s->cap ? s->cap : 65536;
    while (cap < s->len + extra) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *grown = PyMem_Realloc(s->buf, (size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->buf = grown;
    s->cap = cap;
    return 0;
}

/* Write the current UTC time, STAMP_LEN bytes, at `out`. */
static int
stamp(Sink *s, char *out)
{
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    long long second = (long long)now.tv_sec;
    if (second != s->second) {
        time_t t = (time_t)second;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL ||
            strftime(s->prefix, sizeof s->prefix, "%Y-%m-%dT%H:%M:%S", &tm) != SECOND_LEN) {
            PyErr_SetString(PyExc_ValueError, "the clock is outside years 0000-9999");
            return -1;
        }
        s->second = second;
    }
    memcpy(out, s->prefix, SECOND_LEN);
    out[SECOND_LEN] = '.';
    long micro = now.tv_nsec / 1000;
    for (int i = STAMP_LEN - 2; i > SECOND_LEN; i--) {
        out[i] = (char)('0' + micro % 10);
        micro /= 10;
    }
    out[STAMP_LEN - 1] = 'Z';
    return 0;
}

/* Decimal digits of `value` at `out`; returns how many (at most 20). */
static Py_ssize_t
put_int(char *out, long long value)
{
    char digits[24];
    int n = 0;
    unsigned long long magnitude =
        value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        digits[n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    Py_ssize_t written = 0;
    if (value < 0) {
        out[written++] = '-';
    }
    while (n) {
        out[written++] = digits[--n];
    }
    return written;
}

/* UTF-8 bytes of a str; a value that cannot be encoded is backslash-escaped. */
static PyObject *
utf8(PyObject *text)
{
    PyObject *encoded = PyUnicode_AsUTF8String(text);
    if (encoded == NULL && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
        PyErr_Clear();
        encoded = PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace");
    }
    return encoded;
}

static int
append(Sink *s, const char *data, Py_ssize_t size)
{
    if (reserve(s, size + 1) < 0) {
        return -1;
    }
    memcpy(s->buf + s->len, data, (size_t)size);
    s->len += size;
    s->buf[s->len++] = '\n';
    return 0;
}

/* -- Sink ------------------------------------------------------------------ */

static PyObject *
Sink_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) > 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0)) {
        PyErr_SetString(PyExc_TypeError, "Sink() takes no arguments");
        return NULL;
    }
    Sink *s = (Sink *)type->tp_alloc(type, 0);
    if (s != NULL) {
        s->buf = NULL;
        s->len = s->cap = 0;
        s->second = -1;
        s->prefix[0] = '\0';
    }
    return (PyObject *)s;
}

static void
Sink_dealloc(Sink *s)
{
    PyMem_Free(s->buf);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *
Sink_stamp(Sink *s, PyObject *unused)
{
    char out[STAMP_LEN];
    if (stamp(s, out) < 0) {
        return NULL;
    }
    return PyUnicode_FromStringAndSize(out, STAMP_LEN);
}

static PyObject *
Sink_write(Sink *s, PyObject *line)
{
    if (!PyUnicode_Check(line)) {
        PyErr_Format(PyExc_TypeError, "write() takes a str, not %.100s", Py_TYPE(line)->tp_name);
        return NULL;
    }
    PyObject *encoded = utf8(line);
    if (encoded == NULL) {
        return NULL;
    }
    int failed = append(s, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
    Py_DECREF(encoded);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Sink_take(Sink *s, PyObject *unused)
{
    PyObject *data = PyBytes_FromStringAndSize(s->buf, s->len);
    if (data == NULL) {
        return NULL;
    }
    s->len = 0;
    if (s->cap > KEEP_CAPACITY) {
        PyMem_Free(s->buf);
        s->buf = NULL;
        s->cap = 0;
    }
    return data;
}

static PyObject *Bound_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static PyObject *
Sink_bind(Sink *s, PyObject *segments)
{
    if (!PyTuple_Check(segments) || PyTuple_GET_SIZE(segments) < 1) {
        PyErr_SetString(PyExc_TypeError, "bind() takes a non-empty tuple of str segments");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(segments);
    PyObject *encoded = PyTuple_New(n);
    if (encoded == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *segment = PyTuple_GET_ITEM(segments, i);
        if (!PyUnicode_Check(segment)) {
            Py_DECREF(encoded);
            PyErr_SetString(PyExc_TypeError, "bind() segments must be str");
            return NULL;
        }
        PyObject *bytes = utf8(segment);
        if (bytes == NULL) {
            Py_DECREF(encoded);
            return NULL;
        }
        PyTuple_SET_ITEM(encoded, i, bytes);
    }
    Bound *b = PyObject_New(Bound, &BoundType);
    if (b == NULL) {
        Py_DECREF(encoded);
        return NULL;
    }
    b->vectorcall = Bound_vectorcall;
    Py_INCREF(s);
    b->sink = s;
    b->segments = encoded;
    return (PyObject *)b;
}

static Py_ssize_t
Sink_len(Sink *s)
{
    return s->len;
}

static PyMethodDef Sink_methods[] = {
    {"stamp", (PyCFunction)Sink_stamp, METH_NOARGS,
     "The current UTC time as the log writes it: 2026-11-22T06:33:44.088724Z."},
    {"write", (PyCFunction)Sink_write, METH_O, "Append one whole line (no newline)."},
    {"take", (PyCFunction)Sink_take, METH_NOARGS,
     "Everything appended so far, as UTF-8 bytes; the sink is left empty."},
    {"bind", (PyCFunction)Sink_bind, METH_O,
     "A callable that appends `ts=<stamp>` + segments[0] + value0 + segments[1] + ... "
     "for integer values, one per gap between segments."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Sink_as_sequence = {
    .sq_length = (lenfunc)Sink_len,
};

static PyTypeObject SinkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "jarvis._linesink.Sink",
    .tp_doc = "Log lines waiting for the writer thread, as one UTF-8 buffer.",
    .tp_basicsize = sizeof(Sink),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Sink_new,
    .tp_dealloc = (destructor)Sink_dealloc,
    .tp_methods = Sink_methods,
    .tp_as_sequence = &Sink_as_sequence,
};

/* -- Bound ------------------------------------------------------------------ */

static PyObject *
Bound_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Bound *b = (Bound *)callable;
    Sink *s = b->sink;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t gaps = PyTuple_GET_SIZE(b->segments) - 1;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "a bound log line takes positional values only");
        return NULL;
    }
    if (nargs != gaps) {
        PyErr_Format(PyExc_TypeError, "this log line takes %zd values, not %zd", gaps, nargs);
        return NULL;
    }
    Py_ssize_t need = 3 + STAMP_LEN + 1 + 21 * gaps;
    for (Py_ssize_t i = 0; i <= gaps; i++) {
        need += PyBytes_GET_SIZE(PyTuple_GET_ITEM(b->segments, i));
    }
    if (reserve(s, need) < 0) {
        return NULL;
    }
    /* Written past `len` and committed only at the end: an error leaves no half line. */
    char *out = s->buf + s->len;
    memcpy(out, "ts=", 3);
    out += 3;
    if (stamp(s, out) < 0) {
        return NULL;
    }
    out += STAMP_LEN;
    for (Py_ssize_t i = 0; i <= gaps; i++) {
        PyObject *segment = PyTuple_GET_ITEM(b->segments, i);
        Py_ssize_t size = PyBytes_GET_SIZE(segment);
        memcpy(out, PyBytes_AS_STRING(segment), (size_t)size);
        out += size;
        if (i < gaps) {
            PyObject *value = args[i];
            if (!PyLong_Check(value)) {
                PyErr_Format(PyExc_TypeError, "log line values must be int, not %.100s",
                             Py_TYPE(value)->tp_name);
                return NULL;
            }
            long long number = PyLong_AsLongLong(value);
            if (number == -1 && PyErr_Occurred()) {
                return NULL;
            }
            out += put_int(out, number);
        }
    }
    *out++ = '\n';
    s->len = out - s->buf;
    Py_RETURN_NONE;
}

static void
Bound_dealloc(Bound *b)
{
    Py_DECREF(b->sink);
    Py_DECREF(b->segments);
    PyObject_Free(b);
}

static PyTypeObject BoundType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "jarvis._linesink.Bound",
    .tp_doc = "One event's line with its leading fields fixed; call it with the integers.",
    .tp_basicsize = sizeof(Bound),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Bound, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_dealloc = (destructor)Bound_dealloc,
};

/* -- module ------------------------------------------------------------------ */

static struct PyModuleDef linesink_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "jarvis._linesink",
    .m_doc = "The event log's hot path in C (see LineSink in jarvis/_sink.py for the Python twin).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__linesink(void)
{
    if (PyType_Ready(&SinkType) < 0 || PyType_Ready(&BoundType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&linesink_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&SinkType);
    if (PyModule_AddObject(module, "Sink", (PyObject *)&SinkType) < 0) {
        Py_DECREF(&SinkType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
