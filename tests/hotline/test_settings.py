import datetime as dt
import errno
import os
from zoneinfo import ZoneInfo

import pytest

from hotline.errors import EX_CONFIG, SettingsError, Unavailable
from hotline.settings import check_data_dir, load_settings


def test_defaults(tmp_path):
    s = load_settings({"HOTLINE_DATA_DIR": str(tmp_path)})
    assert s.data_dir == tmp_path
    assert (s.http_host, s.http_port, s.agi_host, s.agi_port) == (
        "127.0.0.1",
        8000,
        "127.0.0.1",
        4573,
    )
    assert s.database_url == f"sqlite:///{tmp_path / 'hotline.sqlite3'}"
    assert s.twilio_api_base == "https://api.twilio.com"
    assert s.public_url is None and s.twilio_auth_token is None and s.ami_url is None
    assert s.queue_url is None
    assert s.vosk_model.name == "vosk-model-small-ru-0.22"
    assert s.support_number == "+73435674530"
    assert s.record_max_seconds == 180
    # The session key is made once and kept, so logins survive a restart.
    assert s.secret_key == load_settings({"HOTLINE_DATA_DIR": str(tmp_path)}).secret_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_values_are_typed(tmp_path):
    s = load_settings(
        {
            "HOTLINE_DATA_DIR": str(tmp_path),
            "HOTLINE_HTTP_PORT": "8080",
            "HOTLINE_DATABASE_URL": "postgresql://u@db/hotline",
            "HOTLINE_PUBLIC_URL": "https://hotline.example.ru/",
            "HOTLINE_AMI_URL": "ami://hotline:secret@127.0.0.1:5038",
            "HOTLINE_QUEUE_URL": "redis://127.0.0.1:6379/0",
            "HOTLINE_DUTY_NUMBER": "+7 (343) 000-00-00",
            "HOTLINE_TIMEZONE": "Europe/Yekaterinburg",
        }
    )
    assert s.http_port == 8080
    assert s.database_url == "postgresql+psycopg://u@db/hotline"
    assert s.public_url == "https://hotline.example.ru"
    assert s.duty_number == "+73430000000"
    assert s.business_hours.timezone == ZoneInfo("Asia/Yekaterinburg")


@pytest.mark.parametrize(
    "name, value",
    [
        ("HOTLINE_HTTP_PORT", "eighty"),
        ("HOTLINE_HTTP_PORT", "70000"),
        ("HOTLINE_AGI_PORT", "-1"),
        ("HOTLINE_DATABASE_URL", "hotline.db"),
        ("HOTLINE_DATABASE_URL", "mysql://hotline@db/hotline"),  # no driver shipped
        ("HOTLINE_DATABASE_URL", "postgresql+psycopg2://hotline@db/hotline"),
        ("HOTLINE_PUBLIC_URL", "hotline.example.ru"),
        ("HOTLINE_TWILIO_API_BASE", "ftp://api.twilio.com"),
        ("HOTLINE_AMI_URL", "http://127.0.0.1:5038"),
        ("HOTLINE_QUEUE_URL", "amqp://localhost"),
        ("HOTLINE_BUSINESS_HOURS", "weekdays nine to six"),
        ("HOTLINE_TIMEZONE", "Mars/Olympus"),
        ("HOTLINE_HOLIDAYS", "2026-13-01"),
        ("HOTLINE_DUTY_NUMBER", "call Ivan"),
        ("HOTLINE_PROMPTS", "sing"),
        ("HOTLINE_TWILIO_INSECURE_DEV", "maybe"),
        ("HOTLINE_AGI_PROCESSES", "-1"),
        ("HOTLINE_AGI_PROCESSES", "65"),
        ("HOTLINE_AGI_PROCESSES", "all"),
    ],
)
def test_malformed_value_names_the_variable(tmp_path, name, value):
    with pytest.raises(SettingsError) as err:
        load_settings({"HOTLINE_DATA_DIR": str(tmp_path), name: value})
    message = str(err.value)
    assert message.startswith(f"{name}=") and "\n" not in message


def test_business_hours(tmp_path):
    s = load_settings(
        {
            "HOTLINE_DATA_DIR": str(tmp_path),
            "HOTLINE_BUSINESS_HOURS": "mon-fri 09:00-18:00",
            "HOTLINE_HOLIDAYS": "2026-12-31",
        }
    )
    ekb = ZoneInfo("Asia/Yekaterinburg")
    hours = s.business_hours
    assert hours.is_open(dt.datetime(2026, 11, 24, 9, 0, tzinfo=ekb))  # Tuesday
    assert not hours.is_open(dt.datetime(2026, 11, 24, 18, 0, tzinfo=ekb))
    assert not hours.is_open(dt.datetime(2026, 11, 28, 12, 0, tzinfo=ekb))  # Saturday
    assert not hours.is_open(dt.datetime(2026, 12, 31, 12, 0, tzinfo=ekb))  # holiday
    # 04:30 UTC is 09:30 in Yekaterinburg (UTC+5).
    assert hours.is_open(dt.datetime(2026, 11, 24, 4, 30, tzinfo=dt.UTC))


