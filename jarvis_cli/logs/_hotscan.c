/* The hot loop of `jarvis diagnose` in C: a port of `flushes.feed_logfmt_python`.
 *
 * Why C: a jarvis log holds about 4 million flush events per gigabyte. The
 * regex alone (`LOGFMT.finditer`) reads ~300 MB/s and the per-match Python
 * loop halves that; polars and pyarrow, single-threaded, are no faster. Here
 * a vector scan finds each `event=`, a hand-written matcher accepts exactly
 * what `patterns.LOGFMT` accepts, and the three flush events update the dicts,
 * set and counters of a `flushes.FlushState` directly. That object is the
 * whole contract: the loop reads and writes its declared attributes (named in
 * PyInit__hotscan below) and nothing else. Everything rare (stream-level
 * events, a first emit, a flush after a cancel) calls back into Python, through
 * the handlers and the state's two hooks, so the analysis itself has one
 * implementation. `count_lines` is the scanner's other pass over every byte.
 *
 * `flushes.py` keeps the Python loop as the reference and the fallback;
 * tests/test_diagnose_engines.py feeds both the same logs and compares.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define EVENT "event="
#define EVENT_LEN 6
/* Up to this many digits a token count fits a long long; a longer one is
 * unreadable and adds nothing (MAX_COUNT_DIGITS in patterns.py). */
#define SMALL_DIGITS 18

/* The FlushState attributes the loop uses, interned once. */
static PyObject *str_pending_start, *str_pending_sched, *str_emitted, *str_cancelled;
static PyObject *str_on_first_emit, *str_on_flush_after_cancel;
static PyObject *str_flushes, *str_tokens, *str_multi, *str_scheduled;

enum hot { NOT_HOT, FLUSH_DONE, FLUSH_START, FLUSH_SCHEDULED, FLUSH_LINE };

/* Does `lit` sit at b[i:]? Never reads past n. */
static inline int
at(const char *b, Py_ssize_t n, Py_ssize_t i, const char *lit, Py_ssize_t len)
{
    return i >= 0 && len <= n - i && b[i] == lit[0] && memcmp(b + i, lit, (size_t)len) == 0;
}

/* The regex's ASCII classes: bytes patterns never treat bytes >= 0x80 as word
 * characters or digits. */
static inline int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int
is_word(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_';
}

/* The first `event=` in b[0:n], or NULL. */
static const char *
find_event(const char *b, Py_ssize_t n)
{
    Py_ssize_t i = 0;
#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
    /* 16 candidates at a time: an 'e' with a '=' five bytes on. Outside `event=`
     * that pair is rare in logfmt: ~7 GB/s on the benchmark log, where glibc's
     * memmem (the rest of the buffer, and other platforms) reads ~2.5. */
    const __m128i first = _mm_set1_epi8('e'), last = _mm_set1_epi8('=');
    for (; i + 16 + EVENT_LEN - 1 <= n; i += 16) {
        __m128i head = _mm_loadu_si128((const __m128i *)(b + i));
        __m128i tail = _mm_loadu_si128((const __m128i *)(b + i + EVENT_LEN - 1));
        unsigned mask = (unsigned)_mm_movemask_epi8(
            _mm_and_si128(_mm_cmpeq_epi8(head, first), _mm_cmpeq_epi8(tail, last)));
        while (mask != 0) {
            Py_ssize_t k = i + __builtin_ctz(mask);
            if (memcmp(b + k + 1, EVENT + 1, EVENT_LEN - 2) == 0)
                return b + k;
            mask &= mask - 1;
        }
    }
#endif
#if defined(__GLIBC__) || defined(__APPLE__)
    return i + EVENT_LEN <= n ? memmem(b + i, (size_t)(n - i), EVENT, EVENT_LEN) : NULL;
#else
    while (i + EVENT_LEN <= n) {
        const char *p = memchr(b + i, 'e', (size_t)(n - i - EVENT_LEN + 1));
        if (p == NULL)
            return NULL;
        if (memcmp(p, EVENT, EVENT_LEN) == 0)
            return p;
        i = p - b + 1;
    }
    return NULL;
#endif
}

