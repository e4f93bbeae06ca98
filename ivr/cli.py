"""`hotline call`: walk the IVR from a terminal, hearing what a caller hears.

In-process by default (the real flow on the configured database, as backend
"console"), `--fake` with in-memory data, or `--url` against a running server
through signed Twilio webhooks (the configured TWILIO_AUTH_TOKEN and
HOTLINE_PUBLIC_URL).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from urllib.parse import urlsplit

import click
import httpx

from hotline.cli import Context, pass_context
from hotline.errors import UserError
from hotline.vocabulary import Outcome, label_of
from ivr import flow
from ivr.speech import render_text
from ivr.twilio.client import RecordingServer, TwilioCall, make_wav

Handler = Callable[[flow.Event], flow.Step]
DIAL_CHOICES = [r.value for r in flow.DialResult]


def _ask_recording(tmp_dir: str) -> flow.Recording | None:
    answer = click.prompt("  [запись] секунд речи (пусто: тишина)", default="", show_default=False)
    if not answer.strip().isdigit() or int(answer) == 0:
        return None
    seconds = int(answer)
    path = os.path.join(tmp_dir, f"console-{secrets.token_hex(6)}.wav")
    with open(path, "wb") as f:
        f.write(make_wav(seconds))
    return flow.Recording(os.path.basename(path), float(seconds), path)


def walk(handle: Handler, caller: str | None, tmp_dir: str) -> flow.Step:
    """Run one call in the terminal until it ends; the last step."""
    step = handle(flow.CallStarted(caller))
    while True:
        for action in step.actions:
            if isinstance(action, flow.Speak):
                click.echo(f"♪ {render_text(action.segments)}")
        waiting = step.actions[-1] if step.actions else flow.HangUp()
        event: flow.Event
        try:
            if isinstance(waiting, flow.Gather):
                keys = click.prompt("  [клавиши]", default="", show_default=False)
                event = flow.DigitsEntered(keys) if keys else flow.NoInput()
            elif isinstance(waiting, flow.Record):
                event = flow.RecordingFinished(_ask_recording(tmp_dir))
            elif isinstance(waiting, flow.Transfer):
                click.echo(f"  [соединение с {waiting.target}]")
                result = click.prompt("  [ответ]", type=click.Choice(DIAL_CHOICES), default="no_answer")
                event = flow.DialFinished(flow.DialResult(result))
            else:
                click.echo("  [отбой]")
                return handle(flow.Hangup())
        except click.Abort:
            click.echo("\n  [вы положили трубку]")
            return handle(flow.Hangup())
        step = handle(event)


def walk_twilio(call: TwilioCall, api: RecordingServer) -> None:
    """Run one call against a server's Twilio webhooks."""
    for line in call.start():
        click.echo(f"♪ {line}")
    while not call.ended and call.waiting is not None:
        verb = call.waiting.verb.tag
        try:
            if verb == "Gather":
                heard = call.press(click.prompt("  [клавиши]", default="", show_default=False))
            elif verb == "Record":
                answer = click.prompt(
                    "  [запись] секунд речи (пусто: тишина)", default="", show_default=False
                )
                heard = call.record(api, int(answer)) if answer.isdigit() and int(answer) else call.silence()
            else:
                status = click.prompt(
                    "  [ответ]",
                    type=click.Choice(["completed", "no-answer", "busy", "failed"]),
                    default="no-answer",
                )
                heard = call.dial_result(status)
        except click.Abort:
            call.hang_up()
            click.echo("\n  [вы положили трубку]")
            return
        for line in heard:
            click.echo(f"♪ {line}")
    click.echo("  [отбой]")


@click.command("call")
@click.option("--from", "caller", default="+79000000000", show_default=True, help="The caller's number.")
@click.option("--fake", is_flag=True, help="In-memory requests instead of the database (a demo).")
@click.option("--url", help="A running server's base URL: call it through signed Twilio webhooks.")
@pass_context
def call_command(ctx: Context, caller: str, fake: bool, url: str | None) -> None:
    """Walk the IVR in the terminal: hear the prompts, type the keys."""
    with tempfile.TemporaryDirectory(prefix="hotline-call-") as tmp_dir:
        if url:
            _call_url(ctx, url, caller)
        elif fake:
            from ivr.fake import FakeCallPort

            port = FakeCallPort()
            for kind, status in (("incident", "in_progress"), ("problem", "awaiting_info")):
                click.echo(f"(демо: заявка {port.add_request(kind, status)}: {kind}, {status})")
            state = flow.CallState()

            def handle(event: flow.Event) -> flow.Step:
                nonlocal state
                step = flow.handle(state, event, port)
                state = step.state
                return step

            walk(handle, caller, tmp_dir)
        else:
            from ivr.store import CallStore

            ctx.db.upgrade()
            store = CallStore(ctx.db, ctx.settings, "console")
            call_id = "console-" + secrets.token_hex(8)
            last = walk(
                lambda event: store.handle(call_id, event, from_number=caller, to_number="console"),
                caller,
                tmp_dir,
            )
            click.echo(f"(звонок {call_id}: {label_of(Outcome, last.state.outcome, default='не завершён')})")


def _call_url(ctx: Context, url: str, caller: str) -> None:
    settings = ctx.settings
    if not settings.twilio_auth_token:
        raise UserError("set TWILIO_AUTH_TOKEN to the server's token to sign the webhooks")
    sid = settings.twilio_account_sid or "AC" + "0" * 32
    # The server downloads only from HOTLINE_TWILIO_API_BASE: when that names a local
    # port (the same environment as the server's), stand in for Twilio right there.
    api_base = urlsplit(settings.twilio_api_base)
    local = api_base.scheme == "http" and api_base.hostname in ("127.0.0.1", "localhost")
    port = api_base.port if local and api_base.port else None
    try:
        api_server = RecordingServer(sid, settings.twilio_auth_token, port=port or 0)
    except OSError as exc:
        raise UserError(f"cannot serve recordings on {settings.twilio_api_base}: {exc.strerror}") from None
    with (
        api_server as api,
        httpx.Client(base_url=url, timeout=20) as client,
    ):
        if port is None:
            hint = f"у сервера должно быть HOTLINE_TWILIO_API_BASE={api.base_url}"
            click.echo(f"(записи отдаёт {api.base_url}: {hint})")
        call = TwilioCall(client, settings.public_url or url, settings.twilio_auth_token, sid, caller=caller)
        try:
            walk_twilio(call, api)
        except (httpx.HTTPError, AssertionError) as exc:
            raise UserError(f"the server at {url} did not answer like a hotline: {exc}") from None
        for response in call.responses:
            if response.url.path == "/twilio/recording" and response.status_code >= 400:
                click.echo(f"(сервер не принял запись: {response.status_code} {response.text.strip()})")


def register(group: click.Group) -> None:
    """Add `hotline call`."""
    group.add_command(call_command)
