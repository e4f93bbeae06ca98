"""The `hotline` command as an operator runs it: a real process, real exit codes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HOTLINE = [sys.executable, "-c", "from hotline.cli import main; main()"]


@pytest.fixture
def run(tmp_path: Path):
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
        full_env = {**clean, "HOTLINE_DATA_DIR": str(tmp_path / "data"), **env}
        return subprocess.run(HOTLINE + list(args), capture_output=True, text=True, env=full_env, timeout=60)

    return run


def test_request_lifecycle_from_the_command_line(run):
    assert run("db", "upgrade").returncode == 0
    opened = run(
        "request",
        "open",
        "--kind",
        "incident",
        "--phone",
        "+79001234567",
        "--text",
        "Линия 3 не читает коды",
    )
    assert opened.returncode == 0, opened.stderr
    number = opened.stdout.strip()
    assert number == "10008"
    listed = run("request", "list", "--status", "new")
    assert number in listed.stdout and "Линия 3" in listed.stdout
    assert run("request", "status", number, "in_progress", "--note", "взял", LOGNAME="petrov").returncode == 0
    assert run("request", "status", number, "processed").returncode == 0
    shown = run("request", "show", number)
    assert "cli:petrov смена статуса новая → в работе: взял" in shown.stdout  # the system user
    assert "обработана (в архиве)" in shown.stdout
    assert "в работе → обработана" in shown.stdout and "взял" in shown.stdout
    assert "in_progress" not in shown.stdout and "смена статуса" in shown.stdout
    assert "новая\tинцидент\tвручную" in listed.stdout


def test_multi_line_history_stays_inside_its_entry(run):
    assert run("db", "upgrade").returncode == 0
    number = run("request", "open", "--kind", "incident", "--text", "x").stdout.strip()
    assert (
        run("request", "status", number, "in_progress", "--note", "первая\nвложение: вторая").returncode == 0
    )
    lines = run("request", "show", number).stdout.splitlines()
    assert "      вложение: вторая" in lines and "  вложение: вторая" not in lines


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["request", "show", "10007"], 1, "контрольная цифра"),
        (["request", "show", "10008"], 1, "не найдена"),
        (["request", "show", "abc"], 1, "только из цифр"),
        (["request", "status", "10008", "done"], 2, "'done' is not one of"),
        (["request", "open", "--kind", "bug", "--text", "x"], 2, "--kind"),
        (["request", "list", "--bogus"], 2, "No such option"),
        (["nonsense"], 2, "No such command"),
    ],
)
def test_user_errors_are_one_line(run, args, code, message):
    result = run(*args)
    assert result.returncode == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_illegal_transition_is_one_line(run):
    number = run("request", "open", "--kind", "problem", "--text", "x").stdout.strip()
    result = run("request", "status", number, "processed")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"error: request {number}: new → processed is not allowed (from new: in_progress)"
    )
    assert "статус: новая" in run("request", "show", number).stdout  # nothing changed


def test_bad_setting_is_one_line_and_status_78(run):
    # 78 (EX_CONFIG): the units do not restart it; 1 is a crash, which they do.
    result = run("request", "list", HOTLINE_HTTP_PORT="eighty")
    assert result.returncode == 78
    assert result.stderr.startswith("error: HOTLINE_HTTP_PORT='eighty' is not valid")
    assert len(result.stderr.strip().splitlines()) == 1


def test_database_down_is_one_line(run):
    result = run("request", "list", HOTLINE_DATABASE_URL="postgresql://postgres@127.0.0.1:1/hotline")
    assert result.returncode == 3
    assert result.stderr.startswith("error: database unavailable")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("command", ["serve", "worker", "agi", "db"])
def test_an_unwritable_data_dir_is_one_line_and_status_78(run, tmp_path, command):
    # 78 (EX_CONFIG), not 3 or 1: systemd must not restart a configuration error forever.
    (tmp_path / "file").write_text("")
    args = ["db", "upgrade"] if command == "db" else [command]
    done = run(*args, HOTLINE_DATA_DIR=str(tmp_path / "file" / "var"), HOTLINE_SECRET_KEY="k")
    assert done.returncode == 78, done.stderr
    assert done.stderr.startswith("error: HOTLINE_DATA_DIR ") and "not a writable folder" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_db_upgrade_says_what_it_did(run):
    first = run("db", "upgrade")
    assert first.returncode == 0 and first.stdout.startswith("database upgraded from an empty database to ")
    again = run("db", "upgrade")
    assert again.returncode == 0 and again.stdout.startswith("database is up to date (nothing to do)")


def test_request_times_are_the_plants_with_the_zone_named(run):
    number = run("request", "open", "--kind", "incident", "--text", "x").stdout.strip()
    listed = run("request", "list").stdout
    shown = run("request", "show", number).stdout
    zoned = run("request", "list", HOTLINE_TIMEZONE="UTC").stdout
    # Asia/Yekaterinburg by default, whose abbreviation is its offset; list and show alike.
    assert "\t" in listed and " +05\t" in listed and "UTC" not in listed
    assert "создана: " in shown and shown.count(" +05") >= 3 and "UTC" not in shown
    assert " UTC\t" in zoned


def _unit_prevents_restart_on() -> set[int]:
    """The exit statuses deploy/systemd/hotline.service does not restart on."""
    unit = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "hotline.service"
    [line] = [
        x for x in unit.read_text(encoding="utf-8").splitlines() if x.startswith("RestartPreventExitStatus=")
    ]
    return {int(status) for status in line.split("=", 1)[1].split()}


def _gunicorn_child(pid: int) -> int | None:
    """The pid of `serve`'s gunicorn arbiter, a child of `pid`, if it runs yet."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for child in (task / "children").read_text().split():
                if b"gunicorn" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
        except OSError:  # a thread or a process that ended meanwhile
            continue
    return None


@pytest.mark.slow
def test_serve_whose_gunicorn_is_killed_exits_with_a_status_systemd_restarts(tmp_path):
    # The OOM killer's SIGKILL to gunicorn: `serve` must end with a status the unit
    # restarts on (a crash), not the configuration error's, or the hotline stays down.
    from tests.helpers import free_port

    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env = {
        **clean,
        "HOTLINE_DATA_DIR": str(tmp_path / "data"),
        "HOTLINE_HTTP_PORT": str(free_port()),
        "HOTLINE_AGI_PORT": str(free_port()),
        "HOTLINE_ASR": "fake",
    }
    proc = subprocess.Popen(
        HOTLINE + ["serve", "--workers", "1", "--threads", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (child := _gunicorn_child(proc.pid)) is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        assert child is not None
        os.kill(child, signal.SIGKILL)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "error: gunicorn exited with status -9" in err, err
    assert proc.returncode not in (0, 78), err
    assert proc.returncode not in _unit_prevents_restart_on(), err
