"""The warm helper of the `hotline` command (the protocol is in `hotline.warmstart`).

`hotline serve` starts it as one of its services (`make_service`); it runs as
`python -m hotline.warmhelper SOCKET PARENT_PID`, dies with `serve` (the kernel's
parent-death signal) and removes its socket when it stops. One thread, no database:
it forks a child per command, which is the only process that opens one.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from typing import TYPE_CHECKING, NamedTuple

from hotline.warmstart import (
    MAGIC,
    MAX_REQUEST,
    SOCKET_NAME,
    code_version,
    file_identity,
    is_warm,
    pid_namespace,
)

if TYPE_CHECKING:
    from hotline.db import Database
    from hotline.settings import Settings

PR_SET_PDEATHSIG = 1  # linux/prctl.h
READ_TIMEOUT = 2.0  # a client that connects and sends nothing holds the helper this long at most


class Refused(Exception):
    """The client must run the command itself."""


def peer_allowed(creds: tuple[int, int, int]) -> bool:
    """Only the helper's own user is served (`creds` is SO_PEERCRED's pid, uid, gid)."""
    return creds[1] == os.getuid()


def preload() -> None:
    """Import what the warm commands use, and configure the models, opening nothing."""
    import getpass  # noqa: F401 - password prompts
    import importlib.util

    import click
    import dotenv  # noqa: F401 - load_settings reads .env
    import phonenumbers  # noqa: F401
    from sqlalchemy.orm import configure_mappers

    import hotline.settings  # noqa: F401
    import hotline.users.cli  # noqa: F401
    from hotline.cli import cli
    from hotline.db import head_revision

    with click.Context(cli) as ctx:
        cli.get_command(ctx, "user")  # resolves its entry point once, for every child
    configure_mappers()
    head_revision()  # read from the migration files (part of the code version), once
    for dialect in ("sqlalchemy.dialects.sqlite.pysqlite", "sqlalchemy.dialects.postgresql.psycopg"):
        __import__(dialect)
    if importlib.util.find_spec("psycopg") is not None:
        import psycopg  # noqa: F401


def serve_helper(path: str, parent: int) -> None:
    """Listen on `path` until `parent` ends or SIGTERM comes; fork a child per command."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # `serve` died before prctl: no signal would come
        return
    for fd in (0, 1, 2):  # a closed one would be taken by the socket, then by a client's stdio
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)
    gc.disable()
    preload()
    version = code_version()
    gc.freeze()  # children share the imported modules' pages instead of copying them
    gc.enable()
    listener = _listen(path)
    if listener is None:
        return
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGCHLD, lambda signum, _frame: None)
    children: dict[int, socket.socket] = {}
    listening = os.stat(path)  # to remove only our own socket file when we stop
    try:
        while not stopping:
            ready, _, _ = select.select([listener.fileno(), wake_r], [], [])
            if wake_r in ready:
                os.read(wake_r, 512)
                _reap(children)
            if listener.fileno() in ready and not stopping:
                own = (listener.fileno(), wake_r, wake_w, *(c.fileno() for c in children.values()))
                _accept(listener, path, version, children, own)
    finally:
        listener.close()
        _remove_own_socket(path, listening)
        while children:  # commands in progress end as they would (their clients wait for them)
            _reap(children, block=True)


def _listen(path: str) -> socket.socket | None:
    # A socket already there is a killed helper's, or one of a `serve` that has stopped
    # and waits for its last commands: the new one takes over (the old one removes only
    # its own file when it ends).
    with contextlib.suppress(OSError):  # what is not a socket there makes bind fail below
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # 0600 from the start: no moment when others may connect
    try:
        os.umask(0o027)
        os.makedirs(os.path.dirname(path), exist_ok=True)  # this host's run folder
        os.umask(0o177)
        listener.bind(path)
    except OSError as exc:  # a path too long for a socket (108 bytes), a read-only data dir
        listener.close()
        print(f"hotline: команды будут запускаться без помощника: {path}: {exc}", file=sys.stderr)
        return None
    finally:
        os.umask(old)
    listener.listen(64)
    return listener


def _remove_own_socket(path: str, listening: os.stat_result) -> None:
    try:
        st = os.stat(path)
        if (st.st_ino, st.st_dev) == (listening.st_ino, listening.st_dev):
            os.unlink(path)
    except OSError:
        pass


def _reap(children: dict[int, socket.socket], block: bool = False) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        # The child said how it ended, unless it was killed (or could not write): the client
        # reads the first `exit` line, so saying it again changes nothing.
        with contextlib.suppress(OSError):
            conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
        conn.close()
        if block:
            return


