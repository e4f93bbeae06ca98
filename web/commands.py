"""`hotline serve`: the whole service in one process on embedded defaults."""

from __future__ import annotations

import click

from hotline.cli import Context, pass_context


@click.command()
@click.option("--threads", default=16, show_default=True, help="HTTP worker threads.")
@pass_context
def serve(ctx: Context, threads: int) -> None:
    """Run the service: dashboard and webhooks over HTTP, and the background parts."""
    from waitress import serve as waitress_serve

    from web import create_app

    settings = ctx.settings
    ctx.db.upgrade()
    app = create_app(settings=settings, db=ctx.db)
    click.echo(
        f"hotline: HTTP on http://{settings.http_host}:{settings.http_port}/ (data in {settings.data_dir})"
    )
    waitress_serve(app, host=settings.http_host, port=settings.http_port, threads=threads, ident="hotline")


def register(group: click.Group) -> None:
    """Add the web service's commands to `hotline`."""
    group.add_command(serve)
