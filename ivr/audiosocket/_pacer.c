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
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME 7680     /* 20 ms at 192 kHz */
#define MAX_IOV 16
#define HIST_BIN_NS 100000 /* 0.1 ms, as ivr.audiosocket.stats.LatencyHistogram */
#define HIST_BINS 2500     /* 250 ms; later values land in the last bin */
#define IN_CAP (3 + MAX_FRAME + 512) /* a session's read buffer: any audio frame, DTMF, a UUID, an error */
#define WAKE_TAG UINT64_MAX
#define TIMER_TAG (UINT64_MAX - 1)
#define SILENT_DB (-100.0) /* as ivr.media: a level for digital silence */

enum { EV_STARTED = 1, EV_DONE = 2, EV_ERROR = 3 };
enum { IN_AUDIO = 0, IN_RAW = 1, IN_EOF = 2, IN_FAILED = 3 };

typedef struct chunk {
    const unsigned char *ptr;
    Py_ssize_t len;
    PyObject *obj; /* a bytes object; one reference, owned here, released only with the GIL */
    struct chunk *next;
} chunk;

typedef struct playback {
    uint64_t id;
    chunk *head, *tail;
    Py_ssize_t off;      /* into head */
    Py_ssize_t queued;   /* bytes not yet written */
    Py_ssize_t prebuffer;
    int ended, started;
    uint64_t frames, underruns;
    int64_t first_ns;
    struct playback *next;
} playback;

typedef struct {
    uint64_t sid;
    int64_t at_ns;
    float level_db;
} tap_entry;

typedef struct session {
    uint64_t sid;
    int fd;
    int slot; /* -1 when not on the clock */
    int frame_size;
    unsigned char header[3];
    playback *head, *tail;
    int held, dead, tap_on;
    int err;
    unsigned char *pend; /* the unsent rest of a partially written message */
    int pend_len;
    uint64_t frames_sent, audio_frames, dropped;
    int64_t first_deadline, last_deadline;
    uint32_t *hist;
    int hist_len;
    uint64_t late_count;
    double late_total;
    int64_t late_max;
    int watching, raw;
    int in_kind, in_size; /* the usual inbound message; -1 until Python says */
    uint64_t in_gen;       /* the drain this session's count below belongs to */
    int in_queued;         /* audio frames read since that drain */
    uint64_t in_dropped;   /* audio frames dropped because Python fell behind */
    unsigned char *inbuf;
    int in_have;
} session;

typedef struct {
    uint64_t sid;
    int type;
    int err;
    Py_ssize_t off, len; /* into the inbound arena */
} inbound;

typedef struct {
    int type;
    uint64_t sid, pid, frames, underruns;
    int64_t at_ns;
    int err;
} event;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    pthread_t thread;
    int running, stopping;
    int evfd;
    int64_t period, slot_ns, epoch;
    int slots, spread, max_catchup;
    session ***members; /* per slot: array of sessions */
    int *nmembers, *capmembers;
    int64_t *next; /* per slot: next deadline, 0 when idle */
    session **table; /* by sid index */
    Py_ssize_t ntable, captable;
    uint64_t gen;
    Py_ssize_t live;
    event *events;
    Py_ssize_t nevents, capevents;
    PyObject **released;
    Py_ssize_t nreleased, capreleased;
    int signalled;
    int epfd, wakefd, timerfd;
    int64_t armed;
    inbound *in;
    Py_ssize_t nin, capin;
    tap_entry *played;
    Py_ssize_t nplayed, capplayed;
    unsigned char *arena;
    Py_ssize_t narena, caparena;
    /* Double buffers: drain() swaps these with the ones above, so the thread fills one set while Python reads
     * the other, and neither is allocated again per drain (a drain of 1000 calls' audio is ~0.5 MB). */
    inbound *in2;
    Py_ssize_t capin2;
    tap_entry *played2;
    Py_ssize_t capplayed2;
    unsigned char *arena2;
    Py_ssize_t caparena2;
    int py_waiting; /* Python was told (eventfd) and has not drained yet */
    uint64_t drain_gen;
    int in_max; /* audio frames per session held for Python between drains; more are dropped (counted) */
    uint64_t reads, frames_in;
    uint64_t skipped_periods, wakeups;
    uint32_t *wake_hist;
    int wake_hist_len;
    int realtime;
} Pacer;

static const unsigned char ZEROS[MAX_FRAME];

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* -- bookkeeping under the mutex (no Python calls) ----------------------------------------------- */

static int grow(void **arr, Py_ssize_t *cap, Py_ssize_t need, size_t size) {
    if (need <= *cap) return 0;
    Py_ssize_t n = *cap ? *cap * 2 : 16;
    while (n < need) n *= 2;
    void *p = realloc(*arr, (size_t)n * size);
    if (!p) return -1;
    *arr = p;
    *cap = n;
    return 0;
}

