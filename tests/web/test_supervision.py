"""`hotline serve` under hostile conditions: kill -9, a data dir gone read-only, big bodies (issue 12)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline.storage import remove_temporary_files
from tests.helpers import eventually, free_port
from tests.web.conftest import csrf_token


def _children(pid: int) -> list[int]:
    """Living processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.fixture
def serve_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(
        HOTLINE_DATA_DIR=str(tmp_path / "data"),
        HOTLINE_HTTP_PORT=str(free_port()),
        HOTLINE_AGI_PORT=str(free_port()),
    )
    return env


def _start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from hotline.cli import main; main()", "serve", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    port = int(env["HOTLINE_HTTP_PORT"])
    assert eventually(lambda: _health(port) == 200 or proc.poll() is not None, 60), "serve did not start"
    assert proc.poll() is None, log.read_text()
    return proc


@pytest.mark.slow
def test_kill_9_of_serve_takes_gunicorn_with_it_and_a_restart_works(serve_env, tmp_path):
    port = int(serve_env["HOTLINE_HTTP_PORT"])
    proc = _start(serve_env, tmp_path / "serve.log", "--workers", "2", "--threads", "2")
    try:
        children = _children(proc.pid)  # gunicorn's arbiter and the warm CLI helper
        [arbiter] = [c for c in children if b"gunicorn" in Path(f"/proc/{c}/cmdline").read_bytes()]
        workers = _children(arbiter)
        assert len(workers) == 2
        proc.kill()  # kill -9: no handler runs
        proc.wait(10)
        assert eventually(lambda: not any(map(_alive, [*children, *workers])), 30)
        assert _health(port) is None  # nobody answers HTTP without the services
        stale = tmp_path / "data" / "tmp" / "tmpabc.wav"  # a download the crash cut short
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"RIFF")
        os.utime(stale, (time.time() - 3600, time.time() - 3600))
        proc = _start(
            serve_env, tmp_path / "serve.log", "--workers", "2", "--threads", "2"
        )  # the port is free again
        assert not stale.exists()
        database = tmp_path / "data" / "hotline.sqlite3"
        assert database.stat().st_mode & 0o007 == 0  # not world-readable
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def test_temporary_files_left_by_a_crash_are_removed(tmp_path):
    data = tmp_path / "data"
    old_tmp, young_tmp = data / "tmp" / "a.wav", data / "tmp" / "b.wav"
    old_part = data / "recordings" / "2026" / "11" / "x.wav.part"
    kept = data / "recordings" / "2026" / "11" / "x.wav"
    for path in (old_tmp, young_tmp, old_part, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    for path in (old_tmp, old_part, kept):
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    young_part = data / "attachments" / "2026" / "11" / "y.pdf.part"  # another process writes it now
    young_part.parent.mkdir(parents=True, exist_ok=True)
    young_part.write_bytes(b"x")
    assert remove_temporary_files(data) == 2
    # A young download may be another host's, writing into a shared data dir now.
    assert kept.exists() and young_part.exists() and young_tmp.exists()
    assert not old_tmp.exists() and not old_part.exists()


@pytest.fixture
def unwritable(settings) -> Iterator[Path]:
    """The data dir made unwritable (chattr +i where the tests run as root)."""
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o500)
    immutable = False
    try:
        (data / "probe").touch()
        (data / "probe").unlink()
        if subprocess.run(["chattr", "+i", str(data)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a directory unwritable here")
        immutable = True
    except OSError:
        pass
    try:
        yield data
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(data)], check=True)
        data.chmod(0o700)


def test_healthz_fails_when_the_data_dir_is_not_writable(app, unwritable):
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "data dir not writable"}


def test_dashboard_refuses_big_bodies_before_reading_them(app):
    client = app.test_client()
    response = client.post("/login", data={"login": "x", "password": "y" * 400_000})
    assert response.status_code == 413 and "Слишком большой объём" in response.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("size", [1_000, 300_000])
def test_a_chunked_form_over_the_limit_is_refused_not_cut(app, size: int):
    # No Content-Length: Werkzeug would cut the body at the limit and the form would
    # parse what is left (a note saved cut short).
    client = app.test_client()
    body = f"csrf_token={csrf_token(client)}&login=x&password=".encode() + b"y" * size
    response = client.post(
        "/login",
        input_stream=io.BytesIO(body),
        content_type="application/x-www-form-urlencoded",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn and waitress say
    )
    if size > 256 * 1024:
        assert response.status_code == 413 and "Слишком большой объём" in response.get_data(as_text=True)
    else:  # read whole: a wrong password, not a broken form
        assert response.status_code == 401 and "Неверный логин или пароль" in response.get_data(as_text=True)
