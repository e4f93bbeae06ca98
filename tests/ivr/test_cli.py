"""`hotline call` in the terminal: in-process on the database, the fake demo, a server URL."""

import threading

from click.testing import CliRunner
from sqlalchemy import select
from werkzeug.serving import make_server

from hotline.cli import cli
from hotline.models import Call, Request
from tests.helpers import free_port
from web import create_app


def run(args, keys, env):
    return CliRunner().invoke(cli, ["call", *args], input="\n".join(keys) + "\n", env=env)


def env_of(db, tmp_path, **extra):
    return {"HOTLINE_DATA_DIR": str(tmp_path / "data"), "HOTLINE_DATABASE_URL": db.url, **extra}


def test_in_process_call_makes_a_request(db, tmp_path):
    result = run([], ["2", "1", "4"], env_of(db, tmp_path))
    assert result.exit_code == 0, result.output
    assert "♪ Здравствуйте" in result.output and "Повторяем номер заявки" in result.output
    with db.session() as s:
        request = s.scalars(select(Request)).one()
        assert request.channel == "phone" and len(request.attachments) == 1
        call = s.scalars(select(Call)).one()
        assert call.backend == "console" and call.outcome == "request_created" and call.ended_at


def test_hanging_up_in_the_terminal_ends_the_call(db, tmp_path):
    result = CliRunner().invoke(cli, ["call"], input="1\n", env=env_of(db, tmp_path))  # then EOF
    assert "положили трубку" in result.output
    with db.session() as s:
        call = s.scalars(select(Call)).one()
        assert call.outcome == "abandoned" and call.ended_at is not None


def test_fake_demo_needs_no_database(tmp_path):
    result = CliRunner().invoke(
        cli, ["call", "--fake"], input="9\n\n*\n0\nbusy\n*\n", env={"HOTLINE_DATA_DIR": str(tmp_path)}
    )
    assert "Такого пункта" in result.output and "Соединяем" in result.output
    assert "не может ответить" in result.output


def test_call_against_a_running_server(db, make_settings, tmp_path):
    settings = make_settings(
        HOTLINE_PUBLIC_URL="http://127.0.0.1:1", TWILIO_AUTH_TOKEN="tok", TWILIO_ACCOUNT_SID="AC1"
    )
    server = make_server("127.0.0.1", 0, create_app(settings=settings, db=db), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        env = env_of(
            db,
            tmp_path,
            TWILIO_AUTH_TOKEN="tok",
            TWILIO_ACCOUNT_SID="AC1",
            HOTLINE_PUBLIC_URL="http://127.0.0.1:1",
        )
        result = run(["--url", url], ["1", "12345#", "*", "*"], env)
        assert result.exit_code == 0, result.output
        assert "♪ Здравствуйте" in result.output and "с ошибкой" in result.output
        bad = run(
            ["--url", url],
            [],
            env_of(db, tmp_path, TWILIO_AUTH_TOKEN="wrong", HOTLINE_PUBLIC_URL="http://127.0.0.1:1"),
        )
        assert bad.exit_code != 0 and "403" in str(bad.exception or bad.output)
    finally:
        server.shutdown()
        thread.join(5)
    with db.session() as s:
        assert s.scalars(select(Call)).one().backend == "twilio"


def test_voicemail_through_a_running_server_is_downloaded(db, make_settings, tmp_path):
    # Server and `hotline call --url` share HOTLINE_TWILIO_API_BASE: the call serves its
    # recordings there, so the server's download (which refuses any other host) works.
    api_base = f"http://127.0.0.1:{free_port()}"
    common = {
        "TWILIO_AUTH_TOKEN": "tok",
        "TWILIO_ACCOUNT_SID": "AC1",
        "HOTLINE_PUBLIC_URL": "http://127.0.0.1:1",
        "HOTLINE_TWILIO_API_BASE": api_base,
    }
    settings = make_settings(**common)
    server = make_server("127.0.0.1", 0, create_app(settings=settings, db=db), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        result = run(["--url", url], ["2", "1", "3"], env_of(db, tmp_path, **common))
        assert result.exit_code == 0, result.output
        assert "не принял запись" not in result.output and "Повторяем номер заявки" in result.output
        refused = run(
            ["--url", url],
            ["2", "1", "3"],
            env_of(db, tmp_path, **{**common, "HOTLINE_TWILIO_API_BASE": "https://api.twilio.com"}),
        )
        assert "сервер не принял запись: 400" in refused.output
    finally:
        server.shutdown()
        thread.join(5)
    with db.session() as s:
        first, second = s.scalars(select(Request).order_by(Request.id)).all()
        assert len(first.attachments) == 1
        assert first.attachments[0].size > 0 and first.attachments[0].external_id.startswith("twilio:RE")
        assert second.attachments == []
