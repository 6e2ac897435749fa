/* The pacing thread: its clock, its writes and reads, and the bookkeeping it shares with the binding.
 * Nothing here calls the Python API (PyObject pointers are only stored and handed back). */
#include "pacer.h"

const unsigned char ZEROS[MAX_FRAME]; /* the silence every idle session writes, shared */

int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* -- bookkeeping under the mutex (no Python calls) ----------------------------------------------- */

int grow(void **arr, Py_ssize_t *cap, Py_ssize_t need, size_t size) {
    if (need <= *cap) return 0;
    Py_ssize_t n = *cap ? *cap * 2 : 16;
    while (n < need) n *= 2;
    void *p = realloc(*arr, (size_t)n * size);
    if (!p) return -1;
    *arr = p;
    *cap = n;
    return 0;
}

void push_event(Pacer *p, int type, session *s, playback *pb, int64_t at, int err) {
    if (grow((void **)&p->events, &p->capevents, p->nevents + 1, sizeof(event)) < 0) return;
    event *e = &p->events[p->nevents++];
    e->type = type;
    e->sid = s->sid;
    e->pid = pb ? pb->id : 0;
    e->frames = pb ? pb->frames : 0;
    e->underruns = pb ? pb->underruns : 0;
    e->at_ns = at;
    e->err = err;
    p->signalled = 1;
}

/* Sums of s16le samples (exact in integers), added to *sum and *sq; returns the sample count. */
static Py_ssize_t add_samples(const unsigned char *b, Py_ssize_t len, int64_t *sum, int64_t *sq) {
    Py_ssize_t n = len / 2;
    for (Py_ssize_t j = 0; j < n; j++) {
        int32_t v = (int16_t)(b[2 * j] | (b[2 * j + 1] << 8));
        *sum += v;
        *sq += (int64_t)v * v;
    }
    return n;
}

/* dBFS from those sums, DC removed: the formula of ivr.media.vad._power_db. */
static double sums_db(int64_t sum, int64_t sq, Py_ssize_t n) {
    if (!n) return SILENT_DB;
    double s = (double)sum, power = ((double)sq - s * s / (double)n) / ((double)n * 32768.0 * 32768.0);
    return power > 1e-10 ? 10.0 * log10(power) : SILENT_DB;
}

static double pcm_level_db(const unsigned char *b, Py_ssize_t len) {
    int64_t sum = 0, sq = 0;
    Py_ssize_t n = add_samples(b, len, &sum, &sq);
    return sums_db(sum, sq, n);
}

static void push_in(Pacer *p, session *s, int type, const unsigned char *data, Py_ssize_t len, int err) {
    if (grow((void **)&p->in, &p->capin, p->nin + 1, sizeof(inbound)) < 0) return;
    if (len && grow((void **)&p->arena, &p->caparena, p->narena + len, 1) < 0) return;
    inbound *e = &p->in[p->nin++];
    e->sid = s->sid;
    e->type = type;
    e->err = err;
    e->off = p->narena;
    e->len = len;
    e->level_db = type == IN_AUDIO ? pcm_level_db(data, len) : 0.0;
    if (len) memcpy(p->arena + p->narena, data, (size_t)len);
    p->narena += len;
    p->signalled = 1;
}

void release_obj(Pacer *p, PyObject *obj) {
    if (grow((void **)&p->released, &p->capreleased, p->nreleased + 1, sizeof(PyObject *)) < 0) return;
    p->released[p->nreleased++] = obj; /* on failure the object leaks rather than being freed without the GIL */
    p->signalled = 1;
}

void free_playback(Pacer *p, playback *pb) {
    chunk *c = pb->head;
    while (c) {
        chunk *n = c->next;
        release_obj(p, c->obj);
        free(c);
        c = n;
    }
    free(pb);
}

static void hist_record(uint32_t **hist, int *len, int64_t late) {
    if (late < 0) late = 0;
    int64_t i = late / HIST_BIN_NS;
    if (i > HIST_BINS) i = HIST_BINS;
    if (i >= *len) {
        int n = (int)i + 1;
        uint32_t *h = realloc(*hist, (size_t)n * sizeof(uint32_t));
        if (!h) return;
        memset(h + *len, 0, (size_t)(n - *len) * sizeof(uint32_t));
        *hist = h;
        *len = n;
    }
    (*hist)[i]++;
}

void slot_remove(Pacer *p, session *s) {
    if (s->slot < 0) return;
    int k = s->slot;
    session **m = p->members[k];
    for (int i = 0; i < p->nmembers[k]; i++) {
        if (m[i] == s) {
            memmove(&m[i], &m[i + 1], (size_t)(p->nmembers[k] - i - 1) * sizeof(session *));
            p->nmembers[k]--;
            break;
        }
    }
    if (p->nmembers[k] == 0) p->next[k] = 0;
    s->slot = -1;
}

