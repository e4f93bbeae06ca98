"""`hotline user …`: accounts of the dashboard, made and changed by the operator.

Passwords are read from a prompt (or stdin with --password-stdin), never from the
command line, where they would land in the shell history and the process list.

Login locks are read and lifted in the shared store only (Redis or the database),
never in this process's memory: when Redis cannot be reached, `list` and `passwd`
say so in one line and end with status 3 (hotline.users.throttle.LockStoreUnavailable).
"""

from __future__ import annotations

import sys

import click

from hotline import users
from hotline.cli import Context, pass_context
from hotline.models import Role, utcnow
from hotline.users import throttle


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return click.prompt("Пароль", hide_input=True, confirmation_prompt="Ещё раз")


@click.group("user")
def user_group() -> None:
    """Dashboard accounts (engineers and admins)."""


@user_group.command("add")
@click.argument("login")
@click.option("--name", default="", help="Full name, shown in the dashboard and history.")
@click.option("--role", type=click.Choice([r.value for r in Role]), default="engineer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_context
def user_add(ctx: Context, login: str, name: str, role: str, password_stdin: bool) -> None:
    """Create an account."""
    ctx.db.upgrade()
    password = _read_password(password_stdin)
    with ctx.db.session() as session:
        user = users.create_user(session, login, password=password, name=name, role=role)
        click.echo(f"created {user.login} ({user.role})")


@user_group.command("list")
@pass_context
def user_list(ctx: Context) -> None:
    """List the accounts."""
    ctx.db.upgrade()
    locked = throttle.make_store(ctx.db.engine, ctx.settings.queue_url, fallback=False).locked_logins(
        utcnow()
    )
    with ctx.db.session() as session:
        for user in users.list_users(session):
            state = "active" if user.active else "disabled"
            if user.active and user.login in locked:
                state = "locked"
            last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "-"
            click.echo(f"{user.login}\t{user.role}\t{state}\t{last}\t{user.name}")


@user_group.command("passwd")
@click.argument("login")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_context
def user_passwd(ctx: Context, login: str, password_stdin: bool) -> None:
    """Set an account's password (and unlock it); its open sessions end."""
    ctx.db.upgrade()
    with ctx.db.session() as session:
        user = users.get_user(session, login)
        users.set_password(user, _read_password(password_stdin))
        click.echo(f"password of {user.login} changed")
    # After the password: a new password must not wait for Redis; the locks then stay
    # (the error says so, status 3) and a second `passwd`, or the admin page, lifts them.
    throttle.make_store(ctx.db.engine, ctx.settings.queue_url, fallback=False).clear_login(login)


def register(group: click.Group) -> None:
    """Add `hotline user` to the command."""
    group.add_command(user_group)
