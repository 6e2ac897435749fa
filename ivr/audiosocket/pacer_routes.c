/*
 * ivr.audiosocket._pacer, the loop's side of a drain: who takes each session's caller audio, and handing a
 * drain's frames to them from C.
 *
 * Why: a Python loop over the drain (a tuple per frame, a dict lookup, a call through the session's
 * counters) cost the loop's thread ~0.4 us a frame more than this (0.59-0.69 against 0.24-0.29 us, 500
 * sessions), ~2 % of a core at 50,000 caller frames a second, on the thread every call's audio shares. Here the loop's code registers one
 * callable per session (route()), and deliver() calls it with (payload, level) for each of that session's
 * audio frames, in the order they were read; every other entry (a message that is not the usual audio, the
 * end of the stream, audio of a session with no route) goes, in the same order, to one fallback callable.
 * The counts Python kept per routed frame (frames, wire bytes) are kept here (routed()).
 *
 * Everything in this file runs with the GIL held, on the event loop's thread, and never takes the mutex:
 * the route table is the loop's alone (the pacing thread never reads it), and the inbound set deliver()
 * reads is the one the last drain() took from the thread (the thread fills the other one meanwhile).
 */
#include "pacer.h"

static route *route_at(Pacer *p, uint64_t sid) {
    Py_ssize_t i = (Py_ssize_t)(sid & 0xffffffffu);
    return i < p->caproutes && p->routes[i].sid == sid ? &p->routes[i] : NULL;
}

PyObject *Pacer_route(Pacer *p, PyObject *args) {
    unsigned long long sid;
    PyObject *cb;
    if (!PyArg_ParseTuple(args, "KO", &sid, &cb)) return NULL;
    if (cb != Py_None && !PyCallable_Check(cb)) {
        PyErr_SetString(PyExc_TypeError, "route(sid, callable | None)");
        return NULL;
    }
    Py_ssize_t i = (Py_ssize_t)(sid & 0xffffffffu), old = p->caproutes;
    if (i >= old) {
        if (grow((void **)&p->routes, &p->caproutes, i + 1, sizeof(route)) < 0) return PyErr_NoMemory();
        memset(p->routes + old, 0, (size_t)(p->caproutes - old) * sizeof(route));
    }
    route *r = &p->routes[i];
    PyObject *prev = r->cb;
    if (r->sid != sid) { /* a new session in this slot of the table: its counts start at zero */
        r->sid = sid;
        r->frames = 0;
        r->bytes = 0;
    }
    r->cb = NULL;
    if (cb != Py_None) {
        Py_INCREF(cb);
        r->cb = cb;
    }
    Py_XDECREF(prev); /* last: dropping it may run Python code that routes again */
    Py_RETURN_NONE;
}

PyObject *Pacer_routed(Pacer *p, PyObject *args) {
    unsigned long long sid;
    int take = 0;
    if (!PyArg_ParseTuple(args, "K|p", &sid, &take)) return NULL;
    route *r = route_at(p, sid);
    unsigned long long frames = r ? r->frames : 0, bytes = r ? r->bytes : 0;
    if (r && take) r->bytes = 0;
    return Py_BuildValue("(KK)", frames, bytes);
}

void routes_forget(Pacer *p, uint64_t sid) {
    route *r = route_at(p, sid);
    if (!r) return;
    PyObject *cb = r->cb;
    memset(r, 0, sizeof *r);
    Py_XDECREF(cb);
}

void routes_free(Pacer *p) {
    route *routes = p->routes;
    Py_ssize_t n = p->caproutes;
    p->routes = NULL;
    p->caproutes = 0;
    for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(routes[i].cb);
    free(routes);
}

/* The raised exception as one object (its traceback attached), the error indicator cleared. */
static PyObject *take_exception(void) {
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static PyObject *call2(PyObject *cb, PyObject *a, PyObject *b) {
    PyObject *argv[2] = {a, b};
    return PyObject_Vectorcall(cb, argv, 2, NULL);
}

static PyObject *fallback_entry(PyObject *fallback, inbound *e, const unsigned char *arena) {
    PyObject *t;
    if (e->type == IN_AUDIO || e->type == IN_RAW)
        t = Py_BuildValue("(Kiy#d)", (unsigned long long)e->sid, e->type, (const char *)arena + e->off, e->len,
                          e->level_db);
    else
        t = Py_BuildValue("(Kiid)", (unsigned long long)e->sid, e->type, e->err, 0.0);
    if (!t) return NULL;
    PyObject *res = PyObject_Call(fallback, t, NULL);
    Py_DECREF(t);
    return res;
}

static PyObject *deliver_set(Pacer *p, inbound *in, const unsigned char *arena, Py_ssize_t n,
                             PyObject *fallback, PyObject *failed);

PyObject *Pacer_deliver(Pacer *p, PyObject *args) {
    PyObject *fallback, *failed;
    if (!PyArg_ParseTuple(args, "OO", &fallback, &failed)) return NULL;
    inbound *in = p->in2;
    const unsigned char *arena = p->arena2;
    Py_ssize_t n = p->nin2;
    p->nin2 = 0; /* once per drain */
    p->delivering = 1;
    PyObject *res = deliver_set(p, in, arena, n, fallback, failed);
    p->delivering = 0;
    return res;
}

static PyObject *deliver_set(Pacer *p, inbound *in, const unsigned char *arena, Py_ssize_t n,
                             PyObject *fallback, PyObject *failed) {
    for (Py_ssize_t i = 0; i < n; i++) {
        inbound *e = &in[i];
        route *r = e->type == IN_AUDIO ? route_at(p, e->sid) : NULL; /* looked up per frame: a call may
                                                                        re-route (or end) its session */
        if (r && r->cb) {
            PyObject *cb = r->cb;
            Py_INCREF(cb);
            r->frames++;
            r->bytes += 3 + (unsigned long long)e->len;
            PyObject *data = PyBytes_FromStringAndSize((const char *)arena + e->off, e->len);
            PyObject *level = data ? PyFloat_FromDouble(e->level_db) : NULL;
            PyObject *res = level ? call2(cb, data, level) : NULL;
            Py_XDECREF(level);
            Py_XDECREF(data);
            Py_DECREF(cb);
            if (res) {
                Py_DECREF(res);
                continue;
            }
            if (!PyErr_ExceptionMatches(PyExc_Exception)) return NULL; /* KeyboardInterrupt, SystemExit */
            /* one session's handler costs its own frame, never the others' of the drain */
            PyObject *exc = take_exception();
            PyObject *sid = PyLong_FromUnsignedLongLong(e->sid);
            res = sid && exc ? call2(failed, sid, exc) : NULL;
            Py_XDECREF(sid);
            Py_XDECREF(exc);
            if (!res) return NULL;
            Py_DECREF(res);
            continue;
        }
        PyObject *res = fallback_entry(fallback, e, arena);
        if (!res) return NULL;
        Py_DECREF(res);
    }
    Py_RETURN_NONE;
}
