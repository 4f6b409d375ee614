"""Echo server on a bare level-triggered ``select.epoll`` loop: the pure-Python floor.

Usage: python epoll_floor.py PORT

No framework, no tasks, no callbacks objects: one loop that accepts, recv()s up
to 64 KiB and send()s it straight back. If send() takes only part of the data,
the rest is kept and the connection is switched from EPOLLIN to EPOLLOUT until
it drains, so a slow reader cannot make the server buffer without bound.
"""

from __future__ import annotations

import select
import socket

from _serverlib import BACKLOG, HOST, parse_args, prepare, ready

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
    pending: dict[int, memoryview] = {}  # fd -> bytes not yet sent

    def close(fd: int) -> None:
        ep.unregister(fd)
        pending.pop(fd, None)
        socks.pop(fd).close()

    ready()
    while True:
        for fd, _events in poll():
            if fd == lfd:
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    except OSError:  # e.g. EMFILE: leave it in the backlog
                        break
                    conn.setblocking(False)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    cfd = conn.fileno()
                    socks[cfd] = conn
                    register(cfd, EPOLLIN)
                continue

            sock = socks[fd]
            if fd in pending:  # registered for EPOLLOUT only: finish the old send
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
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                close(fd)
                continue
            if sent < len(data):
                pending[fd] = memoryview(data)[sent:]
                modify(fd, EPOLLOUT)


if __name__ == "__main__":
    args = parse_args(__doc__)
    prepare()
    serve(args.port)
