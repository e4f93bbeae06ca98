"""`hotline agi` (the FastAGI server alone) and `hotline callback` (call a customer back)."""

from __future__ import annotations

import signal
import threading
import time

import click

from hotline.cli import Context, pass_context
from hotline.services import settle_process


@click.command()
@pass_context
def agi(ctx: Context) -> None:
    """Run the FastAGI server alone (Asterisk's AGI(agi://host:port/hotline)).

    The same server as in `hotline serve`: HOTLINE_AGI_PROCESSES worker processes on the
    port (by default one per core, up to 4), or one in this process.
    """
    from ivr.asterisk.service import make_agi

    settings = ctx.settings
    ctx.db.upgrade()
    service = make_agi(settings, ctx.db)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        service.start()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen for FastAGI on {settings.agi_host}:{settings.agi_port}: {exc.strerror or exc}"
        ) from None
    settle_process()
    processes = f"{service.processes} processes" if service.processes > 1 else "one process"
    click.echo(
        f"hotline: FastAGI on agi://{settings.agi_host}:{service.port}/hotline "
        f"({processes}, data in {settings.data_dir})"
    )
    while not stop.wait(3600):
        pass
    if service.calls:
        click.echo(
            f"hotline: stopping; {service.calls} calls in progress get up to "
            f"{settings.agi_drain_seconds} s to finish (HOTLINE_AGI_DRAIN_SECONDS)"
        )
    service.stop()
    click.echo("hotline: stopped")


@click.command()
@click.argument("number")
@click.option("--extension", required=True, help="The engineer's phone, e.g. PJSIP/101 (rung first).")
@click.option("--wait/--no-wait", default=True, help="Wait for the outcome (default) or only queue it.")
@pass_context
def callback(ctx: Context, number: str, extension: str, wait: bool) -> None:
    """Call a request's customer back: ring the engineer's phone, then the customer's.

    The call-back is queued; `hotline serve` with HOTLINE_AMI_URL places it.
    """
    from hotline import calllog
    from ivr.asterisk import callback as callbacks
    from ivr.asterisk.amilog import BACKEND

    ctx.db.upgrade()
    with ctx.db.session() as session:
        job = callbacks.queue_call_back(ctx.settings, session, number, extension, actor="cli")
    click.echo(f"заявка {job.request_number}: обратный звонок с {extension} поставлен в очередь")
    if not wait:
        return
    # A runner takes it within EXPIRES or refuses it, and waits at most CONNECT_WAIT for
    # the AMI connection before it rings: nothing started by then never starts (README:
    # "within 60 s"). Once started, the engineer's phone rings for the dial timeout.
    start_within = callbacks.EXPIRES + callbacks.CONNECT_WAIT
    start_deadline = time.monotonic() + start_within
    ring_deadline: float | None = None
    while True:
        with ctx.db.session() as session:
            result = callbacks.call_back_result(session, job)
            started = calllog.find_call(session, BACKEND, job.callback_id) is not None
        if result is not None:
            if not result.answered:
                raise click.ClickException(result.text)
            click.echo(result.text)
            return
        now = time.monotonic()
        if started and ring_deadline is None:
            ring_deadline = now + ctx.settings.dial_timeout + callbacks.ANSWER_MARGIN + 5
        if ring_deadline is None and now > start_deadline:
            raise click.ClickException(
                f"обратный звонок не начат за {start_within:.0f} с: его выполняет "
                "AMI-сервис `hotline serve` с HOTLINE_AMI_URL (и HOTLINE_AMI_LISTENER не false); "
                "он не запущен или не связан с Asterisk"
            )
        if ring_deadline is not None and now > ring_deadline:
            raise click.ClickException(
                "обратный звонок начат, но его исход не известен: смотрите журнал звонков"
            )
        time.sleep(0.5)


def register(group: click.Group) -> None:
    """Add the Asterisk commands to `hotline`."""
    group.add_command(agi)
    group.add_command(callback)
