"""The `hotline` command's entry point, and the client of the warm helper `serve` runs.

A request or user command that imports SQLAlchemy and the models cannot start in
under 0.3 s (`import sqlalchemy.orm` alone takes about that; docs/performance.md).
So, as nailgun, dmypy and multiprocessing's forkserver do, `hotline serve` runs a
small single-threaded helper (`hotline.warmhelper`) that has imported the CLI and the
warm commands' modules but opened no database, listening on `cli.sock` in the data
dir's folder of this host, `run/<host>/` (mode 0600). This module (the `hotline`
executable) imports only os, socket, sys and signal. For a warm command it connects
and sends its argv, cwd, environment, stdio encodings and its stdin/stdout/stderr
(SCM_RIGHTS), then waits. The helper checks the peer's uid (SO_PEERCRED), the code
version and that both see the same socket, working directory and pids, and forks a
child that runs `hotline.cli.main` on the passed descriptors, in the client's cwd
and environment and in a session of its own (no controlling terminal: a password
prompt reads the passed terminal as an in-process one reads /dev/tty). In every
other case (no socket, a stale one, a refusal, another code version) the command
runs in-process exactly as before: nothing has run yet.

Messages: the client sends a 4-byte length and the NUL-separated request (with the
three descriptors on its first bytes); the helper answers `pid N` (the child, to
which the client forwards SIGINT, SIGTERM and SIGHUP) or `cold` (run it yourself),
then `exit N`, written by the child when it ends and by the helper when it reaps it
(N negative: killed by that signal): the client ends with the first one's status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys

#: Commands that may run in the helper: short ones that read or write the database.
#: `serve`, `worker`, `agi`, `mail` and the rest run for long or own a terminal, a port
#: or a child process of their own: they stay in the operator's process. `db upgrade`
#: stays too: it imports Alembic, which the helper does not hold, and runs rarely.
WARM_COMMANDS = frozenset({"request", "user"})
SOCKET_NAME = "cli.sock"
MAGIC = b"hotline-warm-1"
MAX_REQUEST = 1 << 20  # argv and environment; a larger one is refused (the client runs it cold)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    """The `hotline` executable: a warm command goes to the helper when there is one."""
    args = sys.argv[1:]
    code = run_warm(args)
    if code is not None:
        exit_with(code)
    run_cold(args)


def is_warm(args: list[str]) -> bool:
    """Whether this command may run in the helper."""
    return bool(args) and args[0] in WARM_COMMANDS


def run_cold(args: list[str]) -> None:
    """Run the command in this process."""
    import gc

    # Importing SQLAlchemy and the models makes only objects that live as long as the
    # process: the ~130 cyclic collections it would trigger (some 40 % of the models'
    # import time) find nothing to free.
    gc.disable()
    from hotline.cli import main as cli_main

    gc.freeze()
    gc.enable()
    cli_main(args)


def run_warm(args: list[str]) -> int | None:
    """The exit status of the command run by the helper; None when it must run here."""
    try:
        path = socket_path(os.environ, os.getcwd()) if is_warm(args) else None
    except OSError:  # the working directory was removed: in-process says what is wrong
        path = None
    if path is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    replies = sock.makefile("rb")
    pending: list[int] = []
    child = 0

    def forward(signum: int, _frame: object) -> None:
        if not child:
            pending.append(signum)
            return
        with contextlib.suppress(OSError):  # it has just ended
            os.kill(child, signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        try:
            sock.connect(path)
            body = encode_request(args, path)
            header = len(body).to_bytes(4, "big")
            socket.send_fds(sock, [header], [0, 1, 2])
            sock.sendall(body)
            first = replies.readline()
        except OSError:
            first = b""
        if not first.startswith(b"pid "):
            if pending:  # interrupted before anything ran
                return 130
            return None
        child = int(first[4:])
        for signum in pending:
            forward(signum, None)
        try:
            last = replies.readline()
        except OSError:
            last = b""
        if not last.startswith(b"exit "):
            sys.stderr.write("error: помощник `hotline serve` остановился, не дождавшись конца команды\n")
            return 1
        return int(last[5:])
    finally:
        replies.close()
        sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_with(code: int) -> None:
    """End this process as the command's process ended: its status, or its signal."""
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    sys.exit(code)


