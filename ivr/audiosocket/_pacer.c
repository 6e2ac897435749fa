/*
 * ivr.audiosocket._pacer: AudioSocket frames paced by a native thread that never waits for Python.
 *
 * Why: in one Python process the event loop reads every caller's audio, runs VAD, the flow and the speech
 * plumbing, and its timers fire late whenever any of that runs long (a garbage collection, an import, a
 * busy tick). Outbound frames paced on that loop inherit all of its jitter. Here one thread per process
 * owns the outbound clock: it sleeps to absolute deadlines (CLOCK_MONOTONIC, 1 ms phase slots in the 20 ms
 * period, as the loop's FrameClock and the bench's C reference do), writes one message per session per
 * period with sendmsg (header + audio taken by reference from the prompt's bytes: no copy) and never
 * takes the GIL. Python queues prompts (bytes objects, kept alive with a reference the thread never
 * touches), stops, holds, and collects what the thread reports (playbacks started / done, chunks it has
 * finished with) through an eventfd the event loop watches.
 *
 * Concurrency: one mutex guards every session and queue. The thread holds it while it writes one slot's
 * sessions (microseconds per session); Python takes it with the GIL released, so other Python threads run
 * meanwhile. Reference counts are only ever changed with the GIL held (in the methods below): chunks the
 * thread is done with go to a list that drain() releases.
 *
 * Reading: once Python hands a session's socket over (watch()), the same thread reads it (epoll): the
 * usual message, one 20 ms audio frame of the expected kind and size, is cut out as audio; any other
 * complete message goes to Python whole, for its decoder (DTMF, hangup, errors, a rate change, junk); a
 * message too big for the session's buffer switches that session to forwarding raw bytes. Python takes
 * everything read in one drain per wake-up, so the event loop runs one callback for all the calls' audio
 * that arrived meanwhile instead of one per socket read.
 *
 * The wire: each message is kind + 2-byte big-endian length + payload (signed 16-bit LE mono); sockets are
 * the event loop's, non-blocking. A write that would block drops that frame (counted), a partial write keeps
 * its remainder and sends it first next period (framing stays intact), an error stops writing to that
 * session and is reported.
 */
#include "pacer.h"

/* -- Python methods -------------------------------------------------------------------------------- */

/* The mutex is never held while waiting for the GIL (the thread would wait on us while we wait on another
 * Python thread: a priority inversion that made frames 100+ ms late under load). So: take it at once with the
 * GIL held when it is free; otherwise give the GIL up, wait for the mutex, and take the GIL back only after
 * unlocking. Either way the code between LOCK and UNLOCK touches no Python object (it may run without the
 * GIL). */
PyThreadState *lock_pacer(Pacer *p) {
    if (pthread_mutex_trylock(&p->mu) == 0) return NULL;
    PyThreadState *ts = PyEval_SaveThread();
    pthread_mutex_lock(&p->mu);
    return ts;
}

void unlock_pacer(Pacer *p, PyThreadState *ts) {
    pthread_mutex_unlock(&p->mu);
    if (ts) PyEval_RestoreThread(ts);
}

void drop_released(PyObject **objs, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) Py_DECREF(objs[i]);
    free(objs);
}

static int Pacer_init(Pacer *p, PyObject *args, PyObject *kw) {
    static char *names[] = {"period_ms", "slots",       "spread",  "max_catchup",
                            "realtime",  "inbound_max", "tell_ms", NULL};
    int period_ms = 20, slots = 20, spread = 4, max_catchup = 3, realtime = 0, inbound_max = 50;
    double tell_ms = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|iiiiiid", names, &period_ms, &slots, &spread, &max_catchup,
                                     &realtime, &inbound_max, &tell_ms))
        return -1;
    if (period_ms < 1 || slots < 1 || spread < 1 || max_catchup < 1 || realtime < 0 || realtime > 99 ||
        inbound_max < 1 || !(tell_ms >= 0.0 && tell_ms <= period_ms)) {
        PyErr_SetString(PyExc_ValueError, "period_ms, slots, spread, max_catchup must be positive, tell_ms "
                                          "between 0 and period_ms");
        return -1;
    }
    p->tell_gap = (int64_t)(tell_ms * 1e6);
    if (p->evfd > 0) {
        PyErr_SetString(PyExc_RuntimeError, "Pacer already initialised");
        return -1;
    }
    p->period = (int64_t)period_ms * 1000000LL;
    p->slots = slots;
    p->slot_ns = p->period / slots;
    p->spread = spread < slots ? spread : slots;
    p->max_catchup = max_catchup;
    p->realtime = realtime;
    p->in_max = inbound_max;
    p->drain_gen = 1;
    p->epoch = mono_ns();
    p->members = calloc((size_t)slots, sizeof(session **));
    p->nmembers = calloc((size_t)slots, sizeof(int));
    p->capmembers = calloc((size_t)slots, sizeof(int));
    p->next = calloc((size_t)slots, sizeof(int64_t));
    if (!p->members || !p->nmembers || !p->capmembers || !p->next) {
        PyErr_NoMemory();
        return -1;
    }
    p->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->evfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    p->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (p->epfd < 0 || p->wakefd < 0 || p->timerfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TAG};
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev);
    ev.data.u64 = TIMER_TAG;
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->timerfd, &ev);
    pthread_mutex_init(&p->mu, NULL);
    int rc = pthread_create(&p->thread, NULL, run, p);
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    p->running = 1;
    return 0;
}

