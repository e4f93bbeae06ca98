"""A TCP proxy in front of a database server that a test can cut and restore.

`cut()` closes every connection going through it and stops listening, so new
connections are refused (what a client sees when the server is down or restarting);
`freeze()` keeps every connection open but forwards nothing (a server or a network that
hangs: no error, no answer); `restore()` listens again on the same port and forwards
what it held. Nothing about the database is faked: the
client speaks its real protocol to the real server through the proxy.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading


class DbProxy:
    """Forwards 127.0.0.1:<port> (or the Unix socket `listen_path`) to `upstream` (a host
    and port, or a Unix socket's path) until cut."""

    def __init__(self, upstream: tuple[str, int] | str, listen_path: str | None = None):
        self.upstream = upstream
        self.listen_path = listen_path
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._flowing = threading.Event()
        self.port = 0
        self.restore()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def restore(self) -> None:
        """Listen (again, on the same port) and forward new connections."""
        self._flowing.set()
        with self._lock:
            if self._listener is not None:
                return
            if self.listen_path is not None:
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.listen_path)
                listener.bind(self.listen_path)
            else:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", self.port))
                self.port = listener.getsockname()[1]
            listener.listen(64)
            self._listener = listener
            self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
            self._thread.start()

    def cut(self) -> None:
        """Drop every connection and refuse new ones, like a database that went down."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            # shutdown() wakes the accept() blocked in the other thread; close() alone does not.
            _shutdown(listener)
            listener.close()
        for conn in conns:
            _shutdown(conn)
            conn.close()
        self._flowing.set()  # a frozen pipe wakes to its closed socket and ends
        if self._thread is not None:
            self._thread.join(timeout=5)

    close = cut

    def freeze(self) -> None:
        """Forward nothing more, closing nothing: like a server or a network that hangs."""
        self._flowing.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = _connect(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    client.close()
                    server.close()
                    return
                self._conns |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                target.sendall(data)
        except OSError:
            pass
        # One side ended: end both, so the other side sees the server go away.
        for s in (source, target):
            _shutdown(s)
        with self._lock:
            self._conns -= {source, target}
        source.close()  # the other pipe closes `target`, its own source


def _shutdown(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)


def _connect(upstream: tuple[str, int] | str) -> socket.socket:
    if isinstance(upstream, tuple):
        server = socket.create_connection(upstream, timeout=5)
        server.settimeout(None)
        return server
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.connect(upstream)
    except OSError:
        server.close()
        raise
    return server
