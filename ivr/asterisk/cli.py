"""`hotline agi` (the FastAGI server alone) and `hotline callback` (call a customer back)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time

import click

from hotline.cli import Context, pass_context


@click.command()
@pass_context
def agi(ctx: Context) -> None:
    """Run the FastAGI server alone (Asterisk's AGI(agi://host:port/hotline))."""
    from ivr.asterisk.fastagi import FastAgiServer, raise_fd_limit
    from ivr.asterisk.service import warn_if_recordings_unwritable
    from ivr.asterisk.session import BACKEND, make_handler
    from ivr.livecalls import LiveCallStore

    settings = ctx.settings
    ctx.db.upgrade()
    warn_if_recordings_unwritable(settings)
    raise_fd_limit()
    store = LiveCallStore(ctx.db, settings, BACKEND)  # the call log written behind the calls
    handler = make_handler(store, settings)
    # What start made (modules, SQLAlchemy's tables, the store) lives as long as the process:
    # frozen, no full collection walks it (33–56 ms each in a burst; docs/performance.md).
    gc.freeze()

    async def main() -> None:
        server = FastAgiServer(
            handler,
            settings.agi_host,
            settings.agi_port,
            max_sessions=settings.agi_max_sessions,
            answer_timeout=settings.agi_answer_timeout,
        )
        try:
            port = await server.start()
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen for FastAGI on {settings.agi_host}:{settings.agi_port}: {exc.strerror or exc}"
            ) from None
        click.echo(
            f"hotline: FastAGI on agi://{settings.agi_host}:{port}/hotline (data in {settings.data_dir})"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        if server.calls:
            click.echo(
                f"hotline: stopping; {server.calls} calls in progress get up to "
                f"{settings.agi_drain_seconds} s to finish (HOTLINE_AGI_DRAIN_SECONDS)"
            )
        await server.stop(grace=settings.agi_drain_seconds)
        store.close()
        click.echo("hotline: stopped")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@click.command()
@click.argument("number")
@click.option("--extension", required=True, help="The engineer's phone, e.g. PJSIP/101 (rung first).")
@click.option("--wait/--no-wait", default=True, help="Wait for the outcome (default) or only queue it.")
@pass_context
def callback(ctx: Context, number: str, extension: str, wait: bool) -> None:
    """Call a request's customer back: ring the engineer's phone, then the customer's.

    The call-back is queued; `hotline serve` with HOTLINE_AMI_URL places it.
    """
    from ivr.asterisk import callback as callbacks

    ctx.db.upgrade()
    with ctx.db.session() as session:
        job = callbacks.queue_call_back(ctx.settings, session, number, extension, actor="cli")
    click.echo(f"заявка {job.request_number}: обратный звонок с {extension} поставлен в очередь")
    if not wait:
        return
    # Started within EXPIRES or never; then it waits for AMI and rings for the dial timeout.
    ringing = callbacks.CONNECT_WAIT + ctx.settings.dial_timeout + callbacks.ANSWER_MARGIN
    deadline = time.monotonic() + callbacks.EXPIRES + ringing + 5
    while time.monotonic() < deadline:
        with ctx.db.session() as session:
            result = callbacks.call_back_result(session, job)
        if result is not None:
            if not result.answered:
                raise click.ClickException(result.text)
            click.echo(result.text)
            return
        time.sleep(0.5)
    raise click.ClickException(
        "обратный звонок никто не выполнил: его выполняет `hotline serve` с HOTLINE_AMI_URL"
    )


def register(group: click.Group) -> None:
    """Add the Asterisk commands to `hotline`."""
    group.add_command(agi)
    group.add_command(callback)