int slot_add(Pacer *p, session *s) {
    int64_t now = mono_ns();
    int64_t first = (now - p->epoch + p->slot_ns - 1) / p->slot_ns;
    int64_t best = first;
    for (int64_t i = first; i < first + p->spread; i++)
        if (p->nmembers[i % p->slots] < p->nmembers[best % p->slots]) best = i;
    int k = (int)(best % p->slots);
    Py_ssize_t cap = p->capmembers[k];
    if (grow((void **)&p->members[k], &cap, p->nmembers[k] + 1, sizeof(session *)) < 0) return -1;
    p->capmembers[k] = (int)cap;
    p->members[k][p->nmembers[k]++] = s;
    s->slot = k;
    if (p->next[k] == 0) p->next[k] = p->epoch + best * p->slot_ns;
    return 0;
}

/* -- the thread's per-frame work ------------------------------------------------------------------ */

/* The level of a frame written from several pieces (prompt chunks, padding): as pcm_level_db. */
static float level_db(struct iovec *iov, int n) {
    int64_t sum = 0, sq = 0;
    Py_ssize_t count = 0;
    for (int i = 0; i < n; i++) count += add_samples(iov[i].iov_base, (Py_ssize_t)iov[i].iov_len, &sum, &sq);
    return (float)sums_db(sum, sq, count);
}

/* Fill iov[1..] with the next frame of the session's queue; returns the iov count (1: silence). */
static int next_frame(Pacer *p, session *s, int64_t deadline, struct iovec *iov) {
    int fs = s->frame_size;
    while (s->head && !s->held) {
        playback *pb = s->head;
        if (!pb->started) {
            if (pb->queued < pb->prebuffer && !pb->ended) return 1;
            pb->started = 1;
        }
        if (pb->queued == 0 && pb->ended) {
            s->head = pb->next;
            if (!s->head) s->tail = NULL;
            push_event(p, EV_DONE, s, pb, deadline, 0);
            free_playback(p, pb);
            continue;
        }
        if (pb->queued < fs && !pb->ended) {
            pb->underruns++;
            return 1;
        }
        Py_ssize_t take = pb->queued < fs ? pb->queued : fs;
        int n = 1;
        Py_ssize_t need = take;
        while (need > 0 && n < MAX_IOV - 1) {
            chunk *c = pb->head;
            Py_ssize_t avail = c->len - pb->off;
            Py_ssize_t t = avail < need ? avail : need;
            iov[n].iov_base = (void *)(c->ptr + pb->off);
            iov[n].iov_len = (size_t)t;
            n++;
            need -= t;
            pb->off += t;
            if (pb->off == c->len) {
                /* The thread is done with this chunk, but its bytes are in iov until the write below:
                 * the object goes to `released`, freed only by drain() under the mutex, after this tick. */
                pb->head = c->next;
                if (!pb->head) pb->tail = NULL;
                pb->off = 0;
                release_obj(p, c->obj);
                free(c);
            }
        }
        take -= need; /* only if MAX_IOV was exhausted (tiny chunks): a shorter frame, padded below */
        pb->queued -= take;
        if (take < fs) {
            iov[n].iov_base = (void *)ZEROS;
            iov[n].iov_len = (size_t)(fs - take);
            n++;
        }
        if (pb->frames == 0) {
            pb->first_ns = deadline;
            push_event(p, EV_STARTED, s, pb, deadline, 0);
        }
        pb->frames++;
        return n;
    }
    return 1;
}

static void tick(Pacer *p, session *s, int64_t deadline) {
    if (s->dead) return;
    int64_t now = mono_ns();
    int64_t late = now - deadline;
    hist_record(&s->hist, &s->hist_len, late);
    s->late_count++;
    s->late_total += late > 0 ? (double)late : 0.0;
    if (late > s->late_max) s->late_max = late;
    if (!s->first_deadline) s->first_deadline = deadline;
    s->last_deadline = deadline;

    struct iovec iov[MAX_IOV];
    iov[0].iov_base = s->header;
    iov[0].iov_len = 3;
    int n = next_frame(p, s, deadline, iov);
    int audio = n > 1;
    if (!audio) {
        iov[1].iov_base = (void *)ZEROS;
        iov[1].iov_len = (size_t)s->frame_size;
        n = 2;
    }
    if (s->tap_on && grow((void **)&p->played, &p->capplayed, p->nplayed + 1, sizeof(tap_entry)) == 0) {
        tap_entry *t = &p->played[p->nplayed++];
        t->sid = s->sid;
        t->at_ns = deadline;
        t->level_db = audio ? level_db(iov + 1, n - 1) : (float)SILENT_DB;
        p->signalled = 1;
    }
    if (audio) s->audio_frames++;

    if (s->pend_len) {
        ssize_t w = send(s->fd, s->pend, (size_t)s->pend_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) goto failed;
        if (w > 0) {
            memmove(s->pend, s->pend + w, (size_t)(s->pend_len - w));
            s->pend_len -= (int)w;
        }
        if (s->pend_len) {
            s->dropped++;
            return;
        }
    }
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    ssize_t total = 0;
    for (int i = 0; i < n; i++) total += (ssize_t)iov[i].iov_len;
    ssize_t w = sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->dropped++;
            return;
        }
        goto failed;
    }
    s->frames_sent++;
    if (w < total) { /* keep the rest: the next message must not start inside this one */
        ssize_t skip = w;
        s->pend_len = 0;
        for (int i = 0; i < n; i++) {
            size_t len = iov[i].iov_len;
            if ((size_t)skip >= len) {
                skip -= (ssize_t)len;
                continue;
            }
            memcpy(s->pend + s->pend_len, (unsigned char *)iov[i].iov_base + skip, len - (size_t)skip);
            s->pend_len += (int)(len - (size_t)skip);
            skip = 0;
        }
    }
    return;
