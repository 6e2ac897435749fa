/*
 * audiosocket_ref: the C single-clock AudioSocket reference server of `ivr bench`.
 *
 * It is what a lean server costs on this machine, so every `ivr run` figure can be given as a ratio to it,
 * measured in the same run by the same load generator. One thread, one epoll loop, one clock:
 *
 *   - a timerfd fires every 1 ms on absolute deadlines (t0 + k ms, TFD_TIMER_ABSTIME + interval, so a late
 *     wake-up never shifts later ones); the 20 ms period is split into 20 phase slots and each session is
 *     put in the least loaded slot when its UUID arrives, so frames leave spread over the period instead of
 *     one burst per tick ("C, one clock, sessions spread over 1 ms phase slots" in shared notes);
 *   - every session gets one audio frame per period at its slot: kind 0x10 (320 bytes, 8 kHz) or 0x12
 *     (640 bytes, 16 kHz), the kind of the audio the peer sends (the rate given on the command line until
 *     then), a looping tone;
 *   - sockets are non-blocking with TCP_NODELAY; inbound messages (UUID 0x01 first, audio, DTMF 0x03,
 *     hangup 0x00) are parsed and counted; EOF or a hangup closes the session; a malformed message closes
 *     that session only.
 *
 * It does no VAD, no flow and no speech work: it is the floor, not a competitor.
 *
 * Usage: audiosocket_ref PORT [RATE] [HOST]   (RATE 8000 or 16000, HOST 127.0.0.1 by default)
 * Prints "ready PORT" on stdout once listening (PORT 0 picks a free port); on SIGTERM or SIGINT prints one
 * JSON line of counters and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 20            /* 1 ms phase slots in the 20 ms period */
#define SLOT_NS 1000000L
#define INBUF 8192
#define TONE_SAMPLES 16000  /* one second at 16 kHz, half a second at 8 kHz: the tone loops */
#define TAG_LISTEN (-1)
#define TAG_TIMER (-2)
#define TAG_SIGNAL (-3)

struct session {
    int fd;
    int slot;               /* -1 until the UUID arrived */
    int kind;               /* audio kind to send: 0x10 or 0x12 */
    int live;
    size_t pos;             /* position in the tone */
    size_t have;            /* bytes in inbuf */
    unsigned char inbuf[INBUF];
    unsigned char pending[3 + 640];
    size_t pending_len, pending_off;
    struct session *next, *prev; /* in its slot's list */
};

static struct session **by_fd;
static int max_fd_slots;
static struct session *slot_head[SLOTS];
static int slot_count[SLOTS];
static int16_t tone8[TONE_SAMPLES], tone16[TONE_SAMPLES];
static int epfd;

static struct {
    unsigned long long accepted, closed, max_live, live, frames_out, frames_in, dtmf_in, write_drops,
        partial_writes, bad_messages, ticks, ticks_missed, late_ticks_1ms;
    double tick_late_max_ms;
} st;

