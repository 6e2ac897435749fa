/*
 * ivr.audiosocket._pacer, what the thread reports to the loop: drain() (playback events, the levels of
 * tapped frames, and the inbound set deliver() then hands out), trim() (giving back what a burst made
 * those sets grow) and the counters (stats, clock_stats).
 *
 * Split from _pacer.c (the session and prompt methods) so each reads on its own; the locking rules are
 * the same (see lock_pacer in _pacer.c).
 */
#include "pacer.h"

PyObject *Pacer_drain(Pacer *p, PyObject *unused) {
    uint64_t val;
    ssize_t ignored = read(p->evfd, &val, sizeof val);
    (void)ignored;
    LOCK(p);
    event *evs = p->events;
    Py_ssize_t nev = p->nevents;
    p->events = NULL;
    p->nevents = p->capevents = 0;
    /* Python reads the filled set; the thread gets the set the previous drain read (drains never overlap:
     * they all run on the event loop's thread). */
    inbound *in = p->in;
    Py_ssize_t nin = p->nin, capin = p->capin;
    if (nin > p->peak_in) p->peak_in = nin;
    if (p->narena > p->peak_arena) p->peak_arena = p->narena;
    if (p->nplayed > p->peak_played) p->peak_played = p->nplayed;
    unsigned char *arena = p->arena;
    Py_ssize_t caparena = p->caparena;
    tap_entry *played = p->played;
    Py_ssize_t nplayed = p->nplayed, capplayed = p->capplayed;
    p->in = p->in2;
    p->capin = p->capin2;
    p->nin = 0;
    p->arena = p->arena2;
    p->caparena = p->caparena2;
    p->narena = 0;
    p->played = p->played2;
    p->capplayed = p->capplayed2;
    p->nplayed = 0;
    p->in2 = in;
    p->capin2 = capin;
    p->arena2 = arena;
    p->caparena2 = caparena;
    p->played2 = played;
    p->capplayed2 = capplayed;
    p->py_waiting = 0;
    p->drain_gen++;
    Py_ssize_t n;
    PyObject **objs = take_released(p, &n);
    UNLOCK(p);
    drop_released(objs, n);
    p->nin2 = nin; /* deliver() hands these out */
    PyObject *out = PyList_New(nev), *heard = PyList_New(nplayed), *res = NULL;
    if (!out || !heard) goto done;
    for (Py_ssize_t i = 0; i < nplayed; i++) {
        PyObject *t = Py_BuildValue("(KLd)", (unsigned long long)played[i].sid, (long long)played[i].at_ns,
                                    (double)played[i].level_db);
        if (!t) goto done;
        PyList_SET_ITEM(heard, i, t);
    }
    for (Py_ssize_t i = 0; i < nev; i++) {
        event *e = &evs[i];
        PyObject *t = Py_BuildValue("(iKKKKLi)", e->type, (unsigned long long)e->sid, (unsigned long long)e->pid,
                                    (unsigned long long)e->frames, (unsigned long long)e->underruns,
                                    (long long)e->at_ns, e->err);
        if (!t) goto done;
        PyList_SET_ITEM(out, i, t);
    }
    res = PyTuple_Pack(2, out, heard);
done:
    Py_XDECREF(out);
    Py_XDECREF(heard);
    free(evs);
    return res;
}

/* An empty buffer cut down to room for `keep` items (none: freed). The cut is a realloc, which shrinks in
 * place or remaps without copying; what is freed outright is freed after the mutex is let go. Returns the
 * bytes given back. */
static size_t shrink(void **buf, Py_ssize_t *cap, Py_ssize_t keep, size_t size, void **later) {
    if (*cap <= keep || (size_t)*cap * size < TRIM_MIN_BYTES) return 0;
    size_t before = (size_t)*cap * size;
    if (keep <= 0) {
        *later = *buf;
        *buf = NULL;
        *cap = 0;
        return before;
    }
    Py_ssize_t n = 16;
    while (n < keep) n *= 2;
    void *q = realloc(*buf, (size_t)n * size);
    if (!q) return 0; /* the old buffer is still there, still big: fine */
    *buf = q;
    *cap = n;
    return before - (size_t)n * size;
}

