/* ivr.audiosocket._pacer: shared definitions of the pacing thread (pacer_core.c) and its Python
 * binding (_pacer.c). See _pacer.c for what it does and why. */
#ifndef IVR_PACER_H
#define IVR_PACER_H
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
#define TRIM_MIN_BYTES (256 * 1024) /* trim() leaves smaller buffers be: no churn at a steady load */
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
    double level_db;     /* IN_AUDIO: the frame's level, measured here so the loop need not */
} inbound;

typedef struct {
    uint64_t sid;      /* the session this entry is for (0: free) */
    PyObject *cb;      /* takes (payload, level) of each audio frame; NULL: the fallback takes them */
    uint64_t frames;   /* audio frames delivered to cb */
    uint64_t bytes;    /* their wire bytes since Python last took the count (routed(sid, take=True)) */
} route; /* pacer_routes.c; touched only with the GIL held, never by the thread */

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
    Py_ssize_t nin2; /* entries of in2 that deliver() has not handed out yet */
    /* The largest set a drain took since the last trim(): what the buffers keep when a burst has passed. */
    Py_ssize_t peak_in, peak_arena, peak_played;
    int delivering; /* deliver() is handing out in2 (trim() leaves that set alone) */
    route *routes;   /* by sid index, as table */
    Py_ssize_t caproutes;
    int py_waiting; /* Python was told (eventfd) and has not drained yet */
    int64_t told_ns, tell_gap; /* when Python was last told; it is told at most once per tell_gap */
    uint64_t drain_gen;
    int in_max; /* audio frames per session held for Python between drains; more are dropped (counted) */
    uint64_t reads, frames_in;
    uint64_t skipped_periods, wakeups;
    uint32_t *wake_hist;
    int wake_hist_len;
    int realtime;
} Pacer;

typedef struct {
    uint64_t pid, frames, underruns;
    int64_t first_ns;
} stopped;

/* pacer_core.c: the thread and the bookkeeping it shares with the binding (pure C: none of these calls
 * the Python API; they run under the mutex unless said otherwise). */
extern const unsigned char ZEROS[MAX_FRAME];
int64_t mono_ns(void);
int grow(void **arr, Py_ssize_t *cap, Py_ssize_t need, size_t size);
void push_event(Pacer *p, int type, session *s, playback *pb, int64_t at, int err);
void release_obj(Pacer *p, PyObject *obj);
void free_playback(Pacer *p, playback *pb);
void slot_remove(Pacer *p, session *s);
int slot_add(Pacer *p, session *s);
void unwatch(Pacer *p, session *s);
void *run(void *arg);
session *find(Pacer *p, uint64_t sid);
playback *find_pb(session *s, uint64_t pid);
void wake(Pacer *p);
void free_session(Pacer *p, session *s);
int set_format(session *s, int frame_size, int kind);
PyObject **take_released(Pacer *p, Py_ssize_t *n);
Py_ssize_t stop_playbacks(Pacer *p, session *s, int all, uint64_t pid, stopped *out, Py_ssize_t cap);

/* _pacer.c: the mutex taken from Python without waiting for it while holding the GIL (see there). */
PyThreadState *lock_pacer(Pacer *p);
void unlock_pacer(Pacer *p, PyThreadState *ts);
void drop_released(PyObject **objs, Py_ssize_t n);
#define LOCK(p) PyThreadState *_ts = lock_pacer(p)
#define UNLOCK(p) unlock_pacer(p, _ts)

/* pacer_reports.c: drain(), trim() and the counters. */
PyObject *Pacer_drain(Pacer *p, PyObject *unused);
PyObject *Pacer_trim(Pacer *p, PyObject *unused);
PyObject *Pacer_stats(Pacer *p, PyObject *args);
PyObject *Pacer_clock_stats(Pacer *p, PyObject *unused);

/* pacer_routes.c: the loop's side of inbound audio (GIL held, never the mutex). */
PyObject *Pacer_route(Pacer *p, PyObject *args);
PyObject *Pacer_routed(Pacer *p, PyObject *args);
PyObject *Pacer_deliver(Pacer *p, PyObject *args);
void routes_forget(Pacer *p, uint64_t sid);
void routes_free(Pacer *p);

#endif