static void die(const char *what) {
    fprintf(stderr, "audiosocket_ref: %s: %s\n", what, strerror(errno));
    exit(2);
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void slot_unlink(struct session *s) {
    if (s->slot < 0) return;
    if (s->prev) s->prev->next = s->next; else slot_head[s->slot] = s->next;
    if (s->next) s->next->prev = s->prev;
    slot_count[s->slot]--;
    s->slot = -1;
    s->next = s->prev = NULL;
}

static void slot_join(struct session *s) {
    int best = 0;
    for (int i = 1; i < SLOTS; i++)
        if (slot_count[i] < slot_count[best]) best = i;
    s->slot = best;
    s->prev = NULL;
    s->next = slot_head[best];
    if (s->next) s->next->prev = s;
    slot_head[best] = s;
    slot_count[best]++;
}

static void close_session(struct session *s) {
    if (!s->live) return;
    slot_unlink(s);
    epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    by_fd[s->fd] = NULL;
    s->live = 0;
    st.closed++;
    st.live--;
    free(s);
}

static void want_write(struct session *s, int on) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.fd = s->fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

static void flush_pending(struct session *s) {
    while (s->pending_off < s->pending_len) {
        ssize_t n = send(s->fd, s->pending + s->pending_off, s->pending_len - s->pending_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            close_session(s);
            return;
        }
        s->pending_off += (size_t)n;
    }
    s->pending_len = s->pending_off = 0;
    want_write(s, 0);
}

static void send_frame(struct session *s) {
    if (s->pending_len) { /* the previous frame has not left: this one is dropped, counted */
        st.write_drops++;
        return;
    }
    size_t samples = s->kind == 0x12 ? 320 : 160;
    const int16_t *tone = s->kind == 0x12 ? tone16 : tone8;
    size_t period = s->kind == 0x12 ? TONE_SAMPLES : TONE_SAMPLES / 2;
    unsigned char *f = s->pending;
    f[0] = (unsigned char)s->kind;
    f[1] = (unsigned char)((samples * 2) >> 8);
    f[2] = (unsigned char)((samples * 2) & 0xff);
    memcpy(f + 3, tone + s->pos, samples * 2); /* period is a multiple of samples: never wraps mid-frame */
    s->pos = (s->pos + samples) % period;
    size_t len = 3 + samples * 2;
    ssize_t n = send(s->fd, f, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == (ssize_t)len) {
        st.frames_out++;
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            st.write_drops++;
            return;
        }
        close_session(s);
        return;
    }
    st.frames_out++;
    st.partial_writes++;
    s->pending_len = len;
    s->pending_off = (size_t)n;
    want_write(s, 1);
}

/* Parse what arrived; 0 to keep the session, -1 to close it. */
static int parse(struct session *s) {
    size_t pos = 0;
    while (s->have - pos >= 3) {
        unsigned char kind = s->inbuf[pos];
        size_t len = ((size_t)s->inbuf[pos + 1] << 8) | s->inbuf[pos + 2];
        if (3 + len > INBUF) { st.bad_messages++; return -1; }
        if (s->have - pos < 3 + len) break;
        if (kind == 0x00) return -1;
        if (kind == 0x01) {
            if (len != 16 || s->slot >= 0) { st.bad_messages++; return -1; }
            slot_join(s);
        } else if (s->slot < 0) {
            st.bad_messages++; /* anything before the UUID */
            return -1;
        } else if (kind == 0x10 || kind == 0x12) {
            st.frames_in++;
            s->kind = kind;
        } else if (kind == 0x03) {
            st.dtmf_in++;
        } else if (kind >= 0x11 && kind <= 0x18) {
            st.frames_in++; /* other rates: counted, answered at the current rate */
        } /* unknown kinds are ignored, as Asterisk adds kinds over time */
        pos += 3 + len;
    }
    if (pos) {
        memmove(s->inbuf, s->inbuf + pos, s->have - pos);
        s->have -= pos;
    }
    return 0;
}

static void on_readable(struct session *s) {
    for (;;) {
        ssize_t n = recv(s->fd, s->inbuf + s->have, INBUF - s->have, MSG_DONTWAIT);
        if (n > 0) {
            s->have += (size_t)n;
            if (parse(s) < 0) { close_session(s); return; }
            continue;
        }
        if (n == 0) { close_session(s); return; }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        close_session(s);
        return;
    }
}

static void on_accept(int lfd, int initial_kind) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EMFILE and friends: try again on the next wake-up */
        }
        if (fd >= max_fd_slots) { close(fd); continue; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct session *s = calloc(1, sizeof *s);
        if (!s) { close(fd); continue; }
        s->fd = fd;
        s->slot = -1;
        s->kind = initial_kind;
        s->live = 1;
        by_fd[fd] = s;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) { by_fd[fd] = NULL; close(fd); free(s); continue; }
        st.accepted++;
        st.live++;
        if (st.live > st.max_live) st.max_live = st.live;
    }
}