PyObject *Pacer_trim(Pacer *p, PyObject *unused) {
    void *later[6] = {NULL};
    size_t freed = 0;
    LOCK(p);
    /* Room for twice the largest drain since the last trim while calls are live; none when no call is. */
    int idle = p->live == 0;
    Py_ssize_t kin = idle ? 0 : 2 * p->peak_in, karena = idle ? 0 : 2 * p->peak_arena;
    Py_ssize_t kplayed = idle ? 0 : 2 * p->peak_played;
    if (p->nin == 0) freed += shrink((void **)&p->in, &p->capin, kin, sizeof(inbound), &later[0]);
    if (p->narena == 0) freed += shrink((void **)&p->arena, &p->caparena, karena, 1, &later[1]);
    if (p->nplayed == 0)
        freed += shrink((void **)&p->played, &p->capplayed, kplayed, sizeof(tap_entry), &later[2]);
    if (p->nin2 == 0 && !p->delivering) { /* the set the last drain took, handed out already */
        freed += shrink((void **)&p->in2, &p->capin2, kin, sizeof(inbound), &later[3]);
        freed += shrink((void **)&p->arena2, &p->caparena2, karena, 1, &later[4]);
        freed += shrink((void **)&p->played2, &p->capplayed2, kplayed, sizeof(tap_entry), &later[5]);
    }
    p->peak_in = p->peak_arena = p->peak_played = 0;
    UNLOCK(p);
    for (int i = 0; i < 6; i++) free(later[i]);
    return PyLong_FromSize_t(freed);
}

static PyObject *hist_list(uint32_t *h, int len) {
    PyObject *bins = PyList_New(len);
    if (!bins) return NULL;
    for (int i = 0; i < len; i++) PyList_SET_ITEM(bins, i, PyLong_FromUnsignedLong(h[i]));
    return bins;
}

static uint32_t *copy_hist(const uint32_t *h, int len) {
    uint32_t *out = malloc((size_t)(len ? len : 1) * sizeof(uint32_t));
    if (out && len) memcpy(out, h, (size_t)len * sizeof(uint32_t));
    return out;
}

/* (frames_sent, audio_frames, dropped, first_deadline_ns, last_deadline_ns, bins, count, total_s, max_s,
 *  inbound_dropped) */
PyObject *Pacer_stats(Pacer *p, PyObject *args) {
    unsigned long long sid;
    if (!PyArg_ParseTuple(args, "K", &sid)) return NULL;
    session copy;
    uint32_t *bins = NULL;
    LOCK(p);
    session *s = find(p, sid);
    if (s) {
        copy = *s;
        bins = copy_hist(s->hist, s->hist_len);
    }
    UNLOCK(p);
    if (!s) Py_RETURN_NONE;
    if (!bins) return PyErr_NoMemory();
    PyObject *list = hist_list(bins, copy.hist_len);
    free(bins);
    if (!list) return NULL;
    return Py_BuildValue("(KKKLLNKddK)", (unsigned long long)copy.frames_sent,
                         (unsigned long long)copy.audio_frames, (unsigned long long)copy.dropped,
                         (long long)copy.first_deadline, (long long)copy.last_deadline, list,
                         (unsigned long long)copy.late_count, copy.late_total / 1e9, (double)copy.late_max / 1e9,
                         (unsigned long long)copy.in_dropped);
}

PyObject *Pacer_clock_stats(Pacer *p, PyObject *unused) {
    LOCK(p);
    int len = p->wake_hist_len;
    uint32_t *bins = copy_hist(p->wake_hist, len);
    unsigned long long wakeups = p->wakeups, skipped = p->skipped_periods, reads = p->reads, frames_in = p->frames_in;
    Py_ssize_t live = p->live;
    int realtime = p->realtime;
    UNLOCK(p);
    if (!bins) return PyErr_NoMemory();
    PyObject *list = hist_list(bins, len);
    free(bins);
    if (!list) return NULL;
    return Py_BuildValue("(NKKniKK)", list, wakeups, skipped, live, realtime, reads, frames_in);
}


