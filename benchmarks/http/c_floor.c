/* HTTP/1.1 hello-world server in C on a bare level-triggered epoll loop: the floor.
 *
 * Usage: c_floor PORT        (built and started by run.py; prints READY when listening)
 *
 * The framing of _httpcommon.py with no framework around it: requests are GETs without
 * bodies, so each "\r\n\r\n" ends one. A read may hold part of a request, one, or several
 * pipelined ones; every complete request gets the same fixed response (RESPONSE below, the
 * Python servers' bytes exactly), the unterminated tail is kept for the next read, and a
 * Connection header listing "close" among the complete requests (any case and spacing, as
 * _httpcommon.py decides it) closes the connection once their answers are sent. A tail
 * longer than MAX_HEAD without an end closes it too.
 *
 * Its CPU time per request is the kernel's share of a keep-alive request on this machine
 * plus next to nothing, the most any server here can reach. A response send() that comes
 * up short is kept and the connection waits for EPOLLOUT instead of EPOLLIN until it
 * drains, reading nothing meanwhile. SIGTERM and SIGINT arrive through a signalfd in the
 * same epoll set: the server exits with status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BACKLOG 1024
#define MAX_EVENTS 1024
#define READ_SIZE 65536  /* what the Python servers ask recv() for */
#define MAX_HEAD (64 * 1024)  /* _httpcommon.MAX_HEAD */

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "Hello, World!";
#define RESPONSE_LEN (sizeof RESPONSE - 1)

struct conn {
    char *tail;  /* start of a request not yet complete, room for one more read after it */
    size_t tail_len;  /* Invariant: tail_len <= MAX_HEAD */
    char *out;  /* response bytes the socket has not taken yet; NULL: none (reading) */
    size_t out_len;
    bool closing;  /* close once out is sent */
};

static char read_buf[READ_SIZE];
static char *answers;  /* RESPONSE repeated, grown to the most requests seen in one read */
static size_t answers_count;
static struct conn *conns;  /* indexed by fd */
static size_t conns_len;
static int epfd;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void *xrealloc(void *p, size_t size) {
    p = realloc(p, size);
    if (!p)
        die("realloc");
    return p;
}

static void raise_nofile(void) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);  /* best effort, like _serverlib.raise_nofile */
    }
}

static void watch(int fd, int op, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, op, fd, &ev) < 0)
        die("epoll_ctl");
}

static void track(int fd) {
    if ((size_t)fd >= conns_len) {
        size_t len = conns_len ? conns_len : 1024;
        while (len <= (size_t)fd)
            len *= 2;
        conns = xrealloc(conns, len * sizeof *conns);
        memset(conns + conns_len, 0, (len - conns_len) * sizeof *conns);
        conns_len = len;
    }
    conns[fd] = (struct conn){0};
}

static void close_conn(int fd) {
    free(conns[fd].tail);
    free(conns[fd].out);
    conns[fd] = (struct conn){0};
    close(fd);  /* closing also removes it from the epoll set */
}

/* Whether data[0:len] is, after trimming spaces and tabs, "close" in any case. */
static bool is_close_option(const char *data, size_t len) {
    while (len && (*data == ' ' || *data == '\t')) {
        data++;
        len--;
    }
    while (len && (data[len - 1] == ' ' || data[len - 1] == '\t'))
        len--;
    return len == 5 && strncasecmp(data, "close", 5) == 0;
}

/* Whether a Connection header in the request heads data[0:len] lists "close", as
 * _httpcommon.asks_to_close decides it: a line "name:" whose name is "connection" in
 * any case, then comma-separated options, one of them "close" in any case. */
static bool asks_to_close(const char *data, size_t len) {
    const char *end = data + len;
    for (const char *line = data; line < end;) {
        const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        if (!eol)
            eol = end;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon && colon - line == 10 && strncasecmp(line, "connection", 10) == 0) {
            for (const char *option = colon + 1; option <= eol;) {
                const char *comma = memchr(option, ',', (size_t)(eol - option));
                const char *stop = comma ? comma : eol;
                if (is_close_option(option, (size_t)(stop - option)))
                    return true;
                option = stop + 1;
            }
        }
        line = eol + 2;
    }
    return false;
}