static void push_event(Pacer *p, int type, session *s, playback *pb, int64_t at, int err) {
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

static void push_in(Pacer *p, session *s, int type, const unsigned char *data, Py_ssize_t len, int err) {
    if (grow((void **)&p->in, &p->capin, p->nin + 1, sizeof(inbound)) < 0) return;
    if (len && grow((void **)&p->arena, &p->caparena, p->narena + len, 1) < 0) return;
    inbound *e = &p->in[p->nin++];
    e->sid = s->sid;
    e->type = type;
    e->err = err;
    e->off = p->narena;
    e->len = len;
    if (len) memcpy(p->arena + p->narena, data, (size_t)len);
    p->narena += len;
    p->signalled = 1;
}

static void release_obj(Pacer *p, PyObject *obj) {
    if (grow((void **)&p->released, &p->capreleased, p->nreleased + 1, sizeof(PyObject *)) < 0) return;
    p->released[p->nreleased++] = obj; /* on failure the object leaks rather than being freed without the GIL */
    p->signalled = 1;
}

static void free_playback(Pacer *p, playback *pb) {
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

static void slot_remove(Pacer *p, session *s) {
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

static int slot_add(Pacer *p, session *s) {
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

static float level_db(struct iovec *iov, int n) {
    double sum = 0.0, sq = 0.0;
    long count = 0;
    for (int i = 0; i < n; i++) {
        const unsigned char *b = iov[i].iov_base;
        size_t len = iov[i].iov_len / 2;
        for (size_t j = 0; j < len; j++) {
            int16_t v = (int16_t)(b[2 * j] | (b[2 * j + 1] << 8));
            sum += v;
            sq += (double)v * v;
        }
        count += (long)len;
    }
    if (!count) return (float)SILENT_DB;
    double mean = sum / count;
    double var = sq / count - mean * mean;
    double pw = var / (32768.0 * 32768.0);
    return pw > 1e-10 ? (float)(10.0 * log10(pw)) : (float)SILENT_DB;
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
    s->err = errno;
    push_event(p, EV_ERROR, s, NULL, deadline, errno);
}

static void unwatch(Pacer *p, session *s) {
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

static session *find(Pacer *p, uint64_t sid);

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

static void *run(void *arg) {
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
        if (p->signalled && !p->py_waiting) {
            p->py_waiting = 1;
            uint64_t one = 1;
            ssize_t ignored = write(p->evfd, &one, sizeof one);
            (void)ignored;
        }
        p->signalled = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* -- Python methods -------------------------------------------------------------------------------- */

/* The mutex is never held while waiting for the GIL (the thread would wait on us while we wait on another
 * Python thread: a priority inversion that made frames 100+ ms late under load). So: take it at once with the
 * GIL held when it is free; otherwise give the GIL up, wait for the mutex, and take the GIL back only after
 * unlocking. Either way the code between LOCK and UNLOCK touches no Python object (it may run without the
 * GIL). */
static PyThreadState *lock_pacer(Pacer *p) {
    if (pthread_mutex_trylock(&p->mu) == 0) return NULL;
    PyThreadState *ts = PyEval_SaveThread();
    pthread_mutex_lock(&p->mu);
    return ts;
}

static void unlock_pacer(Pacer *p, PyThreadState *ts) {
    pthread_mutex_unlock(&p->mu);
    if (ts) PyEval_RestoreThread(ts);
}

#define LOCK(p) PyThreadState *_ts = lock_pacer(p)
#define UNLOCK(p) unlock_pacer(p, _ts)

static void wake(Pacer *p) {
    uint64_t one = 1;
    ssize_t ignored = write(p->wakefd, &one, sizeof one);
    (void)ignored;
}

static session *find(Pacer *p, uint64_t sid) {
    Py_ssize_t i = (Py_ssize_t)(sid & 0xffffffffu);
    if (i < 0 || i >= p->ntable) return NULL;
    session *s = p->table[i];
    return s && s->sid == sid ? s : NULL;
}

static playback *find_pb(session *s, uint64_t pid) {
    for (playback *pb = s->head; pb; pb = pb->next)
        if (pb->id == pid) return pb;
    return NULL;
}

/* Take the released objects out under the mutex; DECREF them after unlocking. */
static PyObject **take_released(Pacer *p, Py_ssize_t *n) {
    *n = p->nreleased;
    if (!*n) return NULL;
    PyObject **out = p->released;
    p->released = NULL;
    p->nreleased = p->capreleased = 0;
    return out;
}

static void drop_released(PyObject **objs, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) Py_DECREF(objs[i]);
    free(objs);
}

static int Pacer_init(Pacer *p, PyObject *args, PyObject *kw) {
    static char *names[] = {"period_ms", "slots", "spread", "max_catchup", "realtime", "inbound_max", NULL};
    int period_ms = 20, slots = 20, spread = 4, max_catchup = 3, realtime = 0, inbound_max = 50;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|iiiiii", names, &period_ms, &slots, &spread, &max_catchup,
                                     &realtime, &inbound_max))
        return -1;
    if (period_ms < 1 || slots < 1 || spread < 1 || max_catchup < 1 || realtime < 0 || realtime > 99 ||
        inbound_max < 1) {
        PyErr_SetString(PyExc_ValueError, "period_ms, slots, spread, max_catchup must be positive");
        return -1;
    }
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

static void free_session(Pacer *p, session *s) {
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

/* Pure C (runs under the mutex): -1 when out of memory. */
static int set_format(session *s, int frame_size, int kind) {
    unsigned char *pend = realloc(s->pend, (size_t)frame_size + 3);
    if (!pend) return -1;
    s->pend = pend;
    s->frame_size = frame_size;
    s->header[0] = (unsigned char)kind;
    s->header[1] = (unsigned char)(frame_size >> 8);
    s->header[2] = (unsigned char)(frame_size & 0xff);
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
    if (!PyArg_ParseTuple(args, "K", &sid)) return NULL;
    LOCK(p);
    session *s = find(p, sid);
    int rc = 0;
    if (s && !s->watching) {
        if (!s->inbuf) s->inbuf = malloc(IN_CAP);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = s->sid};
        rc = !s->inbuf ? -2 : epoll_ctl(p->epfd, EPOLL_CTL_ADD, s->fd, &ev);
        if (rc == 0) s->watching = 1;
    }
    int err = errno;
    UNLOCK(p);
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

typedef struct {
    uint64_t pid, frames, underruns;
    int64_t first_ns;
} stopped;

/* Remove playbacks (all, or one) from a session into `out` (pure C; at most `cap`). */
static Py_ssize_t stop_playbacks(Pacer *p, session *s, int all, uint64_t pid, stopped *out, Py_ssize_t cap) {
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

static PyObject *Pacer_drain(Pacer *p, PyObject *unused) {
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
    PyObject *out = PyList_New(nev), *got = PyList_New(nin), *heard = PyList_New(nplayed), *res = NULL;
    if (!out || !got || !heard) goto done;
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
    for (Py_ssize_t i = 0; i < nin; i++) {
        inbound *e = &in[i];
        PyObject *t;
        if (e->type == IN_AUDIO || e->type == IN_RAW)
            t = Py_BuildValue("(Kiy#)", (unsigned long long)e->sid, e->type, (const char *)arena + e->off, e->len);
        else
            t = Py_BuildValue("(Kii)", (unsigned long long)e->sid, e->type, e->err);
        if (!t) goto done;
        PyList_SET_ITEM(got, i, t);
    }
    res = PyTuple_Pack(3, out, heard, got);
done:
    Py_XDECREF(out);
    Py_XDECREF(got);
    Py_XDECREF(heard);
    free(evs);
    return res;
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
static PyObject *Pacer_stats(Pacer *p, PyObject *args) {
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

static PyObject *Pacer_clock_stats(Pacer *p, PyObject *unused) {
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

static PyObject *Pacer_now_ns(PyObject *unused, PyObject *unused2) { return PyLong_FromLongLong(mono_ns()); }

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
     "drain() -> (events, played, inbound): events [(type, sid, pid, frames, underruns, at_ns, errno)], "
     "played [(sid, at_ns, level_db)] of tapped sessions, inbound "
     "[(sid, AUDIO|RAW, bytes) | (sid, EOF|FAILED, errno)]; releases finished chunks."},
    {"watch", (PyCFunction)Pacer_watch, METH_VARARGS,
     "watch(sid) -> bool: read the socket here from now on (the loop must have stopped reading it)."},
    {"expect", (PyCFunction)Pacer_expect, METH_VARARGS,
     "expect(sid, kind, size): the usual inbound audio message, cut out as audio."},
    {"stats", (PyCFunction)Pacer_stats, METH_VARARGS, "stats(sid): counters and the lateness histogram."},
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

static PyMethodDef module_methods[] = {
    {"now_ns", Pacer_now_ns, METH_NOARGS, "CLOCK_MONOTONIC in ns (the clock deadlines are given in)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "ivr.audiosocket._pacer", "Native AudioSocket pacing thread.", -1, module_methods,
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
    PyModule_AddIntConstant(m, "AUDIO", IN_AUDIO);
    PyModule_AddIntConstant(m, "RAW", IN_RAW);
    PyModule_AddIntConstant(m, "EOF", IN_EOF);
    PyModule_AddIntConstant(m, "FAILED", IN_FAILED);
    return m;
}