/* How many `event=` lie wholly inside b[lo:hi] (a request id may contain one). */
static Py_ssize_t
count_events(const char *b, Py_ssize_t lo, Py_ssize_t hi)
{
    Py_ssize_t count = 0;
    const char *p;
    if (hi - lo < EVENT_LEN || memchr(b + lo, '=', (size_t)(hi - lo)) == NULL)
        return 0; /* the usual request id: no '=' at all */
    while (hi - lo >= EVENT_LEN && (p = find_event(b + lo, hi - lo)) != NULL) {
        count++;
        lo = p - b + EVENT_LEN;
    }
    return count;
}

/* The value [*r0, *r1) from i (non-empty, up to a space or newline), then an optional
 * `<count>` key of `count_len` bytes and its digits [*t0, *t1) (-1 when absent).
 * Returns 0 when the value is empty. */
static int
match_value_count(const char *b, Py_ssize_t n, Py_ssize_t i, const char *count,
                  Py_ssize_t count_len, Py_ssize_t *r0, Py_ssize_t *r1, Py_ssize_t *t0,
                  Py_ssize_t *t1)
{
    *r0 = i;
    while (i < n && b[i] != ' ' && b[i] != '\n')
        i++;
    if (i == *r0)
        return 0;
    *r1 = i;
    *t0 = *t1 = -1;
    if (at(b, n, i, count, count_len) && i + count_len < n && is_digit(b[i + count_len])) {
        i += count_len;
        *t0 = i;
        while (i < n && is_digit(b[i]))
            i++;
        *t1 = i;
    }
    return 1;
}

/* The first two branches of LOGFMT at q (just after `event=`):
 *   (flush_done|flush_start|flush_scheduled) request_id=([^ \n]+)(?: tokens_sent=(\d+))?
 *   |flush trace=([^ \n]+)(?: tokens=(\d+))?
 * Returns which matched (FLUSH_LINE: the second), or NOT_HOT; sets the request id (or
 * trace) span [*r0, *r1) and the digits span [*t0, *t1) (both -1 when there is no
 * count). */
static enum hot
match_hot(const char *b, Py_ssize_t n, Py_ssize_t q, Py_ssize_t *r0, Py_ssize_t *r1,
          Py_ssize_t *t0, Py_ssize_t *t1)
{
    enum hot kind;
    Py_ssize_t i;
    if (at(b, n, q, "flush trace=", 12)) {
        /* an empty trace: the third branch may still take the bare name */
        return match_value_count(b, n, q + 12, " tokens=", 8, r0, r1, t0, t1) ? FLUSH_LINE
                                                                              : NOT_HOT;
    }
    if (at(b, n, q, "flush_done", 10)) {
        kind = FLUSH_DONE;
        i = q + 10;
    }
    else if (at(b, n, q, "flush_start", 11)) {
        kind = FLUSH_START;
        i = q + 11;
    }
    else if (at(b, n, q, "flush_scheduled", 15)) {
        kind = FLUSH_SCHEDULED;
        i = q + 15;
    }
    else {
        return NOT_HOT;
    }
    if (!at(b, n, i, " request_id=", 12))
        return NOT_HOT;
    /* an empty request id: the third branch may still take the bare name */
    return match_value_count(b, n, i + 12, " tokens_sent=", 13, r0, r1, t0, t1) ? kind : NOT_HOT;
}

/* The third branch of LOGFMT at q, in the regex's order of alternatives:
 *   ((?:stream|flush|cleanup|loop|prev_stream|server|registry)_[a-z_]+
 *    |event_buffers_cleaned|upstream_error|request_rejected|flush)\b
 * [a-z_]+ is greedy and a shorter run always ends between two word characters,
 * so only the longest run can meet \b. Returns the end of the name, or -1. */
