"""`hotline agi` (the FastAGI server alone) and `hotline callback` (call a customer back)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from hotline.cli import Context, pass_context


@click.command()
@pass_context
def agi(ctx: Context) -> None:
    """Run the FastAGI server alone (Asterisk's AGI(agi://host:port/hotline))."""
    from ivr.asterisk.fastagi import FastAgiServer
    from ivr.asterisk.session import BACKEND, make_handler
    from ivr.livecalls import LiveCallStore

    settings = ctx.settings
    ctx.db.upgrade()
    store = LiveCallStore(ctx.db, settings, BACKEND)  # the call log written behind the calls
    handler = make_handler(store, settings)

    async def main() -> None:
        server = FastAgiServer(handler, settings.agi_host, settings.agi_port)
        port = await server.start()
        click.echo(
            f"hotline: FastAGI on agi://{settings.agi_host}:{port}/hotline (data in {settings.data_dir})"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop(grace=10)
        store.close()
        click.echo("hotline: stopped")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@click.command()
@click.argument("number")
@click.option("--extension", required=True, help="The engineer's phone, e.g. PJSIP/101 (rung first).")
@pass_context
def callback(ctx: Context, number: str, extension: str) -> None:
    """Call a request's customer back: ring the engineer's phone, then the customer's."""
    from ivr.asterisk.callback import call_back

    ctx.db.upgrade()
    done = call_back(ctx.settings, ctx.db, number, extension, actor="cli")
    click.echo(f"заявка {done.request_number}: {extension} ответил, вызываем {done.customer_number}")


def register(group: click.Group) -> None:
    """Add the Asterisk commands to `hotline`."""
    group.add_command(agi)
    group.add_command(callback)
