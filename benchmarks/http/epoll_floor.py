"""HTTP/1.1 hello-world server on a bare level-triggered ``select.epoll`` loop: the floor.

Usage: python epoll_floor.py PORT

The same framing as the other servers (``_httpcommon.split_requests``) with no
framework around it: recv() up to 64 KiB, answer every complete request, keep
the unterminated tail. A response send() that comes up short is kept and the
connection switches to EPOLLOUT until it drains, reading nothing meanwhile.
"""

from __future__ import annotations

import select
import socket

from _httpcommon import BACKLOG, HOST, MAX_HEAD, RESPONSE, parse_args, prepare, ready
from _httpcommon import split_requests as split

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT


def serve(port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, port))
    listener.listen(BACKLOG)
    listener.setblocking(False)
    lfd = listener.fileno()

    ep = select.epoll()
    ep.register(lfd, EPOLLIN)
    poll, modify, register = ep.poll, ep.modify, ep.register
    socks: dict[int, socket.socket] = {}
    tails: dict[int, bytes] = {}  # fd -> start of a request not yet complete
    pending: dict[int, memoryview] = {}  # fd -> response bytes not yet sent
    closing: set[int] = set()  # close once pending output is sent

    def close(fd: int) -> None:
        ep.unregister(fd)
        tails.pop(fd, None)
        pending.pop(fd, None)
        closing.discard(fd)
        socks.pop(fd).close()

    ready()
    while True:
        for fd, _events in poll():
            if fd == lfd:
                while True:
                    try:
                        conn, _ = listener.accept()
                    except OSError:  # BlockingIOError, or EMFILE: leave it queued
                        break
                    conn.setblocking(False)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    cfd = conn.fileno()
                    socks[cfd] = conn
                    register(cfd, EPOLLIN)
                continue

            sock = socks[fd]
            if fd in pending:  # registered for EPOLLOUT only
                buf = pending[fd]
                try:
                    sent = sock.send(buf)
                except BlockingIOError:
                    continue
                except OSError:
                    close(fd)
                    continue
                if sent < len(buf):
                    pending[fd] = buf[sent:]
                elif fd in closing:
                    close(fd)
                else:
                    del pending[fd]
                    modify(fd, EPOLLIN)
                continue

            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                close(fd)
                continue
            if not data:
                close(fd)
                continue
            if fd in tails:
                data = tails.pop(fd) + data
            count, wants_close, tail = split(data)
            if tail:
                if len(tail) > MAX_HEAD:
                    close(fd)
                    continue
                tails[fd] = tail
            if not count:
                continue
            out = RESPONSE * count if count > 1 else RESPONSE
            try:
                sent = sock.send(out)
            except BlockingIOError:
                sent = 0
            except OSError:
                close(fd)
                continue
            if sent < len(out):
                pending[fd] = memoryview(out)[sent:]
                modify(fd, EPOLLOUT)
                if wants_close:
                    closing.add(fd)
            elif wants_close:
                close(fd)


if __name__ == "__main__":
    args = parse_args(__doc__)
    prepare()
    serve(args.port)
