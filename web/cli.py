"""`hotline serve`: the whole service in one process on embedded defaults.

Besides HTTP, `serve` runs the background services that other packages register in
the `hotline.services` entry-point group (FastAGI server, AMI listener, transcription
worker, mailbox poller). Each entry is a factory `make(settings, db) -> Service | None`
that returns None when its part is not configured (no AMI URL, no mailbox).

HTTP runs in this process on waitress, or with `--workers N` (N > 1) in N gunicorn
worker processes started as a child of this one (the services stay here, once), so
that webhooks use every core instead of one interpreter lock.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import click

from hotline.cli import Context, pass_context
from hotline.services import Service, load_services


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
    ctx.db.upgrade()
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
    http = subprocess.Popen(command)
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


def register(group: click.Group) -> None:
    """Add the web service's commands to `hotline`."""
    group.add_command(serve)