static PyObject *Pacer_close(Pacer *p, PyObject *unused) {
    if (p->running) {
        LOCK(p);
        p->stopping = 1;
        wake(p);
        UNLOCK(p);
        Py_BEGIN_ALLOW_THREADS;
        pthread_join(p->thread, NULL);
        Py_END_ALLOW_THREADS;
        p->running = 0;
    }
    Py_ssize_t n = 0;
    PyObject **objs = NULL;
    if (p->table) {
        for (Py_ssize_t i = 0; i < p->ntable; i++)
            if (p->table[i]) {
                free_session(p, p->table[i]);
                p->table[i] = NULL;
            }
        p->live = 0;
        for (int k = 0; k < p->slots; k++) {
            p->nmembers[k] = 0;
            p->next[k] = 0;
        }
    }
    objs = take_released(p, &n);
    drop_released(objs, n);
    p->nin2 = 0;
    routes_free(p);
    Py_RETURN_NONE;
}

static void Pacer_dealloc(Pacer *p) {
    PyObject *r = Pacer_close(p, NULL);
    Py_XDECREF(r);
    if (p->members) {
        for (int k = 0; k < p->slots; k++) free(p->members[k]);
    }
    free(p->members);
    free(p->nmembers);
    free(p->capmembers);
    free(p->next);
    free(p->table);
    free(p->events);
    free(p->wake_hist);
    free(p->in);
    free(p->arena);
    free(p->played);
    free(p->in2);
    free(p->arena2);
    free(p->played2);
    if (p->evfd > 0) {
        close(p->evfd);
        pthread_mutex_destroy(&p->mu);
    }
    if (p->epfd > 0) close(p->epfd);
    if (p->wakefd > 0) close(p->wakefd);
    if (p->timerfd > 0) close(p->timerfd);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyObject *Pacer_fileno(Pacer *p, PyObject *unused) { return PyLong_FromLong(p->evfd); }

static int bad_format(int frame_size, int kind) {
    if (frame_size < 2 || frame_size > MAX_FRAME || (frame_size & 1) || kind < 0 || kind > 255) {
        PyErr_Format(PyExc_ValueError, "bad frame size %d or kind %d", frame_size, kind);
        return 1;
    }
    return 0;
}

static PyObject *Pacer_open(Pacer *p, PyObject *args) {
    int fd, frame_size, kind;
    if (!PyArg_ParseTuple(args, "iii", &fd, &frame_size, &kind)) return NULL;
    if (!p->running) {
        PyErr_SetString(PyExc_RuntimeError, "pacer closed");
        return NULL;
    }
    session *s = calloc(1, sizeof(session));
    if (!s) return PyErr_NoMemory();
    s->fd = fd;
    s->slot = -1;
    s->in_kind = s->in_size = -1;
    if (bad_format(frame_size, kind)) {
        free(s);
        return NULL;
    }
    if (set_format(s, frame_size, kind) < 0) {
        free(s);
        return PyErr_NoMemory();
    }
    LOCK(p);
    Py_ssize_t idx = -1;
    for (Py_ssize_t i = 0; i < p->ntable; i++)
        if (!p->table[i]) {
            idx = i;
            break;
        }
    if (idx < 0) {
        if (grow((void **)&p->table, &p->captable, p->ntable + 1, sizeof(session *)) < 0) {
            UNLOCK(p);
            free(s->pend);
            free(s);
            return PyErr_NoMemory();
        }
        idx = p->ntable++;
    }
    p->gen++;
    s->sid = (p->gen << 32) | (uint64_t)idx;
    p->table[idx] = s;
    p->live++;
    int rc = slot_add(p, s);
    uint64_t sid = s->sid;
    wake(p);
    UNLOCK(p);
    if (rc < 0) return PyErr_NoMemory();
    return PyLong_FromUnsignedLongLong(sid);
}

static PyObject *Pacer_set_format(Pacer *p, PyObject *args) {
    unsigned long long sid;
    int frame_size, kind;
    if (!PyArg_ParseTuple(args, "Kii", &sid, &frame_size, &kind)) return NULL;
    if (bad_format(frame_size, kind)) return NULL;
    LOCK(p);
    session *s = find(p, sid);
    int rc = s ? set_format(s, frame_size, kind) : 0;
    if (s) s->pend_len = 0;
    UNLOCK(p);
    if (rc < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Pacer_watch(Pacer *p, PyObject *args) {
    unsigned long long sid;
    Py_buffer prefix = {0};
    if (!PyArg_ParseTuple(args, "K|y*", &sid, &prefix)) return NULL;
    if (prefix.buf && prefix.len > IN_CAP) {
        PyBuffer_Release(&prefix);
        PyErr_Format(PyExc_ValueError, "a read prefix of %zd bytes is more than the %d a session holds",
                     prefix.len, IN_CAP);
        return NULL;
    }
    LOCK(p);
    session *s = find(p, sid);
    int rc = 0;
    if (s && !s->watching) {
        if (!s->inbuf) s->inbuf = malloc(IN_CAP);
        if (s->inbuf && prefix.buf && prefix.len) { /* the start of a message the loop had read: the first
                                                       read here completes it */
            memcpy(s->inbuf, prefix.buf, (size_t)prefix.len);
            s->in_have = (int)prefix.len;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = s->sid};
        rc = !s->inbuf ? -2 : epoll_ctl(p->epfd, EPOLL_CTL_ADD, s->fd, &ev);
        if (rc == 0) s->watching = 1;
    }
    int err = errno;
    UNLOCK(p);
    if (prefix.buf) PyBuffer_Release(&prefix);
    if (rc == -2) return PyErr_NoMemory();
    errno = err;
    if (rc < 0) return PyErr_SetFromErrno(PyExc_OSError);
    if (!s) Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

static PyObject *Pacer_expect(Pacer *p, PyObject *args) {
    unsigned long long sid;
    int kind, size;
    if (!PyArg_ParseTuple(args, "Kii", &sid, &kind, &size)) return NULL;
    LOCK(p);
    session *s = find(p, sid);
    if (s) {
        s->in_kind = kind;
        s->in_size = size;
    }
    UNLOCK(p);
    Py_RETURN_NONE;
}

static PyObject *stopped_list(stopped *st, Py_ssize_t n) {
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(KKKL)", (unsigned long long)st[i].pid, (unsigned long long)st[i].frames,
                                    (unsigned long long)st[i].underruns, (long long)st[i].first_ns);
        if (!t) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, t);
    }
    return out;
}

static PyObject *Pacer_close_session(Pacer *p, PyObject *args) {
    unsigned long long sid;
    if (!PyArg_ParseTuple(args, "K", &sid)) return NULL;
    unsigned char rest[MAX_FRAME + 3];
    int nrest = -1;
    LOCK(p);
    session *s = find(p, sid);
    if (s) {
        unwatch(p, s);
        slot_remove(p, s);
        p->table[sid & 0xffffffffu] = NULL;
        p->live--;
        nrest = s->pend_len;
        if (nrest) memcpy(rest, s->pend, (size_t)nrest);
        free_session(p, s);
    }
    Py_ssize_t n;
    PyObject **objs = take_released(p, &n);
    UNLOCK(p);
    drop_released(objs, n);
    routes_forget(p, sid);
    if (nrest < 0) Py_RETURN_NONE;
    /* the unsent rest of a message: write it before anything else on the socket */
    return PyBytes_FromStringAndSize((const char *)rest, nrest);
}

static PyObject *Pacer_play(Pacer *p, PyObject *args) {
    unsigned long long sid, pid;
    Py_ssize_t prebuffer;
    if (!PyArg_ParseTuple(args, "KKn", &sid, &pid, &prebuffer)) return NULL;
    playback *pb = calloc(1, sizeof(playback));
    if (!pb) return PyErr_NoMemory();
    pb->id = pid;
    pb->prebuffer = prebuffer;
    LOCK(p);
    session *s = find(p, sid);
    if (s) {
        if (s->tail)
            s->tail->next = pb;
        else
            s->head = pb;
        s->tail = pb;
    }
    UNLOCK(p);
    if (!s) {
        free(pb);
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static PyObject *Pacer_append(Pacer *p, PyObject *args) {
    unsigned long long sid, pid;
    PyObject *data;
    int end = 0;
    if (!PyArg_ParseTuple(args, "KKO!|p", &sid, &pid, &PyBytes_Type, &data, &end)) return NULL;
    chunk *c = NULL;
    if (PyBytes_GET_SIZE(data) > 0) {
        c = calloc(1, sizeof(chunk));
        if (!c) return PyErr_NoMemory();
        c->ptr = (const unsigned char *)PyBytes_AS_STRING(data);
        c->len = PyBytes_GET_SIZE(data);
        c->obj = data;
        Py_INCREF(data);
    }
    LOCK(p);
    session *s = find(p, sid);
    playback *pb = s ? find_pb(s, pid) : NULL;
    if (pb && !pb->ended) {
        if (c) {
            if (pb->tail)
                pb->tail->next = c;
            else
                pb->head = c;
            pb->tail = c;
            pb->queued += c->len;
            c = NULL;
        }
        if (end) pb->ended = 1;
    }
    UNLOCK(p);
    if (c) { /* not taken: the playback is gone (stopped) */
        Py_DECREF(c->obj);
        free(c);
        Py_RETURN_FALSE;
    }
    if (!pb) Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

static PyObject *Pacer_queued(Pacer *p, PyObject *args) {
    unsigned long long sid, pid;
    if (!PyArg_ParseTuple(args, "KK", &sid, &pid)) return NULL;
    LOCK(p);
    session *s = find(p, sid);
    playback *pb = s ? find_pb(s, pid) : NULL;
    Py_ssize_t q = pb ? pb->queued : -1;
    UNLOCK(p);
    return PyLong_FromSsize_t(q);
}

static PyObject *Pacer_stop(Pacer *p, PyObject *args) {
    unsigned long long sid, pid = 0;
    int all = 0;
    if (!PyArg_ParseTuple(args, "K|K", &sid, &pid)) return NULL;
    all = PyTuple_GET_SIZE(args) < 2;
    stopped st[64]; /* a session queues a handful of prompts; more are stopped by the next call */
    Py_ssize_t nst = 0;
    LOCK(p);
    session *s = find(p, sid);
    if (s) nst = stop_playbacks(p, s, all, pid, st, 64);
    if (s && all) s->held = 0;
    Py_ssize_t n;
    PyObject **objs = take_released(p, &n);
    UNLOCK(p);
    drop_released(objs, n);
    return stopped_list(st, nst);
}

static PyObject *Pacer_hold(Pacer *p, PyObject *args) {
    unsigned long long sid;
    int held;
    if (!PyArg_ParseTuple(args, "Kp", &sid, &held)) return NULL;
    LOCK(p);
    session *s = find(p, sid);
    if (s) s->held = held;
    UNLOCK(p);
    Py_RETURN_NONE;
}

static PyObject *Pacer_tap(Pacer *p, PyObject *args) {
    unsigned long long sid;
    int on;
    if (!PyArg_ParseTuple(args, "Kp", &sid, &on)) return NULL;
    LOCK(p);
    session *s = find(p, sid);
    if (s) s->tap_on = on;
    UNLOCK(p);
    Py_RETURN_NONE;
}

static PyMethodDef Pacer_methods[] = {
    {"close", (PyCFunction)Pacer_close, METH_NOARGS, "Stop the thread and release every queued prompt."},
    {"fileno", (PyCFunction)Pacer_fileno, METH_NOARGS, "The eventfd that is readable when drain() has news."},
    {"open", (PyCFunction)Pacer_open, METH_VARARGS, "open(fd, frame_size, kind) -> sid: pace a socket."},
    {"set_format", (PyCFunction)Pacer_set_format, METH_VARARGS, "set_format(sid, frame_size, kind)."},
    {"close_session", (PyCFunction)Pacer_close_session, METH_VARARGS,
     "close_session(sid) -> bytes | None: stop pacing; returns the unsent rest of a message."},
    {"play", (PyCFunction)Pacer_play, METH_VARARGS, "play(sid, pid, prebuffer_bytes) -> bool: queue a prompt."},
    {"append", (PyCFunction)Pacer_append, METH_VARARGS,
     "append(sid, pid, data: bytes, end=False) -> bool: add audio (kept by reference)."},
    {"queued", (PyCFunction)Pacer_queued, METH_VARARGS, "queued(sid, pid) -> bytes not yet written (-1: gone)."},
    {"stop", (PyCFunction)Pacer_stop, METH_VARARGS,
     "stop(sid[, pid]) -> [(pid, frames, underruns, first_ns)]: remove one prompt or all."},
    {"hold", (PyCFunction)Pacer_hold, METH_VARARGS, "hold(sid, held): silence instead of the prompt."},
    {"tap", (PyCFunction)Pacer_tap, METH_VARARGS, "tap(sid, on): report each written frame's level."},
    {"drain", (PyCFunction)Pacer_drain, METH_NOARGS,
     "drain() -> (events, played): events [(type, sid, pid, frames, underruns, at_ns, errno)], played "
     "[(sid, at_ns, level_db)] of tapped sessions; takes what was read for deliver(); releases finished chunks."},
    {"deliver", (PyCFunction)Pacer_deliver, METH_VARARGS,
     "deliver(fallback, failed): what the last drain() took, in order: each audio frame of a routed session to "
     "its route(payload, level_db) (an Exception goes to failed(sid, exc)), every other entry to "
     "fallback(sid, AUDIO|RAW, bytes, level_db) or fallback(sid, EOF|FAILED, errno, 0.0)."},
    {"route", (PyCFunction)Pacer_route, METH_VARARGS,
     "route(sid, callable | None): who deliver() hands sid's audio frames to (None: the fallback)."},
    {"routed", (PyCFunction)Pacer_routed, METH_VARARGS,
     "routed(sid, take=False) -> (frames, bytes): audio frames routed so far, wire bytes since last taken."},
    {"watch", (PyCFunction)Pacer_watch, METH_VARARGS,
     "watch(sid, prefix=b'') -> bool: read the socket here from now on (the loop must have stopped reading "
     "it); prefix: the start of a message the loop already read (at most READ_BUFFER bytes)."},
    {"expect", (PyCFunction)Pacer_expect, METH_VARARGS,
     "expect(sid, kind, size): the usual inbound audio message, cut out as audio."},
    {"stats", (PyCFunction)Pacer_stats, METH_VARARGS, "stats(sid): counters and the lateness histogram."},
    {"trim", (PyCFunction)Pacer_trim, METH_NOARGS,
     "trim() -> bytes freed: shrink the inbound buffers a burst grew to twice the largest drain since the "
     "last trim (none when no session is open)."},
    {"clock_stats", (PyCFunction)Pacer_clock_stats, METH_NOARGS,
     "(wake-up lateness bins, wakeups, skipped periods, live sessions, realtime priority)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PacerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ivr.audiosocket._pacer.Pacer",
    .tp_basicsize = sizeof(Pacer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One native thread pacing AudioSocket frames for many sessions.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Pacer_init,
    .tp_dealloc = (destructor)Pacer_dealloc,
    .tp_methods = Pacer_methods,
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "ivr.audiosocket._pacer", "Native AudioSocket pacing thread.", -1, NULL,
};

PyMODINIT_FUNC PyInit__pacer(void) {
    if (PyType_Ready(&PacerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&PacerType);
    if (PyModule_AddObject(m, "Pacer", (PyObject *)&PacerType) < 0) {
        Py_DECREF(&PacerType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "STARTED", EV_STARTED);
    PyModule_AddIntConstant(m, "DONE", EV_DONE);
    PyModule_AddIntConstant(m, "ERROR", EV_ERROR);
    PyModule_AddIntConstant(m, "MAX_FRAME", MAX_FRAME);
    PyModule_AddIntConstant(m, "READ_BUFFER", IN_CAP);
    PyModule_AddIntConstant(m, "AUDIO", IN_AUDIO);
    PyModule_AddIntConstant(m, "RAW", IN_RAW);
    PyModule_AddIntConstant(m, "EOF", IN_EOF);
    PyModule_AddIntConstant(m, "FAILED", IN_FAILED);
    return m;
}