failed:
    s->dead = 1;
    push_event(p, EV_ERROR, s, NULL, deadline, errno);
}

void unwatch(Pacer *p, session *s) {
    if (!s->watching) return;
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    s->watching = 0;
}

/* Cut complete messages out of the session's buffer: audio of the usual kind and size as audio, the rest
 * whole for Python; keep a partial message for the next read. */
static void parse_in(Pacer *p, session *s) {
    unsigned char *b = s->inbuf;
    int have = s->in_have, off = 0;
    if (s->raw) {
        if (have) push_in(p, s, IN_RAW, b, have, 0);
        s->in_have = 0;
        return;
    }
    while (have - off >= 3) {
        int kind = b[off], len = (b[off + 1] << 8) | b[off + 2];
        if (3 + len > IN_CAP) { /* too big to hold: Python's decoder takes the stream from here */
            s->raw = 1;
            push_in(p, s, IN_RAW, b + off, have - off, 0);
            s->in_have = 0;
            return;
        }
        if (have - off < 3 + len) break;
        if (kind == s->in_kind && len == s->in_size) {
            if (s->in_gen != p->drain_gen) {
                s->in_gen = p->drain_gen;
                s->in_queued = 0;
            }
            if (s->in_queued < p->in_max) { /* audio is perishable: a loop that fell behind loses the newest */
                s->in_queued++;
                push_in(p, s, IN_AUDIO, b + off + 3, len, 0);
            } else {
                s->in_dropped++;
            }
            p->frames_in++;
        } else {
            push_in(p, s, IN_RAW, b + off, 3 + len, 0);
        }
        off += 3 + len;
    }
    if (off) memmove(b, b + off, (size_t)(have - off));
    s->in_have = have - off;
}

