"""The `hotline` command.

Domain commands live here; the call (`ivr`) and the web service (`web`) add theirs
through the `hotline.commands` entry-point group, so that this package never imports
them. Errors a person can fix end the command with one line and a non-zero status:
the error's `exit_status` (hotline.errors: 1 failed, 3 a server is down for now, 78 a
configuration error that systemd does not restart), 2 for a wrong option or argument.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from functools import cached_property, update_wrapper
from typing import TYPE_CHECKING, Any, TypeVar

import click

from hotline import registry
from hotline.cleaning import clean_line, clean_text, email_address, printable
from hotline.errors import HotlineError, UserError
from hotline.models import Request, RequestStatus
from hotline.phones import display_phone, require_phone
from hotline.vocabulary import Channel, HistoryAction, RequestKind, label_of

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint
    from zoneinfo import ZoneInfo

    from hotline.db import Database
    from hotline.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
DISTRIBUTION = "psr-qr-hotline"  # pyproject's name: its entry points are read first


class Context:
    """What commands share: the settings and the database, made when first used."""

    @cached_property
    def settings(self) -> Settings:
        from hotline.settings import load_settings

        return load_settings()

    @cached_property
    def db(self) -> Database:
        from hotline.db import database_for

        return database_for(self.settings.database_url)


pass_context = click.make_pass_decorator(Context, ensure=True)


def with_db(f: F) -> F:
    """Give the command `db` (upgraded to the latest schema) as its first argument."""

    @pass_context
    def wrapper(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        ctx.db.upgrade()
        return f(ctx.db, *args, **kwargs)

    return update_wrapper(wrapper, f)  # type: ignore[return-value]


class HotlineGroup(click.Group):
    """The root group: other packages' commands are imported only when one of them runs.

    Each entry of the `hotline.commands` entry-point group names one command and the
    object that is it (click's "lazy group" pattern): `hotline request show` imports
    none of them, `hotline user add` only `hotline.users.cli`. An entry may also be a
    `register(group)` function, and a loaded module's own `register` is called as
    well, so commands added there are never lost; listing (`--help`) loads them all.
    """

    _entries: dict[str, EntryPoint] | None = None
    _all_loaded = False

    def _entry_points(self) -> dict[str, EntryPoint]:
        if self._entries is None:
            from importlib.metadata import entry_points

            self._entries = {ep.name: ep for ep in entry_points(group="hotline.commands")}
        return self._entries

    def _load(self, ep: EntryPoint) -> None:
        obj = ep.load()
        if isinstance(obj, click.Command):
            self.commands.setdefault(ep.name, obj)
            obj = getattr(sys.modules[ep.module], "register", None)
        if callable(obj):
            obj(self)

    def _load_all(self) -> None:
        if not self._all_loaded:
            self._all_loaded = True
            for ep in self._entry_points().values():
                self._load(ep)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_all()
        return super().list_commands(ctx)

    def _entry_point(self, name: str) -> EntryPoint | None:
        # This project's own entries first: reading its one entry_points.txt costs
        # 0.4 ms, scanning every installed distribution's 10 ms or more.
        if self._entries is None:
            from importlib.metadata import PackageNotFoundError, distribution

            try:
                own = distribution(DISTRIBUTION).entry_points
            except PackageNotFoundError:
                own = None
            if own is not None:
                for ep in own.select(group="hotline.commands", name=name):
                    return ep
        return self._entry_points().get(name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            ep = self._entry_point(cmd_name)
            if ep is not None:
                self._load(ep)
            if cmd_name not in self.commands:
                self._load_all()
        return super().get_command(ctx, cmd_name)


@click.group(cls=HotlineGroup)
def cli() -> None:
    """ПСР QR support hotline: IVR, transcription, dashboard."""


@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@pass_context
def db_upgrade(ctx: Context) -> None:
    """Apply the migrations (safe to run again)."""
    migrated = ctx.db.upgrade()
    url = _safe_url(ctx.settings.database_url)
    if migrated is None:
        click.echo(f"database is up to date (nothing to do): {url}")
    else:
        before, after = migrated
        click.echo(f"database upgraded from {before or 'an empty database'} to {after}: {url}")


@db.command("copy")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="The empty database to copy into; leave the password out of it (it would show in ps and "
    "the shell's history) and give it by PGPASSWORD or ~/.pgpass.",
)
@click.option(
    "--from", "source", metavar="URL", help="The database to copy from [default: HOTLINE_DATABASE_URL]."
)
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1), help="Rows per batch.")
@pass_context
def db_copy(ctx: Context, target: str, source: str | None, batch: int) -> None:
    """Copy every row into another database, e.g. from SQLite to PostgreSQL.

    The target is upgraded to the current schema and must hold no data; the copy is
    one transaction there, so a failed copy leaves it empty. Request numbers and ids
    continue after the highest copied ones. Stop the service first: the source is read
    as one snapshot, so rows written after it are left behind, and the files in the data
    dir (recordings, attachments) stay where they are, not in the database.
    """
    from hotline.dbcopy import copy_database

    source = source or ctx.settings.database_url
    report = copy_database(source, target, batch=batch)
    for table, rows in report.rows.items():
        click.echo(f"  {table:<20}{rows:>10}")
    click.echo(
        f"copied {sum(report.rows.values())} rows from {_safe_url(source)} to {_safe_url(target)}"
        f" in {report.seconds:.1f} s; counts match; next request number: {report.next_number}"
    )


@cli.group("request")
def request_group() -> None:
    """Support requests (заявки)."""


@request_group.command("open")
@click.option("--kind", required=True, type=click.Choice([k.value for k in registry.RequestKind]))
@click.option("--phone", help="The customer's phone number.")
@click.option("--email", help="The customer's e-mail address.")
@click.option("--subject", default="", help="A short subject (default: the text's first line).")
@click.option("--text", required=True, help="The description of the request.")
@with_db
def request_open(
    db: Database, kind: str, phone: str | None, email: str | None, subject: str, text: str
) -> None:
    """Register a request and print its number."""
    text = clean_text(text).strip()
    if not text:
        raise UserError("the text of the request is empty: say what happened (--text)")
    phone = require_phone(phone) if phone is not None else None
    email = _email(email) if email is not None else None
    with db.session() as session:
        request = registry.open_request(
            session,
            kind=kind,
            channel="web",
            actor=_actor(),
            phone=phone,
            email=email,
            subject=clean_line(subject) or text.splitlines()[0][:120],
            description=text,
        )
        number = request.number
    click.echo(number)


@request_group.command("show")
@click.argument("number")
@with_db
def request_show(db: Database, number: str) -> None:
    """Show a request and its history (times in the plant's time zone, HOTLINE_TIMEZONE)."""
    zone = _plant_zone()
    with db.session() as session:
        request = registry.get_request(session, number)
        click.echo(_describe(request, zone))
        click.echo("История:")
        for event in request.events:
            change = ""
            if event.to_status and event.from_status:
                before, after = (label_of(RequestStatus, s) for s in (event.from_status, event.to_status))
                change = f" {before} → {after}"
            # Multi-line texts (transcripts, letters) stay visibly inside their entry.
            text = ": " + event.text.replace("\n", "\n      ") if event.text else ""
            action = label_of(HistoryAction, event.action)
            click.echo(f"  {_when(event.at, zone)} {printable(event.actor)} {action}{change}{_safe(text)}")
        for att in request.attachments:
            click.echo(
                f"  вложение: {printable(att.filename)} ({printable(att.content_type)}, {att.size} байт)"
            )


@request_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in RequestStatus]))
@click.option("--archived/--current", default=None, help="Only archived, or only current requests.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@with_db
def request_list(db: Database, status: str | None, archived: bool | None, limit: int) -> None:
    """List requests, newest first (times in the plant's time zone, HOTLINE_TIMEZONE)."""
    zone = _plant_zone()
    with db.session() as session:
        requests = registry.list_requests(session, status=status, archived=archived, limit=limit)
        for request in requests:
            click.echo(
                f"{request.number}\t{label_of(RequestStatus, request.status)}\t"
                f"{label_of(RequestKind, request.kind)}\t{label_of(Channel, request.channel)}\t"
                f"{_when(request.created_at, zone)}\t{printable(request.subject)}"
            )
        if not requests:
            click.echo("заявок нет", err=True)


@request_group.command("status")
@click.argument("number")
@click.argument("status", type=click.Choice([s.value for s in RequestStatus]))
@click.option("--note", default="", help="Why (kept in the history).")
@with_db
def request_status(db: Database, number: str, status: str, note: str) -> None:
    """Move a request to another status."""
    with db.session() as session:
        request = registry.get_request(session, number, for_update=True)
        before = request.status
        registry.change_status(session, request, status, actor=_actor(), note=note)
    click.echo(f"{number}: {before} → {status}")


def _plant_zone() -> ZoneInfo:
    """The plant's time zone (HOTLINE_TIMEZONE): every time a command prints is in it."""
    ctx = click.get_current_context().find_object(Context)
    assert ctx is not None, "with_db made it"
    return ctx.settings.business_hours.timezone


def _when(moment: dt.datetime, zone: ZoneInfo) -> str:
    """`2026-03-02 14:05 +05`: a stored moment in the plant's zone, the zone named."""
    if moment.tzinfo is None:  # SQLite gives back naive UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M %Z}"


def _describe(request: Request, zone: ZoneInfo) -> str:
    kind = label_of(RequestKind, request.kind)
    status = label_of(RequestStatus, request.status)
    lines = [
        f"Заявка {request.number}",
        f"  вид: {kind}{'' if request.kind_confirmed else ' (не подтверждён)'}",
        f"  статус: {status}{' (в архиве)' if request.archived else ''}",
        f"  канал: {label_of(Channel, request.channel)}",
        f"  создана: {_when(request.created_at, zone)}, изменена: {_when(request.status_changed_at, zone)}",
    ]
    for label, value in (
        ("телефон", display_phone(request.contact_phone)),
        ("e-mail", request.contact_email),
        ("тема", request.subject),
    ):
        if value:
            lines.append(f"  {label}: {printable(value)}")
    if request.description:
        lines.append(f"  описание: {_safe(request.description)}")
    return "\n".join(lines)


def _safe(text: str) -> str:
    """Stored multi-line text for a terminal: line breaks kept, escapes never printed."""
    return clean_text(text).replace("\t", " ")


def _actor() -> str:
    """Who did it, for the request's history: the command line and the system user
    running it (the dashboard shows «командная строка (ivanov)»)."""
    import getpass

    try:
        return f"cli:{clean_line(getpass.getuser(), 60)}"
    except (KeyError, OSError):  # no such user in a container: still the command line
        return "cli"


def _email(raw: str) -> str:
    """An e-mail address a person typed; UserError with one line if it is not one."""
    address = email_address(raw)
    if address is None:
        raise UserError(f"not an e-mail address: {clean_line(raw)[:60]!r}")
    return address


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turning expected errors into one line."""
    try:
        cli.main(args=argv, prog_name="hotline", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except HotlineError as exc:
        # 3: down for now (the database, the queue), systemd starts it again; 78: a setting,
        # a password, a file's owner, which systemd does not restart; 1: any other failure.
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_status)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        from sqlalchemy.exc import OperationalError  # imported already if a command used the database

        if not isinstance(exc, OperationalError):
            raise
        from hotline.db import database_error

        error = database_error(str(exc.orig))
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_status)
