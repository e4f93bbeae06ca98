"""`hotline request` with bad or hostile input: one clear line, never a traceback or a raw escape."""

from __future__ import annotations

import pytest

from hotline import registry
from hotline.db import Database
from tests.hotline.test_cli import run  # noqa: F401 - fixture


@pytest.mark.parametrize("text", ["", "   ", "\x1b[2J\x07"])
def test_open_with_an_empty_text_is_one_error_line(run, text):  # noqa: F811
    result = run("request", "open", "--kind", "incident", "--text", text)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the text of the request is empty: say what happened (--text)"
    ]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--phone", "12", "not a phone number"),
        ("--phone", "позвоните", "not a phone number"),
        ("--email", "ivan@", "not an e-mail address"),
        ("--email", "ivan example.com", "not an e-mail address"),
    ],
)
def test_invalid_contact_is_refused_with_one_line(run, option, value, message):  # noqa: F811
    result = run("request", "open", "--kind", "incident", option, value, "--text", "Линия 3 стоит")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {message}")


def test_phone_is_stored_in_e164_and_shown_in_national_format(run):  # noqa: F811
    opened = run(
        "request", "open", "--kind", "incident", "--phone", "8 900 123 45 67", "--text", "Стоит линия"
    )
    assert opened.returncode == 0, opened.stderr
    shown = run("request", "show", opened.stdout.strip())
    assert "телефон: 8 (900) 123-45-67" in shown.stdout


def test_list_never_prints_terminal_escapes(run, tmp_path):  # noqa: F811
    assert run("db", "upgrade").returncode == 0
    # Stored raw, as an older version (or another path) may have left it.
    db = Database(f"sqlite:///{tmp_path / 'data' / 'hotline.sqlite3'}")
    with db.session() as s:
        request = registry.open_request(s, kind="incident", channel="email", actor="email:x@example.com")
        request.subject = "Линия\x1b]0;pwned\x07 3 \x1b[31mстоит\x1b[0m\r\nещё"
    db.dispose()
    listed = run("request", "list")
    assert "\x1b" not in listed.stdout and "\x07" not in listed.stdout and "\r" not in listed.stdout
    assert "Линия 3 стоит ещё" in listed.stdout