static Py_ssize_t
match_name(const char *b, Py_ssize_t n, Py_ssize_t q)
{
#define LIT(s) {s, sizeof(s) - 1}
    static const struct {
        const char *text;
        Py_ssize_t len;
    } families[] = {LIT("stream_"), LIT("flush_"), LIT("cleanup_"),
                    LIT("loop_"), LIT("prev_stream_"), LIT("server_"), LIT("registry_")},
      names[] = {LIT("event_buffers_cleaned"), LIT("upstream_error"), LIT("request_rejected"),
                 LIT("flush")};
#undef LIT
    size_t k;
    for (k = 0; k < sizeof families / sizeof *families; k++) {
        Py_ssize_t i = q + families[k].len;
        if (!at(b, n, q, families[k].text, families[k].len))
            continue;
        while (i < n && ((b[i] >= 'a' && b[i] <= 'z') || b[i] == '_'))
            i++;
        if (i > q + families[k].len && !(i < n && is_word(b[i])))
            return i;
    }
    for (k = 0; k < sizeof names / sizeof *names; k++) {
        Py_ssize_t len = names[k].len;
        if (at(b, n, q, names[k].text, len) && !(q + len < n && is_word(b[q + len])))
            return q + len;
    }
    return -1;
}

/* `name in EVENT_NAMES`, against the tuple made of that set: the bytes object
 * found there is then the key for handlers.get() and `in timed`. */
static PyObject *
vocabulary_name(PyObject *vocabulary, const char *p, Py_ssize_t len)
{
    Py_ssize_t k;
    for (k = 0; k < PyTuple_GET_SIZE(vocabulary); k++) {
        PyObject *name = PyTuple_GET_ITEM(vocabulary, k);
        if (PyBytes_Check(name) && PyBytes_GET_SIZE(name) == len &&
            memcmp(PyBytes_AS_STRING(name), p, (size_t)len) == 0)
            return name;
    }
    return NULL;
}

/* The flush state and the inputs of one call. */
typedef struct {
    PyObject *state, *chunk, *base;
    const char *buf;
    Py_ssize_t len;
    long long base_value; /* valid when base_fast */
    int base_fast;
} Scan;

/* base + offset: a line reference, as Python would compute it. */
static PyObject *
make_ref(Scan *scan, Py_ssize_t offset)
{
    PyObject *off, *ref;
    if (scan->base_fast)
        return PyLong_FromLongLong(scan->base_value + (long long)offset);
    off = PyLong_FromSsize_t(offset);
    if (off == NULL)
        return NULL;
    ref = PyNumber_Add(scan->base, off);
    Py_DECREF(off);
    return ref;
}

/* chunk[lo:hi], of the chunk's own type like Python's slice. */
static PyObject *
slice(Scan *scan, Py_ssize_t lo, Py_ssize_t hi)
{
    if (PyBytes_CheckExact(scan->chunk))
        return PyBytes_FromStringAndSize(scan->buf + lo, hi - lo);
    return PySequence_GetSlice(scan->chunk, lo, hi);
}

/* dict.pop(key, None), result unused. */
static int
discard(PyObject *dict, PyObject *key)
{
    int present = PyDict_Contains(dict, key);
    if (present <= 0)
        return present;
    return PyDict_DelItem(dict, key);
}

/* state.<hook>(rid, base + offset), result dropped. */
static int
call_back(Scan *scan, PyObject *hook, PyObject *rid, Py_ssize_t offset)
{
    PyObject *ref = make_ref(scan, offset), *result;
    if (ref == NULL)
        return -1;
    result = PyObject_CallMethodObjArgs(scan->state, hook, rid, ref, NULL);
    Py_DECREF(ref);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* state.<name> += value */
static int
add_count(PyObject *state, PyObject *name, PyObject *value)
{
    PyObject *old = PyObject_GetAttr(state, name), *sum;
    int rc;
    if (old == NULL)
        return -1;
    sum = PyNumber_Add(old, value);
    Py_DECREF(old);
    if (sum == NULL)
        return -1;
    rc = PyObject_SetAttr(state, name, sum);
    Py_DECREF(sum);
    return rc;
}

/* The chunk's counters join the state's at the end, as in Python. */
static int
add_counts(PyObject *state, long long flushes, PyObject *tokens, long long multi,
           long long scheduled)
{
    PyObject *values[4] = {PyLong_FromLongLong(flushes), Py_NewRef(tokens),
                           PyLong_FromLongLong(multi), PyLong_FromLongLong(scheduled)};
    PyObject *names[4] = {str_flushes, str_tokens, str_multi, str_scheduled};
    int k, rc = 0;
    for (k = 0; k < 4; k++) {
        if (rc == 0 && (values[k] == NULL || add_count(state, names[k], values[k]) < 0))
            rc = -1;
        Py_XDECREF(values[k]);
    }
    return rc;
}

static PyObject *
get_typed(PyObject *obj, PyObject *name, PyTypeObject *type)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value != NULL && !PyObject_TypeCheck(value, type)) {
        PyErr_Format(PyExc_TypeError, "state.%U must be a %s", name, type->tp_name);
        Py_CLEAR(value);
    }
    return value;
}