def _accept(
    listener: socket.socket,
    path: str,
    version: int,
    children: dict[int, socket.socket],
    own_fds: tuple[int, ...],
) -> None:
    try:
        conn, _ = listener.accept()
    except OSError:
        return
    fds: list[int] = []
    try:
        creds = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if not peer_allowed(creds):
            raise Refused
        conn.settimeout(READ_TIMEOUT)
        fds, request = _receive(conn)
        command = _decode(request, version, path)
        conn.settimeout(None)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(conn, fds, command, own_fds)
        conn.sendall(f"pid {pid}\n".encode())
        children[pid] = conn
    except (Refused, OSError, ValueError):
        with contextlib.suppress(OSError):
            conn.sendall(b"cold\n")
        conn.close()
    finally:
        for fd in fds:
            os.close(fd)


def _receive(conn: socket.socket) -> tuple[list[int], bytes]:
    data, fds, flags, _ = socket.recv_fds(conn, 65536, 3)
    if len(fds) != 3 or flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise Refused
    if len(data) < 4:
        data += _read_exactly(conn, 4 - len(data))
    length = int.from_bytes(data[:4], "big")
    if length > MAX_REQUEST:
        raise Refused
    body = data[4:]
    if len(body) < length:
        body += _read_exactly(conn, length - len(body))
    return fds, body


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = conn.recv(min(n, 65536))
        if not chunk:
            raise Refused
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class Command(NamedTuple):
    """A command as the client would have run it."""

    args: list[str]
    cwd: bytes
    env: dict[bytes, bytes]
    encodings: list[str]  # stdin, stdout, stderr: "encoding:errors"
    umask: int


def _decode(request: bytes, version: int, path: str) -> Command:
    """The client's command; Refused if this helper must not run it."""
    fields = request.split(b"\0")
    if fields[:4] != [MAGIC, str(version).encode(), pid_namespace(), file_identity(path)]:
        raise Refused  # another code version, or another view of the files or the pids
    cwd = fields[9]
    if file_identity(cwd) != fields[4]:
        raise Refused
    n = int(fields[10])
    args = [os.fsdecode(a) for a in fields[11 : 11 + n]]
    if not is_warm(args):
        raise Refused
    env = dict(item.partition(b"=")[::2] for item in fields[11 + n :] if b"=" in item)
    return Command(args, cwd, env, [f.decode() for f in fields[5:8]], int(fields[8]))


def _run_child(conn: socket.socket, fds: list[int], command: Command, own_fds: tuple[int, ...]) -> None:
    """The forked child: become the client's command process, run it, report, exit."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in own_fds:
            os.close(fd)
        os.setsid()  # no controlling terminal: getpass then prompts on the passed stdin/stderr
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(command.cwd)
        os.umask(command.umask)  # files it makes (a new SQLite WAL, the secret key) as the client's
        os.environb.clear()
        os.environb.update(command.env)
        time.tzset()
        sys.stdin, sys.stdout, sys.stderr = (
            _stream(fd, mode, spec)
            for fd, mode, spec in zip((0, 1, 2), "rww", command.encodings, strict=True)
        )
        sys.argv = ["hotline", *command.args]
        code = _run_command(command.args)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed pipe: nothing more can be said
                stream.flush()
        try:
            conn.sendall(f"exit {code}\n".encode())
        finally:
            os._exit(code)


def _run_command(args: list[str]) -> int:
    """`hotline.cli.main` on `args`, with the status the interpreter would exit with."""
    from hotline.cli import main

    try:
        main(args)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - as the interpreter: the traceback, status 1
        traceback.print_exc()
        return 1
    return 0


def _stream(fd: int, mode: str, spec: str) -> io.TextIOWrapper:
    """A standard stream on `fd` as the client's interpreter made it."""
    encoding, _, errors = spec.partition(":")
    tty = os.isatty(fd)
    if mode == "r":
        return io.TextIOWrapper(open(fd, "rb", closefd=False), encoding or None, errors or None)  # noqa: SIM115
    return io.TextIOWrapper(
        open(fd, "wb", closefd=False),  # noqa: SIM115
        encoding or None,
        errors or None,
        line_buffering=tty or fd == 2,
    )


class WarmHelper:
    """`hotline serve`'s service that runs the warm helper as its child process."""

    name = "warm CLI helper"

    def __init__(self, path: str):
        self.path = path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hotline.warmhelper", self.path, str(os.getpid())]
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def make_service(settings: Settings, db: Database) -> WarmHelper | None:
    """The warm helper of `serve`'s data dir (the `hotline.services` entry point)."""
    if not sys.platform.startswith("linux"):  # SO_PEERCRED, the parent-death signal
        return None
    try:
        settings.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"hotline: команды будут запускаться без помощника: {settings.run_dir}: {exc}", file=sys.stderr)
        return None
    return WarmHelper(str(settings.run_dir / SOCKET_NAME))


if __name__ == "__main__":
    serve_helper(sys.argv[1], int(sys.argv[2]))
