"""`hotline serve`: the whole service in one process on embedded defaults.

Besides HTTP, `serve` runs the background services that other packages register in
the `hotline.services` entry-point group (FastAGI server, AMI listener, transcription
worker, mailbox poller). Each entry is a factory `make(settings, db) -> Service | None`
that returns None when its part is not configured (no AMI URL, no mailbox).

HTTP runs in gunicorn's gthread workers (one per core by default, `--workers N`),
started as a child of this one (the services stay here, once; FastAGI starts worker
processes of its own, `ivr.asterisk.processes`), so that webhooks use
every core instead of one interpreter lock, and Twilio's Media Streams (WebSockets)
get their socket. This process binds the port and hands it over. The gunicorn arbiter
dies with this process however it ends (the kernel's parent-death signal, set with
prctl): a `kill -9` of `serve` never leaves HTTP answering without the services, nor
the port taken for the next start. Its workers leave when their arbiter does.

At start, temporary files a crash left in the data dir are removed, and the process
creates files readable by its owner and group only (umask 027).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from hotline.cli import Context, pass_context
from hotline.services import Service, load_services, settle_process, usable_cores
from hotline.storage import remove_temporary_files

if TYPE_CHECKING:
    from hotline.settings import Settings

#: Few threads per worker answer webhooks faster than many: they wait less on each
#: other for the interpreter lock (docs/performance.md).
THREADS = 4
#: A worker holds at most this many connections a thread (gunicorn's worker_connections);
#: then it stops accepting and the other workers take the new ones. Without a cap a burst
#: of keep-alive connections went to whichever worker was on a core when it came (31 of
#: 32 to one in the webhook benchmark) and queued behind its threads while the other
#: idled. A worker holding many idle ones answers with `Connection: close`.
CONNECTIONS_PER_THREAD = 4
UMASK = 0o027  # nothing the service writes (recordings, e-mail, the database) is world-readable
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def service_settings(settings: Settings) -> Settings:
    """The settings the background services get: with HOTLINE_AMI_LISTENER=false they see
    no AMI URL, so this host keeps no AMI connection (only one per PBX may log its events
    and place the call-backs), while the dashboard and `hotline callback` still queue
    call-backs with the URL set (README, "Scaling out")."""
    return settings if settings.ami_listener else dataclasses.replace(settings, ami_url=None)


def start_services(ctx: Context) -> list[Service]:
    """Start the background services; one that cannot start (a port in use) stops them all."""
    started: list[Service] = []
    for service in load_services(service_settings(ctx.settings), ctx.db):
        try:
            service.start()
        except OSError as exc:
            for other in reversed(started):
                other.stop()
            raise click.ClickException(f"{service.name} cannot start: {exc}") from exc
        started.append(service)
        # A service may say something else than "started" (transcription disabled), or nothing.
        line = getattr(service, "started_line", None)
        line = f"{service.name} started" if line is None else line
        if line:
            click.echo(f"hotline: {line}")
    return started


@click.command()
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="HTTP worker processes (gunicorn)  [default: one per core]",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    help=f"HTTP threads per worker  [default: {THREADS}, plus one per live stream with HOTLINE_LIVE_SPEECH]",
)
@pass_context
def serve(ctx: Context, workers: int | None, threads: int | None) -> None:
    """Run the service: dashboard and webhooks over HTTP, and the background parts."""
    settings = ctx.settings
    os.umask(UMASK)
    ctx.db.upgrade()
    removed = remove_temporary_files(settings.data_dir)
    if removed:
        click.echo(f"hotline: removed {removed} temporary files left by a crash")
    if threads is None:
        threads = THREADS
        if settings.live_speech:  # a Media Stream holds its thread for the whole recording
            from ivr.twilio.media import MAX_STREAMS

            threads += MAX_STREAMS
    _serve_gunicorn(ctx, threads, workers or usable_cores())


def gunicorn_command(app: str, bind: str, workers: int, threads: int, *extra: str) -> list[str]:
    """How `serve` runs HTTP (the webhook benchmark runs its bare app the same way)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class=gthread",
        f"--workers={workers}",
        f"--threads={threads}",
        f"--worker-connections={threads * CONNECTIONS_PER_THREAD}",
        f"--bind={bind}",
        "--graceful-timeout=20",
        "--log-level=warning",  # `serve` says itself where it listens; a port in use is its one line
        "--config=python:web.gunicorn_conf",
        *extra,
        app,
    ]


def _serve_gunicorn(ctx: Context, threads: int, workers: int) -> None:
    # The port is taken here, so that a port in use is one clear line before anything
    # starts; gunicorn gets the socket (fd://) and is the only one holding it.
    settings = ctx.settings
    try:
        family = socket.AF_INET6 if ":" in settings.http_host else socket.AF_INET
        listener = socket.create_server((settings.http_host, settings.http_port), family=family, backlog=2048)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen for HTTP on {settings.http_host}:{settings.http_port}: {exc.strerror or exc}"
        ) from exc
    # gunicorn is a fresh child process (settings from the same environment), so no
    # worker is forked from a process that already runs the services' threads.
    command = gunicorn_command("web:create_app()", f"fd://{listener.fileno()}", workers, threads)
    with listener:
        http = subprocess.Popen(  # noqa: PLW1509 - see _die_with
            command, pass_fds=(listener.fileno(),), preexec_fn=_die_with(os.getpid())
        )

    def shutdown(signum: int, _frame: object) -> None:
        http.terminate()  # gunicorn's graceful stop

    # Also while the services start (FastAGI's workers take a few seconds): they are then
    # stopped as soon as they have started.
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    try:
        services = start_services(ctx)
    except click.ClickException:
        http.terminate()
        http.wait()
        raise
    settle_process()
    click.echo(
        f"hotline: HTTP on http://{settings.http_host}:{settings.http_port}/ "
        f"({workers} gunicorn workers x {threads} threads, data in {settings.data_dir})"
    )
    try:
        code = http.wait()
    finally:
        for service in reversed(services):
            service.stop()
        click.echo("hotline: stopped")
    if code not in (0, -signal.SIGTERM):
        raise click.ClickException(f"gunicorn exited with status {code}")


def _die_with(parent: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGINT (gunicorn's quick stop) when `parent` dies.

    Only prctl, getppid and kill run between fork and exec, which is what makes
    preexec_fn safe enough here (the services' threads start after the fork).
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal would come
            os.kill(os.getpid(), signal.SIGINT)

    return preexec


def register(group: click.Group) -> None:
    """Add the web service's commands to `hotline`."""
    group.add_command(serve)