static void read_session(Pacer *p, session *s) {
    for (int round = 0; round < 4 && s->watching; round++) {
        int room = IN_CAP - s->in_have;
        ssize_t n = recv(s->fd, s->inbuf + s->in_have, (size_t)room, MSG_DONTWAIT);
        if (n > 0) {
            p->reads++;
            s->in_have += (int)n;
            parse_in(p, s);
            if (n < room) return; /* drained */
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        int err = n < 0 ? errno : 0;
        if (s->in_have) { /* a message cut short: Python's decoder says so */
            push_in(p, s, IN_RAW, s->inbuf, s->in_have, 0);
            s->in_have = 0;
        }
        push_in(p, s, err ? IN_FAILED : IN_EOF, NULL, 0, err);
        unwatch(p, s);
        return;
    }
}

static void fire(Pacer *p, int k, int64_t now) {
    int64_t deadline = p->next[k];
    int64_t late = now - deadline;
    hist_record(&p->wake_hist, &p->wake_hist_len, late);
    p->wakeups++;
    int64_t due = 1;
    if (late >= p->period) {
        due += late / p->period;
        if (due > p->max_catchup) {
            int64_t skip = due - p->max_catchup;
            p->skipped_periods += (uint64_t)skip;
            deadline += skip * p->period;
            due = p->max_catchup;
        }
    }
    for (int64_t i = 0; i < due; i++)
        for (int j = 0; j < p->nmembers[k]; j++) tick(p, p->members[k][j], deadline + i * p->period);
    p->next[k] = p->nmembers[k] ? deadline + due * p->period : 0;
}

static void arm(Pacer *p, int64_t when) {
    if (when == p->armed) return;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (when) { /* 0 disarms */
        its.it_value.tv_sec = when / 1000000000LL;
        its.it_value.tv_nsec = when % 1000000000LL;
    }
    timerfd_settime(p->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
    p->armed = when;
}

void *run(void *arg) {
    Pacer *p = arg;
    if (p->realtime) {
        struct sched_param sp = {.sched_priority = p->realtime};
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0) p->realtime = 0;
    }
    struct epoll_event evs[256];
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        int64_t when = 0;
        for (int k = 0; k < p->slots; k++)
            if (p->next[k] && (!when || p->next[k] < when)) when = p->next[k];
        if (p->signalled && !p->py_waiting) { /* Python is owed a wake-up, held back by tell_gap */
            int64_t tell = p->told_ns + p->tell_gap;
            if (!when || tell < when) when = tell;
        }
        int64_t now = mono_ns();
        int due = when && now >= when; /* behind: look at the sockets without waiting, then write */
        if (!due) arm(p, when);
        pthread_mutex_unlock(&p->mu);
        int n = epoll_wait(p->epfd, evs, 256, due ? 0 : -1);
        pthread_mutex_lock(&p->mu);
        if (p->stopping) break;
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64, val;
            if (tag == WAKE_TAG) {
                ssize_t ignored = read(p->wakefd, &val, sizeof val);
                (void)ignored;
            } else if (tag == TIMER_TAG) {
                ssize_t ignored = read(p->timerfd, &val, sizeof val);
                (void)ignored;
                p->armed = 0;
            } else {
                session *s = find(p, tag); /* a session closed meanwhile is simply not found */
                if (s && s->watching) read_session(p, s);
            }
        }
        now = mono_ns();
        for (int k = 0; k < p->slots; k++)
            if (p->next[k] && p->next[k] <= now) fire(p, k, now);
        /* Python is told at most once per tell_gap: what came meanwhile waits (at most that long) and
         * is drained together, so the loop's thread wakes, switches and pays a drain's fixed cost a few
         * hundred times a second, not once per caller frame that arrived alone. */
        if (p->signalled && !p->py_waiting && now - p->told_ns >= p->tell_gap) {
            p->py_waiting = 1;
            p->told_ns = now;
            uint64_t one = 1;
            ssize_t ignored = write(p->evfd, &one, sizeof one);
            (void)ignored;
        }
        if (p->py_waiting) p->signalled = 0; /* the drain Python is owed takes it all */
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

session *find(Pacer *p, uint64_t sid) {
    Py_ssize_t i = (Py_ssize_t)(sid & 0xffffffffu);
    if (i < 0 || i >= p->ntable) return NULL;
    session *s = p->table[i];
    return s && s->sid == sid ? s : NULL;
}

playback *find_pb(session *s, uint64_t pid) {
    for (playback *pb = s->head; pb; pb = pb->next)
        if (pb->id == pid) return pb;
    return NULL;
}

void wake(Pacer *p) {
    uint64_t one = 1;
    ssize_t ignored = write(p->wakefd, &one, sizeof one);
    (void)ignored;
}

void free_session(Pacer *p, session *s) {
    playback *pb = s->head;
    while (pb) {
        playback *n = pb->next;
        free_playback(p, pb);
        pb = n;
    }
    free(s->pend);
    free(s->hist);
    free(s->inbuf);
    free(s);
}

/* Pure C (runs under the mutex): -1 when out of memory. */
int set_format(session *s, int frame_size, int kind) {
    unsigned char *pend = realloc(s->pend, (size_t)frame_size + 3);
    if (!pend) return -1;
    s->pend = pend;
    s->frame_size = frame_size;
    s->header[0] = (unsigned char)kind;
    s->header[1] = (unsigned char)(frame_size >> 8);
    s->header[2] = (unsigned char)(frame_size & 0xff);
    return 0;
}

/* Take the released objects out under the mutex; DECREF them after unlocking. */
PyObject **take_released(Pacer *p, Py_ssize_t *n) {
    *n = p->nreleased;
    if (!*n) return NULL;
    PyObject **out = p->released;
    p->released = NULL;
    p->nreleased = p->capreleased = 0;
    return out;
}

/* Remove playbacks (all, or one) from a session into `out` (pure C; at most `cap`). */
Py_ssize_t stop_playbacks(Pacer *p, session *s, int all, uint64_t pid, stopped *out, Py_ssize_t cap) {
    Py_ssize_t n = 0;
    playback **link = &s->head, *prev = NULL;
    while (*link) {
        playback *pb = *link;
        if ((all || pb->id == pid) && n < cap) {
            *link = pb->next;
            if (s->tail == pb) s->tail = prev;
            out[n].pid = pb->id;
            out[n].frames = pb->frames;
            out[n].underruns = pb->underruns;
            out[n].first_ns = pb->first_ns;
            n++;
            free_playback(p, pb);
            if (!all) break;
        } else {
            prev = pb;
            link = &pb->next;
        }
    }
    return n;
}

