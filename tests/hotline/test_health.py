"""`/healthz` problems are kept per host: hosts may share the data dir (README, "Scaling out")."""

import socket

from hotline import health
from hotline.settings import host_run_dir, load_settings


def test_one_hosts_problem_is_not_anothers(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "hotline-a")
    health.report(tmp_path, "fastagi_stuck", "FastAGI не отвечает")
    assert health.failing(tmp_path, "fastagi_stuck")
    assert (tmp_path / "run" / "hotline-a" / "health" / "fastagi_stuck").is_file()
    monkeypatch.setattr(socket, "gethostname", lambda: "hotline-b")
    assert health.problems(tmp_path) == {}  # b's /healthz stays 200
    health.clear(tmp_path, "fastagi_stuck")  # b starting clears its own word only
    monkeypatch.setattr(socket, "gethostname", lambda: "hotline-a")
    assert health.problems(tmp_path) == {"fastagi_stuck": "FastAGI не отвечает"}


def test_sockets_live_in_the_hosts_run_folder(tmp_path, monkeypatch):
    from ivr.twilio import behind

    monkeypatch.setattr(socket, "gethostname", lambda: "pbx-1.example.ru/odd")
    settings = load_settings({"HOTLINE_DATA_DIR": str(tmp_path), "HOTLINE_SECRET_KEY": "k"})
    assert settings.run_dir == host_run_dir(tmp_path) == tmp_path / "run" / "pbx-1.example.ru_odd"
    assert behind.socket_path(settings).parent == settings.run_dir


def test_a_socket_path_too_long_is_said_in_one_line(tmp_path, db, capsys):
    from ivr.twilio import behind

    deep = tmp_path / ("d" * 100)
    settings = load_settings(
        {"HOTLINE_DATA_DIR": str(deep), "HOTLINE_SECRET_KEY": "k", "TWILIO_AUTH_TOKEN": "t"}
    )
    assert behind.make_service(settings, db) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "longer than 107 bytes" in err and "HOTLINE_DATA_DIR" in err