def test_business_hours_round_the_clock_end_at_midnight(tmp_path):
    s = load_settings({"HOTLINE_DATA_DIR": str(tmp_path), "HOTLINE_BUSINESS_HOURS": "mon-sun 00:00-24:00"})
    ekb = ZoneInfo("Asia/Yekaterinburg")
    hours = s.business_hours
    assert (hours.start, hours.end) == (dt.time(0), dt.time.max)
    assert hours.is_open(dt.datetime(2026, 11, 29, 0, 0, tzinfo=ekb))
    assert hours.is_open(dt.datetime(2026, 11, 29, 23, 59, 59, tzinfo=ekb))


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_a_data_dir_that_cannot_be_written_is_one_line(tmp_path, where):
    # chmod cannot stop root (the tests may run as root): a file in the way can.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    data_dir = blocker / "var" if where == "under a file" else blocker
    with pytest.raises(SettingsError) as err:
        load_settings({"HOTLINE_DATA_DIR": str(data_dir), "HOTLINE_SECRET_KEY": "k"})
    assert str(err.value).startswith(f"HOTLINE_DATA_DIR {data_dir} is not a writable folder: ")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "error, status",
    [
        (errno.EACCES, EX_CONFIG),
        (errno.EPERM, EX_CONFIG),
        (errno.EROFS, EX_CONFIG),
        (errno.ENOTDIR, EX_CONFIG),
        (errno.EEXIST, EX_CONFIG),
        (errno.ESTALE, 3),  # NFS: the server exported the folder again
        (errno.EIO, 3),
        (errno.ENOENT, 3),  # a parent mount that went away
    ],
)
def test_a_data_dir_error_is_configuration_or_for_now_by_its_errno(tmp_path, monkeypatch, error, status):
    # 78 is not restarted by systemd; 3 is: a file system that fails for now comes back.
    def fail(*_args, **_kwargs):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr("tempfile.mkstemp", fail)
    with pytest.raises((SettingsError, Unavailable)) as err:
        check_data_dir(tmp_path / "data")
    assert err.value.exit_status == status
    assert isinstance(err.value, SettingsError) == (status == EX_CONFIG)
    assert str(err.value).startswith(f"HOTLINE_DATA_DIR {tmp_path / 'data'} is not a writable folder: ")
    assert os.strerror(error) in str(err.value) or "a file is in the way" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_session_key_the_service_cannot_read_is_one_line(tmp_path):
    (tmp_path / "secret_key").mkdir()  # unreadable as a file, for root too
    with pytest.raises(SettingsError) as err:
        load_settings({"HOTLINE_DATA_DIR": str(tmp_path)})
    assert "session key" in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_status == EX_CONFIG


def test_the_env_file_named_is_read(tmp_path, monkeypatch):
    env_file = tmp_path / "hotline.env"
    # Quoted as in deploy/systemd/hotline.env.example: systemd and sh read it the same way.
    env_file.write_text(f'HOTLINE_DATA_DIR="{tmp_path}/data"\nHOTLINE_BUSINESS_HOURS="mon-fri 08:00-17:00"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOTLINE_ENV_FILE", str(env_file))
    for name in ("HOTLINE_DATA_DIR", "HOTLINE_BUSINESS_HOURS"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert s.data_dir == tmp_path / "data" and s.business_hours.start == dt.time(8)
    monkeypatch.setenv("HOTLINE_ENV_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(SettingsError, match="HOTLINE_ENV_FILE"):
        load_settings()


def test_the_ami_listener_may_be_left_to_another_host(tmp_path, db):
    # Every web host needs HOTLINE_AMI_URL for «Перезвонить»; only one per PBX listens.
    from ivr.asterisk.service import make_ami
    from web.cli import service_settings

    env = {"HOTLINE_DATA_DIR": str(tmp_path), "HOTLINE_AMI_URL": "ami://hotline:s@127.0.0.1:5038"}
    listener = load_settings(env)
    assert listener.ami_listener and make_ami(service_settings(listener), db) is not None
    other = load_settings({**env, "HOTLINE_AMI_LISTENER": "false"})
    assert other.ami_url and not other.ami_listener
    assert make_ami(service_settings(other), db) is None
