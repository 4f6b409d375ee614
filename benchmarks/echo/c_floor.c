/* Echo server in C on a bare level-triggered epoll loop: the floor under every server.
 *
 * Usage: c_floor PORT        (built and started by run.py; prints READY when listening)
 *
 * No framework and no per-message allocation: one loop that accepts, recv()s into a
 * static buffer and send()s the bytes straight back. Every Python server makes the same
 * system calls per round trip (one recv, one send, a fraction of an epoll_wait), so
 * this server's CPU time per round trip is the kernel's share of a round trip on this
 * machine plus next to nothing: a Python framework's ratio against asyncio cannot
 * exceed this server's.
 *
 * If send() takes only part of the data (a 64 KiB message into a full socket buffer),
 * the rest is copied aside and the connection waits for EPOLLOUT instead of EPOLLIN
 * until it drains, so a slow reader never makes the server spin or buffer without
 * bound. SIGTERM and SIGINT arrive through a signalfd in the same epoll set: the server
 * exits with status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BACKLOG 1024
#define MAX_EVENTS 1024
/* asyncio's transports ask for 256 KiB per read; a 64 KiB message then takes one recv(). */
#define READ_SIZE (256 * 1024)

/* Bytes a connection still owes its peer; NULL data: none (it is reading). */
struct pending {
    char *data;
    size_t len;  /* Invariant: len > 0 whenever data != NULL */
};

static char read_buf[READ_SIZE];
static struct pending *conns;  /* indexed by fd */
static size_t conns_len;
static int epfd;

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* Raise the soft open-file limit to the hard one, as the Python servers do. */
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
        conns = realloc(conns, len * sizeof *conns);
        if (!conns)
            die("realloc");
        memset(conns + conns_len, 0, (len - conns_len) * sizeof *conns);
        conns_len = len;
    }
    conns[fd].data = NULL;
    conns[fd].len = 0;
}

static void close_conn(int fd) {
    free(conns[fd].data);
    conns[fd].data = NULL;
    close(fd);  /* closing also removes it from the epoll set */
}

/* Send data[0:len]; keep what the socket did not take and wait for EPOLLOUT.
 * Returns 0, or -1 once the connection is closed. */
static int send_or_keep(int fd, const char *data, size_t len) {
    ssize_t sent = send(fd, data, len, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            close_conn(fd);
            return -1;
        }
        sent = 0;
    }
    if ((size_t)sent == len)
        return 0;
    struct pending *p = &conns[fd];
    p->len = len - (size_t)sent;
    p->data = malloc(p->len);
    if (!p->data)
        die("malloc");
    memcpy(p->data, data + sent, p->len);
    watch(fd, EPOLL_CTL_MOD, EPOLLOUT);
    return 0;
}

/* EPOLLOUT on a connection with pending bytes: send more; back to reading once drained. */
static void drain(int fd) {
    struct pending *p = &conns[fd];
    ssize_t sent = send(fd, p->data, p->len, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            close_conn(fd);
        return;
    }
    if ((size_t)sent < p->len) {
        memmove(p->data, p->data + sent, p->len - (size_t)sent);
        p->len -= (size_t)sent;
        return;
    }
    free(p->data);
    p->data = NULL;
    p->len = 0;
    watch(fd, EPOLL_CTL_MOD, EPOLLIN);
}

static void echo(int fd) {
    ssize_t got = recv(fd, read_buf, sizeof read_buf, 0);
    if (got > 0) {
        send_or_keep(fd, read_buf, (size_t)got);
    } else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close_conn(fd);  /* EOF, or the peer reset the connection */
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
            if (fd == lfd) {
                accept_all(lfd);
            } else if (fd == sigfd) {
                goto stop;
            } else if (conns[fd].data) {
                drain(fd);  /* registered for EPOLLOUT only while bytes are pending */
            } else {
                echo(fd);
            }
        }
    }
stop:
    /* Exiting closes every connection; nothing is owed to a peer that is being stopped. */
    close(lfd);
    return 0;
}
