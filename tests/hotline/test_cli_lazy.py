"""The `hotline` command imports only what the command it runs needs."""

import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hotline.cli import HotlineGroup
from hotline.db import Database, current_revision, head_revision

# Runs a command in a fresh interpreter, then prints the top-level packages it imported.
PROBE = """
import sys
from hotline.cli import main
try:
    main(sys.argv[1:])
finally:
    print("MODULES", " ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def loaded(tmp_path: Path, *args: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env["HOTLINE_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES "))
    return set(line.split()[1:])


@pytest.mark.parametrize("args", [("request", "list"), ("user", "list")])
def test_request_and_user_commands_import_no_other_area(tmp_path, args):
    assert loaded(tmp_path, "db", "upgrade") >= {"alembic"}  # the first run builds the schema
    modules = loaded(tmp_path, *args)
    assert "sqlalchemy" in modules and "hotline" in modules
    assert not modules & {"alembic", "flask", "web", "ivr", "voice_models", "httpx", "twilio", "huey"}
    assert "phonenumbers" not in modules  # no phone parsed or shown


def test_a_command_that_shows_a_phone_imports_the_phone_library(tmp_path):
    assert loaded(tmp_path, "db", "upgrade") >= {"alembic"}
    assert "phonenumbers" in loaded(
        tmp_path, "request", "open", "--kind", "incident", "--phone", "+79001234567", "--text", "x"
    )


def test_the_hotline_executable_imports_nothing_before_it_knows_where_the_command_runs():
    """The entry point asks the warm helper first: click, SQLAlchemy and the domain wait."""
    probe = (
        "import sys; before = set(sys.modules); import hotline.warmstart; print(*set(sys.modules) - before)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    imported = set(done.stdout.split())
    assert "hotline.warmstart" in imported
    assert {m.split(".")[0] for m in imported} <= {
        "hotline",
        "socket",
        "_socket",
        "selectors",
        "select",
        "math",
        "signal",
        "collections",
        "array",
    }


def test_every_registered_command_is_listed():
    result = CliRunner().invoke(HotlineGroup(commands=[]), ["--help"])
    assert result.exit_code == 0
    for name in ("serve", "user", "worker", "asr-eval", "mail", "call", "agi", "callback", "prompts"):
        assert f"  {name} " in result.output


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A package registering one command by entry point and another through `register`."""
    (tmp_path / "sample_plugin.py").write_text(
        textwrap.dedent(
            """
            import click

            @click.command()
            def hello():
                click.echo("привет")

            @click.command()
            def extra():
                click.echo("ещё")

            def register(group):
                group.add_command(hello)
                group.add_command(extra)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("sample_plugin", None)


def test_a_command_entry_loads_its_module_and_its_register(plugin):
    group = HotlineGroup(commands=[])
    group._entries = {"hello": EntryPoint("hello", "sample_plugin:hello", "hotline.commands")}
    assert CliRunner().invoke(group, ["hello"]).output == "привет\n"
    assert "extra" in group.commands  # added by the module's register(): not lost
    assert CliRunner().invoke(group, ["extra"]).output == "ещё\n"


def test_a_register_entry_and_an_unknown_name_load_everything(plugin):
    group = HotlineGroup(commands=[])
    group._entries = {"sample": EntryPoint("sample", "sample_plugin:register", "hotline.commands")}
    assert CliRunner().invoke(group, ["extra"]).output == "ещё\n"
    result = CliRunner().invoke(group, ["nonexistent"])
    assert result.exit_code != 0 and "No such command" in result.output
    assert isinstance(group.commands["hello"], click.Command)


def test_head_revision_is_the_one_alembic_applies(db: Database):
    db.upgrade()
    assert head_revision() is not None
    assert current_revision(db.engine) == head_revision()


def test_commands_services_and_jobs_share_one_database(tmp_path, monkeypatch):
    """`hotline serve` hands its one Database to HTTP and services; queued jobs find the same one."""
    from hotline.cli import Context
    from hotline.db import database_for
    from hotline.transcription.pipeline import database_for as jobs_database

    url = f"sqlite:///{tmp_path}/hotline.sqlite3"
    monkeypatch.setenv("HOTLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HOTLINE_DATABASE_URL", url)
    database = Context().db
    assert database is database_for(url) is jobs_database(url)
    assert database_for(f"sqlite:///{tmp_path}/other.sqlite3") is not database
