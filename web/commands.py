"""`hotline serve`: the whole service in one process on embedded defaults.

Besides HTTP, `serve` runs the background services that other packages register in
the `hotline.services` entry-point group (FastAGI server, AMI listener, transcription
worker, mailbox poller). Each entry is a factory `make(settings, db) -> Service | None`
that returns None when its part is not configured (no AMI URL, no mailbox).
"""

from __future__ import annotations

import signal
import threading
from importlib.metadata import entry_points
from typing import Protocol

import click

from hotline.cli import Context, pass_context


class Service(Protocol):
    """A background part of `hotline serve`."""

    name: str

    def start(self) -> None:
        """Start working in background threads; return at once."""

    def stop(self) -> None:
        """Stop and release sockets and threads (called once, at shutdown)."""


def load_services(ctx: Context) -> list[Service]:
    services: list[Service] = []
    for ep in sorted(entry_points(group="hotline.services"), key=lambda e: e.name):
        service = ep.load()(ctx.settings, ctx.db)
        if service is not None:
            services.append(service)
    return services


@click.command()
@click.option("--threads", default=16, show_default=True, help="HTTP worker threads.")
@pass_context
def serve(ctx: Context, threads: int) -> None:
    """Run the service: dashboard and webhooks over HTTP, and the background parts."""
    from waitress.server import create_server

    from web import create_app

    settings = ctx.settings
    ctx.db.upgrade()
    app = create_app(settings=settings, db=ctx.db)
    server = create_server(
        app, host=settings.http_host, port=settings.http_port, threads=threads, ident="hotline"
    )
    services = load_services(ctx)
    for service in services:
        service.start()
        click.echo(f"hotline: {service.name} started")
    click.echo(
        f"hotline: HTTP on http://{settings.http_host}:{server.effective_port}/ (data in {settings.data_dir})"
    )

    stopping = threading.Event()

    def shutdown(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            server.close()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    try:
        server.run()
    except OSError:
        if not stopping.is_set():
            raise
    finally:
        for service in reversed(services):
            service.stop()
        click.echo("hotline: stopped")


def register(group: click.Group) -> None:
    """Add the web service's commands to `hotline`."""
    group.add_command(serve)
