/* interp/python.c: CPython embedded through PyConfig, and the kn_interp
 * hooks that call into the embedded `cellbox` package.
 *
 * Python runs on the process main thread (it receives SIGINT there, so
 * KeyboardInterrupt works in any blocking call). The GIL is released while
 * the kernel waits for requests. The C module _cellbox_c is the only door
 * from Python to the kernel: publish(), input(), the OutStream type that
 * feeds interp/capture.c, and the table of embedded modules.
 *
 * Never derive PYTHONHOME from this binary's location: the interpreter is
 * configured as the system's own python (program_name = its path), so
 * sys.prefix, site-packages and sys.executable are the system's.
 *
 * PyObject references: every local is marked "new" or "borrowed".
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <marshal.h>

#include "config.h"
#include "interp/interp.h"

#include <pthread.h>
#include <signal.h>
#include <errno.h>
#include <time.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "interp/capture.h"
#include "interp/png.h"
#include "interp/pymodules.h"

#ifndef CB_PYTHON3
#define CB_PYTHON3 "/usr/bin/python3"
#endif

typedef struct ip_python {
    kn_interp ops;
    ip_options opts;
    const kn_host *host;
    ip_capture *cap;
    PyThreadState *saved;     /* while idle */
    PyObject *shell;          /* new: cellbox._kernel.Shell instance */
    bool bg_failed;           /* shell.background() raised: not called again */
    _Atomic bool ready;       /* start() finished: other threads may take the GIL */
} ip_python;

static ip_python *g_py;  /* the one interpreter of this process (for _cellbox_c) */

/* ------------------------------------------------------------------ _cellbox_c.OutStream */

typedef struct {
    PyObject_HEAD
    int stream;
    PyObject *name;
} OutStream;

/* In a child made by os.fork() / multiprocessing there is no pump thread:
 * each write goes at once to the inherited fd (a pipe the kernel's pump
 * reads), as ipykernel sends each write of a child at once. Nothing is held
 * back: a multiprocessing.Pool worker is ended by SIGTERM (Pool.terminate,
 * the end of a `with` block) or os._exit, so a partial line kept for later
 * was lost, or came after what the parent printed once the worker's result
 * was in. (print() writes its pieces separately: a child's print is made
 * one write by cellbox._kernel, so that lines of several children do not
 * interleave mid-line.) The child then marks the capture's shared counter,
 * so the parent reads the pipe before its own next write: what a worker
 * printed comes before what the parent prints after its result. */
static volatile bool forked_child;  /* set in the child by a pthread_atfork handler */

static void mark_forked_child(void)
{
    forked_child = true;
}

static bool in_forked_child(void)
{
    /* a flag, not getpid(): write() is hot and getpid() is a system call */
    return forked_child;
}

/* A fatal signal (a segfault in a C extension, abort(), Python's fatal
 * errors): before the kernel dies, the capture's pump publishes what the
 * cell printed (Python's buffer and the fd pipes) and ZeroMQ's I/O thread
 * gets time to send it, so the last output before a crash reaches the
 * frontend (ipykernel loses it unless it was flushed, and sometimes then).
 * The other threads run during the grace; then the signal's default
 * action. Not in forked children. */
static pid_t fatal_pid;
#define FATAL_GRACE_MS 200

static void on_fatal_signal(int sig)
{
    int saved = errno;
    if (getpid() == fatal_pid && g_py && g_py->cap) {
        ip_capture_crash_kick(g_py->cap);
        struct timespec left = {0, FATAL_GRACE_MS * 1000000L};
        while (nanosleep(&left, &left) < 0 && errno == EINTR)
            ;
    }
    errno = saved;
    raise(sig);  /* SA_RESETHAND: the default action now, even for a kill -SEGV */
}