/* The fixed response count times over, from a buffer grown once to the largest count. */
static const char *responses(size_t count) {
    if (count > answers_count) {
        answers = xrealloc(answers, count * RESPONSE_LEN);
        for (size_t i = answers_count; i < count; i++)
            memcpy(answers + i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
        answers_count = count;
    }
    return answers;
}

/* Send data[0:len]; keep what the socket did not take and wait for EPOLLOUT.
 * Returns false once the connection is closed. */
static bool send_or_keep(int fd, const char *data, size_t len) {
    ssize_t sent = send(fd, data, len, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            close_conn(fd);
            return false;
        }
        sent = 0;
    }
    if ((size_t)sent == len)
        return true;
    struct conn *c = &conns[fd];
    c->out_len = len - (size_t)sent;
    c->out = xrealloc(NULL, c->out_len);
    memcpy(c->out, data + sent, c->out_len);
    watch(fd, EPOLL_CTL_MOD, EPOLLOUT);
    return true;
}

/* EPOLLOUT with response bytes pending: send more; once drained, close or read again. */
static void drain(int fd) {
    struct conn *c = &conns[fd];
    ssize_t sent = send(fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            close_conn(fd);
        return;
    }
    if ((size_t)sent < c->out_len) {
        memmove(c->out, c->out + sent, c->out_len - (size_t)sent);
        c->out_len -= (size_t)sent;
        return;
    }
    if (c->closing) {
        close_conn(fd);
        return;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = 0;
    watch(fd, EPOLL_CTL_MOD, EPOLLIN);
}

/* EPOLLIN: read, answer every complete request, keep the unterminated tail. */
static void serve(int fd) {
    struct conn *c = &conns[fd];
    /* With a tail kept, read right behind it so a request split across reads is whole. */
    char *data = c->tail_len ? c->tail : read_buf;
    ssize_t got = recv(fd, data + c->tail_len, READ_SIZE, 0);
    if (got < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            close_conn(fd);  /* the peer reset the connection */
        return;
    }
    if (got == 0) {
        close_conn(fd);  /* EOF */
        return;
    }
    size_t len = c->tail_len + (size_t)got;

    size_t count = 0, heads_end = 0;
    for (const char *p = data, *end = data + len;
         (p = memmem(p, (size_t)(end - p), "\r\n\r\n", 4)) != NULL; p += 4) {
        count++;
        heads_end = (size_t)(p + 4 - data);
    }
    bool wants_close = count && asks_to_close(data, heads_end);

    size_t tail_len = len - heads_end;
    if (tail_len > MAX_HEAD) {
        close_conn(fd);  /* a request head this long is not one: give up on the peer */
        return;
    }
    if (tail_len && !wants_close) {
        if (!c->tail)
            c->tail = xrealloc(NULL, MAX_HEAD + READ_SIZE);
        memmove(c->tail, data + heads_end, tail_len);
    }
    c->tail_len = wants_close ? 0 : tail_len;
    if (!count)
        return;
    if (!send_or_keep(fd, responses(count), count * RESPONSE_LEN))
        return;
    if (wants_close) {
        if (c->out)
            c->closing = true;  /* drain() closes it once the answers are out */
        else
            close_conn(fd);
    }
}

static void accept_all(int lfd) {
    static const int one = 1;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;  /* EAGAIN: all taken; EMFILE and the like: leave it queued */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        track(fd);
        watch(fd, EPOLL_CTL_ADD, EPOLLIN);
    }
}

static int listen_on(int port) {
    static const int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {
        .sin_family = AF_INET,
        .sin_port = htons((unsigned short)port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(fd, BACKLOG) < 0)
        die("listen");
    return fd;
}

/* SIGTERM and SIGINT, blocked, delivered as a readable fd in the epoll set: no race
 * between checking a flag and sleeping in epoll_wait. */
static int termination_fd(void) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        die("sigprocmask");
    int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        die("signalfd");
    return fd;
}

int main(int argc, char **argv) {
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : -1;
    if (argc != 2 || *end || port < 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT  (0-65535)\n", argv[0]);
        return 2;
    }
    raise_nofile();
    int sigfd = termination_fd();
    int lfd = listen_on((int)port);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    watch(lfd, EPOLL_CTL_ADD, EPOLLIN);
    watch(sigfd, EPOLL_CTL_ADD, EPOLLIN);
    printf("READY\n");
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd)
                accept_all(lfd);
            else if (fd == sigfd)
                goto stop;
            else if (conns[fd].out)
                drain(fd);  /* registered for EPOLLOUT only while bytes are pending */
            else
                serve(fd);
        }
    }
stop:
    /* Exiting closes every connection; nothing is owed to a peer that is being stopped. */
    close(lfd);
    return 0;
}