static void fire_slot(int k) {
    struct session *s = slot_head[k];
    while (s) {
        struct session *next = s->next; /* send_frame may close s */
        send_frame(s);
        s = next;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: audiosocket_ref PORT [RATE] [HOST]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    int rate = argc > 2 ? atoi(argv[2]) : 8000;
    const char *host = argc > 3 ? argv[3] : "127.0.0.1";
    if (rate != 8000 && rate != 16000) {
        fprintf(stderr, "audiosocket_ref: RATE must be 8000 or 16000\n");
        return 2;
    }
    int initial_kind = rate == 16000 ? 0x12 : 0x10;
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* the bench that started us died without stopping us: stop too */

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    max_fd_slots = rl.rlim_cur > 1048576 ? 1048576 : (int)rl.rlim_cur;
    by_fd = calloc((size_t)max_fd_slots, sizeof *by_fd);
    if (!by_fd) die("calloc");

    for (int i = 0; i < TONE_SAMPLES; i++) { /* 400 Hz at 16 kHz, 400 Hz at 8 kHz over half the table */
        tone16[i] = (int16_t)(6000.0 * sin(2.0 * M_PI * 400.0 * i / 16000.0));
        tone8[i] = (int16_t)(6000.0 * sin(2.0 * M_PI * 400.0 * i / 8000.0));
    }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "audiosocket_ref: bad host %s\n", host);
        return 2;
    }
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = TAG_LISTEN};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");
    ev.events = EPOLLIN;
    ev.data.fd = TAG_SIGNAL;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) die("timerfd_create");
    long long t0 = now_ns() + SLOT_NS;
    struct itimerspec its = {
        .it_value = {.tv_sec = t0 / 1000000000LL, .tv_nsec = t0 % 1000000000LL},
        .it_interval = {.tv_sec = 0, .tv_nsec = SLOT_NS},
    };
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
    ev.events = EPOLLIN;
    ev.data.fd = TAG_TIMER;
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);

    printf("ready %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    unsigned long long fired = 0; /* slots fired since t0 */
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(epfd, events, 512, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int tag = events[i].data.fd;
            if (tag == TAG_TIMER) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) != sizeof expirations) continue;
                long long now = now_ns();
                unsigned long long due = fired + expirations;
                double late = (double)(now - (t0 + (long long)(due - 1) * SLOT_NS)) / 1e6;
                if (late > st.tick_late_max_ms) st.tick_late_max_ms = late;
                if (late > 1.0) st.late_ticks_1ms++;
                if (expirations > 1) st.ticks_missed += expirations - 1;
                for (; fired < due; fired++) { /* catch up: every missed slot still gets its frames */
                    fire_slot((int)(fired % SLOTS));
                    st.ticks++;
                }
            } else if (tag == TAG_LISTEN) {
                on_accept(lfd, initial_kind);
            } else if (tag == TAG_SIGNAL) {
                printf("{\"accepted\": %llu, \"closed\": %llu, \"live\": %llu, \"max_live\": %llu, "
                       "\"frames_out\": %llu, \"frames_in\": %llu, \"dtmf_in\": %llu, \"write_drops\": %llu, "
                       "\"partial_writes\": %llu, \"bad_messages\": %llu, \"ticks\": %llu, "
                       "\"ticks_missed\": %llu, \"late_ticks_1ms\": %llu, \"tick_late_max_ms\": %.3f}\n",
                       st.accepted, st.closed, st.live, st.max_live, st.frames_out, st.frames_in,
                       st.dtmf_in, st.write_drops, st.partial_writes, st.bad_messages, st.ticks,
                       st.ticks_missed, st.late_ticks_1ms, st.tick_late_max_ms);
                fflush(stdout);
                return 0;
            } else {
                struct session *s = tag >= 0 && tag < max_fd_slots ? by_fd[tag] : NULL;
                if (!s) continue;
                uint32_t e = events[i].events;
                if (e & EPOLLOUT) {
                    flush_pending(s);
                    if (!by_fd[tag]) continue;
                }
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(s);
            }
        }
    }
}