static void fatal_signals_install(void)
{
    fatal_pid = getpid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

/* Publishes what was printed, on a thread holding the GIL: it gives the
 * GIL up meanwhile, so the other threads run if it waits for a slow
 * frontend. */
static void flush_output(ip_capture *cap)
{
    Py_BEGIN_ALLOW_THREADS
    ip_capture_flush(cap);
    Py_END_ALLOW_THREADS
}

static void out_emit(OutStream *self, const char *s, size_t len)
{
    if (in_forked_child()) {
        cb_write_all(self->stream, s, len);
        if (g_py && g_py->cap)
            ip_capture_child_wrote(g_py->cap);
    } else if (g_py && g_py->cap) {
        if (ip_capture_may_wait(g_py->cap, len)) {
            /* a wait for a slow frontend holds no lock of Python's: the
             * other threads run meanwhile (the capture never calls Python,
             * and gives its locks back before returning) */
            Py_BEGIN_ALLOW_THREADS
            ip_capture_write(g_py->cap, self->stream, s, len);
            Py_END_ALLOW_THREADS
        } else {
            ip_capture_write_held(g_py->cap, self->stream, s, len);
        }
    }
}

/* A huge non-ASCII str is encoded a slice at a time (slices of code points
 * never cut a character): PyUnicode_AsUTF8AndSize would attach a UTF-8 copy
 * of the whole string to the str, alive as long as it is. Returns -1 with
 * an exception set. */
static int out_write_slices(OutStream *self, PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s), step = IP_CAPTURE_BIG / 4;
    bool whole = !in_forked_child() && g_py && g_py->cap;  /* else each slice is a write */
    if (whole)
        ip_capture_write_begin(g_py->cap, self->stream);
    int rc = 0;
    for (Py_ssize_t i = 0; i < n; i += step) {
        PyObject *sub = PyUnicode_Substring(s, i, n - i > step ? i + step : n);  /* new */
        /* backslashreplace: lone surrogates written replaced, as below */
        PyObject *b = sub ? PyUnicode_AsEncodedString(sub, "utf-8", "backslashreplace") : NULL;  /* new */
        Py_XDECREF(sub);
        if (!b) {
            rc = -1;
            break;
        }
        if (whole)
            ip_capture_write_part(g_py->cap, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
        else
            out_emit(self, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
        Py_DECREF(b);
    }
    if (whole)
        ip_capture_write_end(g_py->cap);
    return rc;
}

static PyObject *out_write(OutStream *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        if (PyBytes_Check(arg) || PyByteArray_Check(arg)) {
            PyErr_Format(PyExc_TypeError, "write() argument must be str, not %s", Py_TYPE(arg)->tp_name);
            return NULL;
        }
        PyErr_Format(PyExc_TypeError, "write() argument must be str, not %s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
#if PY_VERSION_HEX < 0x030c0000  /* every str is ready from 3.12 on (and the call deprecated) */
    if (PyUnicode_READY(arg) < 0)
        return NULL;
#endif
    if (!PyUnicode_IS_ASCII(arg) && PyUnicode_GET_LENGTH(arg) >= (Py_ssize_t)IP_CAPTURE_BIG / 4) {
        if (out_write_slices(self, arg) < 0)
            return NULL;
        return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &len);
    if (!s) {
        /* lone surrogates and the like: write them replaced, never fail */
        PyErr_Clear();
        PyObject *b = PyUnicode_AsEncodedString(arg, "utf-8", "backslashreplace");  /* new */
        if (!b)
            return NULL;
        out_emit(self, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
        Py_DECREF(b);
    } else {
        out_emit(self, s, (size_t)len);
    }
    return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
}

static PyObject *out_flush(OutStream *self, PyObject *noargs)
{
    if (in_forked_child() || !g_py || !g_py->cap)  /* a child has nothing buffered */
        Py_RETURN_NONE;
    if (!ip_capture_flush_now_due(g_py->cap)) {
        ip_capture_kick(g_py->cap);
    } else if (ip_capture_may_wait(g_py->cap, 0)) {
        Py_BEGIN_ALLOW_THREADS
        ip_capture_flush_now(g_py->cap);
        Py_END_ALLOW_THREADS
    } else {
        ip_capture_flush_now_held(g_py->cap);
    }
    Py_RETURN_NONE;
}

static PyObject *out_false(OutStream *self, PyObject *noargs)
{
    Py_RETURN_FALSE;
}

static PyObject *out_true(OutStream *self, PyObject *noargs)
{
    Py_RETURN_TRUE;
}

static PyObject *out_fileno(OutStream *self, PyObject *noargs)
{
    return PyLong_FromLong(self->stream);
}

static PyObject *out_writelines(OutStream *self, PyObject *lines)
{
    PyObject *it = PyObject_GetIter(lines);  /* new */
    if (!it)
        return NULL;
    PyObject *item;  /* new */
    while ((item = PyIter_Next(it))) {
        PyObject *r = out_write(self, item);  /* new */
        Py_DECREF(item);
        if (!r) {
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef out_methods[] = {
    {"write", (PyCFunction)out_write, METH_O, "Write a str to the stream."},
    {"writelines", (PyCFunction)out_writelines, METH_O, "Write an iterable of str."},
    {"flush", (PyCFunction)out_flush, METH_NOARGS, "Ask for the output to be published soon."},
    {"isatty", (PyCFunction)out_false, METH_NOARGS, NULL},
    {"readable", (PyCFunction)out_false, METH_NOARGS, NULL},
    {"seekable", (PyCFunction)out_false, METH_NOARGS, NULL},
    {"writable", (PyCFunction)out_true, METH_NOARGS, NULL},
    {"fileno", (PyCFunction)out_fileno, METH_NOARGS, "The captured file descriptor (1 or 2)."},
    {"close", (PyCFunction)out_flush, METH_NOARGS, "Streams of the kernel stay open; this flushes."},
    {NULL},
};

/* name, encoding and (no) errors as ipykernel's OutStream, which code
 * written for Jupyter sees there */
static PyObject *out_get_name(OutStream *self, void *c)
{
    return PyUnicode_FromString(self->stream == IP_STDERR ? "stderr" : "stdout");
}

static PyObject *out_get_encoding(OutStream *self, void *c)
{
    return PyUnicode_FromString("UTF-8");
}

static PyObject *out_get_closed(OutStream *self, void *c)
{
    Py_RETURN_FALSE;
}

static PyGetSetDef out_getset[] = {
    {"name", (getter)out_get_name, NULL, NULL, NULL},
    {"encoding", (getter)out_get_encoding, NULL, NULL, NULL},
    {"closed", (getter)out_get_closed, NULL, NULL, NULL},
    {NULL},
};

static int out_init(OutStream *self, PyObject *args, PyObject *kw)
{
    int stream = 1;
    if (!PyArg_ParseTuple(args, "i", &stream))
        return -1;
    if (stream != IP_STDOUT && stream != IP_STDERR) {
        PyErr_SetString(PyExc_ValueError, "stream must be 1 or 2");
        return -1;
    }
    self->stream = stream;
    return 0;
}

/* Named as ipykernel's stream class: libraries tell a notebook kernel's
 * output by its module (click keeps its colours when
 * type(sys.stdout).__module__ starts with "ipykernel."). */
static PyTypeObject OutStreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ipykernel.iostream.OutStream",
    .tp_basicsize = sizeof(OutStream),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A text stream whose writes become Jupyter stream messages.",
    .tp_methods = out_methods,
    .tp_getset = out_getset,
    .tp_init = (initproc)out_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ _cellbox_c functions */

static PyObject *c_publish(PyObject *mod, PyObject *args)
{
    const char *msg_type, *content, *parent = NULL;
    Py_ssize_t len, parent_len = 0;
    PyObject *buffers = Py_None;  /* borrowed */
    if (!PyArg_ParseTuple(args, "ss#|Os#", &msg_type, &content, &len, &buffers, &parent, &parent_len))
        return NULL;
    if (!g_py || !g_py->host)
        Py_RETURN_NONE;
    /* outputs keep their order with the text printed before them (a flush
     * that may wait for a slow frontend lets the other threads run) */
    if (g_py->cap && strcmp(msg_type, "stream") != 0) {
        if (ip_capture_may_wait(g_py->cap, 0)) {
            Py_BEGIN_ALLOW_THREADS
            ip_capture_flush(g_py->cap);
            Py_END_ALLOW_THREADS
        } else {
            ip_capture_flush_held(g_py->cap);
        }
    }
    kn_bytes bufs[64];
    Py_buffer views[64];
    size_t nb = 0;
    if (buffers != Py_None) {
        PyObject *seq = PySequence_Fast(buffers, "buffers must be a sequence");  /* new */
        if (!seq)
            return NULL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if (n > 64) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "at most 64 buffers per message");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *b = PySequence_Fast_GET_ITEM(seq, i);  /* borrowed */
            if (PyObject_GetBuffer(b, &views[nb], PyBUF_CONTIG_RO) < 0) {
                for (size_t j = 0; j < nb; j++)
                    PyBuffer_Release(&views[j]);
                Py_DECREF(seq);
                return NULL;
            }
            bufs[nb] = (kn_bytes){views[nb].buf, (size_t)views[nb].len};
            nb++;
        }
        Py_DECREF(seq);
    }
    Py_BEGIN_ALLOW_THREADS
    if (parent && g_py->host->publish_parent)
        g_py->host->publish_parent(g_py->host->ctx, parent, (size_t)parent_len, msg_type, content, (size_t)len,
                                   nb ? bufs : NULL, nb);
    else
        g_py->host->publish(g_py->host->ctx, msg_type, content, (size_t)len, nb ? bufs : NULL, nb);
    Py_END_ALLOW_THREADS
    for (size_t j = 0; j < nb; j++)
        PyBuffer_Release(&views[j]);
    Py_RETURN_NONE;
}

typedef struct {
    PyThreadState *ts;
    bool interrupted;
} input_wait;

static bool input_poll_interrupt(void *arg)
{
    input_wait *w = arg;
    PyEval_RestoreThread(w->ts);
    if (PyErr_CheckSignals() < 0)
        w->interrupted = true;  /* the exception stays set: input() raises it */
    w->ts = PyEval_SaveThread();
    return w->interrupted;
}

/* A str from a message's string: CB_JSON_NUL (base/json.h) is U+0000. New. */
static PyObject *text_to_py(const char *s)
{
    if (!strstr(s, CB_JSON_NUL))
        return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
    cb_buf b = CB_BUF_INIT;
    for (const char *p = s; *p;) {
        if (p[0] == CB_JSON_NUL[0] && p[1] == CB_JSON_NUL[1]) {
            cb_buf_putc(&b, '\0');
            p += 2;
        } else {
            cb_buf_putc(&b, *p++);
        }
    }
    PyObject *r = PyUnicode_DecodeUTF8(b.data, (Py_ssize_t)b.len, "replace");
    cb_buf_clear(&b);
    return r;
}

/* input(prompt, password) -> (status, value): status 0 ok, 1 not allowed,
 * 2 interrupted (exception set), 3 failed. */
static PyObject *c_input(PyObject *mod, PyObject *args)
{
    const char *prompt;
    int password = 0;
    if (!PyArg_ParseTuple(args, "s|p", &prompt, &password))
        return NULL;
    if (!g_py || !g_py->host)
        return Py_BuildValue("(is)", KN_INPUT_NOT_ALLOWED, "");
    if (g_py->cap)
        flush_output(g_py->cap);  /* show what was printed before the prompt */
    char *value = NULL;
    input_wait w = {0};
    w.ts = PyEval_SaveThread();
    int st = g_py->host->input(g_py->host->ctx, prompt, password, &value, input_poll_interrupt, &w);
    PyEval_RestoreThread(w.ts);
    if (st == KN_INPUT_INTERRUPTED && PyErr_Occurred())
        return NULL;
    PyObject *text = text_to_py(value ? value : "");                  /* new */
    PyObject *r = text ? Py_BuildValue("(iN)", st, text) : NULL;  /* new */
    free(value);
    return r;
}

static PyObject *c_flush(PyObject *mod, PyObject *noargs)
{
    if (g_py && g_py->cap)
        flush_output(g_py->cap);
    Py_RETURN_NONE;
}

/* os._exit(status) in the kernel: what the cell printed is published first,
 * from Python and from fds 1 and 2 (the capture publishes in batches, and
 * _exit ends the process at once: `print('bye', flush=True); os._exit(1)`
 * showed nothing). A forked child (multiprocessing) has written everything
 * to its pipes already; it never touches the parent's sockets. */
static PyObject *c_exit(PyObject *mod, PyObject *arg)
{
    int status;
    if (!PyArg_Parse(arg, "i:_exit", &status))
        return NULL;
    if (!in_forked_child() && g_py && g_py->cap) {
        Py_BEGIN_ALLOW_THREADS
        ip_capture_flush(g_py->cap);
        /* the messages are queued to ZeroMQ's I/O thread, which _exit kills:
         * libzmq cannot say when they have left (only zmq_ctx_term waits, and
         * it needs every socket closed), so give it a moment (2 of 15 exits
         * lost the last message without) */
        usleep(50 * 1000);
        Py_END_ALLOW_THREADS
    }
    _exit(status);
}

static const ip_pymodule *find_module(const char *name)
{
    for (const ip_pymodule *m = ip_pymodules; m->name; m++)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

/* Returns a new code object for an embedded module (marshalled, or compiled
 * from the embedded source when the magic numbers differ). */
static PyObject *module_code(const ip_pymodule *m)
{
    static int magic_ok = -1;
    if (magic_ok < 0) {
        long magic = PyImport_GetMagicNumber();
        unsigned char mine[4] = {magic & 0xff, (magic >> 8) & 0xff, (magic >> 16) & 0xff, (magic >> 24) & 0xff};
        magic_ok = memcmp(mine, ip_pymodules_magic, 4) == 0;
    }
    if (magic_ok)
        return PyMarshal_ReadObjectFromString((const char *)m->code, (Py_ssize_t)m->code_len);
    cb_autofree char *src = cb_strndup((const char *)m->source, m->source_len);
    return Py_CompileString(src, m->filename, Py_file_input);
}

/* The embedded module a str argument names: 1 found, 0 not embedded, -1
 * with an exception set (not a str). */
static int module_arg(PyObject *arg, const ip_pymodule **m)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name)
        return -1;
    *m = find_module(name);
    return *m != NULL;
}

/* embedded_module(name) -> (is_package, code, filename) or None */
static PyObject *c_embedded_module(PyObject *mod, PyObject *arg)
{
    const ip_pymodule *m;
    int found = module_arg(arg, &m);
    if (found <= 0)
        return found < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *code = module_code(m);  /* new */
    if (!code)
        return NULL;
    PyObject *r = Py_BuildValue("(ONs)", m->is_package ? Py_True : Py_False, code, m->filename);
    return r;
}

static PyObject *c_embedded_source(PyObject *mod, PyObject *arg)
{
    const ip_pymodule *m;
    int found = module_arg(arg, &m);
    if (found <= 0)
        return found < 0 ? NULL : Py_NewRef(Py_None);
    return PyUnicode_DecodeUTF8((const char *)m->source, (Py_ssize_t)m->source_len, "replace");
}

/* parent_header() -> the JSON text of the shell request being handled, or None */
static PyObject *c_parent_header(PyObject *mod, PyObject *noargs)
{
    if (!g_py || !g_py->host || !g_py->host->parent_header)
        Py_RETURN_NONE;
    char *h = g_py->host->parent_header(g_py->host->ctx);
    if (!h)
        Py_RETURN_NONE;
    PyObject *r = PyUnicode_DecodeUTF8(h, (Py_ssize_t)strlen(h), "replace");  /* new */
    free(h);
    return r;
}

static PyObject *c_history_session(PyObject *mod, PyObject *noargs)
{
    return PyLong_FromLong(g_py && g_py->host ? g_py->host->history_session : 0);
}

static PyObject *c_history_file(PyObject *mod, PyObject *noargs)
{
    if (!g_py || !g_py->host || !g_py->host->history_file)
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefault(g_py->host->history_file);
}

static PyObject *c_connection_file(PyObject *mod, PyObject *noargs)
{
    if (!g_py || !g_py->host || !g_py->host->connection_file)
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefault(g_py->host->connection_file);
}

static PyObject *c_history_query(PyObject *mod, PyObject *arg)
{
    const char *req = PyUnicode_AsUTF8(arg);
    if (!req)
        return NULL;
    if (!g_py || !g_py->host || !g_py->host->history_query)
        return PyUnicode_FromString("{\"status\":\"ok\",\"history\":[]}");
    char *text = g_py->host->history_query(g_py->host->ctx, req);
    PyObject *r = PyUnicode_DecodeUTF8(text, (Py_ssize_t)strlen(text), "replace");  /* new */
    free(text);
    return r;
}

/* png_encode(rgba, width, height, *, stride=0, dpi=0.0, text=None, alpha=0,
 * level=-1, strategy=-1, filters=-1) -> bytes: interp/png.c on a buffer of
 * 8-bit RGBA pixels (matplotlib's buffer_rgba()), without the GIL. text is
 * a dict of tEXt chunks; alpha: 0 auto, 1 keep, 2 drop; -1 = the default. */
static PyObject *c_png_encode(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"rgba", "width", "height", "stride", "dpi", "text", "alpha", "level", "strategy",
                             "filters", NULL};
    Py_buffer view;
    unsigned int w, h;
    Py_ssize_t stride = 0;
    double dpi = 0;
    PyObject *text = Py_None;  /* borrowed */
    int alpha = 0, level = -1, strategy = -1, filters = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*II|$ndOiiii", kwlist, &view, &w, &h, &stride, &dpi, &text,
                                     &alpha, &level, &strategy, &filters))
        return NULL;
    if (stride <= 0)
        stride = (Py_ssize_t)w * 4;
    if (w == 0 || h == 0 || stride < (Py_ssize_t)w * 4 || view.len < stride * (Py_ssize_t)(h - 1) + (Py_ssize_t)w * 4) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "png_encode: the buffer is smaller than width x height x 4");
        return NULL;
    }
    ip_png_opts o = ip_png_defaults();
    o.alpha = alpha == 1 ? IP_PNG_ALPHA_KEEP : alpha == 2 ? IP_PNG_ALPHA_DROP : IP_PNG_ALPHA_AUTO;
    o.dpi = dpi;
    if (level >= 0)
        o.level = level;
    if (strategy >= 0)
        o.strategy = strategy;
    if (filters >= 0)
        o.filters = filters;
    /* tEXt keys and values as Latin-1 (PNG's text encoding), kept alive in a list */
    PyObject *keep = PyList_New(0);  /* new */
    const char *pairs[2 * 16 + 1];
    size_t np = 0;
    if (text != Py_None && PyDict_Check(text)) {
        PyObject *k, *v;  /* borrowed */
        Py_ssize_t pos = 0;
        while (PyDict_Next(text, &pos, &k, &v) && np < 2 * 16) {
            if (!PyUnicode_Check(k) || !PyUnicode_Check(v))
                continue;
            PyObject *kb = PyUnicode_AsEncodedString(k, "latin-1", "replace");  /* new */
            PyObject *vb = PyUnicode_AsEncodedString(v, "latin-1", "replace");  /* new */
            if (!kb || !vb) {
                Py_XDECREF(kb);
                Py_XDECREF(vb);
                PyErr_Clear();
                continue;
            }
            PyList_Append(keep, kb);
            PyList_Append(keep, vb);
            pairs[np++] = PyBytes_AS_STRING(kb);
            pairs[np++] = PyBytes_AS_STRING(vb);
            Py_DECREF(kb);
            Py_DECREF(vb);
        }
    }
    pairs[np] = NULL;
    o.text = np ? pairs : NULL;
    cb_buf out = CB_BUF_INIT;
    const char *err = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = ip_png_encode(view.buf, w, h, (size_t)stride, &o, &out, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    Py_DECREF(keep);
    if (rc < 0) {
        cb_buf_clear(&out);
        PyErr_Format(PyExc_ValueError, "png_encode: %s", err ? err : "failed");
        return NULL;
    }
    PyObject *r = PyBytes_FromStringAndSize(out.data, (Py_ssize_t)out.len);  /* new */
    cb_buf_clear(&out);
    return r;
}