def socket_path(env: os._Environ[str] | dict[str, str], cwd: str) -> str | None:
    """Where the helper of this data dir listens (as `load_settings` finds the data dir)."""
    data_dir = env.get("HOTLINE_DATA_DIR")
    if data_dir is None:
        named = env.get("HOTLINE_ENV_FILE")  # as load_settings: that file instead of ./.env
        data_dir = _dotenv_data_dir(os.path.join(cwd, named or ".env"), named is not None)
    if data_dir is None:
        return None
    return os.path.join(cwd, data_dir, "run", _host_name(), SOCKET_NAME)


def _host_name() -> str:
    """hotline.settings.host_name, without importing the settings (a test keeps them equal)."""
    name = "".join(c if c.isalnum() or c in ".-_" else "_" for c in socket.gethostname())
    return name.strip(".")[:40] or "localhost"


def _dotenv_data_dir(path: str, named: bool = False) -> str | None:
    """HOTLINE_DATA_DIR from a `.env` file when it is written plainly; `./var` without one.

    A value this cannot read for sure (quotes, expansions) gives None: the command then
    runs in-process, where python-dotenv reads it.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None if named else "var"  # a named file that is not there: in-process says so
    except (OSError, UnicodeDecodeError):
        return None
    found = "var"
    for line in lines:
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and name.strip() == "HOTLINE_DATA_DIR":
            value = value.strip()
            if len(value) > 2 and value[0] == value[-1] == '"':  # "…" as in hotline.env.example
                value = value[1:-1]
            if not value or any(c in value for c in "\"'$#\\ "):
                return None
            found = value
    return found


def code_version() -> int:
    """A number that changes whenever the code a command would run may have changed.

    The inode, mtime and size of every file and folder of this package, and of every
    import folder after the first (site-packages changes on any install or upgrade),
    and the interpreter's version. Only integers: `hash` of a tuple of them is the
    same in every process (strings' hashes are salted per process).
    """
    stamps: list[int] = [sys.hexversion]
    _stamp_tree(PACKAGE_DIR, stamps)
    for entry in sys.path[1:]:
        try:
            st = os.stat(entry or ".")
        except OSError:
            continue
        stamps += (st.st_ino, st.st_mtime_ns)
    return hash(tuple(stamps))


def _stamp_tree(path: str, stamps: list[int]) -> None:
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name == "__pycache__":
            continue
        st = entry.stat(follow_symlinks=False)
        stamps += (st.st_ino, st.st_mtime_ns, st.st_size)
        if entry.is_dir(follow_symlinks=False):
            _stamp_tree(entry.path, stamps)


def pid_namespace() -> bytes:
    """This process's pid namespace: a helper in another one could not be sent signals."""
    try:
        return os.readlink("/proc/self/ns/pid").encode()
    except OSError:
        return b"?"


def file_identity(path: str | bytes) -> bytes:
    """Which file `path` is (device and inode), to tell that two processes see the same one."""
    try:
        st = os.stat(path)
    except OSError:
        return b"?"
    return f"{st.st_dev}:{st.st_ino}".encode()


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def encode_request(args: list[str], path: str) -> bytes:
    """What the client tells the helper, NUL-separated (no argv or environ item holds a NUL).

    Besides the command: the code version, and the socket and the working directory as
    files, so that a helper that sees other files there (a service with a private /tmp,
    a container) or other pids lets the client run the command itself.
    """
    streams = (sys.stdin, sys.stdout, sys.stderr)
    fields = [
        MAGIC,
        str(code_version()).encode(),
        pid_namespace(),
        file_identity(path),
        file_identity("."),
        *(f"{getattr(s, 'encoding', '')}:{getattr(s, 'errors', '')}".encode() for s in streams),
        str(_umask()).encode(),
        os.getcwdb(),
        str(len(args)).encode(),
        *(os.fsencode(a) for a in args),
        *(k + b"=" + v for k, v in os.environb.items()),
    ]
    return b"\0".join(fields)
