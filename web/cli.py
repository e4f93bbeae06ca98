"""`hotline serve`: the whole service in one process on embedded defaults.

Besides HTTP, `serve` runs the background services that other packages register in
the `hotline.services` entry-point group (FastAGI server, AMI listener, transcription
worker, mailbox poller). Each entry is a factory `make(settings, db) -> Service | None`
that returns None when its part is not configured (no AMI URL, no mailbox).

HTTP runs in this process on waitress, or with `--workers N` (N > 1) in N gunicorn
worker processes started as a child of this one (the services stay here, once), so
that webhooks use every core instead of one interpreter lock. The gunicorn arbiter
dies with this process however it ends (the kernel's parent-death signal, set with
prctl): a `kill -9` of `serve` never leaves HTTP answering without the services, nor
the port taken for the next start. Its workers leave when their arbiter does.

At start, temporary files a crash left in the data dir are removed, and the process
creates files readable by its owner and group only (umask 027).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

import click

from hotline.cli import Context, pass_context
from hotline.services import Service, load_services
from hotline.storage import remove_temporary_files

UMASK = 0o027  # nothing the service writes (recordings, e-mail, the database) is world-readable
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def start_services(ctx: Context) -> list[Service]:
    """Start the background services; one that cannot start (a port in use) stops them all."""
    started: list[Service] = []
    for service in load_services(ctx.settings, ctx.db):
        try:
            service.start()
        except OSError as exc:
            for other in reversed(started):
                other.stop()
            raise click.ClickException(f"{service.name} cannot start: {exc}") from exc
        started.append(service)
        click.echo(f"hotline: {service.name} started")
    return started


@click.command()
@click.option("--threads", default=16, show_default=True, help="HTTP worker threads (per process).")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="HTTP worker processes; more than 1 runs HTTP on gunicorn (about one per core).",
)
@pass_context
def serve(ctx: Context, threads: int, workers: int) -> None:
    """Run the service: dashboard and webhooks over HTTP, and the background parts."""
    settings = ctx.settings
    os.umask(UMASK)
    ctx.db.upgrade()
    removed = remove_temporary_files(settings.data_dir)
    if removed:
        click.echo(f"hotline: removed {removed} temporary files left by a crash")
    if workers > 1:
        _serve_gunicorn(ctx, threads, workers)
        return
    from waitress.server import create_server

    from web import create_app

    app = create_app(settings=settings, db=ctx.db)
    try:
        # poll(), not select(): the FastAGI server shares this process, and select() fails
        # once a descriptor is numbered past 1023 (a flood of idle AGI connections).
        server = create_server(
            app,
            host=settings.http_host,
            port=settings.http_port,
            threads=threads,
            ident="hotline",
            asyncore_use_poll=True,
        )
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen for HTTP on {settings.http_host}:{settings.http_port}: {exc.strerror or exc}"
        ) from exc
    services = start_services(ctx)
    click.echo(
        f"hotline: HTTP on http://{settings.http_host}:{server.effective_port}/ (data in {settings.data_dir})"
    )

    stopping = threading.Event()

    def shutdown(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            # Waitress's own way out of run(): it lets its worker threads finish first
            # (closing the server here races a worker still pulling its trigger).
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    except OSError:
        if not stopping.is_set():
            raise
    finally:
        for service in reversed(services):
            service.stop()
        click.echo("hotline: stopped")


def gunicorn_command(app: str, bind: str, workers: int, threads: int, *extra: str) -> list[str]:
    """How `serve --workers N` runs HTTP (the webhook benchmark runs its bare app the same way)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class=gthread",
        f"--workers={workers}",
        f"--threads={threads}",
        f"--bind={bind}",
        "--graceful-timeout=20",
        *extra,
        app,
    ]


def _serve_gunicorn(ctx: Context, threads: int, workers: int) -> None:
    # gunicorn is a fresh child process (settings from the same environment), so no
    # worker is forked from a process that already runs the services' threads.
    settings = ctx.settings
    command = gunicorn_command(
        "web:create_app()", f"{settings.http_host}:{settings.http_port}", workers, threads
    )
    http = subprocess.Popen(command, preexec_fn=_die_with(os.getpid()))  # noqa: PLW1509 - see _die_with
    try:
        services = start_services(ctx)
    except click.ClickException:
        http.terminate()
        http.wait()
        raise
    click.echo(
        f"hotline: HTTP on http://{settings.http_host}:{settings.http_port}/ "
        f"({workers} gunicorn workers, data in {settings.data_dir})"
    )

    def shutdown(signum: int, _frame: object) -> None:
        http.terminate()  # gunicorn's graceful stop

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
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