/* MurmurHash2 (32-bit, x86) of a str's UTF-8 bytes: the hash the Jupyter
 * debugger protocol names cells' files with (debugInfo's hashMethod
 * "Murmur2"); frontends compute the same to find a cell's file. */
static uint32_t murmur2_x86(const unsigned char *data, size_t len, uint32_t seed)
{
    const uint32_t m = 0x5bd1e995;
    uint32_t h = seed ^ (uint32_t)len;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t k = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 | (uint32_t)data[i + 2] << 16 |
                     (uint32_t)data[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)data[i + 2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)data[i + 1] << 8;
        /* fall through */
    case 1:
        h ^= data[i];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

static PyObject *c_murmur2(PyObject *mod, PyObject *args)
{
    const char *s;
    Py_ssize_t n;
    unsigned long seed;
    if (!PyArg_ParseTuple(args, "s#k", &s, &n, &seed))
        return NULL;
    return PyLong_FromUnsignedLong(murmur2_x86((const unsigned char *)s, (size_t)n, (uint32_t)seed));
}

static PyMethodDef c_methods[] = {
    {"murmur2", c_murmur2, METH_VARARGS, "murmur2(str, seed) -> MurmurHash2 (x86, 32 bits) of its UTF-8 bytes"},
    {"publish", c_publish, METH_VARARGS, "publish(msg_type, content_json[, buffers[, parent_header_json]]) on IOPub"},
    {"input", c_input, METH_VARARGS, "input(prompt, password) -> (status, value)"},
    {"flush", c_flush, METH_NOARGS, "Publish all captured output now."},
    {"_exit", c_exit, METH_O, "os._exit(status) after publishing what was printed"},
    {"embedded_module", c_embedded_module, METH_O, "(is_package, code, filename) or None"},
    {"embedded_source", c_embedded_source, METH_O, "source text or None"},
    {"history_session", c_history_session, METH_NOARGS, "the history session number"},
    {"history_file", c_history_file, METH_NOARGS, "the history file, or None when kept in memory"},
    {"connection_file", c_connection_file, METH_NOARGS, "the kernel's connection file, or None"},
    {"history_query", c_history_query, METH_O, "history_request content (JSON) -> reply content (JSON)"},
    {"parent_header", c_parent_header, METH_NOARGS, "JSON header of the request being handled, or None"},
    {"png_encode", (PyCFunction)(void (*)(void))c_png_encode, METH_VARARGS | METH_KEYWORDS,
     "png_encode(rgba, width, height, *, stride, dpi, text, alpha, level, strategy, filters) -> PNG bytes"},
    {NULL},
};

static struct PyModuleDef c_module = {
    PyModuleDef_HEAD_INIT, "_cellbox_c", "cellbox's bridge between Python and the kernel.", -1, c_methods,
};

static PyObject *PyInit__cellbox_c(void)
{
    if (PyType_Ready(&OutStreamType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&c_module);  /* new */
    if (!m)
        return NULL;
    Py_INCREF(&OutStreamType);
    PyModule_AddObject(m, "OutStream", (PyObject *)&OutStreamType);
    PyModule_AddIntConstant(m, "INPUT_OK", KN_INPUT_OK);
    PyModule_AddIntConstant(m, "INPUT_NOT_ALLOWED", KN_INPUT_NOT_ALLOWED);
    PyModule_AddIntConstant(m, "INPUT_INTERRUPTED", KN_INPUT_INTERRUPTED);
    PyModule_AddIntConstant(m, "INPUT_FAILED", KN_INPUT_FAILED);
    return m;
}

/* ------------------------------------------------------------------ kernel_info */

/* Whether the debugger protocol can work: debugpy importable. Asked before
 * Python starts (kernel_info is answered at once), so it looks where
 * Debian's python3 finds packages: PYTHONPATH, the user's site, /usr/local
 * and /usr/lib/python3. Once per process. */
bool ip_python_debugger_available(void)
{
    static int known = -1;
    if (known >= 0)
        return known;
    cb_buf dirs = CB_BUF_INIT;
    const char *pp = getenv("PYTHONPATH"), *home = getenv("HOME");
    if (pp && *pp)
        cb_buf_printf(&dirs, "%s:", pp);
    if (home && *home && !getenv("PYTHONNOUSERSITE"))
        cb_buf_printf(&dirs, "%s/.local/lib/python%d.%d/site-packages:", home, PY_MAJOR_VERSION, PY_MINOR_VERSION);
    cb_buf_printf(&dirs, "/usr/local/lib/python%d.%d/dist-packages:/usr/lib/python3/dist-packages:"
                  "/usr/lib/python%d.%d/dist-packages", PY_MAJOR_VERSION, PY_MINOR_VERSION,
                  PY_MAJOR_VERSION, PY_MINOR_VERSION);
    known = 0;
    for (char *save = NULL, *d = strtok_r(dirs.data, ":", &save); d && !known; d = strtok_r(NULL, ":", &save)) {
        cb_autofree char *f = cb_printf_new("%s/debugpy/__init__.py", d);
        known = access(f, R_OK) == 0;
    }
    cb_buf_clear(&dirs);
    return known;
}

static cJSON *py_kernel_info(void *self)
{
    /* Safe before Py_Initialize: Py_GetVersion() is a static string. */
    char ver[32];
    snprintf(ver, sizeof ver, "%s", Py_GetVersion());
    char *sp = strchr(ver, ' ');
    if (sp)
        *sp = '\0';
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "implementation", "cellbox");
    cJSON_AddStringToObject(c, "implementation_version", PACKAGE_VERSION);
    cJSON *li = cJSON_AddObjectToObject(c, "language_info");
    cJSON_AddStringToObject(li, "name", "python");
    cJSON_AddStringToObject(li, "version", ver);
    cJSON_AddStringToObject(li, "mimetype", "text/x-python");
    cJSON_AddStringToObject(li, "file_extension", ".py");
    cJSON_AddStringToObject(li, "pygments_lexer", "ipython3");
    cJSON *cm = cJSON_AddObjectToObject(li, "codemirror_mode");
    cJSON_AddStringToObject(cm, "name", "ipython");
    cJSON_AddNumberToObject(cm, "version", 3);
    cJSON_AddStringToObject(li, "nbconvert_exporter", "python");
    char banner[256];
    snprintf(banner, sizeof banner,
             "Python %s (cellbox %s)\nType 'obj?' for help, '%%magic' for IPython-style magics.\n",
             ver, PACKAGE_VERSION);
    cJSON_AddStringToObject(c, "banner", banner);
    cJSON_AddBoolToObject(c, "debugger", ip_python_debugger_available());
    cJSON *links = cJSON_AddArrayToObject(c, "help_links");
    static const char *const hl[][2] = {
        {"Python Reference", "https://docs.python.org/3/"},
        {"Python Library", "https://docs.python.org/3/library/"},
        {"NumPy Reference", "https://numpy.org/doc/stable/reference/"},
        {"Matplotlib", "https://matplotlib.org/stable/"},
        {"pandas", "https://pandas.pydata.org/docs/"},
        {"Markdown", "https://www.markdownguide.org/basic-syntax/"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(hl); i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "text", hl[i][0]);
        cJSON_AddStringToObject(l, "url", hl[i][1]);
        cJSON_AddItemToArray(links, l);
    }
    return c;
}

/* ------------------------------------------------------------------ calling Python */

static cJSON *internal_error(const char *what)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "status", "error");
    cJSON_AddStringToObject(c, "ename", "InternalError");
    cJSON_AddStringToObject(c, "evalue", what);
    cJSON_AddItemToObject(c, "traceback", cJSON_CreateArray());
    return c;
}