PyDoc_STRVAR(feed_logfmt_doc,
"feed_logfmt(state, chunk, base, handlers, timed, parse_fields, event_names, line_ts)\n"
"--\n\n"
"flushes.feed_logfmt_python in C, on a FlushState: returns (vocabulary events, other\n"
"`event=` occurrences).");

static PyObject *
feed_logfmt(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *handlers, *timed, *parse_fields, *line_ts;
    PyObject *pending_start = NULL, *pending_sched = NULL, *emitted = NULL, *cancelled = NULL;
    PyObject *vocabulary = NULL, *tokens_big = NULL, *result = NULL;
    PyObject *rid = NULL, *last_rid = NULL;
    Py_buffer view = {0};
    Scan scan;
    Py_ssize_t pos = 0, n;
    long long recognised = 0, seen = 0, flushes = 0, scheduled = 0, multi = 0;
    long long tokens_small = 0;

    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "feed_logfmt takes 8 arguments (%zd given)", nargs);
        return NULL;
    }
    scan.state = args[0];
    scan.chunk = args[1];
    scan.base = args[2];
    handlers = args[3];
    timed = args[4];
    parse_fields = args[5];
    line_ts = args[7];
    if (!PyDict_Check(handlers)) {
        PyErr_SetString(PyExc_TypeError, "handlers must be a dict");
        return NULL;
    }
    if (PyObject_GetBuffer(scan.chunk, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    scan.buf = view.buf;
    scan.len = n = view.len;
    scan.base_fast = 0;
    if (PyLong_CheckExact(scan.base)) {
        int overflow;
        scan.base_value = PyLong_AsLongLongAndOverflow(scan.base, &overflow);
        if (scan.base_value == -1 && PyErr_Occurred())
            goto done;
        scan.base_fast = !overflow && scan.base_value >= 0 && scan.base_value <= LLONG_MAX - n;
    }
    if ((pending_start = get_typed(scan.state, str_pending_start, &PyDict_Type)) == NULL ||
        (pending_sched = get_typed(scan.state, str_pending_sched, &PyDict_Type)) == NULL ||
        (emitted = get_typed(scan.state, str_emitted, &PySet_Type)) == NULL ||
        (cancelled = get_typed(scan.state, str_cancelled, &PyDict_Type)) == NULL ||
        (vocabulary = PySequence_Tuple(args[6])) == NULL)
        goto done;

    while (n - pos >= EVENT_LEN) {
        const char *hit = find_event(scan.buf + pos, n - pos);
        Py_ssize_t s, q, e, r0 = 0, r1 = 0, t0 = -1, t1 = -1;
        enum hot kind;
        if (hit == NULL)
            break;
        s = hit - scan.buf;
        q = s + EVENT_LEN;
        seen++;
        kind = match_hot(scan.buf, n, q, &r0, &r1, &t0, &t1);
        if (kind != NOT_HOT) {
            recognised++;
            seen += count_events(scan.buf, r0, r1);
            /* A stream's flush events come in a row: reuse the key (and its hash). */
            if (last_rid != NULL && PyBytes_GET_SIZE(last_rid) == r1 - r0 &&
                memcmp(PyBytes_AS_STRING(last_rid), scan.buf + r0, (size_t)(r1 - r0)) == 0) {
                rid = Py_NewRef(last_rid);
            }
            else {
                rid = PyBytes_FromStringAndSize(scan.buf + r0, r1 - r0);
                if (rid == NULL)
                    goto done;
                Py_XSETREF(last_rid, Py_NewRef(rid));
            }
            if (kind == FLUSH_LINE) {
                /* One line, one whole flush: as flush_done, and a flush after a cancel
                 * is told here (an older log tells it at flush_start). */
                int watched;
                flushes++;
                if (discard(pending_start, rid) < 0 ||
                    (watched = PyDict_Contains(cancelled, rid)) < 0)
                    goto done;
                if (watched && call_back(&scan, str_on_flush_after_cancel, rid, s) < 0)
                    goto done;
            }
            if (t0 >= 0) {
                /* A count makes it a flush_done, whatever the name (as in Python). */
                if (kind != FLUSH_LINE) {
                    flushes++;
                    if (discard(pending_start, rid) < 0)
                        goto done;
                }
                if (!(t1 - t0 == 1 && scan.buf[t0] == '0')) {
                    int more, known;
                    if (t1 - t0 <= SMALL_DIGITS) {
                        long long sent = 0;
                        Py_ssize_t i;
                        for (i = t0; i < t1; i++)
                            sent = sent * 10 + (scan.buf[i] - '0');
                        if (tokens_small > LLONG_MAX - sent) {
                            PyObject *sum = PyLong_FromLongLong(tokens_small), *big;
                            if (sum == NULL)
                                goto done;
                            big = tokens_big ? PyNumber_Add(tokens_big, sum) : Py_NewRef(sum);
                            Py_DECREF(sum);
                            Py_XSETREF(tokens_big, big);
                            if (big == NULL)
                                goto done;
                            tokens_small = 0;
                        }
                        tokens_small += sent;
                        more = sent > 1;
                    }
                    else {
                        /* No server writes such a count: unreadable, it adds nothing
                         * (as count_value() in Python); the flush still counts. */
                        more = 0;
                    }
                    if (more)
                        multi++;
                    known = PySet_Contains(emitted, rid);
                    if (known < 0)
                        goto done;
                    if (!known && (PySet_Add(emitted, rid) < 0 ||
                                   call_back(&scan, str_on_first_emit, rid, s) < 0))
                        goto done;
                }
            }
            else if (kind == FLUSH_START) {
                PyObject *ref = make_ref(&scan, s);
                int watched;
                if (ref == NULL)
                    goto done;
                if (PyDict_SetItem(pending_start, rid, ref) < 0) {
                    Py_DECREF(ref);
                    goto done;
                }
                Py_DECREF(ref);
                if (discard(pending_sched, rid) < 0 ||
                    (watched = PyDict_Contains(cancelled, rid)) < 0)
                    goto done;
                if (watched && call_back(&scan, str_on_flush_after_cancel, rid, s) < 0)
                    goto done;
            }
            else if (kind == FLUSH_SCHEDULED) {
                PyObject *ref = make_ref(&scan, s);
                int rc;
                if (ref == NULL)
                    goto done;
                scheduled++;
                rc = PyDict_SetItem(pending_sched, rid, ref);
                Py_DECREF(ref);
                if (rc < 0)
                    goto done;
            }
            else if (kind != FLUSH_LINE) { /* a flush_done cut short before tokens_sent */
                flushes++;
                if (discard(pending_start, rid) < 0)
                    goto done;
            }
            Py_CLEAR(rid);
            pos = t0 >= 0 ? t1 : r1;
            continue;
        }
        e = match_name(scan.buf, n, q);
        if (e < 0) {
            pos = s + 1;
            continue;
        }
        /* "…event=" at the name's end: the regex skips it, bytes.count() does not. */
        if (e - q >= 5 && e < n && scan.buf[e] == '=' && memcmp(scan.buf + e - 5, "event", 5) == 0)
            seen++;
        pos = e;
        {
            PyObject *name = vocabulary_name(vocabulary, scan.buf + q, e - q), *handler;
            PyObject *ts, *rest, *fields, *ref, *called;
            Py_ssize_t stop, line_start;
            int is_timed;
            const char *newline;
            if (name == NULL)
                continue;
            recognised++;
            handler = PyDict_GetItemWithError(handlers, name);
            if (handler == NULL) {
                if (PyErr_Occurred())
                    goto done;
                continue;
            }
            Py_INCREF(handler);
            newline = memchr(scan.buf + e, '\n', (size_t)(n - e));
            stop = newline ? newline - scan.buf : n;
            /* Python evaluates line_ts() before parse_fields(): keep that order. */
            is_timed = PySequence_Contains(timed, name);
            if (is_timed < 0) {
                Py_DECREF(handler);
                goto done;
            }
            if (is_timed) {
                line_start = s;
                while (line_start > 0 && scan.buf[line_start - 1] != '\n')
                    line_start--;
                ts = PyObject_CallFunction(line_ts, "On", scan.chunk, line_start);
            }
            else {
                ts = Py_NewRef(Py_None);
            }
            rest = ts ? slice(&scan, e, stop) : NULL;
            fields = rest ? PyObject_CallOneArg(parse_fields, rest) : NULL;
            ref = fields ? make_ref(&scan, s) : NULL;
            called = ref ? PyObject_CallFunctionObjArgs(handler, fields, ref, ts, NULL) : NULL;
            Py_DECREF(handler);
            Py_XDECREF(ts);
            Py_XDECREF(rest);
            Py_XDECREF(fields);
            Py_XDECREF(ref);
            if (called == NULL)
                goto done;
            Py_DECREF(called);
        }
    }

    {
        PyObject *tokens = PyLong_FromLongLong(tokens_small);
        int rc;
        if (tokens != NULL && tokens_big != NULL)
            Py_SETREF(tokens, PyNumber_Add(tokens_big, tokens));
        if (tokens == NULL)
            goto done;
        rc = add_counts(scan.state, flushes, tokens, multi, scheduled);
        Py_DECREF(tokens);
        if (rc < 0)
            goto done;
    }
    result = Py_BuildValue("LL", recognised, seen - recognised);

done:
    Py_XDECREF(rid);
    Py_XDECREF(last_rid);
    Py_XDECREF(pending_start);
    Py_XDECREF(pending_sched);
    Py_XDECREF(emitted);
    Py_XDECREF(cancelled);
    Py_XDECREF(vocabulary);
    Py_XDECREF(tokens_big);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(count_lines_doc,
"count_lines(buffer, start, stop)\n"
"--\n\n"
"buffer[start:stop].count(b'\\n') without the copy, at memchr speed (bytes.count\n"
"reads one byte at a time: a tenth of the run time on a big log).");

static PyObject *
count_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t start, stop, count = 0;
    const char *p, *end;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "count_lines takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if ((start = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred())
        return NULL;
    if ((stop = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (start < 0 || stop < start || stop > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "need 0 <= start <= stop <= len(buffer)");
        return NULL;
    }
    p = (const char *)view.buf + start;
    end = (const char *)view.buf + stop;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        count++;
        p++;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(count);
}

static PyMethodDef methods[] = {
    {"feed_logfmt", (PyCFunction)(void (*)(void))feed_logfmt, METH_FASTCALL, feed_logfmt_doc},
    {"count_lines", (PyCFunction)(void (*)(void))count_lines, METH_FASTCALL, count_lines_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hotscan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_hotscan",
    .m_doc = "The hot loop of `jarvis diagnose` in C (see flushes.feed_logfmt_python).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__hotscan(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } names[] = { /* every FlushState attribute the loop reads or writes */
        {&str_pending_start, "pending_start"}, {&str_pending_sched, "pending_sched"},
        {&str_emitted, "emitted"}, {&str_cancelled, "cancelled"},
        {&str_on_first_emit, "on_first_emit"},
        {&str_on_flush_after_cancel, "on_flush_after_cancel"},
        {&str_flushes, "flushes"}, {&str_tokens, "tokens"},
        {&str_multi, "multi_token_flushes"}, {&str_scheduled, "scheduled"},
    };
    size_t k;
    for (k = 0; k < sizeof names / sizeof *names; k++) {
        if (*names[k].slot == NULL && (*names[k].slot = PyUnicode_InternFromString(names[k].text)) == NULL)
            return NULL;
    }
    return PyModule_Create(&hotscan_module);
}