/* Converts a str (JSON text) returned by the Python side into cJSON; logs
 * and clears a Python exception. Steals res. */
static cJSON *json_result(PyObject *res, const char *what)
{
    if (!res) {
        cb_error("interp", "%s raised inside cellbox's own code", what);
        PyErr_Print();
        return internal_error(what);
    }
    Py_ssize_t len;
    const char *s = PyUnicode_Check(res) ? PyUnicode_AsUTF8AndSize(res, &len) : NULL;
    cJSON *j = s ? cb_json_parse(s, (size_t)len) : NULL;
    if (!s)
        PyErr_Clear();
    Py_DECREF(res);
    return j ? j : internal_error(what);
}

static PyObject *user_expressions_str(const cJSON *ue)  /* new */
{
    if (!ue || !ue->child)
        Py_RETURN_NONE;
    cb_autofree char *s = cb_json_print(ue);
    return PyUnicode_FromString(s);
}

static cJSON *py_execute(void *self, const kn_exec_req *req)
{
    ip_python *py = self;
    PyObject *ue = user_expressions_str(req->user_expressions);  /* new */
    PyObject *code = text_to_py(req->code);                      /* new */
    /* An interrupt may land in the kernel's own code around the cell (before
     * the cell's try, while its error is formatted, in post-execute): the
     * cell is then run again as interrupted from the start, so that it gets
     * a KeyboardInterrupt error like an interrupt of its code (its input is
     * stored once). Called from here, not from a Python wrapper: one more
     * frame would change where a deep recursion stops. */
    PyObject *res = NULL;
    int interrupted = req->interrupted;
    for (int attempt = 0; code && attempt < 4; attempt++) {
        res = PyObject_CallMethod(py->shell, "run_cell", "(OiiiiOi)", code, req->execution_count, (int)req->silent,
                                  (int)req->store_history, (int)req->allow_stdin, ue, interrupted);  /* new */
        if (res || !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) || attempt == 3)
            break;
        PyErr_Clear();
        interrupted = 1;
    }
    Py_XDECREF(code);
    Py_XDECREF(ue);
    cJSON *reply = json_result(res, "run_cell");
    flush_output(py->cap);
    return reply;
}

static cJSON *call_content(ip_python *py, const char *method, const cJSON *content)
{
    cb_autofree char *s = cb_json_print(content);
    PyObject *res = PyObject_CallMethod(py->shell, method, "(s)", s);  /* new */
    cJSON *r = json_result(res, method);
    flush_output(py->cap);
    return r;
}

static cJSON *py_complete(void *self, const cJSON *c)
{
    return call_content(self, "complete_request", c);
}

static cJSON *py_inspect(void *self, const cJSON *c)
{
    return call_content(self, "inspect_request", c);
}

static cJSON *py_is_complete(void *self, const cJSON *c)
{
    return call_content(self, "is_complete_request", c);
}

static cJSON *py_comm_info(void *self, const cJSON *c)
{
    return call_content(self, "comm_info_request", c);
}

static void py_comm(void *self, const char *msg_type, const kn_msg *m)
{
    ip_python *py = self;
    cJSON *env = cJSON_CreateObject();
    cJSON_AddItemReferenceToObject(env, "content", m->content);
    cJSON_AddItemReferenceToObject(env, "metadata", m->metadata);
    cJSON_AddItemReferenceToObject(env, "header", m->header);
    cb_autofree char *s = cb_json_print(env);
    cJSON_Delete(env);
    PyObject *bufs = PyList_New((Py_ssize_t)m->n_buffers);  /* new */
    for (size_t i = 0; i < m->n_buffers; i++) {
        PyObject *b = PyBytes_FromStringAndSize(m->buffers[i].data, (Py_ssize_t)m->buffers[i].len);  /* new */
        PyList_SET_ITEM(bufs, (Py_ssize_t)i, PyMemoryView_FromObject(b));  /* the view keeps b alive */
        Py_DECREF(b);
    }
    PyObject *res = PyObject_CallMethod(py->shell, "comm_message", "(ssO)", msg_type, s, bufs);  /* new */
    Py_DECREF(bufs);
    if (!res) {
        cb_warn("interp", "comm handler failed for %s", msg_type);
        PyErr_Print();
    }
    Py_XDECREF(res);
    flush_output(py->cap);
}

static bool py_clear_interrupt(void *self)
{
    /* A SIGINT that arrived while idle must not hit the next cell. */
    if (PyErr_CheckSignals() < 0) {
        bool kbi = PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
        PyErr_Clear();
        return kbi;
    }
    return false;
}

static void py_idle(void *self, bool entering)
{
    ip_python *py = self;
    if (entering) {
        py->saved = PyEval_SaveThread();
    } else if (py->saved) {
        PyEval_RestoreThread(py->saved);
        py->saved = NULL;
        py_clear_interrupt(self);
    }
}

/* The shell's asyncio loop between requests (see kn_interp.background):
 * shell.background(run) -> (timeout_ms, fd). */
static int py_background(void *self, bool run, int *fd)
{
    ip_python *py = self;
    *fd = -1;
    if (py->bg_failed)
        return -1;
    /* An interrupt that came after the last cell's code (its reply sent, say)
     * interrupts nothing, as in ipykernel; it must not land in the loop's
     * own code either. One that lands there all the same costs this turn,
     * not the loop: its turn comes again at once. */
    py_clear_interrupt(self);
    PyObject *res = PyObject_CallMethod(py->shell, "background", "(i)", (int)run);  /* new */
    int timeout = -1;
    if (!res && PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        PyErr_Clear();
        return 0;
    }
    if (!res || !PyArg_ParseTuple(res, "ii", &timeout, fd)) {
        /* a bug of cellbox's own code (user errors are handled inside):
         * say it once in the kernel's log, then stop calling */
        cb_error("interp", "the shell's background step failed; tasks will not run between cells");
        PyErr_Clear();
        py->bg_failed = true;
        timeout = *fd = -1;
    }
    Py_XDECREF(res);
    if (run)
        flush_output(py->cap);  /* what the tasks printed */
    return timeout;
}

/* A debug_request, on the control thread (cellbox/_debugger.py): the GIL is
 * taken here; the interp thread gives it up between requests, every few ms
 * while a cell runs, and while a cell is paused at a breakpoint. */
static cJSON *py_debug(void *self, const kn_msg *m)
{
    ip_python *py = self;
    if (!atomic_load(&py->ready))
        return kn_debug_failure(m->content, "the kernel is still starting");
    cb_autofree char *content = cb_json_print(m->content);
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *res = PyObject_CallMethod(py->shell, "debug_request", "(ss#)", content, m->header_raw.data,
                                        (Py_ssize_t)m->header_raw.len);  /* new */
    cJSON *reply = NULL;
    if (res && PyUnicode_Check(res))
        reply = cJSON_Parse(PyUnicode_AsUTF8(res));
    if (!reply) {
        cb_error("interp", "the debugger failed on a %s request", cb_json_str(m->content, "command", "?"));
        if (PyErr_Occurred())
            PyErr_Print();
        reply = kn_debug_failure(m->content, "internal error in cellbox's debugger");
    }
    Py_XDECREF(res);
    PyGILState_Release(g);
    return reply;
}

static void py_stop(void *self, bool restart)
{
    ip_python *py = self;
    /* The shutdown's own steps (the debugger's cell files, atexit) must
     * not be cut short by an interrupt: jupyter_client sends one just
     * before every shutdown_request, and it may land here rather than
     * while idle. Running code is no longer a thing to interrupt; the
     * core's watchdog ends a shutdown that hangs. */
    sigset_t sigint, old;
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigint, &old);
    py_clear_interrupt(self);
    PyObject *res = PyObject_CallMethod(py->shell, "shutdown", "(i)", (int)restart);  /* new */
    if (!res)
        PyErr_Clear();
    Py_XDECREF(res);
    flush_output(py->cap);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ------------------------------------------------------------------ start */

static PyStatus init_python(void)
{
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    /* Behave as the system's python: prefix, site-packages and
     * sys.executable all follow from its path, not from ours. */
    PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, CB_PYTHON3);
    if (!PyStatus_Exception(st))
        st = PyConfig_SetBytesString(&config, &config.executable, CB_PYTHON3);
    char *argv0[] = {""};
    if (!PyStatus_Exception(st))
        st = PyConfig_SetBytesArgv(&config, 1, argv0);
    config.parse_argv = 0;
    config.install_signal_handlers = 1;
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    return st;
}

static int py_start(void *self, const kn_host *host)
{
    ip_python *py = self;
    py->host = host;
    pthread_atfork(NULL, NULL, mark_forked_child);
    g_py = py;
    if (PyImport_AppendInittab("_cellbox_c", PyInit__cellbox_c) < 0)
        return -1;
    PyStatus st = init_python();
    if (PyStatus_Exception(st)) {
        cb_error("interp", "cannot initialise Python: %s", st.err_msg ? st.err_msg : "?");
        return -1;
    }
    py->cap = ip_capture_start(host, py->opts.capture_fds);
    fatal_signals_install();

    /* the bootstrap installs the importer of the embedded package */
    const ip_pymodule *boot = find_module("_cellbox_boot");
    PyObject *code = boot ? module_code(boot) : NULL;  /* new */
    PyObject *bm = code ? PyImport_ExecCodeModuleEx("_cellbox_boot", code, boot->filename) : NULL;  /* new */
    Py_XDECREF(code);
    PyObject *kmod = bm ? PyImport_ImportModule("cellbox._kernel") : NULL;  /* new */
    PyObject *shell = kmod ? PyObject_CallMethod(kmod, "start", NULL) : NULL;  /* new */
    Py_XDECREF(bm);
    Py_XDECREF(kmod);
    if (!shell) {
        cb_error("interp", "cannot start cellbox's Python side");
        PyErr_Print();
        return -1;
    }
    py->shell = shell;
    atomic_store(&py->ready, true);
    return 0;
}

kn_interp *ip_python_new(const ip_options *opts)
{
    ip_python *py = cb_calloc(1, sizeof *py);
    py->opts = *opts;
    py->ops = (kn_interp){
        .self = py,
        .kernel_info = py_kernel_info,
        .start = py_start,
        .execute = py_execute,
        .complete = py_complete,
        .inspect = py_inspect,
        .is_complete = py_is_complete,
        .comm_info = py_comm_info,
        .comm = py_comm,
        .stop = py_stop,
        .background = py_background,
        .clear_interrupt = py_clear_interrupt,
        .idle = py_idle,
        .debug = py_debug,
    };
    return &py->ops;
}

void ip_python_free(kn_interp *interp)
{
    if (!interp)
        return;
    ip_python *py = interp->self;
    /* No Py_FinalizeEx: user threads that never end would hang the exit.
     * Output is flushed and atexit handlers ran in shutdown(). */
    ip_capture_stop(py->cap);
    if (g_py == py)
        g_py = NULL;
    free(py);
}
